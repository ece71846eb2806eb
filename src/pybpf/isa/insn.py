"""The decoded instruction and its exact byte encoding.

A program is a list of :class:`Insn`, one per 8-byte slot, exactly as the kernel
keeps it: the 16-byte LD_IMM64 occupies two consecutive slots, the second with
opcode 0 carrying the upper 32 bits in ``imm``.  Keeping slots (rather than
merging LD_IMM64 into one object) means jump offsets, verifier messages and
instruction indexes all count the way Linux counts them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import InsnError
from . import opcodes as op

_FMT = struct.Struct("<BBhi")
INSN_SIZE = 8


@dataclass(frozen=True, slots=True)
class Insn:
    """One 8-byte ``struct bpf_insn``; ``off`` and ``imm`` are signed as in C."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @property
    def cls(self) -> int:
        return self.code & 0x07

    @property
    def is_ldimm64(self) -> bool:
        return self.code == op.LD_IMM64

    def pack(self) -> bytes:
        return _FMT.pack(self.code, (self.src << 4) | self.dst, self.off, self.imm)

    def __repr__(self) -> str:
        return (f"Insn(code={self.code:#04x}, dst={self.dst}, src={self.src}, "
                f"off={self.off}, imm={self.imm})")


def ldimm64(dst: int, value: int, src: int = op.PSEUDO_NONE) -> tuple[Insn, Insn]:
    """The two slots of ``dst = value ll`` (value taken modulo 2**64)."""
    value &= (1 << 64) - 1
    lo = value & 0xFFFFFFFF
    hi = value >> 32
    return (Insn(op.LD_IMM64, dst, src, 0, _s32(lo)), Insn(0, 0, 0, 0, _s32(hi)))


def imm64(insns: Sequence[Insn], i: int) -> int:
    """The unsigned 64-bit constant of the LD_IMM64 starting at slot ``i``."""
    return (insns[i].imm & 0xFFFFFFFF) | ((insns[i + 1].imm & 0xFFFFFFFF) << 32)


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def decode(data: bytes | bytearray | memoryview, *, check: bool = True) -> list[Insn]:
    """Decode little-endian ``struct bpf_insn`` bytes into slots.

    With ``check`` (the default) the encoding is validated by :func:`check_program`
    and the first malformed instruction raises :class:`InsnError`.
    """
    data = bytes(data)
    if len(data) % INSN_SIZE:
        raise InsnError(len(data) // INSN_SIZE,
                        f"program length {len(data)} is not a multiple of {INSN_SIZE} bytes")
    insns = []
    for code, regs, off, imm in _FMT.iter_unpack(data):
        insns.append(Insn(code, regs & 0x0F, regs >> 4, off, imm))
    if check:
        check_program(insns)
    return insns


def encode(insns: Iterable[Insn]) -> bytes:
    return b"".join(i.pack() for i in insns)


def check_program(insns: Sequence[Insn]) -> None:
    """Reject malformed encodings, in the spirit of the kernel's opcode checks.

    Semantic rules (jump targets, register use, memory safety) are the
    verifier's business; this only decides whether each slot is a well-formed
    instruction of the ISA.
    """
    i = 0
    n = len(insns)
    while i < n:
        ins = insns[i]
        reason = check_insn(ins)
        if reason:
            raise InsnError(i, reason)
        if ins.is_ldimm64:
            if i + 1 >= n:
                raise InsnError(i, "invalid bpf_ld_imm64 insn: truncated, second slot missing")
            nxt = insns[i + 1]
            if nxt.code or nxt.dst or nxt.src or nxt.off:
                raise InsnError(i + 1, "invalid bpf_ld_imm64 insn: second slot uses reserved fields")
            i += 2
        else:
            i += 1


def _regs_ok(ins: Insn) -> str | None:
    if ins.dst > op.MAX_REG:
        return f"R{ins.dst} is invalid (registers are r0..r10)"
    if ins.src > op.MAX_REG:
        return f"R{ins.src} is invalid (registers are r0..r10)"
    return None


