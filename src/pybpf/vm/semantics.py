"""What every eBPF instruction computes: the single semantic definition.

Each operation is written once, as a Python *expression template* over
unsigned 64-bit register values (RFC 9669).  ``{d}`` stands for the
destination register's value and ``{s}`` for the source operand's value.
Templates are plain text on purpose: the fast engine pastes them into the
Python source it generates for a whole program (so CPython folds constants
and no call is paid per instruction), the reference stepper compiles each one
into a small function, and future engines (an LLVM backend, the verifier's
concrete evaluator) are tested against the same functions.

Operand conventions, decided here once:

* ALU64 and JMP with an immediate use the immediate sign-extended to 64 bits
  (:func:`imm_operand`); ALU32 and JMP32 use its low 32 bits.
* ALU32 templates receive full 64-bit operands and take the low halves
  themselves; their result is already zero-extended.
* A substituted operand must be a name, a non-negative integer literal or a
  parenthesised expression, and must have no side effects: some templates
  mention an operand twice.
"""

from __future__ import annotations

import struct

from ..isa import opcodes as op

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1
SIGN64 = 1 << 63
SIGN32 = 1 << 31


def s64(v: int) -> int:
    """The signed view of an unsigned 64-bit value."""
    return (v ^ SIGN64) - SIGN64


def s32(v: int) -> int:
    """The signed view of the low 32 bits."""
    return ((v & M32) ^ SIGN32) - SIGN32


def _sdiv(a: int, b: int) -> int:
    # Python's // floors; eBPF truncates toward zero like C.
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def sdiv64(d: int, s: int) -> int:
    if not s:
        return 0
    return _sdiv(s64(d), s64(s)) & M64


def smod64(d: int, s: int) -> int:
    if not s:
        return d
    a, b = s64(d), s64(s)
    return (a - b * _sdiv(a, b)) & M64


def sdiv32(d: int, s: int) -> int:
    if not s & M32:
        return 0
    return _sdiv(s32(d), s32(s)) & M32


def smod32(d: int, s: int) -> int:
    if not s & M32:
        return d & M32
    a, b = s32(d), s32(s)
    return (a - b * _sdiv(a, b)) & M32


def bswap16(v: int) -> int:
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


def bswap32(v: int) -> int:
    return int.from_bytes((v & M32).to_bytes(4, "little"), "big")


def bswap64(v: int) -> int:
    return int.from_bytes(v.to_bytes(8, "little"), "big")


# Names the templates may call; generated code must have them in scope.
RUNTIME = {"sdiv64": sdiv64, "smod64": smod64, "sdiv32": sdiv32, "smod32": smod32,
           "bswap16": bswap16, "bswap32": bswap32, "bswap64": bswap64}

# -- ALU -------------------------------------------------------------------

_ALU64 = {
    op.ADD: "(({d} + {s}) & 0xFFFFFFFFFFFFFFFF)",
    op.SUB: "(({d} - {s}) & 0xFFFFFFFFFFFFFFFF)",
    op.MUL: "(({d} * {s}) & 0xFFFFFFFFFFFFFFFF)",
    op.DIV: "(({d} // {s}) if {s} else 0)",
    op.OR: "({d} | {s})",
    op.AND: "({d} & {s})",
    op.LSH: "(({d} << ({s} & 63)) & 0xFFFFFFFFFFFFFFFF)",
    op.RSH: "({d} >> ({s} & 63))",
    op.NEG: "((-{d}) & 0xFFFFFFFFFFFFFFFF)",
    op.MOD: "(({d} % {s}) if {s} else {d})",
    op.XOR: "({d} ^ {s})",
    op.MOV: "{s}",
    op.ARSH: "(((({d} ^ 0x8000000000000000) - 0x8000000000000000) >> ({s} & 63))"
             " & 0xFFFFFFFFFFFFFFFF)",
}

_ALU32 = {
    op.ADD: "(({d} + {s}) & 0xFFFFFFFF)",
    op.SUB: "(({d} - {s}) & 0xFFFFFFFF)",
    op.MUL: "((({d} & 0xFFFFFFFF) * ({s} & 0xFFFFFFFF)) & 0xFFFFFFFF)",
    op.DIV: "((({d} & 0xFFFFFFFF) // ({s} & 0xFFFFFFFF)) if ({s} & 0xFFFFFFFF) else 0)",
    op.OR: "(({d} | {s}) & 0xFFFFFFFF)",
    op.AND: "(({d} & {s}) & 0xFFFFFFFF)",
    op.LSH: "(({d} << ({s} & 31)) & 0xFFFFFFFF)",
    op.RSH: "(({d} & 0xFFFFFFFF) >> ({s} & 31))",
    op.NEG: "((-{d}) & 0xFFFFFFFF)",
    op.MOD: "((({d} & 0xFFFFFFFF) % ({s} & 0xFFFFFFFF)) if ({s} & 0xFFFFFFFF)"
            " else ({d} & 0xFFFFFFFF))",
    op.XOR: "(({d} ^ {s}) & 0xFFFFFFFF)",
    op.MOV: "({s} & 0xFFFFFFFF)",
    op.ARSH: "((((({d} & 0xFFFFFFFF) ^ 0x80000000) - 0x80000000) >> ({s} & 31)) & 0xFFFFFFFF)",
}

