"""The kernel style matches the host kernel's verifier log (print_bpf_insn), line for line."""

from __future__ import annotations

import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asm_strategies import ALU_BINARY, IMM
from kernel_oracle import kernel_prog_load, require_kernel
from pybpf.asm import assemble, disassemble, format_insn
from pybpf.isa import encode
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, ldimm64

SOCKET_FILTER = 1

# A verifier-safe socket filter touching every instruction form the kernel accepts there.
PROGRAM = """
r6 = r1
r0 = 0
r1 = 5
r2 = -7
w3 = 9
w4 = w3
r1 += 3
r1 -= r2
w3 *= 3
w3 *= w4
r1 /= 3
w3 /= w4
r1 |= 0x100
r1 &= -2
r1 <<= 3
w3 >>= 1
r1 %= 7
w3 %= w4
r1 ^= r2
r1 s>>= 2
w3 s>>= w4
r1 s/= -3
r1 s%= r2
w3 s/= 2
w3 s%= w4
r1 = -r1
w3 = -w3
r1 = be16 r1
r1 = le32 r1
r1 = bswap64 r1
r2 = (s8)r1
r2 = (s16)r1
r2 = (s32)r1
w2 = (s8)w3
w2 = (s16)w3
r7 = 0x123456789abcdef0 ll
r8 = -1 ll
*(u64 *)(r10 - 8) = r1
*(u32 *)(r10 - 12) = r1
*(u16 *)(r10 - 14) = r1
*(u8 *)(r10 - 15) = r1
*(u8 *)(r10 - 16) = -3
*(u16 *)(r10 - 18) = 300
*(u32 *)(r10 - 24) = -100000
*(u64 *)(r10 - 32) = 7
r1 = *(u64 *)(r10 - 8)
w1 = *(u32 *)(r10 - 12)
w1 = *(u16 *)(r10 - 14)
w1 = *(u8 *)(r10 - 15)
r1 = *(s8 *)(r10 - 16)
r1 = *(s16 *)(r10 - 18)
r1 = *(s32 *)(r10 - 24)
r1 = 1
lock *(u64 *)(r10 - 8) += r1
lock *(u64 *)(r10 - 8) |= r1
lock *(u32 *)(r10 - 12) &= w1
lock *(u32 *)(r10 - 12) ^= w1
r1 = atomic_fetch_add((u64 *)(r10 - 8), r1)
r1 = atomic_fetch_or((u64 *)(r10 - 8), r1)
w1 = atomic_fetch_and((u32 *)(r10 - 12), w1)
w1 = atomic_fetch_xor((u32 *)(r10 - 12), w1)
r1 = xchg_64(r10 - 8, r1)
w1 = xchg32_32(r10 - 12, w1)
r0 = 0
r1 = 1
r0 = cmpxchg_64(r10 - 8, r0, r1)
w0 = 0
w0 = cmpxchg32_32(r10 - 12, w0, w1)
r1 = 5
r2 = 6
if r1 == 5 goto +0
if r1 != r2 goto +0
if r1 > 0x7fffffff goto +0
if r1 >= r2 goto +0
if r1 < -1 goto +0
if r1 <= r2 goto +0
if r1 s> 3 goto +0
if r1 s>= r2 goto +0
if r1 s< -8 goto +0
if r1 s<= r2 goto +0
if r1 & 4 goto +0
if w1 == 5 goto +0
if w1 != w2 goto +0
if w1 > 0xffffffff goto +0
if w1 s<= w2 goto +0
if w1 & w2 goto +0
goto +0
gotol +0
r0 = *(u8 *)skb[12]
r0 = *(u16 *)skb[-0x200000]
r0 = *(u32 *)skb[2]
r1 = 3
r0 = *(u8 *)skb[r1]
r1 = 3
r0 = *(u16 *)skb[r1 + 0x4]
r1 = 3
r0 = *(u32 *)skb[r1 - 2]
call 5
call 7
r0 = 0
exit
"""

