"""The committed helper-name table and its generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.asm import assemble
from pybpf.asm.gen_helper_names import parse_header, render
from pybpf.asm.helper_names import HELPER_NAMES

HEADER = Path("/usr/include/linux/bpf.h")


def test_table_basics():
    assert HELPER_NAMES[0] == "bpf_unspec"
    assert HELPER_NAMES[1] == "bpf_map_lookup_elem"
    assert HELPER_NAMES[5] == "bpf_ktime_get_ns"
    assert HELPER_NAMES[12] == "bpf_tail_call"
    assert sorted(HELPER_NAMES) == list(range(len(HELPER_NAMES)))


@pytest.mark.skipif(not HEADER.exists(), reason="linux/bpf.h not installed")
def test_committed_table_covers_the_installed_header():
    parsed = parse_header(HEADER.read_text())
    common = set(parsed) & set(HELPER_NAMES)
    assert common and all(parsed[k] == HELPER_NAMES[k] for k in common)


def test_generator_reads_both_header_spellings():
    old = ("#define __BPF_FUNC_MAPPER(FN)\t\\\n\tFN(unspec),\t\\\n\tFN(map_lookup_elem),\t\\\n"
           "\tFN(map_update_elem),\t\\\n\t/* */\n")
    new = ("#define ___BPF_FUNC_MAPPER(FN, ctx...)\t\\\n\tFN(unspec, 0, ##ctx)\t\\\n"
           "\tFN(map_lookup_elem, 1, ##ctx)\t\\\n\tFN(cgrp_storage_get, 210, ##ctx)\t\\\n\t/* */\n")
    assert parse_header(old) == {0: "bpf_unspec", 1: "bpf_map_lookup_elem", 2: "bpf_map_update_elem"}
    assert parse_header(new) == {0: "bpf_unspec", 1: "bpf_map_lookup_elem", 210: "bpf_cgrp_storage_get"}
    namespace: dict = {}
    exec(render(parse_header(new), "x.h"), namespace)
    assert namespace["HELPER_NAMES"][210] == "bpf_cgrp_storage_get"


def test_helper_call_by_name():
    assert assemble("call bpf_map_lookup_elem\nexit")[0].imm == 1
    assert assemble("call bpf_ktime_get_ns#5\nexit")[0].imm == 5
