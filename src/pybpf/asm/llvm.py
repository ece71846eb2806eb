"""The LLVM (kernel selftests, ``llvm-objdump``) assembly syntax.

Accepted: everything llvm-objdump 19 prints for a valid instruction (``r1 +=
-0x8``, ``w1 = *(u32 *)(r2 + 0x4)``, ``if r1 s> w2``..., ``lock *(u64 *)(r1 +
0x0) += r2``, ``r0 = cmpxchg_64(r1 + 0x0, r0, r2)``, ``ld_pseudo r1, 0x1,
0x5``, ``gotol +0x4``, ``callx r2``), the decimal forms llvm-mc accepts, the
lossless pybpf extensions described in :mod:`pybpf.asm.printer`, and the
kernel verifier log's text (an optional ``(hh)`` opcode prefix, ``goto pc+3``,
``call bpf_map_lookup_elem#1``, ``r1 = atomic64_fetch_add((u64 *)(r2 +0), r1)``),
so that every style the disassembler writes reads back.  Listing decorations
are ignored: a leading slot index (``  12: ``, as objdump and ``pybpf disasm``
print) and objdump's trailing ``<sym+0x10>`` note.

Jump targets are labels (``name:`` on its own line or before an instruction)
or signed offsets (``+3``, ``-0x2``, ``pc+3``); ``call label`` is a bpf-to-bpf
call (src 1), and ``call bpf_map_lookup_elem`` (a helper name from linux/bpf.h,
when no label has that name) a helper call.  Comments start with ``#``, ``;`` or ``//``.
"""

from __future__ import annotations

import re

from ..isa import opcodes as op
from ..isa.insn import Insn
from .core import IMM32, IMM64, LABEL_RE, S16, S32, Program, check_range, parse_number, strip_comment, to_s32
from .helper_names import HELPER_NAMES
from .printer import ALU_SYMBOL, ATOMIC_NAME, JMP_SYMBOL, PSEUDO_NAMES, SIGNED_SYMBOL, TWO_ARG_PSEUDOS

_NUM = r"[+-]?\s*(?:0[xX][0-9a-fA-F]+|[0-9]+)"
_REG = r"[rw]\d+"
_SZ = r"[us](?:8|16|32|64)"
_MEMX = rf"({_REG})\s*(?:([+-])\s*(0[xX][0-9a-fA-F]+|[0-9]+))?"
_TARGET = r"(?:pc\s*)?[+-]?\s*(?:0[xX][0-9a-fA-F]+|[0-9]+)|[A-Za-z_.$][\w.$]*"

_ALU_OPS = {**{v: k for k, v in ALU_SYMBOL.items()}}
_SIGNED_OPS = {v: k for k, v in SIGNED_SYMBOL.items()}
_JMP_OPS = {v: k for k, v in JMP_SYMBOL.items()}
_SIZES = {"8": op.B, "16": op.H, "32": op.W, "64": op.DW}
_PSEUDO_BY_NAME = {v: k for k, v in PSEUDO_NAMES.items()}
_ATOMIC_BY_NAME = {v: k for k, v in ATOMIC_NAME.items()}
HELPER_IDS = {name: ident for ident, name in HELPER_NAMES.items()}


def _c(pattern: str) -> re.Pattern:
    return re.compile("^" + pattern + "$")


