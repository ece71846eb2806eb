"""One register's abstract value and its text in the Linux log format."""

from __future__ import annotations

from . import bounds as B
from . import tnum

# Register types, named as the kernel log names them.
NOT_INIT = "?"
SCALAR = "scalar"
PTR_TO_CTX = "ctx"
CONST_PTR_TO_MAP = "map_ptr"
PTR_TO_MAP_VALUE = "map_value"
PTR_TO_MAP_KEY = "map_key"
PTR_TO_MAP_VALUE_OR_NULL = "map_value_or_null"
CONST_PTR_TO_MAP_OR_NULL = "map_ptr_or_null"      # a map-in-map lookup: the inner map or NULL
PTR_TO_STACK = "fp"
PTR_TO_PACKET = "pkt"
PTR_TO_PACKET_META = "pkt_meta"
PTR_TO_PACKET_END = "pkt_end"
PTR_TO_MEM = "ringbuf_mem"
PTR_TO_MEM_OR_NULL = "ringbuf_mem_or_null"
# a global function's pointer argument: memory of the size its BTF type gives, maybe NULL
PTR_TO_ARG_MEM = "mem"
PTR_TO_ARG_MEM_OR_NULL = "mem_or_null"
MEM_TYPES = (PTR_TO_MEM, PTR_TO_ARG_MEM)
PTR_TO_FUNC = "func"

OR_NULL_TYPES = {PTR_TO_MAP_VALUE_OR_NULL: PTR_TO_MAP_VALUE, CONST_PTR_TO_MAP_OR_NULL: CONST_PTR_TO_MAP,
                 PTR_TO_MEM_OR_NULL: PTR_TO_MEM,
                 PTR_TO_ARG_MEM_OR_NULL: PTR_TO_ARG_MEM}
PKT_TYPES = (PTR_TO_PACKET, PTR_TO_PACKET_META)

_FIELDS = ("type", "off", "id", "ref_obj_id", "var", "smin", "smax", "umin", "umax",
           "s32min", "s32max", "u32min", "u32max", "map", "range", "mem_size", "frameno", "subprog",
           "precise", "origin")

NO_ORIGIN = frozenset()

# Flags in a scalar's id: it is its linked registers' value plus ``off`` (Linux: "id=1+4"),
# after a 64-bit or, zero-extended from 32 bits, a 32-bit add/sub (alu.py sets them).
ADD_CONST64 = 1 << 31
ADD_CONST32 = 1 << 30
ADD_CONST = ADD_CONST64 | ADD_CONST32


class Reg:
    """A register (or spilled register) state.

    ``off`` is the fixed offset of a pointer; ``var`` and the bounds describe the
    scalar value or, for pointers, the variable part of the offset.  ``map`` is
    the :class:`MapRef` a map pointer/value belongs to; ``range`` is the number of
    bytes proved in bounds past a packet pointer; ``frameno`` the call frame a
    stack pointer points into.

    Precision (as Linux tracks it): ``origin`` is the set of registers of stored
    checkpoint states this scalar's value was computed from; when the exact value
    matters (a decided branch, pointer arithmetic, a helper's size argument) those
    checkpoint registers are marked ``precise``.  Pruning compares only precise
    scalars, which is what lets differing but irrelevant values be pruned.
    """

    __slots__ = _FIELDS

    def __init__(self):
        self.type = NOT_INIT
        self.off = 0
        self.id = 0
        self.ref_obj_id = 0
        self.map = None
        self.range = 0
        self.mem_size = 0
        self.frameno = 0
        self.subprog = 0
        self.precise = False
        self.origin = NO_ORIGIN
        B.mark_unknown(self)

    def copy(self) -> "Reg":
        r = Reg.__new__(Reg)
        r.type = self.type; r.off = self.off; r.id = self.id; r.ref_obj_id = self.ref_obj_id
        r.var = self.var; r.smin = self.smin; r.smax = self.smax; r.umin = self.umin
        r.umax = self.umax; r.s32min = self.s32min; r.s32max = self.s32max
        r.u32min = self.u32min; r.u32max = self.u32max; r.map = self.map; r.range = self.range
        r.mem_size = self.mem_size; r.frameno = self.frameno; r.subprog = self.subprog
        r.precise = self.precise; r.origin = self.origin
        return r

    def assign(self, o: "Reg") -> None:
        self.type = o.type; self.off = o.off; self.id = o.id; self.ref_obj_id = o.ref_obj_id
        self.var = o.var; self.smin = o.smin; self.smax = o.smax; self.umin = o.umin
        self.umax = o.umax; self.s32min = o.s32min; self.s32max = o.s32max
        self.u32min = o.u32min; self.u32max = o.u32max; self.map = o.map; self.range = o.range
        self.mem_size = o.mem_size; self.frameno = o.frameno; self.subprog = o.subprog
        self.precise = o.precise; self.origin = o.origin

    def key(self) -> tuple:
        return tuple(getattr(self, f) for f in _FIELDS[:-2])

    # ---- constructors ------------------------------------------------------------------
    @staticmethod
    def scalar(value: int | None = None) -> "Reg":
        if value is not None:
            return _const(value)
        r = Reg()
        r.type = SCALAR
        return r

    @staticmethod
    def pointer(type_: str, off: int = 0, **kw) -> "Reg":
        r = Reg()
        r.type = type_
        B.mark_known(r, 0)
        r.off = off
        for k, v in kw.items():
            setattr(r, k, v)
        return r

    # ---- predicates --------------------------------------------------------------------
    @property
    def is_init(self) -> bool:
        return self.type != NOT_INIT

    @property
    def is_scalar(self) -> bool:
        return self.type == SCALAR

    @property
    def is_pointer(self) -> bool:
        return self.type not in (NOT_INIT, SCALAR)

    @property
    def is_const(self) -> bool:
        return self.var[1] == 0

    @property
    def value(self) -> int:
        return self.var[0]

    def make_unknown(self) -> None:
        """Turn into an unknown scalar (kernel: mark_reg_unknown)."""
        self.type = SCALAR
        self.off = self.id = self.ref_obj_id = self.range = self.mem_size = 0
        self.map = None
        self.frameno = self.subprog = 0
        self.precise = False
        self.origin = NO_ORIGIN
        B.mark_unknown(self)

    def make_not_init(self) -> None:
        self.make_unknown()
        self.type = NOT_INIT

    def make_known(self, v: int) -> None:
        self.make_unknown()
        B.mark_known(self, v)

    def __repr__(self) -> str:
        return f"Reg({fmt_reg(self)})"


