"""The semantic definitions against an independent model written with C-typed arithmetic.

The model below deliberately avoids the tricks of pybpf.vm.semantics (sign-bit
flipping, masks in templates): it computes with ctypes fixed-width integers
and signed Python ints, the way one would write it in C.  Each operation is
checked three ways: the semantics function, the fast engine and the
reference engine running a tiny program.
"""

from __future__ import annotations

import ctypes
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf.isa import Insn, ldimm64
from pybpf.isa import opcodes as op
from pybpf.vm import VM
from pybpf.vm import semantics as sem

u64 = st.one_of(st.integers(0, 2**64 - 1),
                st.sampled_from([0, 1, 2, 3, 31, 32, 63, 64, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                 0x100000000, 2**63 - 1, 2**63, 2**64 - 1, 2**64 - 2,
                                 0xFFFFFFFF80000000, 0xFFFFFFFF00000000]))
imm32 = st.one_of(st.integers(-2**31, 2**31 - 1), st.sampled_from([0, 1, -1, 2**31 - 1, -2**31, 31, 32, 63, 64]))


def U64(x):
    return ctypes.c_uint64(x).value


def I64(x):
    return ctypes.c_int64(x).value


def U32(x):
    return ctypes.c_uint32(x).value


def I32(x):
    return ctypes.c_int32(x).value


def c_div(a: int, b: int) -> int:
    """C99 division: truncates toward zero (floor, then step back up for negative inexact)."""
    q = a // b
    if q < 0 and q * b != a:
        q += 1
    return q


def model_alu64(o: int, off: int, d: int, s: int) -> int:
    if o == op.ADD: return U64(d + s)
    if o == op.SUB: return U64(d - s)
    if o == op.MUL: return U64(d * s)
    if o == op.DIV:
        if off == 1:
            return 0 if s == 0 else U64(c_div(I64(d), I64(s)))
        return 0 if s == 0 else d // s
    if o == op.MOD:
        if off == 1:
            return d if s == 0 else U64(I64(d) - I64(s) * c_div(I64(d), I64(s)))
        return d if s == 0 else d % s
    if o == op.OR: return d | s
    if o == op.AND: return d & s
    if o == op.XOR: return d ^ s
    if o == op.LSH: return U64(d << (s % 64))
    if o == op.RSH: return d >> (s % 64)
    if o == op.ARSH: return U64(I64(d) >> (s % 64))
    if o == op.NEG: return U64(-I64(d))
    if o == op.MOV:
        if off == 8: return U64(ctypes.c_int8(s).value)
        if off == 16: return U64(ctypes.c_int16(s).value)
        if off == 32: return U64(I32(s))
        return s
    raise AssertionError(o)


def model_alu32(o: int, off: int, d: int, s: int) -> int:
    a, b = U32(d), U32(s)
    if o == op.ADD: return U32(a + b)
    if o == op.SUB: return U32(a - b)
    if o == op.MUL: return U32(a * b)
    if o == op.DIV:
        if off == 1:
            return 0 if b == 0 else U32(c_div(I32(a), I32(b)))
        return 0 if b == 0 else a // b
    if o == op.MOD:
        if off == 1:
            return a if b == 0 else U32(I32(a) - I32(b) * c_div(I32(a), I32(b)))
        return a if b == 0 else a % b
    if o == op.OR: return a | b
    if o == op.AND: return a & b
    if o == op.XOR: return a ^ b
    if o == op.LSH: return U32(a << (b % 32))
    if o == op.RSH: return a >> (b % 32)
    if o == op.ARSH: return U32(I32(a) >> (b % 32))
    if o == op.NEG: return U32(-I32(a))
    if o == op.MOV:
        if off == 8: return U32(ctypes.c_int8(b).value)
        if off == 16: return U32(ctypes.c_int16(b).value)
        return b
    raise AssertionError(o)


def model_end(cls: int, srcbit: int, width: int, d: int) -> int:
    fmt = {16: "H", 32: "I", 64: "Q"}[width]
    low = d & ((1 << width) - 1)
    if cls == op.ALU and srcbit == op.TO_LE:
        return low
    return struct.unpack(">" + fmt, struct.pack("<" + fmt, low))[0]


def model_cond(cls: int, o: int, d: int, s: int) -> bool:
    if cls == op.JMP32:
        ud, us, sd, ss = U32(d), U32(s), I32(d), I32(s)
    else:
        ud, us, sd, ss = d, s, I64(d), I64(s)
    return {op.JEQ: ud == us, op.JNE: ud != us, op.JGT: ud > us, op.JGE: ud >= us,
            op.JLT: ud < us, op.JLE: ud <= us, op.JSET: (ud & us) != 0,
            op.JSGT: sd > ss, op.JSGE: sd >= ss, op.JSLT: sd < ss, op.JSLE: sd <= ss}[o]