P_EXIT = _c(r"exit")
P_CALLX = _c(rf"callx\s+({_REG})")
P_CALL_KFUNC = _c(rf"call\s+(?:kfunc\s+|kernel-function\s*#\s*)({_NUM})")
P_CALL_NAMED = _c(rf"call\s+([A-Za-z_]\w*)\s*#\s*({_NUM})")
P_CALL = _c(rf"call\s+({_TARGET})")
P_GOTO = _c(rf"(goto|gotol)\s+({_TARGET})")
P_IF = _c(rf"if\s+({_REG})\s*(==|!=|s>=|s<=|s>|s<|>=|<=|>|<|&)\s*({_REG}|{_NUM})\s+goto\s+({_TARGET})")
P_LD_PSEUDO = _c(rf"ld_pseudo\s+({_REG})\s*,\s*({_NUM})\s*,\s*({_NUM})")
P_LDIMM64 = _c(rf"({_REG})\s*=\s*({_NUM})\s+ll")
P_PSEUDO = _c(rf"({_REG})\s*=\s*([a-z_]+)\s*\(\s*({_NUM})\s*(?:,\s*({_NUM})\s*)?\)(\s+ll)?")
P_SKB = _c(rf"({_REG})\s*=\s*\*\s*\(\s*({_SZ})\s*\*\s*\)\s*skb\s*\[\s*(?:({_NUM})|({_REG})\s*(?:([+-])\s*({_NUM}))?)\s*\]")
P_LOAD = _c(rf"({_REG})\s*=\s*\*\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)")
P_STORE = _c(rf"\*\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)\s*=\s*({_REG}|{_NUM})")
P_LOCK = _c(rf"lock\s+\*\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)\s*(\+=|\|=|&=|\^=)\s*({_REG})")
P_FETCH = _c(rf"({_REG})\s*=\s*atomic(64)?_fetch_(add|or|and|xor)\s*\(\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)\s*,\s*({_REG})\s*\)")
P_XCHG = _c(rf"({_REG})\s*=\s*xchg(_64|32_32)\s*\(\s*{_MEMX}\s*,\s*({_REG})\s*\)")
P_KXCHG = _c(rf"({_REG})\s*=\s*atomic(64)?_xchg\s*\(\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)\s*,\s*({_REG})\s*\)")
P_CMPXCHG = _c(rf"({_REG})\s*=\s*cmpxchg(_64|32_32)\s*\(\s*{_MEMX}\s*,\s*({_REG})\s*,\s*({_REG})\s*\)")
P_KCMPXCHG = _c(rf"({_REG})\s*=\s*atomic(64)?_cmpxchg\s*\(\s*\(\s*({_SZ})\s*\*\s*\)\s*\(\s*{_MEMX}\s*\)\s*,\s*({_REG})\s*,\s*({_REG})\s*\)")
P_NEG = _c(rf"({_REG})\s*=\s*-\s*({_REG})")
P_MOVSX = _c(rf"({_REG})\s*=\s*\(\s*s(8|16|32)\s*\)\s*({_REG})")
P_END = _c(rf"({_REG})\s*=\s*(be|le|bswap)(16|32|64)\s+({_REG})")
P_ALU = _c(rf"({_REG})\s*(s>>=|s/=|s%=|<<=|>>=|\+=|-=|\*=|/=|\|=|&=|%=|\^=|=)\s*({_REG}|{_NUM})")
P_PREFIX = re.compile(r"^\(\s*([0-9a-fA-F]{1,2})\s*\)\s*")
# Listing decorations that are not part of the instruction: a leading slot index
# ("  12: ", as objdump and `pybpf disasm` print) and objdump's "<sym+0x10>".
_PC_REL = re.compile(r"^pc[+-]")
_INDEX = re.compile(r"^\d+:\s*")
_SYMBOL_NOTE = re.compile(r"(?<=\S)\s*<[^<>]*>$")
_LABEL_DEF = re.compile(r"^([A-Za-z_.$][\w.$]*)\s*:(?!=)\s*(.*)$")


class _Ctx:
    def __init__(self, prog: Program, lineno: int, text: str):
        self.prog, self.lineno, self.text = prog, lineno, text

    def fail(self, reason: str):
        return self.prog.error(reason, self.lineno)

    def reg(self, text: str, width: str | None = None) -> int:
        n = int(text[1:])
        if n > op.MAX_REG:
            raise self.fail(f"bad register {text!r} (registers are r0..r10 / w0..w10)")
        if width is not None and text[0] != width:
            want = "64-bit r" if width == "r" else "32-bit w"
            raise self.fail(f"register {text!r} must be a {want} register here")
        return n

    def num(self, text: str, bounds, what: str) -> int:
        v = parse_number(text.replace(" ", ""))
        if v is None:
            raise self.fail(f"bad {what} {text!r}")
        return check_range(self.prog, v, bounds, what, self.lineno)

    def mem_off(self, sign: str | None, digits: str | None) -> int:
        if digits is None:
            return 0
        v = parse_number(digits)
        if sign == "-":
            v = -v
        return check_range(self.prog, v, S16, "memory offset", self.lineno)

    def target(self, text: str, field: str) -> tuple[int, str | None]:
        t = text.replace(" ", "")
        if _PC_REL.match(t):
            t = t[2:]
        v = parse_number(t)
        if v is not None:
            return check_range(self.prog, v, S16 if field == "off" else S32, "jump offset", self.lineno), None
        if not LABEL_RE.match(t):
            raise self.fail(f"bad jump target {text!r}")
        return 0, t