# Signed division and modulo (off == 1).
_SIGNED = {
    (op.ALU64, op.DIV): "sdiv64({d}, {s})",
    (op.ALU64, op.MOD): "smod64({d}, {s})",
    (op.ALU, op.DIV): "sdiv32({d}, {s})",
    (op.ALU, op.MOD): "smod32({d}, {s})",
}


def _sext(bits: int, mask: str) -> str:
    low = (1 << bits) - 1
    sign = 1 << (bits - 1)
    return f"(((({{s}} & {low:#x}) ^ {sign:#x}) - {sign:#x}) & {mask})"


# Sign-extending moves (MOVSX: BPF_MOV with off = 8, 16, 32).
_MOVSX = {
    (op.ALU64, 8): _sext(8, "0xFFFFFFFFFFFFFFFF"),
    (op.ALU64, 16): _sext(16, "0xFFFFFFFFFFFFFFFF"),
    (op.ALU64, 32): _sext(32, "0xFFFFFFFFFFFFFFFF"),
    (op.ALU, 8): _sext(8, "0xFFFFFFFF"),
    (op.ALU, 16): _sext(16, "0xFFFFFFFF"),
}

# Byte order conversions: (class, source bit, imm width).  The host (and so
# memory) is little-endian: "to le" only truncates, "to be" swaps.
_END = {
    (op.ALU, op.TO_LE, 16): "({d} & 0xFFFF)",
    (op.ALU, op.TO_LE, 32): "({d} & 0xFFFFFFFF)",
    (op.ALU, op.TO_LE, 64): "{d}",
    (op.ALU, op.TO_BE, 16): "bswap16({d})",
    (op.ALU, op.TO_BE, 32): "bswap32({d})",
    (op.ALU, op.TO_BE, 64): "bswap64({d})",
    (op.ALU64, op.TO_LE, 16): "bswap16({d})",
    (op.ALU64, op.TO_LE, 32): "bswap32({d})",
    (op.ALU64, op.TO_LE, 64): "bswap64({d})",
}


def alu_template(cls: int, code_op: int, off: int = 0, imm: int = 0, srcbit: int = op.K) -> str:
    """The expression computing the new destination value of an ALU/ALU64 insn.

    ``imm`` matters only for BPF_END (the width) and ``srcbit`` only for
    BPF_END (direction) — the operand itself is substituted as ``{s}``.
    """
    if code_op == op.END:
        key = (cls, srcbit if cls == op.ALU else op.TO_LE, imm)
        try:
            return _END[key]
        except KeyError:
            raise ValueError(f"no byte swap of width {imm}") from None
    if code_op == op.MOV and off:
        return _MOVSX[(cls, off)]
    if off == 1 and (cls, code_op) in _SIGNED:
        return _SIGNED[(cls, code_op)]
    table = _ALU64 if cls == op.ALU64 else _ALU32
    return table[code_op]


def imm_operand(cls: int, imm: int) -> int:
    """The unsigned value an immediate stands for in ``cls`` (sign-extended for 64-bit)."""
    if cls in (op.ALU, op.JMP32):
        return imm & M32
    return imm & M64


# -- Conditional jumps -------------------------------------------------------

_COND = {
    op.JEQ: "({d} == {s})",
    op.JNE: "({d} != {s})",
    op.JGT: "({d} > {s})",
    op.JGE: "({d} >= {s})",
    op.JLT: "({d} < {s})",
    op.JLE: "({d} <= {s})",
    op.JSET: "({d} & {s})",
}
# Signed comparisons: flipping the sign bit maps two's complement order onto
# unsigned order, so no conversion to negative ints is needed.
_SCOND = {op.JSGT: ">", op.JSGE: ">=", op.JSLT: "<", op.JSLE: "<="}


