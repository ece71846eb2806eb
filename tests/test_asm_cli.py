"""``pybpf asm`` / ``pybpf disasm`` through click's CliRunner."""

from __future__ import annotations

from click.testing import CliRunner

from pybpf.cli import main
from pybpf.isa import decode

PROGRAM = "mov %r0, 1\nlddw %r1, 0x1122334455667788\njeq %r1, 2, out\nadd %r0, -3\nout:\nexit\n"


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def test_asm_writes_bin_next_to_the_source(tmp_path):
    src = tmp_path / "p.s"
    src.write_text(PROGRAM)
    r = run("asm", str(src))
    assert r.exit_code == 0, r.output
    insns = decode((tmp_path / "p.bin").read_bytes())
    assert len(insns) == 6 and insns[-1].code == 0x95


def test_asm_hex_and_stdout(tmp_path):
    src = tmp_path / "p.s"
    src.write_text(PROGRAM)
    r = run("asm", str(src), "--hex")
    assert r.exit_code == 0
    assert r.output.splitlines()[0] == "b700000001000000"
    assert len(r.output.splitlines()) == 6
    r = run("asm", str(src), "-o", "-")
    assert r.exit_code == 0
    assert r.stdout_bytes[:8] == bytes.fromhex("b700000001000000") and len(r.stdout_bytes) == 48


def test_asm_explicit_output_and_syntax(tmp_path):
    src = tmp_path / "p.txt"
    src.write_text("r0 = 1\nexit\n")
    out = tmp_path / "o.bin"
    assert run("asm", str(src), "-o", str(out), "--syntax", "llvm").exit_code == 0
    assert out.read_bytes() == bytes.fromhex("b700000001000000" "9500000000000000")
    r = run("asm", str(src), "--syntax", "conformance")
    assert r.exit_code == 1
    assert "unknown mnemonic 'r0'" in r.output


def test_asm_error_is_one_line_with_file_and_line(tmp_path):
    src = tmp_path / "bad.s"
    src.write_text("r0 = 1\nr0 += r11\nexit\n")
    r = run("asm", str(src))
    assert r.exit_code == 1
    assert r.output.strip() == f"pybpf: error: {src}:2: bad register 'r11' (registers are r0..r10 / w0..w10)"
    assert "Traceback" not in r.output


def test_asm_refuses_binary_input(tmp_path):
    src = tmp_path / "x.s"
    src.write_bytes(b"\xff\xfe\x00")
    r = run("asm", str(src))
    assert r.exit_code == 1 and "not UTF-8 text" in r.output


def test_disasm_raw_and_hex(tmp_path):
    raw = tmp_path / "p.bin"
    raw.write_bytes(bytes.fromhex("b700000001000000" "1801000088776655" "0000000044332211" "9500000000000000"))
    r = run("disasm", str(raw))
    assert r.exit_code == 0
    assert r.output.splitlines() == ["  0: r0 = 0x1", "  1: r1 = 0x1122334455667788 ll", "  3: exit"]
    hexfile = tmp_path / "p.hex"
    hexfile.write_text("b700000001000000\n1801000088776655 0000000044332211\n9500000000000000\n")
    r = run("disasm", str(hexfile), "--style", "kernel")
    assert r.exit_code == 0
    assert r.output.splitlines() == ["  0: (b7) r0 = 1", "  1: (18) r1 = 0x1122334455667788", "  3: (95) exit"]


def test_disasm_output_reassembles(tmp_path):
    src = tmp_path / "p.s"
    src.write_text(PROGRAM)
    run("asm", str(src), "-o", str(tmp_path / "p.bin"))
    r = run("disasm", str(tmp_path / "p.bin"), "--style", "pybpf")
    (tmp_path / "back.s").write_text(r.output)     # the "  idx: " column reads back too
    assert run("asm", str(tmp_path / "back.s"), "-o", str(tmp_path / "back.bin")).exit_code == 0
    assert (tmp_path / "back.bin").read_bytes() == (tmp_path / "p.bin").read_bytes()


def test_disasm_malformed_encoding(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes.fromhex("b700000001000000" "ff00000000000000"))
    r = run("disasm", str(bad))
    assert r.exit_code == 1
    assert r.output.strip() == "pybpf: error: insn 1: unknown opcode ff"
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x95\x00\x00")
    r = run("disasm", str(odd))
    assert r.exit_code == 1 and "not a multiple of 8 bytes" in r.output
    oddhex = tmp_path / "odd.hex"
    oddhex.write_text("950")
    r = run("disasm", str(oddhex))
    assert r.exit_code == 1 and "odd number of digits" in r.output


def test_missing_file_is_a_clear_error(tmp_path):
    r = run("disasm", str(tmp_path / "nope.bin"))
    assert r.exit_code == 1 and "No such file" in r.output