_LOG_INSN = re.compile(r"^(\d+): (\(..\) .*?)(\s+;.*)?$")


@pytest.mark.kernel
def test_kernel_verifier_log_matches_kernel_style():
    require_kernel()
    insns = assemble(PROGRAM, source="kernel-forms.s", syntax="llvm")
    fd, err, log = kernel_prog_load(encode(insns), SOCKET_FILTER, log_level=2)
    if fd >= 0:
        os.close(fd)
    assert fd >= 0, f"kernel rejected the program (errno {err}):\n{log[-2000:]}"
    ours = disassemble(insns, style="kernel")
    seen = set()
    for line in log.splitlines():
        m = _LOG_INSN.match(line)
        if m:
            i = int(m.group(1))
            seen.add(i)
            assert ours[i] == m.group(2), f"insn {i}"
    assert seen == {i for i, t in enumerate(ours) if t}


@pytest.mark.parametrize("insns,text", [
    ([Insn(0xBF, 6, 1)], "(bf) r6 = r1"),
    ([Insn(0x07, 1, 0, 0, -8)], "(07) r1 += -8"),
    ([Insn(0x63, 10, 1, -4, 0)], "(63) *(u32 *)(r10 -4) = r1"),
    ([Insn(0x7B, 1, 2, 0, 0)], "(7b) *(u64 *)(r1 +0) = r2"),
    ([Insn(0x85, 0, 0, 0, 1)], "(85) call bpf_map_lookup_elem#1"),
    ([Insn(0x85, 0, 0, 0, 100000)], "(85) call unknown#100000"),
    ([Insn(0x85, 0, 1, 0, -3)], "(85) call pc-3"),
    ([Insn(0x85, 0, 2, 0, 77)], "(85) call kernel-function#77"),
    ([Insn(0x8D, 2)], "(8d) callx r2"),
    (list(ldimm64(1, 0x1234)), "(18) r1 = 0x1234"),
    (list(ldimm64(1, -1)), "(18) r1 = 0xffffffffffffffff"),
    (list(ldimm64(1, 5, op.PSEUDO_MAP_FD)), "(18) r1 = map_fd(5)"),
    (list(ldimm64(1, 5 | 16 << 32, op.PSEUDO_MAP_VALUE)), "(18) r1 = map_value(5, 16)"),
    ([Insn(0x15, 1, 0, 1, -1)], "(15) if r1 == 0xffffffff goto pc+1"),
    ([Insn(0x05, 0, 0, -3, 0)], "(05) goto pc-3"),
    ([Insn(0x06, 0, 0, 0, 70000)], "(06) gotol pc+70000"),
    ([Insn(0xBC, 1, 2, 8, 0)], "(bc) w1 = (s8)w2"),
    ([Insn(0x3F, 1, 2, 1, 0)], "(3f) r1 s/= r2"),
    ([Insn(0xDC, 1, 0, 0, 16)], "(dc) r1 = be16 r1"),
    ([Insn(0xD7, 1, 0, 0, 64)], "(d7) r1 = bswap64 r1"),
    ([Insn(0x84, 3)], "(84) w3 = -w3"),
    ([Insn(0xDB, 2, 1, 0, op.ADD | op.FETCH)], "(db) r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)"),
    ([Insn(0xC3, 2, 1, -8, op.XCHG)], "(c3) r1 = atomic_xchg((u32 *)(r2 -8), r1)"),
    ([Insn(0xDB, 2, 1, 0, op.CMPXCHG)], "(db) r0 = atomic64_cmpxchg((u64 *)(r2 +0), r0, r1)"),
    ([Insn(0xC3, 2, 1, 4, op.OR)], "(c3) lock *(u32 *)(r2 +4) |= r1"),
    ([Insn(0x40, 0, 1, 0, 4)], "(40) r0 = *(u32 *)skb[r1 + 4]"),
    ([Insn(0x91, 1, 2, -1, 0)], "(91) r1 = *(s8 *)(r2 -1)"),
    ([Insn(0x95)], "(95) exit"),
])
def test_kernel_style_text(insns, text):
    assert format_insn(insns, 0, style="kernel") == text