ALU_CASES = [(o, 0) for o in (op.ADD, op.SUB, op.MUL, op.DIV, op.OR, op.AND, op.LSH, op.RSH,
                             op.MOD, op.XOR, op.MOV, op.ARSH)] + [(op.DIV, 1), (op.MOD, 1)]
MOVSX = {op.ALU64: (8, 16, 32), op.ALU: (8, 16)}


def _run_both(prog):
    vm = VM(prog)
    fast = vm.run(engine="fast").r0
    ref = vm.run(engine="reference").r0
    assert fast == ref
    return fast


def _alu_prog(code: int, off: int, d: int, s: int, imm: int = 0) -> list[Insn]:
    return [*ldimm64(0, d), *ldimm64(1, s), Insn(code, 0, 1 if code & op.X else 0, off, imm),
            Insn(op.OP_EXIT)]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cls", [op.ALU64, op.ALU], ids=["alu64", "alu32"])
@pytest.mark.parametrize("o,off", ALU_CASES, ids=lambda v: str(v))
@SETTINGS
@given(d=u64, s=u64)
def test_alu_reg(cls, o, off, d, s):
    model = model_alu64 if cls == op.ALU64 else model_alu32
    want = model(o, off, d, s)
    tmpl = sem.alu_template(cls, o, off)
    assert sem.evaluator(tmpl)(d, s) == want
    assert _run_both(_alu_prog(cls | o | op.X, off, d, s)) == want


@pytest.mark.parametrize("cls", [op.ALU64, op.ALU], ids=["alu64", "alu32"])
@pytest.mark.parametrize("o,off", ALU_CASES, ids=lambda v: str(v))
@SETTINGS
@given(d=u64, imm=imm32)
def test_alu_imm(cls, o, off, d, imm):
    model = model_alu64 if cls == op.ALU64 else model_alu32
    want = model(o, off, d, U64(imm))  # the immediate is sign-extended to 64 bits
    assert _run_both(_alu_prog(cls | o | op.K, off, d, 0, imm)) == want


@pytest.mark.parametrize("cls", [op.ALU64, op.ALU], ids=["alu64", "alu32"])
@SETTINGS
@given(d=u64, s=u64, data=st.data())
def test_movsx_and_neg(cls, d, s, data):
    off = data.draw(st.sampled_from(MOVSX[cls]))
    model = model_alu64 if cls == op.ALU64 else model_alu32
    assert _run_both(_alu_prog(cls | op.MOV | op.X, off, d, s)) == model(op.MOV, off, d, s)
    assert _run_both(_alu_prog(cls | op.NEG | op.K, 0, d, s)) == model(op.NEG, 0, d, s)


@pytest.mark.parametrize("cls,srcbit", [(op.ALU, op.TO_LE), (op.ALU, op.TO_BE), (op.ALU64, op.TO_LE)],
                         ids=["le", "be", "bswap"])
@pytest.mark.parametrize("width", [16, 32, 64])
@SETTINGS
@given(d=u64)
def test_byte_order(cls, srcbit, width, d):
    want = model_end(cls, srcbit, width, d)
    assert sem.alu(cls, op.END, d, 0, imm=width, srcbit=srcbit) == want
    prog = [*ldimm64(0, d), Insn(cls | op.END | srcbit, 0, 0, 0, width), Insn(op.OP_EXIT)]
    assert _run_both(prog) == want


def _cond_prog(cls, o, d, s, srcbit, imm=0):
    # r0 = 1 if the jump is taken else 2
    return [*ldimm64(1, d), *ldimm64(2, s),
            Insn(cls | o | srcbit, 1, 2 if srcbit else 0, 2, imm),
            Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 2), Insn(op.OP_EXIT),
            Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 1), Insn(op.OP_EXIT)]


@pytest.mark.parametrize("cls", [op.JMP, op.JMP32], ids=["jmp", "jmp32"])
@pytest.mark.parametrize("o", op.COND_JUMPS, ids=lambda o: op.JMP_NAMES[o])
@SETTINGS
@given(d=u64, s=u64, imm=imm32)
def test_conditions(cls, o, d, s, imm):
    want = model_cond(cls, o, d, s)
    assert sem.cond(cls, o, d, s) == want
    assert _run_both(_cond_prog(cls, o, d, s, op.X)) == (1 if want else 2)
    want_k = model_cond(cls, o, d, U64(imm))
    assert _run_both(_cond_prog(cls, o, d, 0, op.K, imm)) == (1 if want_k else 2)


