"""The LLVM assembly syntax: exact encodings, llvm-mc 19 as oracle, clear errors."""

from __future__ import annotations

import pytest

import asm_llvm_oracle as oracle
from pybpf.asm import assemble, detect_syntax
from pybpf.errors import AsmError
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, decode, ldimm64

needs_llvm = pytest.mark.skipif(not oracle.available(), reason="LLVM 19 llvm-mc/llvm-objdump not installed")


def asm(text: str) -> list[Insn]:
    return assemble(text, source="p.s", syntax="llvm")


# Statements llvm-mc 19 accepts; each must assemble to the very bytes llvm-mc produces.
LLVM_MC_STATEMENTS = [
    "r0 = 1", "r1 = -8", "w1 = 0xffffffff", "r1 = 0x7fffffff", "r1 = -0x80000000", "r1 = r2", "w3 = w4",
    "r1 += 5", "w1 -= w2", "r1 *= r2", "r1 /= 3", "w1 |= 7", "r1 &= -1", "r1 <<= 3", "w1 >>= w2",
    "r1 %= r2", "w1 ^= 5", "r1 s>>= 2", "r1 s/= 3", "w1 s/= w2", "r1 s%= r2", "w1 s%= -7",
    "r1 = -r1", "w1 = -w1", "r1 = (s8)r2", "r1 = (s16)r2", "r1 = (s32)r2", "w1 = (s8)w2", "w1 = (s16)w2",
    "r1 = be16 r1", "r1 = be32 r1", "r1 = be64 r1", "r1 = le16 r1", "r1 = le64 r1",
    "r1 = bswap16 r1", "r1 = bswap32 r1", "r1 = bswap64 r1",
    "r1 = 0x1122334455667788 ll", "r1 = -1 ll", "r9 = 0 ll", "ld_pseudo r3, 1, 5", "ld_pseudo r3, 0x2, 0xffffffff",
    "r0 = *(u8 *)skb[4]", "r0 = *(u16 *)skb[r1]", "r0 = *(u32 *)skb[-4]",
    "r1 = *(u64 *)(r2 + 8)", "r1 = *(u64 *)(r2 -8)", "w1 = *(u32 *)(r2 + 0)", "r1 = *(u32 *)(r2 + 0)",
    "w1 = *(u16 *)(r10 - 2)", "r1 = *(u8 *)(r2 + 32767)", "r1 = *(s8 *)(r2 - 32768)", "r1 = *(s16 *)(r2 + 2)",
    "r1 = *(s32 *)(r2 + 4)",
    "*(u64 *)(r10 - 8) = 5", "*(u32 *)(r1 + 0) = 0xffffffff", "*(u8 *)(r1 + 1) = -1", "*(u16 *)(r1 + 2) = w2",
    "*(u32 *)(r1 + 0) = r2", "*(u64 *)(r10 - 16) = r9",
    "lock *(u32 *)(r1 + 0) += r2", "lock *(u32 *)(r1 + 4) |= w2", "lock *(u64 *)(r1 - 8) &= r2",
    "lock *(u64 *)(r1 + 0) ^= r3",
    "r2 = atomic_fetch_add((u64 *)(r1 - 8), r2)", "w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)",
    "r2 = atomic_fetch_and((u64 *)(r1 + 0), r2)", "w2 = atomic_fetch_xor((u32 *)(r1 + 0), w2)",
    "r2 = xchg_64(r1 + 0, r2)", "w2 = xchg32_32(r1 - 8, w2)",
    "r0 = cmpxchg_64(r1 + 0, r0, r2)", "w0 = cmpxchg32_32(r1 + 0, w0, w2)",
    "if r1 == -8 goto +3", "if r1 == 0xffffffff goto +3", "if r1 != r2 goto -1", "if w1 > 5 goto +0",
    "if r1 >= r2 goto +1", "if w1 < w2 goto +1", "if r1 <= 7 goto +1", "if r1 s> r2 goto +1",
    "if w1 s>= -1 goto +1", "if r1 s< 0 goto +1", "if r1 s<= r2 goto -1", "if w1 & 3 goto +1",
    "goto +0x7fff", "goto -0x8000", "gotol -1", "gotol +3", "call 5", "call 0x7fffffff", "callx r2", "exit",
]


