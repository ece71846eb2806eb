"""Valid eBPF encodings: a hypothesis strategy and a systematic enumeration.

"Valid" means accepted by :func:`pybpf.isa.check_program` (well-formed slots);
jump targets and register use are not constrained, that is the verifier's
business.  Reusable by any test::

    from asm_strategies import programs, instructions, enumerate_encodings

    @given(programs())
    def test_x(insns): ...
"""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, ldimm64

REG = st.integers(0, op.MAX_REG)
S16_EDGES = [0, 1, -1, 2, 0x7FFF, -0x8000, 8, -8, 255]
S32_EDGES = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 0xFFFF, -8, 16, 64]
U64_EDGES = [0, 1, (1 << 64) - 1, 1 << 63, (1 << 63) - 1, 0xFFFFFFFF, 1 << 32, 0x123456789ABCDEF0]

OFF = st.one_of(st.sampled_from(S16_EDGES), st.integers(-0x8000, 0x7FFF))
IMM = st.one_of(st.sampled_from(S32_EDGES), st.integers(-0x80000000, 0x7FFFFFFF))
U64 = st.one_of(st.sampled_from(U64_EDGES), st.integers(0, (1 << 64) - 1))

ALU_BINARY = (op.ADD, op.SUB, op.MUL, op.DIV, op.OR, op.AND, op.LSH, op.RSH, op.MOD, op.XOR,
              op.MOV, op.ARSH)
SIZES = (op.B, op.H, op.W, op.DW)


@st.composite
def _alu(draw):
    cls = draw(st.sampled_from((op.ALU, op.ALU64)))
    kind = draw(st.sampled_from(("k", "x", "neg", "end")))
    dst = draw(REG)
    if kind == "end":
        code = op.ALU64 | op.END if cls == op.ALU64 else op.ALU | op.END | draw(st.sampled_from((op.TO_LE, op.TO_BE)))
        return [Insn(code, dst, 0, 0, draw(st.sampled_from((16, 32, 64))))]
    if kind == "neg":
        return [Insn(cls | op.NEG, dst)]
    o = draw(st.sampled_from(ALU_BINARY))
    if o in (op.DIV, op.MOD):
        off = draw(st.sampled_from((0, 1)))
    elif o == op.MOV and kind == "x":
        off = draw(st.sampled_from((0, 8, 16, 32) if cls == op.ALU64 else (0, 8, 16)))
    else:
        off = 0
    if kind == "x":
        return [Insn(cls | op.X | o, dst, draw(REG), off, 0)]
    return [Insn(cls | op.K | o, dst, 0, off, draw(IMM))]


@st.composite
def _jmp(draw):
    kind = draw(st.sampled_from(("ja", "ja32", "call", "callx", "exit", "cond")))
    if kind == "ja":
        return [Insn(op.OP_JA, 0, 0, draw(OFF), 0)]
    if kind == "ja32":
        return [Insn(op.OP_JA32, 0, 0, 0, draw(IMM))]
    if kind == "call":
        return [Insn(op.OP_CALL, 0, draw(st.sampled_from((0, 1, 2))), 0, draw(IMM))]
    if kind == "callx":
        return [Insn(op.OP_CALLX, draw(REG))]
    if kind == "exit":
        return [Insn(op.OP_EXIT)]
    cls = draw(st.sampled_from((op.JMP, op.JMP32)))
    o = draw(st.sampled_from(op.COND_JUMPS))
    if draw(st.booleans()):
        return [Insn(cls | op.X | o, draw(REG), draw(REG), draw(OFF), 0)]
    return [Insn(cls | op.K | o, draw(REG), 0, draw(OFF), draw(IMM))]


@st.composite
def _mem(draw):
    kind = draw(st.sampled_from(("ldimm64", "abs", "ind", "ldx", "ldxsx", "st", "stx", "atomic")))
    if kind == "ldimm64":
        src = draw(st.sampled_from(op.LD_IMM64_PSEUDOS))
        return list(ldimm64(draw(REG), draw(U64), src))
    if kind in ("abs", "ind"):
        size = draw(st.sampled_from((op.B, op.H, op.W)))
        if kind == "abs":
            return [Insn(op.LD | op.ABS | size, 0, 0, 0, draw(IMM))]
        return [Insn(op.LD | op.IND | size, 0, draw(REG), 0, draw(IMM))]
    if kind == "ldx":
        return [Insn(op.LDX | op.MEM | draw(st.sampled_from(SIZES)), draw(REG), draw(REG), draw(OFF), 0)]
    if kind == "ldxsx":
        return [Insn(op.LDX | op.MEMSX | draw(st.sampled_from((op.B, op.H, op.W))), draw(REG), draw(REG),
                     draw(OFF), 0)]
    if kind == "st":
        return [Insn(op.ST | op.MEM | draw(st.sampled_from(SIZES)), draw(REG), 0, draw(OFF), draw(IMM))]
    if kind == "stx":
        return [Insn(op.STX | op.MEM | draw(st.sampled_from(SIZES)), draw(REG), draw(REG), draw(OFF), 0)]
    return [Insn(op.STX | op.ATOMIC | draw(st.sampled_from((op.W, op.DW))), draw(REG), draw(REG), draw(OFF),
                 draw(st.sampled_from(op.ATOMIC_OPS)))]