def check_insn(ins: Insn) -> str | None:
    """The reason ``ins`` (a first or only slot) is malformed, or None."""
    code = ins.code
    cls = code & 0x07
    unknown = f"unknown opcode {code:02x}"
    if cls in (op.ALU, op.ALU64):
        return _check_alu(ins, cls) or _regs_ok(ins)
    if cls in (op.JMP, op.JMP32):
        return _check_jmp(ins, cls) or _regs_ok(ins)
    size, mode = code & 0x18, code & 0xE0
    if cls == op.LD:
        if code == op.LD_IMM64:
            if ins.off != 0:
                return "invalid bpf_ld_imm64 insn: off must be 0"
            if ins.src not in op.LD_IMM64_PSEUDOS:
                return f"invalid bpf_ld_imm64 insn: unknown pseudo source {ins.src}"
            return _regs_ok(ins)
        if mode in (op.ABS, op.IND):
            if size == op.DW or ins.off != 0 or ins.dst != 0 or (mode == op.ABS and ins.src != 0):
                return "BPF_LD_[ABS|IND] uses reserved fields"
            return _regs_ok(ins)
        return unknown
    if cls == op.LDX:
        if mode == op.MEM or (mode == op.MEMSX and size != op.DW):
            if ins.imm != 0:
                return "BPF_LDX uses reserved fields"
            return _regs_ok(ins)
        return unknown
    if cls == op.ST:
        if mode == op.MEM:
            if ins.src != 0:
                return "BPF_ST uses reserved fields"
            return _regs_ok(ins)
        return unknown
    # STX
    if mode == op.MEM:
        if ins.imm != 0:
            return "BPF_STX uses reserved fields"
        return _regs_ok(ins)
    if mode == op.ATOMIC:
        if size not in (op.W, op.DW):
            return "invalid atomic operand size"
        if ins.imm not in op.ATOMIC_OPS:
            return f"BPF_ATOMIC uses invalid atomic opcode {ins.imm & 0xFFFFFFFF:02x}"
        return _regs_ok(ins)
    return unknown


def _check_alu(ins: Insn, cls: int) -> str | None:
    code = ins.code
    o = code & 0xF0
    x = code & 0x08
    if o == op.END:
        if cls == op.ALU64 and x:
            return f"unknown opcode {code:02x}"
        if ins.src != 0 or ins.off != 0 or ins.imm not in (16, 32, 64):
            return "BPF_END uses reserved fields"
        return None
    if o == op.NEG:
        if x or ins.src != 0 or ins.off != 0 or ins.imm != 0:
            return "BPF_NEG uses reserved fields"
        return None
    if o == op.MOV:
        if x:
            allowed = (0, 8, 16, 32) if cls == op.ALU64 else (0, 8, 16)
            if ins.imm != 0 or ins.off not in allowed:
                return "BPF_MOV uses reserved fields"
        elif ins.src != 0 or ins.off != 0:
            return "BPF_MOV uses reserved fields"
        return None
    if o > op.END:
        return f"unknown opcode {code:02x}"
    allowed_off = (0, 1) if o in (op.DIV, op.MOD) else (0,)
    if ins.off not in allowed_off:
        return "BPF_ALU uses reserved fields"
    if x and ins.imm != 0:
        return "BPF_ALU uses reserved fields"
    if not x and ins.src != 0:
        return "BPF_ALU uses reserved fields"
    return None


def _check_jmp(ins: Insn, cls: int) -> str | None:
    code = ins.code
    o = code & 0xF0
    x = code & 0x08
    if o in (0xE0, 0xF0):
        return f"unknown opcode {code:02x}"
    if o == op.JA:
        if x or ins.src != 0 or ins.dst != 0:
            return "BPF_JA uses reserved fields"
        if cls == op.JMP and ins.imm != 0:
            return "BPF_JA uses reserved fields"
        if cls == op.JMP32 and ins.off != 0:
            return "BPF_JA uses reserved fields"
        return None
    if o == op.CALL:
        if cls == op.JMP32:
            return f"unknown opcode {code:02x}"
        if x:
            # callx: LLVM puts the target register in dst_reg
            if ins.src != 0 or ins.off != 0 or ins.imm != 0:
                return "BPF_CALL uses reserved fields"
            return None
        if ins.dst != 0 or ins.off != 0 or ins.src not in (op.CALL_HELPER, op.PSEUDO_CALL, op.PSEUDO_KFUNC_CALL):
            return "BPF_CALL uses reserved fields"
        return None
    if o == op.EXIT:
        if cls == op.JMP32:
            return f"unknown opcode {code:02x}"
        if x or ins.src != 0 or ins.dst != 0 or ins.off != 0 or ins.imm != 0:
            return "BPF_EXIT uses reserved fields"
        return None
    if x and ins.imm != 0:
        return "BPF_JMP/JMP32 uses reserved fields"
    if not x and ins.src != 0:
        return "BPF_JMP/JMP32 uses reserved fields"
    return None
