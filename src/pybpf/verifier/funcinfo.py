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