def instructions():
    """One valid instruction as a list of its slots (two for LD_IMM64)."""
    return st.one_of(_alu(), _jmp(), _mem())


@st.composite
def programs(draw, min_insns: int = 1, max_insns: int = 30):
    """A valid program: a flat list of slots."""
    groups = draw(st.lists(instructions(), min_size=min_insns, max_size=max_insns))
    return [slot for g in groups for slot in g]


def enumerate_encodings():
    """Every valid opcode with interesting register, offset and immediate values.

    Yields lists of slots (one instruction each), deterministic order.
    """
    regs = [(0, 0), (1, 2), (10, 9), (3, 10)]
    offs = [0, 1, -1, 0x7FFF, -0x8000]
    imms = [0, 1, -1, 0x7FFFFFFF, -0x80000000, 64]
    for cls in (op.ALU, op.ALU64):
        for o in ALU_BINARY:
            offs_k = (0, 1) if o in (op.DIV, op.MOD) else (0,)
            offs_x = offs_k
            if o == op.MOV:
                offs_x = (0, 8, 16, 32) if cls == op.ALU64 else (0, 8, 16)
            for (d, s), off in itertools.product(regs, offs_x):
                yield [Insn(cls | op.X | o, d, s, off, 0)]
            for (d, _), off, imm in itertools.product(regs, offs_k, imms):
                yield [Insn(cls | op.K | o, d, 0, off, imm)]
        for d, _ in regs:
            yield [Insn(cls | op.NEG, d)]
            for bits in (16, 32, 64):
                if cls == op.ALU64:
                    yield [Insn(op.ALU64 | op.END, d, 0, 0, bits)]
                else:
                    yield [Insn(op.ALU | op.END | op.TO_LE, d, 0, 0, bits)]
                    yield [Insn(op.ALU | op.END | op.TO_BE, d, 0, 0, bits)]
    for cls in (op.JMP, op.JMP32):
        for o in op.COND_JUMPS:
            for (d, s), off in itertools.product(regs, offs):
                yield [Insn(cls | op.X | o, d, s, off, 0)]
            for (d, _), off, imm in itertools.product(regs, offs, imms):
                yield [Insn(cls | op.K | o, d, 0, off, imm)]
    for off in offs:
        yield [Insn(op.OP_JA, 0, 0, off, 0)]
    for imm in imms:
        yield [Insn(op.OP_JA32, 0, 0, 0, imm)]
        for src in (0, 1, 2):
            yield [Insn(op.OP_CALL, 0, src, 0, imm)]
    for d in range(op.MAX_REG + 1):
        yield [Insn(op.OP_CALLX, d)]
    yield [Insn(op.OP_EXIT)]
    for src in op.LD_IMM64_PSEUDOS:
        for d, _ in regs:
            for v in U64_EDGES:
                yield list(ldimm64(d, v, src))
    for size in (op.B, op.H, op.W):
        for imm in imms:
            yield [Insn(op.LD | op.ABS | size, 0, 0, 0, imm)]
            for s in (0, 1, 10):
                yield [Insn(op.LD | op.IND | size, 0, s, 0, imm)]
    for size in SIZES:
        for (d, s), off in itertools.product(regs, offs):
            yield [Insn(op.LDX | op.MEM | size, d, s, off, 0)]
            if size != op.DW:
                yield [Insn(op.LDX | op.MEMSX | size, d, s, off, 0)]
            yield [Insn(op.STX | op.MEM | size, d, s, off, 0)]
            if size in (op.W, op.DW):
                for a in op.ATOMIC_OPS:
                    yield [Insn(op.STX | op.ATOMIC | size, d, s, off, a)]
        for (d, _), off, imm in itertools.product(regs, offs, imms):
            yield [Insn(op.ST | op.MEM | size, d, 0, off, imm)]


def is_llvm_lossless(insns) -> bool:
    """True when the exact llvm style keeps every bit of ``insns`` (see pybpf.asm.printer)."""
    i = 0
    while i < len(insns):
        ins = insns[i]
        if ins.code == op.LD_IMM64:
            if ins.src != 0:
                return False
            i += 2
            continue
        if ins.code == op.OP_CALL and ins.src != 0:
            return False
        if ins.code & 0xE7 == op.LD | op.IND and ins.imm != 0:
            return False
        i += 1
    return True
