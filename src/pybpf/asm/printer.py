"""Instruction text in three styles.

``llvm``
    Exactly what LLVM 19 ``llvm-objdump -d --no-show-raw-insn --mcpu=v4`` prints
    for the instruction, without the address column and without the ``<sym+off>``
    annotation objdump appends to jumps.  Immediates are hex, as objdump 19
    prints them.  Three encodings lose bits in this style, because objdump
    prints them that way: LD_IMM64 with a pseudo source (``ld_pseudo r1, 0x1,
    0x5`` drops the upper 32 bits), calls with src 1 or 2 (``call 0x3`` for a
    helper, a bpf-to-bpf call and a kfunc alike), and LD_IND's imm (``skb[r1]``).

``pybpf``
    The llvm style with lossless extensions for exactly those three cases, so
    that ``assemble(disassemble(x, style="pybpf")) == x`` for every valid
    program.  The assembler accepts the extensions in the llvm syntax::

        r1 = map_fd(0x5) ll              src 1  BPF_PSEUDO_MAP_FD
        r1 = map_value(0x5, 0x10) ll     src 2  BPF_PSEUDO_MAP_VALUE (fd, offset)
        r1 = btf_id(0x7) ll              src 3  BPF_PSEUDO_BTF_ID
        r1 = func(0x3) ll                src 4  BPF_PSEUDO_FUNC (imm = relative insn)
        r1 = map_idx(0x0) ll             src 5  BPF_PSEUDO_MAP_IDX
        r1 = map_idx_value(0x0, 0x8) ll  src 6  BPF_PSEUDO_MAP_IDX_VALUE (index, offset)
        call pc+0x3 / call label         src 1  bpf-to-bpf call, pc-relative
        call kfunc 0x5                   src 2  kfunc call by BTF id
        r0 = *(u8 *)skb[r1 + 0x4]        LD_IND with its immediate

    Single-argument pseudo loads print a second argument (the upper slot's
    imm) only when it is not zero.

``conformance``
    The conformance suite's syntax (``mov32 %r0, 1``, ``ldxdw %r0, [%r1+8]``,
    ``jeq %r1, 0x5, +2``), lossless too: pseudo LD_IMM64 and kfunc calls use the
    same extensions (``lddw %r1, map_fd(5)``, ``call kfunc 5``), see
    :mod:`pybpf.asm.conformance`.

``kernel``
    The verifier log's format (``print_bpf_insn`` of kernel/bpf/disasm.c):
    ``(bf) r6 = r1``, ``(07) r1 += -8``, ``(63) *(u32 *)(r10 -4) = r1``,
    ``(85) call bpf_map_lookup_elem#1``, ``(18) r1 = 0x1234``, ``(05) goto pc+3``.
    Two departures, where the kernel's text would lose the instruction:
    pseudo LD_IMM64 print their source like the pybpf style (``(18) r1 =
    map_fd(5)``) and callx prints ``(8d) callx r2``.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import AsmError
from ..isa import opcodes as op
from ..isa.insn import Insn, check_insn, imm64
from .helper_names import HELPER_NAMES

STYLES = ("llvm", "pybpf", "kernel", "conformance")

ALU_SYMBOL = {op.ADD: "+=", op.SUB: "-=", op.MUL: "*=", op.DIV: "/=", op.OR: "|=", op.AND: "&=",
              op.LSH: "<<=", op.RSH: ">>=", op.MOD: "%=", op.XOR: "^=", op.MOV: "=",
              op.ARSH: "s>>="}
SIGNED_SYMBOL = {op.DIV: "s/=", op.MOD: "s%="}
JMP_SYMBOL = {op.JEQ: "==", op.JGT: ">", op.JGE: ">=", op.JSET: "&", op.JNE: "!=",
              op.JSGT: "s>", op.JSGE: "s>=", op.JLT: "<", op.JLE: "<=", op.JSLT: "s<",
              op.JSLE: "s<="}
SIZE_NAME = {op.B: "u8", op.H: "u16", op.W: "u32", op.DW: "u64"}
SIGNED_SIZE_NAME = {op.B: "s8", op.H: "s16", op.W: "s32"}
ATOMIC_NAME = {op.ADD: "add", op.OR: "or", op.AND: "and", op.XOR: "xor"}
PSEUDO_NAMES = {op.PSEUDO_MAP_FD: "map_fd", op.PSEUDO_MAP_VALUE: "map_value",
                op.PSEUDO_BTF_ID: "btf_id", op.PSEUDO_FUNC: "func",
                op.PSEUDO_MAP_IDX: "map_idx", op.PSEUDO_MAP_IDX_VALUE: "map_idx_value"}
TWO_ARG_PSEUDOS = (op.PSEUDO_MAP_VALUE, op.PSEUDO_MAP_IDX_VALUE)


def hexs(v: int) -> str:
    """Signed hex as LLVM prints it: ``0x10``, ``-0x8``."""
    return f"-{-v:#x}" if v < 0 else f"{v:#x}"


def _mem(base: int, off: int) -> str:
    return f"r{base} {'-' if off < 0 else '+'} {abs(off):#x}"


def _pseudo_args(insns: Sequence[Insn], i: int, number) -> str:
    lo = insns[i].imm & 0xFFFFFFFF
    hi = insns[i + 1].imm & 0xFFFFFFFF if i + 1 < len(insns) else 0
    if insns[i].src in TWO_ARG_PSEUDOS or hi:
        return f"{number(lo)}, {number(hi)}"
    return number(lo)


def _is_second_slot(insns: Sequence[Insn], i: int) -> bool:
    """True when slot ``i`` is the upper half of an LD_IMM64.

    A valid second slot has opcode 0, so only a run of LD_IMM64 opcodes right
    before ``i`` matters; its parity decides (this keeps the answer O(1) for
    valid programs, which matters to callers formatting slot by slot).
    """
    run = 0
    k = i - 1
    while k >= 0 and insns[k].code == op.LD_IMM64:
        run += 1
        k -= 1
    return run % 2 == 1


def disassemble(insns: Sequence[Insn], *, style: str = "llvm") -> list[str]:
    """One text per slot; the second slot of an LD_IMM64 gets ``""``."""
    _check_style(style)
    out: list[str] = []
    i = 0
    n = len(insns)
    while i < n:
        out.append(_format(insns, i, style))
        if insns[i].code == op.LD_IMM64:
            if i + 1 < n:
                out.append("")
            i += 2
        else:
            i += 1
    return out


def format_insn(insns: Sequence[Insn], i: int, *, style: str = "llvm") -> str:
    """Text of the instruction starting at slot ``i`` (``""`` for an LD_IMM64's second slot)."""
    _check_style(style)
    if not 0 <= i < len(insns):
        raise IndexError(f"slot {i} out of range for a {len(insns)}-slot program")
    if _is_second_slot(insns, i):
        return ""
    return _format(insns, i, style)


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise AsmError(f"unknown style {style!r} (expected one of {', '.join(STYLES)})")


def _format(insns: Sequence[Insn], i: int, style: str) -> str:
    reason = check_insn(insns[i])
    if reason is not None and style == "kernel" and not reason.startswith("unknown opcode"):
        # the kernel's printer decodes a known opcode without judging its other
        # fields, and the verifier log shows such an insn before rejecting it;
        # where our printer has no text for the odd fields, say why instead
        try:
            return f"({insns[i].code:02x}) {_kernel(insns, i)}"
        except (KeyError, IndexError):
            pass
    if reason is not None:
        # objdump prints <unknown>; the other styles say why, never raise
        if style == "llvm":
            return "<unknown>"
        text = f"<invalid: {reason}>"
        return f"({insns[i].code:02x}) {text}" if style == "kernel" else text
    if style == "kernel":
        return f"({insns[i].code:02x}) {_kernel(insns, i)}"
    if style == "conformance":
        return _conformance(insns, i)
    return _llvm(insns, i, style == "pybpf")


# --------------------------------------------------------------------- llvm / pybpf

def _llvm(insns: Sequence[Insn], i: int, ext: bool) -> str:
    ins = insns[i]
    code, cls = ins.code, ins.code & 0x07
    if cls in (op.ALU, op.ALU64):
        return _llvm_alu(ins, cls)
    if cls in (op.JMP, op.JMP32):
        return _llvm_jmp(ins, cls, ext)
    size, mode = code & 0x18, code & 0xE0
    if cls == op.LD:
        if code == op.LD_IMM64:
            if ins.src == op.PSEUDO_NONE:
                v = imm64(insns, i) if i + 1 < len(insns) else ins.imm & 0xFFFFFFFF
                if v >= 1 << 63:
                    v -= 1 << 64
                return f"r{ins.dst} = {hexs(v)} ll"
            if ext and ins.src in PSEUDO_NAMES:
                return f"r{ins.dst} = {PSEUDO_NAMES[ins.src]}({_pseudo_args(insns, i, hex)}) ll"
            return f"ld_pseudo\tr{ins.dst}, {ins.src:#x}, {ins.imm & 0xFFFFFFFF:#x}"
        if mode == op.ABS:
            return f"r0 = *({SIZE_NAME[size]} *)skb[{hexs(ins.imm)}]"
        if ext and ins.imm:
            return f"r0 = *({SIZE_NAME[size]} *)skb[{_mem(ins.src, ins.imm)}]"
        return f"r0 = *({SIZE_NAME[size]} *)skb[r{ins.src}]"
    if cls == op.LDX:
        if mode == op.MEMSX:
            return f"r{ins.dst} = *({SIGNED_SIZE_NAME[size]} *)({_mem(ins.src, ins.off)})"
        r = "r" if size == op.DW else "w"
        return f"{r}{ins.dst} = *({SIZE_NAME[size]} *)({_mem(ins.src, ins.off)})"
    if cls == op.ST:
        return f"*({SIZE_NAME[size]} *)({_mem(ins.dst, ins.off)}) = {hexs(ins.imm)}"
    r = "r" if size == op.DW else "w"
    if mode == op.MEM:
        return f"*({SIZE_NAME[size]} *)({_mem(ins.dst, ins.off)}) = {r}{ins.src}"
    # atomics
    mem = _mem(ins.dst, ins.off)
    a = ins.imm
    if a in ATOMIC_NAME:
        return f"lock *({SIZE_NAME[size]} *)({mem}) {ALU_SYMBOL[a]} {r}{ins.src}"
    if a & ~op.FETCH in ATOMIC_NAME:
        return (f"{r}{ins.src} = atomic_fetch_{ATOMIC_NAME[a & ~op.FETCH]}"
                f"(({SIZE_NAME[size]} *)({mem}), {r}{ins.src})")
    suffix = "_64" if size == op.DW else "32_32"
    if a == op.XCHG:
        return f"{r}{ins.src} = xchg{suffix}({mem}, {r}{ins.src})"
    return f"{r}0 = cmpxchg{suffix}({mem}, {r}0, {r}{ins.src})"


def _llvm_alu(ins: Insn, cls: int) -> str:
    r = "w" if cls == op.ALU else "r"
    o = ins.code & 0xF0
    x = ins.code & 0x08
    if o == op.END:
        kind = "bswap" if cls == op.ALU64 else ("be" if x else "le")
        return f"r{ins.dst} = {kind}{ins.imm} r{ins.dst}"
    if o == op.NEG:
        return f"{r}{ins.dst} = -{r}{ins.dst}"
    sym = SIGNED_SYMBOL[o] if ins.off == 1 and o in SIGNED_SYMBOL else ALU_SYMBOL[o]
    if x:
        if o == op.MOV and ins.off:
            return f"{r}{ins.dst} = (s{ins.off}){r}{ins.src}"
        return f"{r}{ins.dst} {sym} {r}{ins.src}"
    return f"{r}{ins.dst} {sym} {hexs(ins.imm)}"


def _llvm_jmp(ins: Insn, cls: int, ext: bool) -> str:
    o = ins.code & 0xF0
    if o == op.JA:
        if cls == op.JMP32:
            return f"gotol {_rel(ins.imm)}"
        return f"goto {_rel(ins.off)}"
    if o == op.CALL:
        if ins.code & 0x08:
            return f"callx r{ins.dst}"
        if ext and ins.src == op.PSEUDO_CALL:
            return f"call pc{_rel(ins.imm)}"
        if ext and ins.src == op.PSEUDO_KFUNC_CALL:
            return f"call kfunc {hexs(ins.imm)}"
        return f"call {hexs(ins.imm)}"
    if o == op.EXIT:
        return "exit"
    r = "w" if cls == op.JMP32 else "r"
    rhs = f"{r}{ins.src}" if ins.code & 0x08 else hexs(ins.imm)
    return f"if {r}{ins.dst} {JMP_SYMBOL[o]} {rhs} goto {_rel(ins.off)}"


def _rel(v: int) -> str:
    return f"{'-' if v < 0 else '+'}{abs(v):#x}"


# --------------------------------------------------------------------- kernel

def _kmem(base: int, off: int) -> str:
    return f"r{base} {off:+d}"


def _kernel(insns: Sequence[Insn], i: int) -> str:
    ins = insns[i]
    code, cls = ins.code, ins.code & 0x07
    if cls in (op.ALU, op.ALU64):
        r = "w" if cls == op.ALU else "r"
        o = code & 0xF0
        if o == op.END:
            if cls == op.ALU64:
                return f"r{ins.dst} = bswap{ins.imm} r{ins.dst}"
            return f"r{ins.dst} = {'be' if code & 0x08 else 'le'}{ins.imm} r{ins.dst}"
        if o == op.NEG:
            return f"{r}{ins.dst} = -{r}{ins.dst}"
        sym = SIGNED_SYMBOL[o] if ins.off == 1 and o in SIGNED_SYMBOL else ALU_SYMBOL[o]
        if code & 0x08:
            cast = f"(s{ins.off})" if o == op.MOV and ins.off else ""
            return f"{r}{ins.dst} {sym} {cast}{r}{ins.src}"
        return f"{r}{ins.dst} {sym} {ins.imm}"
    if cls in (op.JMP, op.JMP32):
        o = code & 0xF0
        if o == op.CALL:
            if code & 0x08:
                return f"callx r{ins.dst}"
            if ins.src == op.PSEUDO_CALL:
                return f"call pc{ins.imm:+d}"
            if ins.src == op.PSEUDO_KFUNC_CALL:
                return f"call kernel-function#{ins.imm}"
            return f"call {HELPER_NAMES.get(ins.imm, 'unknown')}#{ins.imm}"
        if code == op.OP_JA:
            return f"goto pc{ins.off:+d}"
        if code == op.OP_JA32:
            return f"gotol pc{ins.imm:+d}"
        if o == op.EXIT:
            return "exit"
        r = "w" if cls == op.JMP32 else "r"
        rhs = f"{r}{ins.src}" if code & 0x08 else f"{ins.imm & 0xFFFFFFFF:#x}"
        return f"if {r}{ins.dst} {JMP_SYMBOL[o]} {rhs} goto pc{ins.off:+d}"
    size, mode = code & 0x18, code & 0xE0
    sz = SIZE_NAME[size]
    if cls == op.LD:
        if code == op.LD_IMM64:
            if ins.src == op.PSEUDO_NONE:
                v = imm64(insns, i) if i + 1 < len(insns) else ins.imm & 0xFFFFFFFF
                return f"r{ins.dst} = {v:#x}"
            return f"r{ins.dst} = {PSEUDO_NAMES[ins.src]}({_pseudo_args(insns, i, str)})"
        if mode == op.ABS:
            return f"r0 = *({sz} *)skb[{ins.imm}]"
        return f"r0 = *({sz} *)skb[r{ins.src} + {ins.imm}]"
    if cls == op.LDX:
        name = SIGNED_SIZE_NAME[size] if mode == op.MEMSX else sz
        return f"r{ins.dst} = *({name} *)({_kmem(ins.src, ins.off)})"
    if cls == op.ST:
        return f"*({sz} *)({_kmem(ins.dst, ins.off)}) = {ins.imm}"
    if mode == op.MEM:
        return f"*({sz} *)({_kmem(ins.dst, ins.off)}) = r{ins.src}"
    mem = f"({sz} *)({_kmem(ins.dst, ins.off)})"
    width = "64" if size == op.DW else ""
    a = ins.imm
    if a in ATOMIC_NAME:
        return f"lock *({sz} *)({_kmem(ins.dst, ins.off)}) {ALU_SYMBOL[a]} r{ins.src}"
    if a & ~op.FETCH in ATOMIC_NAME:
        return f"r{ins.src} = atomic{width}_fetch_{ATOMIC_NAME[a & ~op.FETCH]}({mem}, r{ins.src})"
    if a == op.XCHG:
        return f"r{ins.src} = atomic{width}_xchg({mem}, r{ins.src})"
    return f"r0 = atomic{width}_cmpxchg({mem}, r0, r{ins.src})"


# --------------------------------------------------------------------- conformance

_CONF_SIZE = {op.B: "b", op.H: "h", op.W: "w", op.DW: "dw"}


def _cnum(v: int) -> str:
    return str(v) if -4096 < v < 4096 else hexs(v)


def _cmem(base: int, off: int) -> str:
    return f"[%r{base}{off:+d}]"


def _conformance(insns: Sequence[Insn], i: int) -> str:
    ins = insns[i]
    code, cls = ins.code, ins.code & 0x07
    if cls in (op.ALU, op.ALU64):
        sfx = "32" if cls == op.ALU else ""
        o = code & 0xF0
        if o == op.END:
            if cls == op.ALU64:
                return f"bswap{ins.imm} %r{ins.dst}"
            return f"{'be' if code & 0x08 else 'le'}{ins.imm} %r{ins.dst}"
        if o == op.NEG:
            return f"neg{sfx} %r{ins.dst}"
        name = op.ALU_NAMES[o]
        if ins.off == 1 and o in (op.DIV, op.MOD):
            name = "s" + name
        if code & 0x08:
            if o == op.MOV and ins.off:
                return f"movsx{ins.off}{32 if cls == op.ALU else 64} %r{ins.dst}, %r{ins.src}"
            return f"{name}{sfx} %r{ins.dst}, %r{ins.src}"
        return f"{name}{sfx} %r{ins.dst}, {_cnum(ins.imm)}"
    if cls in (op.JMP, op.JMP32):
        o = code & 0xF0
        if code == op.OP_JA:
            return f"ja {ins.off:+d}"
        if code == op.OP_JA32:
            return f"ja32 {ins.imm:+d}"
        if o == op.CALL:
            if code & 0x08:
                return f"callx %r{ins.dst}"
            if ins.src == op.PSEUDO_CALL:
                return f"call local {ins.imm:+d}"
            if ins.src == op.PSEUDO_KFUNC_CALL:
                return f"call kfunc {ins.imm}"
            return f"call {ins.imm}"
        if o == op.EXIT:
            return "exit"
        sfx = "32" if cls == op.JMP32 else ""
        rhs = f"%r{ins.src}" if code & 0x08 else _cnum(ins.imm)
        return f"{op.JMP_NAMES[o]}{sfx} %r{ins.dst}, {rhs}, {ins.off:+d}"
    size, mode = code & 0x18, code & 0xE0
    sz = _CONF_SIZE[size]
    if cls == op.LD:
        if code == op.LD_IMM64:
            if ins.src == op.PSEUDO_NONE:
                v = imm64(insns, i) if i + 1 < len(insns) else ins.imm & 0xFFFFFFFF
                return f"lddw %r{ins.dst}, {v:#x}"
            return f"lddw %r{ins.dst}, {PSEUDO_NAMES[ins.src]}({_pseudo_args(insns, i, hex)})"
        if mode == op.ABS:
            return f"ldabs{sz} {_cnum(ins.imm)}"
        return f"ldind{sz} %r{ins.src}, {_cnum(ins.imm)}"
    if cls == op.LDX:
        return f"ldx{'s' if mode == op.MEMSX else ''}{sz} %r{ins.dst}, {_cmem(ins.src, ins.off)}"
    if cls == op.ST:
        return f"st{sz} {_cmem(ins.dst, ins.off)}, {_cnum(ins.imm)}"
    if mode == op.MEM:
        return f"stx{sz} {_cmem(ins.dst, ins.off)}, %r{ins.src}"
    sfx = "32" if size == op.W else ""
    a = ins.imm
    if a == op.XCHG:
        name = "xchg"
    elif a == op.CMPXCHG:
        name = "cmpxchg"
    else:
        name = ("fetch " if a & op.FETCH else "") + ATOMIC_NAME[a & ~op.FETCH]
    return f"lock {name}{sfx} {_cmem(ins.dst, ins.off)}, %r{ins.src}"