# --- random programs through the real verifier ------------------------------------------------



@st.composite
def _safe_insn(draw):
    """One instruction the verifier accepts on initialised scalar registers r0..r9."""
    reg = st.integers(0, 9)
    kind = draw(st.sampled_from(["alu_k", "alu_x", "neg", "end", "movsx", "jmp", "stack"]))
    cls = draw(st.sampled_from((op.ALU, op.ALU64)))
    bits = 32 if cls == op.ALU else 64
    d = draw(reg)
    if kind == "alu_k":
        o = draw(st.sampled_from(ALU_BINARY))
        off = draw(st.sampled_from((0, 1))) if o in (op.DIV, op.MOD) else 0
        if o in (op.LSH, op.RSH, op.ARSH):
            imm = draw(st.integers(0, bits - 1))
        elif o in (op.DIV, op.MOD):
            imm = draw(IMM.filter(bool))
        else:
            imm = draw(IMM)
        return [Insn(cls | op.K | o, d, 0, off, imm)]
    if kind == "alu_x":
        o = draw(st.sampled_from(ALU_BINARY))
        off = draw(st.sampled_from((0, 1))) if o in (op.DIV, op.MOD) else 0
        return [Insn(cls | op.X | o, d, draw(reg), off, 0)]
    if kind == "neg":
        return [Insn(cls | op.NEG, d)]
    if kind == "end":
        code = op.ALU64 | op.END if cls == op.ALU64 else op.ALU | op.END | draw(st.sampled_from((op.TO_LE, op.TO_BE)))
        return [Insn(code, d, 0, 0, draw(st.sampled_from((16, 32, 64))))]
    if kind == "movsx":
        return [Insn(cls | op.X | op.MOV, d, draw(reg), draw(st.sampled_from((8, 16, 32) if bits == 64 else (8, 16))), 0)]
    if kind == "jmp":
        jcls = draw(st.sampled_from((op.JMP, op.JMP32)))
        o = draw(st.sampled_from(op.COND_JUMPS))
        if draw(st.booleans()):
            return [Insn(jcls | op.X | o, d, draw(reg), 0, 0)]
        return [Insn(jcls | op.K | o, d, 0, 0, draw(IMM))]
    size = draw(st.sampled_from((op.B, op.H, op.W, op.DW)))
    off = -8 * draw(st.integers(1, 8))
    if draw(st.booleans()):
        return [Insn(op.ST | op.MEM | size, 10, 0, off, draw(IMM)),
                Insn(op.LDX | draw(st.sampled_from((op.MEM, op.MEMSX) if size != op.DW else (op.MEM,))) | size,
                     d, 10, off, 0)]
    return [Insn(op.STX | op.MEM | size, 10, draw(reg), off, 0), Insn(op.LDX | op.MEM | size, d, 10, off, 0)]


@pytest.mark.kernel
@settings(max_examples=40, deadline=None)
@given(st.lists(_safe_insn(), min_size=1, max_size=25), st.lists(IMM, min_size=10, max_size=10))
def test_random_programs_match_verifier_log(body, inits):
    require_kernel()
    insns = [Insn(op.ALU64 | op.K | op.MOV, r, 0, 0, v) for r, v in enumerate(inits)]
    insns += [s for g in body for s in g] + [Insn(op.ALU64 | op.K | op.MOV, 0), Insn(op.OP_EXIT)]
    fd, err, log = kernel_prog_load(encode(insns), SOCKET_FILTER, log_level=2)
    if fd >= 0:
        os.close(fd)
    assert fd >= 0, f"kernel rejected the program (errno {err}):\n{log[-1500:]}"
    ours = disassemble(insns, style="kernel")
    checked = 0
    for line in log.splitlines():
        m = _LOG_INSN.match(line)
        if m:
            assert ours[int(m.group(1))] == m.group(2)
            checked += 1
    assert checked >= len(insns)