def _const(value: int) -> Reg:
    """A known scalar, built directly: constants are made for every immediate operand."""
    r = Reg.__new__(Reg)
    r.type = SCALAR
    r.off = r.id = r.ref_obj_id = r.range = r.mem_size = r.frameno = r.subprog = 0
    r.map = None
    r.precise = False
    r.origin = NO_ORIGIN
    B.mark_known(r, value)
    return r


def _snum(v: int) -> str:
    # Linux prints signed values in [S16_MIN, S16_MAX] and unsigned ones up to U16_MAX in decimal
    return str(v) if -0x8000 <= v <= 0x7FFF else f"{v & B.U64:#x}"


def _unum(v: int) -> str:
    return str(v) if v <= 0xFFFF else f"{v:#x}"


def _s32val(v: int) -> int:
    # a 32-bit signed bound Linux prints in hex is its u32 (not sign-extended): it is grouped
    # with a 64-bit bound (smin=smin32=...) only where the printed numbers are equal
    return v if -0x8000 <= v <= 0x7FFF else v & B.U32


def _ranges(r: Reg, parts: list[str]) -> None:
    items = [
        ["smin", r.smin, r.smin == B.S64_MIN], ["smax", r.smax, r.smax == B.S64_MAX],
        ["umin", r.umin, r.umin == 0], ["umax", r.umax, r.umax == B.U64],
        ["smin32", _s32val(r.s32min), r.s32min == B.S32_MIN],
        ["smax32", _s32val(r.s32max), r.s32max == B.S32_MAX],
        ["umin32", r.u32min, r.u32min == 0], ["umax32", r.u32max, r.u32max == B.U32],
    ]
    for i, (name, val, omit) in enumerate(items):
        if omit:
            continue
        neg1 = name[0] == "s" and val < 0
        text = name
        for j in range(i + 2, len(items), 2):
            n2, v2, o2 = items[j]
            if o2 or (v2 & B.U64) != (val & B.U64):
                continue
            if (n2[0] == "s" and v2 < 0) != neg1:
                continue
            items[j][2] = True
            text += "=" + n2
        num = _unum(val) if name[0] != "s" else _snum(val)
        parts.append(text + "=" + num)


def fmt_reg(r: Reg, frameno: int = 0, unpriv: bool = False) -> str:
    """The register as the log prints it; ``frameno`` is the frame being printed.  For a loader
    without CAP_BPF (``unpriv``) Linux makes every scalar precise, and prints it so."""
    t = r.type
    if t == SCALAR:
        mark = "P" if r.precise or unpriv else ""      # the value was needed exactly (precision)
        if r.var[1] == 0:
            return mark + _snum(B.s64(r.var[0]))
        parts = []
        if r.id:
            base = r.id & ~ADD_CONST
            parts.append(f"id={base}{r.off:+d}" if r.id & ADD_CONST else f"id={base}")
        _ranges(r, parts)
        if not tnum.is_unknown(r.var):
            parts.append(f"var_off={tnum.fmt(r.var)}")
        return f"{mark}scalar({','.join(parts)})"
    if t == PTR_TO_STACK and r.var[1] == 0 and not r.var[0]:
        return f"fp{r.off}" if r.frameno == frameno else f"fp[{r.frameno}]{r.off}"
    parts = []
    if r.id:
        parts.append(f"id={r.id}")
    if r.ref_obj_id:
        parts.append(f"ref_obj_id={r.ref_obj_id}")
    if t in (CONST_PTR_TO_MAP, CONST_PTR_TO_MAP_OR_NULL, PTR_TO_MAP_VALUE, PTR_TO_MAP_VALUE_OR_NULL,
             PTR_TO_MAP_KEY):
        parts.append(f"ks={r.map.key_size},vs={r.map.value_size}")
    if r.off:
        parts.append(f"off={r.off}")
    if t in PKT_TYPES:
        parts.append(f"r={_unum(r.range & B.U64)}")
    elif t in (PTR_TO_MEM, PTR_TO_MEM_OR_NULL, PTR_TO_ARG_MEM, PTR_TO_ARG_MEM_OR_NULL):
        parts.append(f"sz={r.mem_size}")
    if r.var[1] == 0:
        if r.var[0]:
            parts.append(f"imm={r.var[0]:x}")
    else:
        _ranges(r, parts)
        if not tnum.is_unknown(r.var):
            parts.append(f"var_off={tnum.fmt(r.var)}")
    return f"{t}({','.join(parts)})"


def mark_precise(r: Reg) -> bool:
    """The exact value of scalar ``r`` matters: mark every checkpoint register it came from.
    Returns whether any mark was new."""
    changed = False
    todo = list(r.origin)
    while todo:
        o = todo.pop()
        if o.precise:
            continue
        o.precise = True
        changed = True
        todo.extend(o.origin)
    return changed