@needs_llvm
def test_statements_match_llvm_mc_bytes():
    text = "\n".join(LLVM_MC_STATEMENTS)
    expected = decode(oracle.llvm_mc_assemble(text), check=False)
    assert asm(text) == expected


@needs_llvm
def test_labels_match_llvm_mc():
    text = """
        r0 = 0
    top:
        if r0 > 10 goto out
        r0 += 1
        goto top
    out:
        gotol end
        r0 = 5
    end:
        exit
    """
    assert asm(text) == decode(oracle.llvm_mc_assemble(text), check=False)


def test_local_call_by_label():
    insns = asm("call f\nexit\nf:\nr0 = 1\nexit\n")
    assert insns[0] == Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 1)


def test_pybpf_extensions():
    assert asm("r1 = map_fd(5) ll") == list(ldimm64(1, 5, op.PSEUDO_MAP_FD))
    assert asm("r2 = map_value(0x5, 0x10) ll") == list(ldimm64(2, 5 | (0x10 << 32), op.PSEUDO_MAP_VALUE))
    assert asm("r3 = btf_id(7) ll") == list(ldimm64(3, 7, op.PSEUDO_BTF_ID))
    assert asm("r4 = func(0x3) ll") == list(ldimm64(4, 3, op.PSEUDO_FUNC))
    assert asm("r5 = map_idx(0) ll") == list(ldimm64(5, 0, op.PSEUDO_MAP_IDX))
    assert asm("r6 = map_idx_value(1, 8) ll") == list(ldimm64(6, 1 | (8 << 32), op.PSEUDO_MAP_IDX_VALUE))
    assert asm("r1 = map_fd(0xffffffff, 0x1) ll") == list(ldimm64(1, 0x1FFFFFFFF, op.PSEUDO_MAP_FD))
    assert asm("call pc+0x3") == [Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 3)]
    assert asm("call pc-2") == [Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, -2)]
    assert asm("call kfunc 0x10") == [Insn(op.OP_CALL, 0, op.PSEUDO_KFUNC_CALL, 0, 16)]
    assert asm("r0 = *(u8 *)skb[r1 + 0x4]") == [Insn(0x50, 0, 1, 0, 4)]
    assert asm("r0 = *(u32 *)skb[r1 - 4]") == [Insn(0x40, 0, 1, 0, -4)]


def test_kernel_log_text_reads_back():
    text = """
        (bf) r6 = r1
        (07) r1 += -8
        (63) *(u32 *)(r10 -4) = r1
        (85) call bpf_map_lookup_elem#1
        (18) r1 = 0x1234
        (05) goto pc-6
        (15) if r1 == 0xffffffff goto pc+1
        (db) r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)
        (c3) r0 = atomic_cmpxchg((u32 *)(r2 -8), r0, r3)
        (db) r4 = atomic64_xchg((u64 *)(r2 +0), r4)
        (85) call pc+2
        (85) call kernel-function#77
        (50) r0 = *(u8 *)skb[r1 + -4]
        (95) exit
    """
    insns = asm(text)
    assert insns[:4] == [Insn(0xBF, 6, 1), Insn(0x07, 1, 0, 0, -8), Insn(0x63, 10, 1, -4, 0),
                         Insn(0x85, 0, 0, 0, 1)]
    assert insns[4:6] == list(ldimm64(1, 0x1234))
    assert insns[6] == Insn(0x05, 0, 0, -6, 0)
    assert insns[7] == Insn(0x15, 1, 0, 1, -1)
    assert insns[8] == Insn(0xDB, 2, 1, 0, op.ADD | op.FETCH)
    assert insns[9] == Insn(0xC3, 2, 3, -8, op.CMPXCHG)
    assert insns[10] == Insn(0xDB, 2, 4, 0, op.XCHG)
    assert insns[11] == Insn(0x85, 0, 1, 0, 2)
    assert insns[12] == Insn(0x85, 0, 2, 0, 77)
    assert insns[13] == Insn(0x50, 0, 1, 0, -4)


