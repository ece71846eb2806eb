"""The committed example objects are what their sources compile to (examples/build.py)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from pybpf.loader import read_object

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_spec = importlib.util.spec_from_file_location("examples_build", EXAMPLES / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)


@pytest.mark.parametrize("name", build.EXAMPLES)
def test_committed_object_matches_source(name, tmp_path):
    if not os.access(build.CLANG, os.X_OK):
        pytest.skip(f"{build.CLANG} not installed")
    fresh = read_object(build.build(name, str(tmp_path / "prog.o")))
    committed = read_object(EXAMPLES / name / "prog.o")
    assert fresh.programs.keys() == committed.programs.keys()
    for p, want in committed.programs.items():
        got = fresh.programs[p]
        assert got.insns == want.insns, f"{name}: program {p} differs: run examples/build.py {name}"
        assert (got.prog_type, got.relocs) == (want.prog_type, want.relocs)
        assert [(li.insn, li.line) for li in got.line_info] == [(li.insn, li.line) for li in want.line_info]
    strip = lambda m: (m.type, m.key_size, m.value_size, m.max_entries, m.map_flags, m.data,  # noqa: E731
                       m.init_slots, m.pinning)
    assert {n: strip(m) for n, m in fresh.maps.items()} == {n: strip(m) for n, m in committed.maps.items()}
    assert fresh.license == committed.license == "GPL"


@pytest.mark.parametrize("name", build.EXAMPLES)
def test_objects_carry_line_info(name):
    spec = read_object(EXAMPLES / name / "prog.o")
    for p in spec.programs.values():
        assert p.line_info, f"{name}/{p.name}: built without -g?"
        assert {li.file for li in p.line_info} <= {"./prog.c", "./../sockex2/flow.h"}