def assemble_llvm(text: str, source: str | None = None) -> list[Insn]:
    prog = Program(source)
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = _INDEX.sub("", strip_comment(raw), count=1)
        while True:
            m = _LABEL_DEF.match(line)
            if not m:
                break
            prog.label(m.group(1), lineno)
            line = m.group(2).strip()
        if not line:
            continue
        hint = None
        m = P_PREFIX.match(line)
        if m:
            hint = int(m.group(1), 16)
            line = line[m.end():]
        line = _SYMBOL_NOTE.sub("", line.replace("\t", " "))
        start = len(prog.slots)
        _statement(_Ctx(prog, lineno, line), line, hint)
        if hint is not None and prog.slots[start].insn.code != hint:
            raise prog.error(f"opcode prefix ({hint:02x}) does not match the instruction "
                             f"(opcode {prog.slots[start].insn.code:02x})", lineno)
    _resolve_helper_names(prog)
    return prog.link()


def _resolve_helper_names(prog: Program) -> None:
    """``call bpf_map_lookup_elem`` with no such label is a helper call by name."""
    for p in prog.slots:
        if (p.target is not None and p.insn.code == op.OP_CALL and p.target not in prog.labels
                and p.target in HELPER_IDS):
            p.insn = Insn(op.OP_CALL, 0, op.CALL_HELPER, 0, HELPER_IDS[p.target])
            p.target = None


def _width_of(reg: str) -> str:
    return reg[0]