def test_detect_syntax():
    assert detect_syntax("r0 = 1\nexit") == "llvm"
    assert detect_syntax("mov %r0, 1\nexit") == "conformance"
    assert detect_syntax("start:\n  mov r0, 1\nexit") == "conformance"
    assert detect_syntax("lock *(u64 *)(r1 + 0) += r2") == "llvm"
    assert detect_syntax("exit\ncall 1\nlddw r0, 5") == "conformance"
    assert detect_syntax("(bf) r6 = r1") == "llvm"
    assert assemble("exit") == [Insn(0x95)]


ERRORS = [
    ("r0 = 1\nfrob r1", "p.s:2: cannot parse instruction 'frob r1' (unknown mnemonic 'frob')"),
    ("r11 = 1", "bad register 'r11'"),
    ("r1 += w2", "register 'w2' must be a 64-bit r register"),
    ("w1 = r2", "register 'r2' must be a 32-bit w register"),
    ("r1 = 0x100000000", "immediate 4294967296 out of range"),
    ("r1 = 0x10000000000000000 ll", "out of range"),
    ("w1 = 5 ll", "must be a 64-bit r register"),
    ("r1 = *(u64 *)(r2 + 32768)", "memory offset 32768 out of range"),
    ("w1 = *(u64 *)(r2 + 0)", "needs a 64-bit r destination"),
    ("r1 = *(s64 *)(r2 + 0)", "no sign-extending 64-bit load"),
    ("*(s32 *)(r1 + 0) = 1", "only valid for sign-extending loads"),
    ("lock *(u16 *)(r1 + 0) += r2", "32 or 64 bits wide"),
    ("r1 = atomic_fetch_add((u64 *)(r1 + 0), r2)", "returns into its source register"),
    ("r1 = cmpxchg_64(r1 + 0, r0, r2)", "compares with and returns into r0"),
    ("r1 = -r2", "negation is in place"),
    ("r1 = be16 r2", "byte swaps are in place"),
    ("w1 = (s32)w2", "(s32) needs 64-bit registers"),
    ("goto nowhere", "p.s:1: undefined label 'nowhere'"),
    ("x:\nexit\nx:\nexit", "p.s:3: duplicate label 'x' (first defined on line 1)"),
    ("if r1 == 0 goto +32768", "jump offset 32768 out of range"),
    ("r1 = frob(1) ll", "unknown pseudo source 'frob'"),
    ("r1 = map_value(1) ll", "takes two arguments"),
    ("ld_pseudo r1, 7, 0", "pseudo source 7 out of range"),
    ("r0 = *(u64 *)skb[4]", "8, 16 or 32 bits wide"),
    ("r1 = *(u8 *)skb[4]", "always load into r0"),
    ("(07) r1 = 5", "opcode prefix (07) does not match the instruction (opcode b7)"),
]


@pytest.mark.parametrize("text,message", ERRORS, ids=[t for t, _ in ERRORS])
def test_errors(text, message):
    with pytest.raises(AsmError) as e:
        asm(text)
    assert message in str(e.value)
    assert e.value.source == "p.s" and e.value.line is not None


def test_far_label_jump_errors_but_gotol_reaches():
    body = "r0 = 0\n" * 33000
    with pytest.raises(AsmError, match=r"p\.s:1: jump to 'far' is \+33000 instructions away, out of the 16-bit"):
        asm("goto far\n" + body + "far:\nexit")
    assert asm("gotol far\n" + body + "far:\nexit")[0] == Insn(op.OP_JA32, 0, 0, 0, 33000)


def test_unknown_syntax_is_an_error():
    with pytest.raises(AsmError, match="unknown syntax 'gas'"):
        assemble("exit", syntax="gas")


def test_labels_starting_with_pc_and_crlf_lines():
    insns = asm("goto pcount\r\npcount:\r\ncall pcx\r\npcx: exit\r\n")
    assert insns == [Insn(op.OP_JA), Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 0), Insn(op.OP_EXIT)]


def test_line_numbers_count_newlines_only():
    with pytest.raises(AsmError, match=r"p\.s:2: "):
        asm("r0 = 1\x0c\nfrob\n")


def test_listing_decorations_are_ignored():
    text = "       0:\tr0 = 0x0\n       1:\tif r0 == 0x0 goto +0x0 <f+0x10>\n  2: exit\n"
    assert asm(text) == [Insn(0xB7), Insn(0x15), Insn(0x95)]
    with pytest.raises(AsmError, match="cannot parse instruction '<unknown>'"):
        asm("  0: <unknown>")
