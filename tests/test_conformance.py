"""The public eBPF conformance suite: every file must pass, on both engines."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pybpf.cli import main
from pybpf.conformance import ConformanceError, parse, run_case, run_dir, run_plugin

SUITE = Path(__file__).parents[2] / "shared/conformance/tests"
FILES = sorted(p.name for p in SUITE.glob("*.data")) if SUITE.is_dir() else []
needs_suite = pytest.mark.skipif(not FILES, reason=f"conformance suite not found at {SUITE}")


@needs_suite
def test_suite_is_complete():
    assert len(FILES) == 313


@needs_suite
@pytest.mark.parametrize("name", FILES)
def test_file(name):
    case = parse((SUITE / name).read_text(), name)
    outcome = run_case(case)
    assert outcome.passed, outcome.reason
    # The reference engine must agree with the fast one on every file.
    ref = run_case(case, engine="reference")
    assert ref.passed, ref.reason


@needs_suite
def test_cli_conformance_reports_counts():
    res = CliRunner().invoke(main, ["conformance", str(SUITE)])
    assert res.exit_code == 0, res.output
    assert "313 passed, 0 failed" in res.output.splitlines()


def test_cli_conformance_reports_failures(tmp_path):
    (tmp_path / "good.data").write_text("-- asm\nmov %r0, 3\nexit\n-- result\n0x3\n")
    (tmp_path / "bad.data").write_text("-- asm\nmov %r0, 3\nexit\n-- result\n0x4\n")
    (tmp_path / "oob.data").write_text("-- asm\nldxdw %r0, [%r1+8]\nexit\n-- mem\n00 11\n-- result\n0\n")
    res = CliRunner().invoke(main, ["conformance", str(tmp_path)])
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert "1 passed, 2 failed" in lines
    assert any(line.startswith("FAIL bad.data: r0 = 0x3, expected 0x4") for line in lines)
    assert any(line.startswith("FAIL oob.data:") and "out-of-bounds load of 8 bytes" in line
               for line in lines)


def test_raw_section_cross_checks_the_assembler():
    good = parse("-- asm\nexit\n-- raw\n0x0000000000000095\n-- result\n0x0\n")
    assert run_case(good).passed
    bad = parse("-- asm\nexit\n-- raw\n0x0000000000000096\n-- result\n0x0\n")
    out = run_case(bad)
    assert not out.passed and "differs from '-- raw' at slot 0" in out.reason


def test_parse_sections():
    case = parse("# c\n-- c\nint x;\n-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01\n02\n"
                 "-- no register offset\nwhatever\n-- result\n0x3\n", "t.data")
    assert case.mem == b"\x00\x01\x02" and case.result == 3
    assert run_case(case).r0 == 3
    with pytest.raises(ConformanceError, match="no '-- asm'"):
        parse("-- result\n1\n", "x.data")
    with pytest.raises(ConformanceError, match="bad hex byte"):
        parse("-- asm\nexit\n-- mem\nzz\n-- result\n0\n", "x.data")


def test_asm_errors_carry_file_line(tmp_path):
    (tmp_path / "t.data").write_text("# header\n-- asm\nmov %r0, 1\nbogus %r0\nexit\n-- result\n1\n")
    out = run_dir(tmp_path).outcomes[0]
    assert not out.passed and "t.data:4" in out.reason


def test_plugin_protocol():
    prog = "b7 00 00 00 05 00 00 00\n95 00 00 00 00 00 00 00"
    assert run_plugin(prog) == 5
    # ldxb r0, [r1+2]
    assert run_plugin("71 10 02 00 00 00 00 00 95 00 00 00 00 00 00 00", "aa bb 11") == 0x11
    res = CliRunner().invoke(main, ["conformance-plugin", "aa bb 11"],
                             input="71 10 02 00 00 00 00 00 95 00 00 00 00 00 00 00")
    assert res.exit_code == 0 and res.output == "11\n"
    res = CliRunner().invoke(main, ["conformance-plugin"],
                             input="18 00 00 00 88 77 66 55 00 00 00 00 44 33 22 11 95 00 00 00 00 00 00 00")
    assert res.output == "1122334455667788\n"
    res = CliRunner().invoke(main, ["conformance-plugin", "aa"], input="71 10 02 00 00 00 00 00 95 00 00 00 00 00 00 00")
    assert res.exit_code != 0 and "out-of-bounds" in res.output
    # the public runner may send both as unbroken hex strings
    res = CliRunner().invoke(main, ["conformance-plugin", "aabb11"],
                             input="7110020000000000950000000000000 0\n")
    assert res.exit_code == 0 and res.output == "11\n"
    res = CliRunner().invoke(main, ["conformance-plugin"], input="xyz")
    assert res.exit_code != 0 and "hex" in res.output
