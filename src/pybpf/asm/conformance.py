"""The conformance-suite syntax: ``mnemonic operands`` with ``%rN`` registers.

This is the syntax of the eBPF conformance suite's ``-- asm`` sections::

    mov %r0, 1              ALU64, ``mov32`` / ``add32`` ... are ALU (32-bit)
    sdiv %r1, %r2           signed division/modulo (offset 1)
    movsx832 %r0, %r1       sign-extending moves: movsx{8,16,32}{32,64}
    be16 %r0 / le32 %r0     byte order conversion; bswap16/32/64 (alias swap16/32/64)
    lddw %r0, 0x1122334455667788
    ldxw %r0, [%r1+4]       loads; ldxs{b,h,w} sign-extend; st{b,h,w,dw} [m], imm; stx.. [m], %r
    lock add [%r10-8], %r1  atomics: lock [fetch] {add,or,and,xor}[32], lock xchg[32], cmpxchg[32]
    ldabsw 4 / ldindb %r1, 4  legacy packet loads
    jeq %r1, 0, label       conditional jumps (``32`` suffix: JMP32), targets ``label`` / ``+N`` / ``-N``
    ja label / ja32 label   ja32 is ``gotol`` (32-bit offset in imm)
    call 5 / call local f / call %r2 (= callx %r2, register in dst_reg)
    exit

pybpf extensions (so that every valid program has a text, see
:mod:`pybpf.asm.printer`): ``lddw %r1, map_fd(5)`` and the other LD_IMM64
pseudo sources (``map_value(fd, off)``, ``btf_id``, ``func``, ``map_idx``,
``map_idx_value(idx, off)``), and ``call kfunc 5`` (src 2).

A jump to ``exit`` that names no label goes to the next ``exit`` instruction, as the
suite's programs expect.  Comments start with ``#``, ``;`` or ``//``.
"""

from __future__ import annotations

import re

from ..isa import opcodes as op
from ..isa.insn import Insn, ldimm64
from .core import IMM32, IMM64, LABEL_RE, S16, S32, Program, check_range, parse_number, strip_comment, to_s32
from .printer import PSEUDO_NAMES, TWO_ARG_PSEUDOS

_ALU = {"add": op.ADD, "sub": op.SUB, "mul": op.MUL, "div": op.DIV, "or": op.OR, "and": op.AND,
        "lsh": op.LSH, "rsh": op.RSH, "mod": op.MOD, "xor": op.XOR, "mov": op.MOV, "arsh": op.ARSH}
_SIGNED = {"sdiv": op.DIV, "smod": op.MOD}
_JMP = {"jeq": op.JEQ, "jgt": op.JGT, "jge": op.JGE, "jset": op.JSET, "jne": op.JNE,
        "jsgt": op.JSGT, "jsge": op.JSGE, "jlt": op.JLT, "jle": op.JLE, "jslt": op.JSLT,
        "jsle": op.JSLE}
_SIZES = {"b": op.B, "h": op.H, "w": op.W, "dw": op.DW}
_ATOMIC = {"add": op.ADD, "or": op.OR, "and": op.AND, "xor": op.XOR}

_REG = re.compile(r"^%r(\d+)$")
_PSEUDO_ARG = re.compile(r"^([a-z_]+)\s*\(\s*([^,()]+?)\s*(?:,\s*([^,()]+?)\s*)?\)$")
_PSEUDO_BY_NAME = {v: k for k, v in PSEUDO_NAMES.items()}
_MEM = re.compile(r"^\[\s*(%r\d+|%?\w+)\s*(?:([+-])\s*([0-9a-fA-FxX]+)\s*)?\]$")

