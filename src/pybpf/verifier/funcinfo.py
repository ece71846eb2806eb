"""BTF func_info: which BTF function each subprogram is, and its linkage.

Linux needs it to take callbacks (a callback must be a ``static`` function) and
checks the records against the program's subprograms before verifying.  The
records come as ``struct bpf_func_info`` bytes (``insn_off``, ``type_id``, both
u32, ``insn_off`` counted in instructions) or as ``(insn_off, type_id)`` pairs;
the BTF as raw ``.BTF`` bytes or a parsed :class:`pybpf.loader.btf.Btf`.
"""

from __future__ import annotations

import errno as E
import struct
from typing import Sequence

KIND_INT, KIND_ENUM, KIND_FUNC, KIND_FUNC_PROTO, KIND_ENUM64 = 1, 6, 12, 13, 19
LINKAGE_STATIC, LINKAGE_GLOBAL = 0, 1


class FuncInfoError(Exception):
    def __init__(self, msg: str, errno_: int = E.EINVAL, newline: bool = True):
        super().__init__(msg)
        self.msg = msg
        self.errno = errno_
        self.newline = newline      # a few of Linux's func_info messages end without one


def _records(func_info) -> list[tuple[int, int]]:
    if isinstance(func_info, (bytes, bytearray, memoryview)):
        data = bytes(func_info)
        if len(data) % 8:
            raise FuncInfoError(f"func_info of {len(data)} bytes is not a whole number of 8-byte records")
        return [struct.unpack_from("<II", data, i) for i in range(0, len(data), 8)]
    out = []
    for rec in func_info:
        off, tid = rec
        out.append((int(off), int(tid)))
    return out


def _parse_btf(btf):
    if btf is None:
        return None
    if isinstance(btf, (bytes, bytearray, memoryview)):
        from ..loader.btf import Btf
        from ..errors import PybpfError
        try:
            return Btf(bytes(btf))
        except PybpfError as e:
            raise FuncInfoError(f"invalid BTF: {e}") from None
    return btf


def _type(btf, tid: int):
    types = btf.types
    return types[tid] if 0 < tid < len(types) else None


def check_early(func_info, btf) -> list[tuple[int, int, int]]:
    """Linux's checks before subprograms are known: (insn_off, type_id, linkage) per record."""
    recs = _records(func_info)
    if not recs:
        return []
    btf = _parse_btf(btf)
    if btf is None:
        raise FuncInfoError("func_info needs the program's BTF")
    out = []
    prev = 0
    for i, (off, tid) in enumerate(recs):
        if i == 0:
            if off:
                raise FuncInfoError(f"nonzero insn_off {off} for the first func info record", newline=False)
        elif off <= prev:
            raise FuncInfoError(f"same or smaller insn offset ({off}) than previous func info record ({prev})",
                                newline=False)
        t = _type(btf, tid)
        if t is None or t.kind != KIND_FUNC:
            raise FuncInfoError(f"invalid type id {tid} in func info", newline=False)
        proto = _type(btf, t.type)
        if proto is None or proto.kind != KIND_FUNC_PROTO:
            raise FuncInfoError(f"invalid type id {tid} in func info", newline=False)
        prev = off
        out.append((off, tid, t.vlen))      # a FUNC's vlen is its linkage
    return out


def match_subprogs(recs: Sequence[tuple[int, int, int]], starts: Sequence[int]) -> list[int]:
    """The linkage of each subprogram, once the records are known to describe them."""
    if len(recs) != len(starts):
        raise FuncInfoError("number of funcs in func_info doesn't match number of subprogs")
    for (off, _, _), s in zip(recs, starts):
        if off != s:
            raise FuncInfoError("func_info BTF section doesn't match subprog layout in BPF program")
    return [link for _, _, link in recs]


def returns_int(recs: Sequence[tuple[int, int, int]], btf) -> list[bool]:
    """Per record: does the function return a (small) integer or an enum, per its BTF?"""
    btf = _parse_btf(btf)
    out = []
    for _, tid, _ in recs:
        proto = _type(btf, _type(btf, tid).type)
        ret = btf.skip_modifiers(proto.type) if proto.type else None
        out.append(ret is not None and ((ret.kind == KIND_INT and ret.size <= 8)
                                        or ret.kind in (KIND_ENUM, KIND_ENUM64)))
    return out


# ---- global functions ---------------------------------------------------------------------
# Linux verifies a global (non-static) function once, on its own, for any arguments of the
# types its BTF prototype gives: an integer is any scalar, a pointer to the program type's
# context is the context, any other pointer is memory of the pointee's size that may be NULL.
# Callers only check that their arguments fit those types, and get an unknown scalar back.