def cond_template(cls: int, code_op: int) -> str:
    """A truthy expression: is the conditional jump taken?"""
    if cls == op.JMP32:
        d, s = "({d} & 0xFFFFFFFF)", "({s} & 0xFFFFFFFF)"
        sign = "0x80000000"
    else:
        d, s = "{d}", "{s}"
        sign = "0x8000000000000000"
    if code_op in _SCOND:
        return f"(({d} ^ {sign}) {_SCOND[code_op]} ({s} ^ {sign}))"
    return _COND[code_op].replace("{d}", d).replace("{s}", s)


# -- Loads and stores --------------------------------------------------------

# struct formats of a load (size, signed) and of a store (size).
LOAD_FORMAT = {(1, False): "<B", (2, False): "<H", (4, False): "<I", (8, False): "<Q",
               (1, True): "<b", (2, True): "<h", (4, True): "<i"}
STORE_FORMAT = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}
SIZE_MASK = {1: 0xFF, 2: 0xFFFF, 4: M32, 8: M64}

UNPACK = {key: struct.Struct(fmt).unpack_from for key, fmt in LOAD_FORMAT.items()}
PACK = {size: struct.Struct(fmt).pack_into for size, fmt in STORE_FORMAT.items()}


def loaded_value(raw: int, size: int, signed: bool) -> int:
    """The register value after loading ``raw`` (the unsigned memory value)."""
    if signed:
        sign = 1 << (size * 8 - 1)
        return ((raw ^ sign) - sign) & M64
    return raw


def stored_value(value: int, size: int) -> int:
    """The memory value stored from a 64-bit register or immediate."""
    return value & SIZE_MASK[size]


# -- Atomics -----------------------------------------------------------------

ATOMIC_NAMES = {op.ADD: "add", op.OR: "or", op.AND: "and", op.XOR: "xor"}


def atomic_result(kind: int, old: int, operand: int, bits: int) -> int:
    """The new memory value of a read-modify-write atomic (reference definition)."""
    mask = (1 << bits) - 1
    base = kind & ~op.FETCH
    if kind == op.XCHG:
        return operand & mask
    if base == op.ADD:
        return (old + operand) & mask
    if base == op.OR:
        return (old | operand) & mask
    if base == op.AND:
        return old & operand & mask
    if base == op.XOR:
        return (old ^ operand) & mask
    raise ValueError(f"not a read-modify-write atomic: {kind:#x}")


# -- Classic packet loads ----------------------------------------------------

def packet_load(data: bytes | memoryview, offset: int, size: int) -> int | None:
    """LD_ABS/LD_IND: big-endian value, or None when out of range (program returns 0)."""
    if offset < 0 or offset + size > len(data):
        return None
    return int.from_bytes(bytes(data[offset:offset + size]), "big")


# -- Compiled forms for one-at-a-time evaluation -----------------------------

_compiled: dict[str, object] = {}


def evaluator(template: str):
    """``template`` compiled into ``f(d, s) -> value`` (cached)."""
    fn = _compiled.get(template)
    if fn is None:
        src = template.replace("{d}", "d").replace("{s}", "s")
        fn = eval(f"lambda d, s: {src}", dict(RUNTIME))  # noqa: S307 - our own templates
        _compiled[template] = fn
    return fn


def alu(cls: int, code_op: int, d: int, s: int, off: int = 0, imm: int = 0,
        srcbit: int = op.K) -> int:
    """Evaluate one ALU operation on unsigned 64-bit operands."""
    return evaluator(alu_template(cls, code_op, off, imm, srcbit))(d, s)


def cond(cls: int, code_op: int, d: int, s: int) -> bool:
    """Evaluate one conditional jump's condition."""
    return bool(evaluator(cond_template(cls, code_op))(d, s))


def source_operand(ins, src_value: int) -> int:
    """The ``{s}`` operand of an ALU/JMP instruction: the register's value or the immediate."""
    if ins.code & op.X:
        return src_value
    return imm_operand(ins.code & 7, ins.imm)


def alu_insn(ins, dst_value: int, src_value: int = 0) -> int:
    """New destination value of the ALU/ALU64 instruction ``ins`` (an Insn)."""
    cls, o = ins.code & 7, ins.code & 0xF0
    s = 0 if o == op.END else source_operand(ins, src_value)
    return evaluator(alu_template(cls, o, ins.off, ins.imm, ins.code & op.X))(dst_value, s)


def jump_taken(ins, dst_value: int, src_value: int = 0) -> bool:
    """Is the conditional jump ``ins`` taken for these register values?"""
    return bool(evaluator(cond_template(ins.code & 7, ins.code & 0xF0))(
        dst_value, source_operand(ins, src_value)))


def subst(template: str, d: str, s: str) -> str:
    """Paste operand expressions into a template (for code generators)."""
    return template.replace("{d}", d).replace("{s}", s)