MNEMONICS = frozenset(
    [*(_ALU), *(m + "32" for m in _ALU), *(_SIGNED), *(m + "32" for m in _SIGNED), "neg", "neg32",
     *(f"movsx{a}{b}" for a in (8, 16, 32) for b in (32, 64) if not (a == 32 and b == 32)),
     *(f"{e}{w}" for e in ("be", "le", "bswap", "swap") for w in (16, 32, 64)),
     *(_JMP), *(m + "32" for m in _JMP), "ja", "ja32", "call", "callx", "exit", "lddw",
     *(f"ldx{s}" for s in _SIZES), *(f"ldxs{s}" for s in ("b", "h", "w")),
     *(f"st{s}" for s in _SIZES), *(f"stx{s}" for s in _SIZES),
     *(f"ldabs{s}" for s in ("b", "h", "w")), *(f"ldind{s}" for s in ("b", "h", "w")), "lock"])


class _Line:
    def __init__(self, prog: Program, lineno: int, mnemonic: str, operands: list[str]):
        self.prog, self.lineno, self.mnemonic, self.operands = prog, lineno, mnemonic, operands

    def fail(self, reason: str):
        return self.prog.error(f"{self.mnemonic}: {reason}", self.lineno)

    def arity(self, n: int) -> None:
        if len(self.operands) != n:
            raise self.fail(f"expected {n} operand{'s' if n != 1 else ''}, got {len(self.operands)}")

    def reg(self, text: str) -> int:
        m = _REG.match(text)
        if not m:
            raise self.fail(f"bad register {text!r} (expected %r0..%r10)")
        n = int(m.group(1))
        if n > op.MAX_REG:
            raise self.fail(f"bad register {text!r} (registers are %r0..%r10)")
        return n

    def is_reg(self, text: str) -> bool:
        return text.startswith("%")

    def imm(self, text: str, bounds=IMM32, what: str = "immediate") -> int:
        v = parse_number(text)
        if v is None:
            raise self.fail(f"bad {what} {text!r}")
        check_range(self.prog, v, bounds, f"{self.mnemonic}: {what}", self.lineno)
        return v

    def mem(self, text: str) -> tuple[int, int]:
        m = _MEM.match(text)
        if not m:
            raise self.fail(f"bad memory operand {text!r} (expected [%rN+off])")
        base = self.reg(m.group(1))
        off = 0
        if m.group(3) is not None:
            off = parse_number(m.group(3))
            if off is None:
                raise self.fail(f"bad offset {m.group(3)!r}")
            if m.group(2) == "-":
                off = -off
            check_range(self.prog, off, S16, f"{self.mnemonic}: offset", self.lineno)
        return base, off


def _split_operands(text: str) -> list[str]:
    if not text:
        return []
    return [p.strip() for p in text.split(",")]


def assemble_conformance(text: str, source: str | None = None) -> list[Insn]:
    prog = Program(source)
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = strip_comment(raw)
        while True:
            m = re.match(r"^([A-Za-z_.$][\w.$]*)\s*:(.*)$", line)
            if not m:
                break
            prog.label(m.group(1), lineno)
            line = m.group(2).strip()
        if not line:
            continue
        parts = line.split(None, 1)
        mnemonic = parts[0].lower()
        rest = parts[1].strip() if len(parts) > 1 else ""
        if mnemonic == "lock":
            _lock(prog, lineno, rest)
            continue
        if mnemonic == "call" and rest.startswith("local "):
            target = rest[6:].strip()
            if not LABEL_RE.match(target) and parse_number(target) is None:
                raise prog.error(f"call local: bad target {target!r}", lineno)
            _call_local(prog, lineno, target)
            continue
        _instruction(_Line(prog, lineno, mnemonic, _split_operands(rest)))
    return prog.link(implicit_exit=True)


def _call_local(prog: Program, lineno: int, target: str) -> None:
    rel = parse_number(target)
    if rel is not None:
        check_range(prog, rel, S32, "call local: offset", lineno)
        prog.emit(Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, rel), lineno)
    else:
        prog.emit(Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 0), lineno, target, "imm")


def _jump_target(ln: _Line, text: str, field: str) -> tuple[int, str | None]:
    """A relative offset written as +N/-N/N, or a label to resolve later."""
    v = parse_number(text)
    if v is not None:
        check_range(ln.prog, v, S16 if field == "off" else S32, f"{ln.mnemonic}: jump offset", ln.lineno)
        return v, None
    if not LABEL_RE.match(text):
        raise ln.fail(f"bad jump target {text!r}")
    return 0, text