def test_edge_cases_from_the_rfc():
    M = 2**64 - 1
    assert sem.alu(op.ALU64, op.DIV, 7, 0) == 0
    assert sem.alu(op.ALU64, op.MOD, 7, 0) == 7
    assert sem.alu(op.ALU, op.MOD, 0x1_0000_0007, 0) == 7        # 32-bit: truncated
    assert sem.alu(op.ALU64, op.DIV, 2**63, M, off=1) == 2**63   # INT_MIN / -1
    assert sem.alu(op.ALU64, op.MOD, 2**63, M, off=1) == 0       # INT_MIN % -1
    assert sem.alu(op.ALU, op.DIV, 0x80000000, 0xFFFFFFFF, off=1) == 0x80000000
    assert sem.alu(op.ALU64, op.DIV, U64(-7), 2, off=1) == U64(-3)  # toward zero
    assert sem.alu(op.ALU64, op.MOD, U64(-7), 2, off=1) == U64(-1)
    assert sem.alu(op.ALU64, op.MOD, 7, U64(-2), off=1) == 1
    assert sem.alu(op.ALU64, op.MOD, U64(-7), 0, off=1) == U64(-7)
    assert sem.alu(op.ALU64, op.LSH, 1, 65) == 2                 # count masked
    assert sem.alu(op.ALU, op.LSH, 1, 33) == 2
    assert sem.alu(op.ALU, op.ADD, 0xFFFFFFFF, 1) == 0            # wraps and zero-extends
    assert sem.alu(op.ALU, op.MOV, 0, 0xFF, off=8) == 0xFFFFFFFF  # movsx into 32 bits
    assert sem.alu(op.ALU64, op.MOV, 0, 0x80, off=8) == U64(-128)
    assert sem.imm_operand(op.ALU64, -1) == M
    assert sem.imm_operand(op.ALU, -1) == 0xFFFFFFFF
    assert sem.loaded_value(0x80, 1, True) == U64(-128)
    assert sem.packet_load(b"\x01\x02\x03", 1, 2) == 0x0203
    assert sem.packet_load(b"\x01\x02\x03", 2, 2) is None


@SETTINGS
@given(d=u64, s=u64, imm=imm32)
def test_instruction_level_helpers(d, s, imm):
    add = Insn(op.ALU64 | op.ADD | op.K, 0, 0, 0, imm)
    assert sem.alu_insn(add, d) == U64(d + imm)
    sub32 = Insn(op.ALU | op.SUB | op.X, 0, 1)
    assert sem.alu_insn(sub32, d, s) == U32(d - s)
    be = Insn(op.ALU | op.END | op.TO_BE, 0, 0, 0, 16)
    assert sem.alu_insn(be, d) == model_end(op.ALU, op.TO_BE, 16, d)
    jslt = Insn(op.JMP32 | op.JSLT | op.K, 0, 0, 1, imm)
    assert sem.jump_taken(jslt, d) == (I32(d) < imm)
    jgt = Insn(op.JMP | op.JGT | op.X, 0, 1, 1)
    assert sem.jump_taken(jgt, d, s) == (d > s)


ATOMIC_KINDS = [op.ADD, op.OR, op.AND, op.XOR, op.ADD | op.FETCH, op.OR | op.FETCH,
                op.AND | op.FETCH, op.XOR | op.FETCH, op.XCHG, op.CMPXCHG]


@pytest.mark.parametrize("size", [4, 8])
@pytest.mark.parametrize("kind", ATOMIC_KINDS, ids=lambda k: f"{k:#x}")
@SETTINGS
@given(old=u64, operand=u64, r0=u64)
def test_atomics_follow_the_definition(size, kind, old, operand, r0):
    """The native locked operations against semantics.atomic_result, on both engines."""
    bits = size * 8
    mask = (1 << bits) - 1
    mem = old.to_bytes(8, "little")
    prog = [*ldimm64(0, r0), *ldimm64(2, operand),
            Insn(op.STX | op.ATOMIC | op.SIZE_OF_BYTES[size], 1, 2, 0, kind),
            Insn(op.ALU64 | op.MOV | op.X, 3, 0), Insn(op.ALU64 | op.MOV | op.X, 0, 2),
            Insn(op.ALU64 | op.LSH | op.K, 3, 0, 0, 0), Insn(op.OP_EXIT)]
    vm = VM(prog)
    results = [vm.run(mem, engine=e) for e in ("fast", "reference")]
    assert (results[0].r0, results[0].mem) == (results[1].r0, results[1].mem)
    res = results[0]
    after = int.from_bytes(res.mem[:size], "little")
    untouched = res.mem[size:] == mem[size:]
    assert untouched
    cur = old & mask
    if kind == op.CMPXCHG:
        want_mem = (operand & mask) if (r0 & mask) == cur else cur
        assert after == want_mem
    else:
        assert after == sem.atomic_result(kind, cur, operand, bits)
        want_src = cur if kind & op.FETCH else operand
        assert res.r0 == want_src
