"""The conformance-suite syntax: every suite program assembles, encodings are exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from pybpf.asm import assemble, detect_syntax
from pybpf.errors import AsmError
from pybpf.isa import check_program, encode
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, ldimm64

SUITE = Path(__file__).resolve().parents[2] / "shared/conformance/tests"
SUITE_FILES = sorted(SUITE.glob("*.data")) if SUITE.is_dir() else []


def sections(path: Path) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    cur = None
    for line in path.read_text().splitlines():
        if line.startswith("-- "):
            cur = line[3:].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return {k: "\n".join(v) + "\n" for k, v in out.items()}


def asm(text: str) -> list[Insn]:
    return assemble(text, source="t.s", syntax="conformance")


@pytest.mark.skipif(not SUITE_FILES, reason="conformance suite not present")
def test_suite_has_313_programs():
    assert len(SUITE_FILES) == 313


@pytest.mark.skipif(not SUITE_FILES, reason="conformance suite not present")
@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: p.name)
def test_every_suite_program_assembles(path):
    text = sections(path)["asm"]
    insns = assemble(text, source=path.name)          # auto-detection must pick conformance
    assert detect_syntax(text) == "conformance"
    check_program(insns)
    assert insns
    if "raw" in sections(path):
        raw = [int(x, 16) for x in sections(path)["raw"].split()]
        assert [int.from_bytes(i.pack(), "little") for i in insns] == raw


ENCODINGS = [
    ("mov %r0, 1", [Insn(0xB7, 0, 0, 0, 1)]),
    ("mov32 %r1, 0xffffffff", [Insn(0xB4, 1, 0, 0, -1)]),
    ("mov %r1, %r2", [Insn(0xBF, 1, 2)]),
    ("add32 %r0, -3", [Insn(0x04, 0, 0, 0, -3)]),
    ("sub %r3, %r4", [Insn(0x1F, 3, 4)]),
    ("mul32 %r0, %r3", [Insn(0x2C, 0, 3)]),
    ("div %r0, 2", [Insn(0x37, 0, 0, 0, 2)]),
    ("sdiv %r1, %r2", [Insn(0x3F, 1, 2, 1, 0)]),
    ("sdiv32 %r1, -2", [Insn(0x34, 1, 0, 1, -2)]),
    ("smod %r1, %r2", [Insn(0x9F, 1, 2, 1, 0)]),
    ("smod32 %r1, 3", [Insn(0x94, 1, 0, 1, 3)]),
    ("mod %r0, %r1", [Insn(0x9F, 0, 1)]),
    ("or %r0, %r5", [Insn(0x4F, 0, 5)]),
    ("and32 %r0, 0xa3", [Insn(0x54, 0, 0, 0, 0xA3)]),
    ("lsh %r9, 32", [Insn(0x67, 9, 0, 0, 32)]),
    ("rsh32 %r0, 19", [Insn(0x74, 0, 0, 0, 19)]),
    ("xor %r0, 0x03", [Insn(0xA7, 0, 0, 0, 3)]),
    ("arsh32 %r0, 48", [Insn(0xC4, 0, 0, 0, 48)]),
    ("neg %r0", [Insn(0x87, 0)]),
    ("neg32 %r0", [Insn(0x84, 0)]),
    ("movsx832 %r2, %r1", [Insn(0xBC, 2, 1, 8, 0)]),
    ("movsx1632 %r4, %r3", [Insn(0xBC, 4, 3, 16, 0)]),
    ("movsx864 %r6, %r5", [Insn(0xBF, 6, 5, 8, 0)]),
    ("movsx1664 %r8, %r7", [Insn(0xBF, 8, 7, 16, 0)]),
    ("movsx3264 %r0, %r9", [Insn(0xBF, 0, 9, 32, 0)]),
    ("be16 %r0", [Insn(0xDC, 0, 0, 0, 16)]),
    ("le64 %r0", [Insn(0xD4, 0, 0, 0, 64)]),
    ("bswap32 %r0", [Insn(0xD7, 0, 0, 0, 32)]),
    ("swap64 %r0", [Insn(0xD7, 0, 0, 0, 64)]),
    ("lddw %r0, 0x1122334455667788", list(ldimm64(0, 0x1122334455667788))),
    ("lddw %r1, -1", list(ldimm64(1, -1))),
    ("ldxb %r9, [%r0+0]", [Insn(0x71, 9, 0, 0, 0)]),
    ("ldxh %r0, [%r1]", [Insn(0x69, 0, 1, 0, 0)]),
    ("ldxw %r0, [%r1+4]", [Insn(0x61, 0, 1, 4, 0)]),
    ("ldxdw %r0, [%r10-8]", [Insn(0x79, 0, 10, -8, 0)]),
    ("ldxsb %r0, [%r10-1]", [Insn(0x91, 0, 10, -1, 0)]),
    ("ldxsh %r0, [%r10-2]", [Insn(0x89, 0, 10, -2, 0)]),
    ("ldxsw %r0, [%r10 - 4]", [Insn(0x81, 0, 10, -4, 0)]),
    ("stb [%r10-1], 0xff", [Insn(0x72, 10, 0, -1, 0xFF)]),
    ("sth [%r0], 0x1234", [Insn(0x6A, 0, 0, 0, 0x1234)]),
    ("stw [%r10-4], 0x80000001", [Insn(0x62, 10, 0, -4, -0x7FFFFFFF)]),
    ("stdw [%r10-8], 0x11223344", [Insn(0x7A, 10, 0, -8, 0x11223344)]),
    ("stxb [%r10-1], %r1", [Insn(0x73, 10, 1, -1, 0)]),
    ("stxh [%r10-2], %r1", [Insn(0x6B, 10, 1, -2, 0)]),
    ("stxw [%r10-4], %r1", [Insn(0x63, 10, 1, -4, 0)]),
    ("stxdw [%r10-8], %r0", [Insn(0x7B, 10, 0, -8, 0)]),
    ("lock add [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.ADD)]),
    ("lock add32 [%r10-4], %r1", [Insn(0xC3, 10, 1, -4, op.ADD)]),
    ("lock or [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.OR)]),
    ("lock and32 [%r10-8], %r1", [Insn(0xC3, 10, 1, -8, op.AND)]),
    ("lock xor [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.XOR)]),
    ("lock fetch add [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.ADD | op.FETCH)]),
    ("lock fetch xor32 [%r10-8], %r1", [Insn(0xC3, 10, 1, -8, op.XOR | op.FETCH)]),
    ("lock xchg [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.XCHG)]),
    ("lock xchg32 [%r10-8], %r1", [Insn(0xC3, 10, 1, -8, op.XCHG)]),
    ("lock cmpxchg [%r10-8], %r1", [Insn(0xDB, 10, 1, -8, op.CMPXCHG)]),
    ("lock cmpxchg32 [%r10-8], %r1", [Insn(0xC3, 10, 1, -8, op.CMPXCHG)]),
    ("ldabsw 4", [Insn(0x20, 0, 0, 0, 4)]),
    ("ldindb %r1, 2", [Insn(0x50, 0, 1, 0, 2)]),
    ("jeq %r1, 0x80000000, +1", [Insn(0x15, 1, 0, 1, -0x80000000)]),
    ("jne32 %r1, %r2, -2", [Insn(0x5E, 1, 2, -2, 0)]),
    ("jsle %r1, 0xfffffffd, +4", [Insn(0xD5, 1, 0, 4, -3)]),
    ("jset32 %r1, 0x8, 0", [Insn(0x46, 1, 0, 0, 8)]),
    ("ja +3", [Insn(0x05, 0, 0, 3, 0)]),
    ("ja32 -1", [Insn(0x06, 0, 0, 0, -1)]),
    ("call 5", [Insn(0x85, 0, 0, 0, 5)]),
    ("call %r2", [Insn(0x8D, 2, 0, 0, 0)]),
    ("callx %r3", [Insn(0x8D, 3, 0, 0, 0)]),
    ("call local +2", [Insn(0x85, 0, 1, 0, 2)]),
    ("exit", [Insn(0x95)]),
]


@pytest.mark.parametrize("text,expected", ENCODINGS, ids=[t for t, _ in ENCODINGS])
def test_encoding(text, expected):
    assert asm(text) == expected


def test_labels_jumps_and_local_calls():
    insns = asm("""
        mov %r0, 0
        ja32 L2          # forward gotol
    L1:
        exit
    L2: call local func
        jeq %r0, 1, L1   # backward
        ja L1
    func:
        lddw %r0, 1
        exit
    """)
    assert insns[1] == Insn(op.OP_JA32, 0, 0, 0, 1)
    assert insns[3] == Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 2)
    assert insns[4] == Insn(0x15, 0, 0, -3, 1)
    assert insns[5] == Insn(op.OP_JA, 0, 0, -4, 0)
    assert insns[6].code == op.LD_IMM64 and len(insns) == 9


def test_jump_to_exit_without_label_goes_to_next_exit():
    insns = asm("jne %r0, 0, exit\nmov %r0, 1\nexit\nmov %r0, 2\nexit\n")
    assert insns[0].off == 1
    # an explicit label named exit wins
    insns = asm("jne %r0, 0, exit\nexit\nexit:\nmov %r0, 2\nexit\n")
    assert insns[0].off == 1


def test_comments_and_blank_lines():
    assert asm("# c\n\nmov %r0, 1 # trailing\n; other\nexit // done\n") == [Insn(0xB7, 0, 0, 0, 1), Insn(0x95)]


ERRORS = [
    ("frob %r0, 1", "t.s:1: unknown mnemonic 'frob'"),
    ("mov %r11, 1", "bad register '%r11'"),
    ("mov %rx, 1", "bad register"),
    ("mov %r0", "expected 2 operands, got 1"),
    ("mov %r0, 0x100000000", "immediate 4294967296 out of range"),
    ("mov %r0, -0x80000001", "out of range"),
    ("mov %r0, 12abc", "bad immediate '12abc'"),
    ("lddw %r0, 0x10000000000000000", "out of range"),
    ("ldxw %r0, [%r1+32768]", "offset 32768 out of range"),
    ("ldxw %r0, %r1", "bad memory operand"),
    ("ldxsdw %r0, [%r1]", "no sign-extending 64-bit load"),
    ("ja nowhere\nexit", "t.s:1: undefined label 'nowhere'"),
    ("a:\nexit\na:\nexit", "t.s:3: duplicate label 'a' (first defined on line 1)"),
    ("jeq %r0, 0, +40000", "out of range"),
    ("lock frob [%r10-8], %r1", "unknown atomic operation"),
    ("movsx3232 %r0, %r1", "unknown mnemonic"),
    ("jne %r0, 0, exit\nmov %r0, 1", "no exit instruction follows"),
    ("call local 1x", "bad target"),
    ("ldabsdw 4", "packet loads are 8, 16 or 32 bits wide"),
    ("lddw %r1, frob(1)", "unknown pseudo source 'frob'"),
    ("lddw %r1, map_value(1)", "takes two arguments"),
    ("call kfunc x", "bad kfunc id"),
]


@pytest.mark.parametrize("text,message", ERRORS, ids=[t for t, _ in ERRORS])
def test_errors_name_file_line_and_reason(text, message):
    with pytest.raises(AsmError) as e:
        asm(text)
    assert message in str(e.value)
    assert e.value.line is not None and e.value.source == "t.s"


def test_far_label_jump_out_of_16_bit_range():
    text = "ja far\n" + "mov %r0, 0\n" * 40000 + "far:\nexit\n"
    with pytest.raises(AsmError, match=r"t\.s:1: jump to 'far' is \+40000 instructions away, out of the 16-bit"):
        asm(text)
    # the same distance fits a ja32 (gotol)
    assert asm(text.replace("ja far", "ja32 far", 1))[0] == Insn(op.OP_JA32, 0, 0, 0, 40000)


def test_encode_is_bytes():
    assert encode(asm("exit")) == bytes.fromhex("9500000000000000")


@pytest.mark.skipif(not SUITE_FILES, reason="conformance suite not present")
def test_suite_programs_roundtrip_through_conformance_style():
    from pybpf.asm import disassemble

    for path in SUITE_FILES:
        insns = asm(sections(path)["asm"])
        text = "\n".join(disassemble(insns, style="conformance"))
        assert asm(text) == insns, path.name


@pytest.mark.parametrize("text", [
    "mov32 %r0, 1", "add %r1, %r2", "sdiv32 %r1, -2", "smod %r1, %r2", "movsx832 %r2, %r1",
    "movsx3264 %r0, %r9", "neg %r3", "be16 %r0", "le64 %r0", "bswap32 %r0", "lddw %r0, 0x1122334455667788",
    "ldxdw %r0, [%r10-8]", "ldxsh %r0, [%r1+2]", "stw [%r10-4], -5", "stxb [%r10-1], %r1",
    "lock fetch add32 [%r10-8], %r1", "lock xchg [%r1+0], %r2", "lock cmpxchg32 [%r1+0], %r2",
    "lock or [%r1+0], %r2", "jeq %r1, 0x80000, +1", "jne32 %r1, %r2, -2", "ja +3", "ja32 -1",
    "call 5", "call local +2", "callx %r3", "call kfunc 7", "ldabsw 4", "ldindb %r1, 2", "exit",
    "lddw %r1, map_fd(0x5)", "lddw %r1, map_value(0x5, 0x10)", "lddw %r2, map_idx_value(0x1, 0x0)",
])
def test_conformance_style_text(text):
    from pybpf.asm import disassemble

    assert disassemble(asm(text), style="conformance")[0] == text