def _instruction(ln: _Line) -> None:
    m, ops, prog, lineno = ln.mnemonic, ln.operands, ln.prog, ln.lineno
    emit = prog.emit
    base, is32 = (m[:-2], True) if m.endswith("32") and not m.startswith(("movsx", "be", "le", "bswap", "swap")) else (m, False)
    cls = op.ALU if is32 else op.ALU64

    if base in _ALU or base in _SIGNED:
        ln.arity(2)
        dst = ln.reg(ops[0])
        code_op = _ALU.get(base, _SIGNED.get(base))
        off = 1 if base in _SIGNED else 0
        if ln.is_reg(ops[1]):
            emit(Insn(cls | op.X | code_op, dst, ln.reg(ops[1]), off, 0), lineno)
        else:
            emit(Insn(cls | op.K | code_op, dst, 0, off, to_s32(ln.imm(ops[1]))), lineno)
        return
    if base == "neg":
        ln.arity(1)
        emit(Insn(cls | op.NEG, ln.reg(ops[0])), lineno)
        return
    mm = re.match(r"^movsx(8|16|32)(32|64)$", m)
    if mm and m != "movsx3232":
        ln.arity(2)
        cls = op.ALU if mm.group(2) == "32" else op.ALU64
        emit(Insn(cls | op.X | op.MOV, ln.reg(ops[0]), ln.reg(ops[1]), int(mm.group(1)), 0), lineno)
        return
    mm = re.match(r"^(be|le|bswap|swap)(16|32|64)$", m)
    if mm:
        ln.arity(1)
        kind = mm.group(1)
        code = {"be": op.ALU | op.END | op.TO_BE, "le": op.ALU | op.END | op.TO_LE}.get(kind, op.ALU64 | op.END)
        emit(Insn(code, ln.reg(ops[0]), 0, 0, int(mm.group(2))), lineno)
        return
    if base in _JMP:
        ln.arity(3)
        jcls = op.JMP32 if is32 else op.JMP
        dst = ln.reg(ops[0])
        off, target = _jump_target(ln, ops[2], "off")
        if ln.is_reg(ops[1]):
            emit(Insn(jcls | op.X | _JMP[base], dst, ln.reg(ops[1]), off, 0), lineno, target)
        else:
            emit(Insn(jcls | op.K | _JMP[base], dst, 0, off, to_s32(ln.imm(ops[1]))), lineno, target)
        return
    if m == "ja":
        ln.arity(1)
        off, target = _jump_target(ln, ops[0], "off")
        emit(Insn(op.OP_JA, 0, 0, off, 0), lineno, target)
        return
    if m == "ja32":
        ln.arity(1)
        imm, target = _jump_target(ln, ops[0], "imm")
        emit(Insn(op.OP_JA32, 0, 0, 0, imm), lineno, target, "imm")
        return
    if m in ("call", "callx"):
        ln.arity(1)
        if m == "call" and ops[0].startswith("kfunc "):
            kid = to_s32(ln.imm(ops[0][6:].strip(), what="kfunc id"))
            emit(Insn(op.OP_CALL, 0, op.PSEUDO_KFUNC_CALL, 0, kid), lineno)
        elif ln.is_reg(ops[0]):
            emit(Insn(op.OP_CALLX, ln.reg(ops[0]), 0, 0, 0), lineno)
        elif m == "callx":
            raise ln.fail(f"bad register {ops[0]!r}")
        else:
            emit(Insn(op.OP_CALL, 0, op.CALL_HELPER, 0, to_s32(ln.imm(ops[0], what="helper id"))), lineno)
        return
    if m == "exit":
        ln.arity(0)
        emit(Insn(op.OP_EXIT), lineno)
        return
    if m == "lddw" and len(ops) == 3 and "(" in ops[1]:
        ops = ln.operands = [ops[0], ops[1] + "," + ops[2]]
    if m == "lddw" and len(ops) == 2 and (pm := _PSEUDO_ARG.match(ops[1])):
        name, a, b = pm.groups()
        if name not in _PSEUDO_BY_NAME:
            raise ln.fail(f"unknown pseudo source {name!r} (expected one of {', '.join(_PSEUDO_BY_NAME)})")
        src = _PSEUDO_BY_NAME[name]
        if src in TWO_ARG_PSEUDOS and b is None:
            raise ln.fail(f"{name}() takes two arguments (value, offset)")
        lo = to_s32(ln.imm(a, what=f"{name}() argument"))
        hi = to_s32(ln.imm(b, what=f"{name}() argument")) if b is not None else 0
        emit(Insn(op.LD_IMM64, ln.reg(ops[0]), src, 0, lo), lineno)
        emit(Insn(0, 0, 0, 0, hi), lineno)
        return
    if m == "lddw":
        ln.arity(2)
        lo, hi = ldimm64(ln.reg(ops[0]), ln.imm(ops[1], IMM64))
        emit(lo, lineno)
        emit(hi, lineno)
        return
    mm = re.match(r"^(ldxs|ldx|stx|st|ldabs|ldind)(b|h|w|dw)$", m)
    if mm:
        kind, size = mm.group(1), _SIZES[mm.group(2)]
        if kind == "ldxs" and size == op.DW:
            raise ln.fail("there is no sign-extending 64-bit load")
        if kind in ("ldabs", "ldind") and size == op.DW:
            raise ln.fail("packet loads are 8, 16 or 32 bits wide")
        if kind in ("ldx", "ldxs"):
            ln.arity(2)
            src, off = ln.mem(ops[1])
            mode = op.MEMSX if kind == "ldxs" else op.MEM
            emit(Insn(op.LDX | mode | size, ln.reg(ops[0]), src, off, 0), lineno)
        elif kind == "stx":
            ln.arity(2)
            dst, off = ln.mem(ops[0])
            emit(Insn(op.STX | op.MEM | size, dst, ln.reg(ops[1]), off, 0), lineno)
        elif kind == "st":
            ln.arity(2)
            dst, off = ln.mem(ops[0])
            emit(Insn(op.ST | op.MEM | size, dst, 0, off, to_s32(ln.imm(ops[1]))), lineno)
        elif kind == "ldabs":
            ln.arity(1)
            emit(Insn(op.LD | op.ABS | size, 0, 0, 0, to_s32(ln.imm(ops[0]))), lineno)
        else:
            ln.arity(2)
            emit(Insn(op.LD | op.IND | size, 0, ln.reg(ops[0]), 0, to_s32(ln.imm(ops[1]))), lineno)
        return
    raise prog.error(f"unknown mnemonic {m!r}", lineno)


def _lock(prog: Program, lineno: int, rest: str) -> None:
    words = rest.split(None, 1)
    fetch = False
    if words and words[0].lower() == "fetch":
        fetch = True
        words = words[1].split(None, 1) if len(words) > 1 else []
    if not words:
        raise prog.error("lock: missing atomic operation", lineno)
    name = words[0].lower()
    ln = _Line(prog, lineno, f"lock {'fetch ' if fetch else ''}{name}",
               _split_operands(words[1].strip() if len(words) > 1 else ""))
    size = op.DW
    if name.endswith("32"):
        size, name = op.W, name[:-2]
    if name in _ATOMIC:
        imm = _ATOMIC[name] | (op.FETCH if fetch else 0)
    elif name == "xchg":
        imm = op.XCHG
    elif name == "cmpxchg":
        imm = op.CMPXCHG
    else:
        raise prog.error(f"unknown atomic operation {words[0]!r}", lineno)
    ln.arity(2)
    dst, off = ln.mem(ln.operands[0])
    prog.emit(Insn(op.STX | op.ATOMIC | size, dst, ln.reg(ln.operands[1]), off, imm), lineno)