ARG_SCALAR, ARG_CTX, ARG_MEM = "scalar", "ctx", "mem"
MAX_ARGS = 5
_KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_FWD, _KIND_TYPEDEF = 2, 3, 4, 5, 7, 8
_KIND_DECL_TAG = 17
_KIND_STR = {0: "UNKNOWN", 1: "INT", 2: "PTR", 3: "ARRAY", 4: "STRUCT", 5: "UNION", 6: "ENUM",
             7: "FWD", 8: "TYPEDEF", 9: "VOLATILE", 10: "CONST", 11: "RESTRICT", 12: "FUNC",
             13: "FUNC_PROTO", 14: "VAR", 15: "DATASEC", 16: "FLOAT", 17: "DECL_TAG",
             18: "TYPE_TAG", 19: "ENUM64"}
_MODIFIERS = (8, 9, 10, 11, 18)

# the names a pointer argument's struct (or typedef) must have to be the context
CTX_TYPE_NAMES = {1: ("__sk_buff",), 3: ("__sk_buff",), 4: ("__sk_buff",), 6: ("xdp_md",),
                  2: ("bpf_user_pt_regs_t", "pt_regs")}


class GlobalFunc:
    """A global function's name and what BTF says of its arguments, or why Linux refuses it."""
    __slots__ = ("name", "args", "error")

    def __init__(self, name: str, args=None, error: str | None = None):
        self.name = name
        self.args = args or []        # [(kind, mem_size, nullable)]
        self.error = error


def _skip_mods(btf, tid: int, keep_typedef: bool = False):
    for _ in range(32):
        t = _type(btf, tid) if tid else None
        if t is None:
            return None
        if t.kind not in _MODIFIERS or (keep_typedef and t.kind == _KIND_TYPEDEF):
            return t
        tid = t.type
    return None


def _resolve_size(btf, t, depth: int = 0) -> int | None:
    """btf_resolve_size(): the size of a sized type, None for void, functions, forward decls."""
    if t is None or depth > 32:
        return None
    if t.kind in (KIND_INT, KIND_ENUM, KIND_ENUM64, _KIND_STRUCT, _KIND_UNION, 16):
        return t.size
    if t.kind == _KIND_PTR:
        return 8
    if t.kind == _KIND_ARRAY:
        elem = _resolve_size(btf, _skip_mods(btf, t.elem_type), depth + 1)
        return None if elem is None else elem * t.nelems
    return None


def _is_ctx(btf, ptr, prog_type: int) -> bool:
    names = CTX_TYPE_NAMES.get(prog_type, ())
    t = _type(btf, ptr.type) if ptr.type else None
    while t is not None:
        if t.name in names and t.kind in (_KIND_STRUCT, _KIND_TYPEDEF):
            return True
        if t.kind not in _MODIFIERS:
            return False
        t = _type(btf, t.type) if t.type else None
    return False


def _arg_tags(btf, func_tid: int) -> dict[int, set[str]]:
    tags: dict[int, set[str]] = {}
    for t in btf.types:
        if t is not None and t.kind == _KIND_DECL_TAG and t.type == func_tid and t.component_idx >= 0 \
                and t.name.startswith("arg:"):
            tags.setdefault(t.component_idx, set()).add(t.name[4:])
    return tags


def global_func(btf, func_tid: int, prog_type: int) -> GlobalFunc:
    """btf_prepare_func_args() for the FUNC ``func_tid`` of a program of ``prog_type``."""
    btf = _parse_btf(btf)
    fn = _type(btf, func_tid)
    name = fn.name
    proto = _type(btf, fn.type)
    if len(proto.members) > MAX_ARGS:
        return GlobalFunc(name, error=f"Global function {name}() with {len(proto.members)} > "
                                      f"{MAX_ARGS} args. Buggy compiler.")
    ret = _skip_mods(btf, proto.type)
    if ret is None or ret.kind not in (KIND_INT, KIND_ENUM, KIND_ENUM64):
        return GlobalFunc(name, error=f"Global function {name}() doesn't return scalar. "
                                      "Only those are supported.")
    tags = _arg_tags(btf, func_tid)
    args = []
    for i, m in enumerate(proto.members):
        t = _skip_mods(btf, m.type)
        tg = tags.get(i, set())
        if t is not None and t.kind == _KIND_PTR and ("ctx" in tg or _is_ctx(btf, t, prog_type)):
            args.append((ARG_CTX, 0, False))
            continue
        if t is not None and t.kind in (KIND_INT, KIND_ENUM, KIND_ENUM64):
            args.append((ARG_SCALAR, 0, False))
            continue
        if t is not None and t.kind == _KIND_PTR:
            ref = _skip_mods(btf, t.type)
            size = _resolve_size(btf, ref)
            if size is None:
                kind = _KIND_STR.get(ref.kind, "UNKNOWN") if ref is not None else "UNKNOWN"
                rname = ref.name if ref is not None else ""
                return GlobalFunc(name, error=f"arg#{i} reference type('{kind} {rname}') size cannot "
                                              f"be determined: -22")
            args.append((ARG_MEM, size, "nonnull" not in tg))
            continue
        kind = _KIND_STR.get(t.kind, "UNKNOWN") if t is not None else "UNKNOWN"
        return GlobalFunc(name, error=f"Arg#{i} type {kind} in {name}() is not supported yet.")
    return GlobalFunc(name, args)