def _statement(c: _Ctx, line: str, hint: int | None) -> None:
    prog, ln = c.prog, c.lineno
    emit = prog.emit

    head = line[:4]
    if head == "exit" and P_EXIT.match(line):
        emit(Insn(op.OP_EXIT), ln)
        return
    if head == "call" and (m := P_CALLX.match(line)):
        emit(Insn(op.OP_CALLX, c.reg(m.group(1), "r")), ln)
        return
    if head == "call" and (m := P_CALL_KFUNC.match(line)):
        emit(Insn(op.OP_CALL, 0, op.PSEUDO_KFUNC_CALL, 0, to_s32(c.num(m.group(1), IMM32, "kfunc id"))), ln)
        return
    if head == "call" and (m := P_CALL_NAMED.match(line)):
        emit(Insn(op.OP_CALL, 0, op.CALL_HELPER, 0, to_s32(c.num(m.group(2), IMM32, "helper id"))), ln)
        return
    if head == "call" and (m := P_CALL.match(line)):
        t = m.group(1).replace(" ", "")
        if _PC_REL.match(t):
            rel, label = c.target(t, "imm")
            emit(Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, rel), ln, label, "imm")
        elif parse_number(t) is not None:
            emit(Insn(op.OP_CALL, 0, op.CALL_HELPER, 0, to_s32(c.num(t, IMM32, "helper id"))), ln)
        else:
            rel, label = c.target(t, "imm")
            emit(Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, rel), ln, label, "imm")
        return
    if head == "goto" and (m := P_GOTO.match(line)):
        if m.group(1) == "goto":
            off, label = c.target(m.group(2), "off")
            emit(Insn(op.OP_JA, 0, 0, off, 0), ln, label)
        else:
            imm, label = c.target(m.group(2), "imm")
            emit(Insn(op.OP_JA32, 0, 0, 0, imm), ln, label, "imm")
        return
    if head[:2] == "if" and (m := P_IF.match(line)):
        dst_t, sym, rhs, tgt = m.groups()
        w = _width_of(dst_t)
        cls = op.JMP32 if w == "w" else op.JMP
        dst = c.reg(dst_t)
        off, label = c.target(tgt, "off")
        if re.match(_REG + "$", rhs):
            emit(Insn(cls | op.X | _JMP_OPS[sym], dst, c.reg(rhs, w), off, 0), ln, label)
        else:
            emit(Insn(cls | op.K | _JMP_OPS[sym], dst, 0, off, to_s32(c.num(rhs, IMM32, "immediate"))), ln, label)
        return
    if head == "ld_p" and (m := P_LD_PSEUDO.match(line)):
        dst = c.reg(m.group(1), "r")
        src = c.num(m.group(2), (1, 6), "pseudo source")
        imm = c.num(m.group(3), IMM32, "immediate")
        emit(Insn(op.LD_IMM64, dst, src, 0, to_s32(imm)), ln)
        emit(Insn(0), ln)
        return
    if (m := P_LDIMM64.match(line)) or (hint == op.LD_IMM64 and (m := P_ALU.match(line)) and m.group(2) == "="):
        dst_t = m.group(1)
        value_t = m.group(2) if m.re is P_LDIMM64 else m.group(3)
        dst = c.reg(dst_t, "r")
        v = c.num(value_t, IMM64, "64-bit immediate") & ((1 << 64) - 1)
        emit(Insn(op.LD_IMM64, dst, 0, 0, to_s32(v)), ln)
        emit(Insn(0, 0, 0, 0, to_s32(v >> 32)), ln)
        return
    if "(" in line and (m := P_PSEUDO.match(line)):
        dst_t, name, a, b, _ll = m.groups()
        if name not in _PSEUDO_BY_NAME:
            raise c.fail(f"unknown pseudo source {name!r} (expected one of "
                         f"{', '.join(_PSEUDO_BY_NAME)})")
        src = _PSEUDO_BY_NAME[name]
        if src in TWO_ARG_PSEUDOS and b is None:
            raise c.fail(f"{name}() takes two arguments (value, offset)")
        lo = c.num(a, IMM32, f"{name}() argument")
        hi = c.num(b, IMM32, f"{name}() argument") if b is not None else 0
        emit(Insn(op.LD_IMM64, c.reg(dst_t, "r"), src, 0, to_s32(lo)), ln)
        emit(Insn(0, 0, 0, 0, to_s32(hi)), ln)
        return
    star = "*" in line
    if star and "skb" in line and (m := P_SKB.match(line)):
        dst_t, sz, absv, reg_t, sign, digits = m.groups()
        if c.reg(dst_t, "r") != 0:
            raise c.fail("packet loads (skb[...]) always load into r0")
        size = _load_size(c, sz, unsigned_only=True)
        if size == op.DW:
            raise c.fail("packet loads (skb[...]) are 8, 16 or 32 bits wide")
        if absv is not None:
            emit(Insn(op.LD | op.ABS | size, 0, 0, 0, to_s32(c.num(absv, IMM32, "packet offset"))), ln)
        else:
            imm = 0
            if digits is not None:
                imm = c.num(digits, (-(1 << 32), 1 << 32), "packet offset")
                imm = -imm if sign == "-" else imm
                check_range(prog, imm, IMM32, "packet offset", ln)
            emit(Insn(op.LD | op.IND | size, 0, c.reg(reg_t, "r"), 0, to_s32(imm)), ln)
        return
    if star and (m := P_LOAD.match(line)):
        dst_t, sz, src_t, sign, digits = m.groups()
        signed = sz[0] == "s"
        size = _load_size(c, sz)
        if signed and size == op.DW:
            raise c.fail("there is no sign-extending 64-bit load (use u64)")
        if _width_of(dst_t) == "w" and (signed or size == op.DW):
            raise c.fail(f"a {sz} load needs a 64-bit r destination register")
        emit(Insn(op.LDX | (op.MEMSX if signed else op.MEM) | size, c.reg(dst_t), c.reg(src_t, "r"),
                  c.mem_off(sign, digits), 0), ln)
        return
    if star and (m := P_STORE.match(line)):
        sz, dst_t, sign, digits, value = m.groups()
        size = _load_size(c, sz, unsigned_only=True)
        dst, off = c.reg(dst_t, "r"), c.mem_off(sign, digits)
        if re.match(_REG + "$", value):
            if _width_of(value) == "w" and size == op.DW:
                raise c.fail("a u64 store needs a 64-bit r source register")
            emit(Insn(op.STX | op.MEM | size, dst, c.reg(value), off, 0), ln)
        else:
            emit(Insn(op.ST | op.MEM | size, dst, 0, off, to_s32(c.num(value, IMM32, "immediate"))), ln)
        return
    if head == "lock" and (m := P_LOCK.match(line)):
        sz, dst_t, sign, digits, sym, src_t = m.groups()
        size = _atomic_size(c, sz)
        a = _ALU_OPS[sym]
        emit(Insn(op.STX | op.ATOMIC | size, c.reg(dst_t, "r"), _atomic_reg(c, src_t, size),
                  c.mem_off(sign, digits), a), ln)
        return
    xchg = "xchg" in line
    if "fetch" in line and (m := P_FETCH.match(line)):
        out_t, _k64, name, sz, dst_t, sign, digits, src_t = m.groups()
        size = _atomic_size(c, sz)
        src = _atomic_reg(c, src_t, size)
        if _atomic_reg(c, out_t, size) != src:
            raise c.fail(f"atomic_fetch_{name} returns into its source register: "
                         f"write {src_t} = atomic_fetch_{name}(..., {src_t})")
        emit(Insn(op.STX | op.ATOMIC | size, c.reg(dst_t, "r"), src, c.mem_off(sign, digits),
                  _ATOMIC_BY_NAME[name] | op.FETCH), ln)
        return
    if xchg and ((m := P_XCHG.match(line)) or (m := P_KXCHG.match(line))):
        if m.re is P_XCHG:
            out_t, suffix, dst_t, sign, digits, src_t = m.groups()
            size = op.DW if suffix == "_64" else op.W
        else:
            out_t, _k64, sz, dst_t, sign, digits, src_t = m.groups()
            size = _atomic_size(c, sz)
        src = _atomic_reg(c, src_t, size)
        if _atomic_reg(c, out_t, size) != src:
            raise c.fail("xchg returns into its source register")
        emit(Insn(op.STX | op.ATOMIC | size, c.reg(dst_t, "r"), src, c.mem_off(sign, digits), op.XCHG), ln)
        return
    if xchg and ((m := P_CMPXCHG.match(line)) or (m := P_KCMPXCHG.match(line))):
        if m.re is P_CMPXCHG:
            out_t, suffix, dst_t, sign, digits, cmp_t, src_t = m.groups()
            size = op.DW if suffix == "_64" else op.W
        else:
            out_t, _k64, sz, dst_t, sign, digits, cmp_t, src_t = m.groups()
            size = _atomic_size(c, sz)
        if _atomic_reg(c, out_t, size) != 0 or _atomic_reg(c, cmp_t, size) != 0:
            raise c.fail("cmpxchg compares with and returns into r0: write r0 = cmpxchg_64(..., r0, rN)")
        emit(Insn(op.STX | op.ATOMIC | size, c.reg(dst_t, "r"), _atomic_reg(c, src_t, size),
                  c.mem_off(sign, digits), op.CMPXCHG), ln)
        return
    if (m := P_NEG.match(line)):
        d, s = m.groups()
        if d != s:
            raise c.fail(f"negation is in place: write {d} = -{d}")
        cls = op.ALU if _width_of(d) == "w" else op.ALU64
        emit(Insn(cls | op.NEG, c.reg(d)), ln)
        return
    if (m := P_MOVSX.match(line)):
        d, bits, s = m.groups()
        w = _width_of(d)
        if w == "w" and bits == "32":
            raise c.fail("(s32) needs 64-bit registers")
        cls = op.ALU if w == "w" else op.ALU64
        emit(Insn(cls | op.X | op.MOV, c.reg(d), c.reg(s, w), int(bits), 0), ln)
        return
    if (m := P_END.match(line)):
        d, kind, bits, s = m.groups()
        if d.replace("w", "r") != s.replace("w", "r"):
            raise c.fail(f"byte swaps are in place: write {d} = {kind}{bits} {d}")
        code = {"be": op.ALU | op.END | op.TO_BE, "le": op.ALU | op.END | op.TO_LE,
                "bswap": op.ALU64 | op.END}[kind]
        emit(Insn(code, c.reg(d), 0, 0, int(bits)), ln)
        return
    if (m := P_ALU.match(line)):
        d, sym, rhs = m.groups()
        w = _width_of(d)
        cls = op.ALU if w == "w" else op.ALU64
        if sym in _SIGNED_OPS:
            o, off = _SIGNED_OPS[sym], 1
        else:
            o, off = _ALU_OPS[sym], 0
        if re.match(_REG + "$", rhs):
            emit(Insn(cls | op.X | o, c.reg(d), c.reg(rhs, w), off, 0), ln)
        else:
            emit(Insn(cls | op.K | o, c.reg(d), 0, off, to_s32(c.num(rhs, IMM32, "immediate"))), ln)
        return
    word = line.split()[0] if line.split() else line
    raise c.fail(f"cannot parse instruction {line!r}" + (
        f" (unknown mnemonic {word!r})" if re.match(r"^[a-z_]+$", word) and word not in
        ("if", "goto", "gotol", "call", "callx", "lock", "exit", "ld_pseudo") else ""))


def _load_size(c: _Ctx, sz: str, unsigned_only: bool = False) -> int:
    if unsigned_only and sz[0] == "s":
        raise c.fail(f"{sz} is only valid for sign-extending loads")
    return _SIZES[sz[1:]]


def _atomic_size(c: _Ctx, sz: str) -> int:
    if sz not in ("u32", "u64"):
        raise c.fail(f"atomic operations are 32 or 64 bits wide (u32/u64), not {sz}")
    return _SIZES[sz[1:]]


def _atomic_reg(c: _Ctx, text: str, size: int) -> int:
    if size == op.DW and text[0] == "w":
        raise c.fail(f"a 64-bit atomic operation needs r registers, not {text!r}")
    return c.reg(text)
