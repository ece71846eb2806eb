"""``pybpf exec``: files of every kind, memory, trace, budget, errors as one line."""

from __future__ import annotations

from click.testing import CliRunner

from pybpf.cli import main
from pybpf.isa import Insn, encode
from pybpf.isa import opcodes as op


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_bundled_example_runs_with_trace():
    res = run("exec")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert "r0 = 0xb861 (47201)" in lines          # the IPv4 header checksum
    assert lines[-1] == "100 instructions executed"
    trace = [line for line in lines if line[:6].strip().rstrip(":").isdigit()]
    assert len(trace) == 100 and trace[0].split()[0] == "0:"
    assert any("r0=0x4500" in line for line in trace)
    res = run("exec", "--no-trace")
    assert res.exit_code == 0 and len(res.output.splitlines()) == 3


def test_exec_text_file_with_mem(tmp_path):
    src = tmp_path / "p.s"
    src.write_text("ldxb %r0, [%r1+2]\nexit\n")
    res = run("exec", str(src), "--mem", "aa bb 11")
    assert res.exit_code == 0 and "r0 = 0x11 (17)" in res.output
    res = run("exec", str(src), "--mem", "aa bb")
    assert res.exit_code == 1
    err = res.output.strip().splitlines()[-1]
    assert err.startswith("pybpf: error: pc 0 (") and "out-of-bounds load of 1 byte" in err
    assert "input memory+2" in err
    res = run("exec", str(src), "--mem", "zz")
    assert res.exit_code == 1 and "bad hex byte 'zz'" in res.output


def test_exec_binary_and_data_files(tmp_path):
    binf = tmp_path / "p.bin"
    binf.write_bytes(encode([Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 42), Insn(op.OP_EXIT)]))
    res = run("exec", str(binf), "--trace")
    assert res.exit_code == 0 and "r0 = 0x2a (42)" in res.output and "r0=0x2a" in res.output
    data = tmp_path / "t.data"
    data.write_text("-- asm\nmov %r0, %r2\nexit\n-- mem\n00 01 02\n-- result\n0x3\n")
    res = run("exec", str(data))
    assert res.exit_code == 0 and "r0 = 0x3 (3)" in res.output
    (tmp_path / "bad.bin").write_bytes(b"\x07\x00")
    res = run("exec", str(tmp_path / "bad.bin"))
    assert res.exit_code == 1 and "not a multiple of 8" in res.output


def test_exec_budget_and_asm_errors(tmp_path):
    src = tmp_path / "loop.s"
    src.write_text("mov %r0, 0\nloop:\nja loop\nexit\n")
    res = run("exec", str(src), "--max-insns", "100")
    assert res.exit_code == 1 and "instruction budget of 100 exceeded" in res.output
    bad = tmp_path / "bad.s"
    bad.write_text("mov %r0, 0\nfrobnicate %r1\nexit\n")
    res = run("exec", str(bad))
    assert res.exit_code == 1 and "bad.s:2" in res.output
    assert "Traceback" not in res.output
    res = run("exec", str(tmp_path / "missing.s"))
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_fibonacci_example_in_llvm_syntax():
    res = run("exec", "--example", "fibonacci", "--no-trace")
    assert res.exit_code == 0, res.output
    assert "r0 = 0x27f80ddaa1ba7878 (2880067194370816120)" in res.output
