"""BPF_BTF_LOAD and BTF objects: a checked BTF blob behind an fd, as Linux's btf_parse().

The header and section checks run in the order of kernel/bpf/btf.c so that a
blob with several faults fails with the errno and log line Linux gives first
(checked against the host kernel, see tests/test_btf_load.py).  The type
records are then checked one by one (Linux's check_meta rules), read by the
object reader's parser (pybpf.loader.btf), and checked against each other
(references, loops, member placement: Linux's resolve pass); byte-mutation
fuzzing against the host kernel gives the same verdict.  The log (header, one
line per type, the fault) reads as Linux's.  The object's payload is the
blob itself; BTF_GET_FD_BY_ID, BTF_GET_NEXT_ID and OBJ_GET_INFO_BY_FD
(``struct bpf_btf_info``) work on it, and it pins like any object.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct

from .. import kobj
from . import constants as C
from .attr import GetIdAttr, InfoAttr
from .dispatch import Attr, _handlers, register
from .umem import read, write

ENOTSUPP = 524          # what Linux returns for an unknown BTF version or flags
BTF_MAX_SIZE = 16 * 1024 * 1024
BTF_MAX_NAME_OFFSET = 0xFFFFFF
BTF_MAX_TYPE = 0xFFFFF
BTF_MAGIC = 0xEB9F
HDR = struct.Struct("<HBBIIIII")
BTF_INFO_SIZE = 32
BPF_F_TOKEN_FD = 1 << 16

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64


class BtfLoadAttr(ctypes.Structure):
    _fields_ = [("btf", u64), ("btf_log_buf", u64), ("btf_size", u32), ("btf_log_size", u32),
                ("btf_log_level", u32), ("btf_log_true_size", u32), ("btf_flags", u32),
                ("btf_token_fd", ctypes.c_int32)]


LAST_FIELD_END = BtfLoadAttr.btf_token_fd.offset + 4
LOG_TRUE_SIZE_OFFSET = BtfLoadAttr.btf_log_true_size.offset


class BtfError(OSError):
    """A refused BTF blob: ``errno``, the log text Linux would write (``log``)."""

    def __init__(self, code: int, message: str, log: str = ""):
        name = os.strerror(code) if code != ENOTSUPP else "Operation not supported"
        super().__init__(code, f"{name}: {message}")
        self.message = message
        self.log = log


def _hdr_log(h, total: int) -> str:
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = h
    return (f"magic: 0x{magic:x}\nversion: {version}\nflags: 0x{flags:x}\nhdr_len: {hdr_len}\n"
            f"type_off: {type_off}\ntype_len: {type_len}\nstr_off: {str_off}\nstr_len: {str_len}\n"
            f"btf_total_size: {total}\n")


def check_btf(data: bytes, log_level: int = 0):
    """Validate a BTF blob as BPF_BTF_LOAD does; (parsed Btf, log text) or BtfError."""
    from ..errors import PybpfError
    from ..loader.btf import Btf

    log: list[str] = []

    def fail(code: int, msg: str) -> BtfError:
        log.append(msg + "\n")
        return BtfError(code, msg, "".join(log) if log_level else "")

    n = len(data)
    if n < 8:
        raise fail(errno.EINVAL, "hdr_len not found")
    hdr_len = struct.unpack_from("<I", data, 4)[0]
    if n < hdr_len:
        raise fail(errno.EINVAL, "btf_header not found")
    if hdr_len > HDR.size and data[HDR.size:hdr_len].strip(b"\0"):
        raise fail(errno.E2BIG, "Unsupported btf_header")
    # as Linux, the first hdr_len bytes are the header and the fields past them are zero
    # (even hdr_len itself, when it is shorter than its own field)
    h = HDR.unpack(data[:min(hdr_len, HDR.size)].ljust(HDR.size, b"\0"))
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = h
    if log_level:
        log.append(_hdr_log(h, n))
    if magic != BTF_MAGIC:
        raise fail(errno.EINVAL, "Invalid magic")
    if version != 1:
        raise fail(ENOTSUPP, "Unsupported version")
    if flags:
        raise fail(ENOTSUPP, "Unsupported flags")
    if n == hdr_len:
        raise fail(errno.EINVAL, "No data")
    body = n - hdr_len
    total = 0
    for off, ln in sorted([(type_off, type_len), (str_off, str_len)]):
        if body < off:
            raise fail(errno.EINVAL, "Invalid section offset")
        if total < off:
            raise fail(errno.EINVAL, "Unsupported section found")
        if total > off:
            raise fail(errno.EINVAL, "Section overlap found")
        if body - total < ln:
            raise fail(errno.EINVAL, "Total section length too long")
        total += ln
    if total != body:
        raise fail(errno.EINVAL, "Unsupported section found")
    strs = data[hdr_len + str_off:hdr_len + str_off + str_len]
    if hdr_len + str_off + str_len != n:
        raise fail(errno.EINVAL, "String section is not at the end")
    if not strs or strs[0] or str_len > BTF_MAX_NAME_OFFSET or strs[-1]:
        raise fail(errno.EINVAL, "Invalid string section")
    if type_off % 4:
        raise fail(errno.EINVAL, "Unaligned type_off")
    if not type_len:
        raise fail(errno.EINVAL, "No type found")
    _check_metas(data[hdr_len + type_off:hdr_len + type_off + type_len], strs, fail)
    try:
        btf = Btf(bytes(data))
    except PybpfError as e:
        raise fail(errno.EINVAL, getattr(e, "reason", str(e))) from None
    if log_level:
        log.append(type_lines(btf))
    _check_types(btf, fail)
    return btf, "".join(log) if log_level else ""


_ENCODINGS = {0: "(none)", 1: "SIGNED", 2: "CHAR", 4: "BOOL"}


def type_lines(btf) -> str:
    """The log Linux writes for the types of a BTF, one line per type (members indented)."""
    from ..loader import btf as B
    out = []
    for t in btf.types[1:]:
        k = t.kind
        head = f"[{t.id}] {t.kind_name} {t.name or '(anon)'}"
        if k == B.KIND_INT:
            out.append(f"{head} size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits} "
                       f"encoding={_ENCODINGS.get(t.encoding, 'UNKN')}")
        elif k in (B.KIND_STRUCT, B.KIND_UNION, B.KIND_ENUM, B.KIND_ENUM64, B.KIND_DATASEC):
            out.append(f"{head} size={t.size} vlen={t.vlen}")
            if k in (B.KIND_ENUM, B.KIND_ENUM64):
                out += [f"\t{n} val={v}" for n, v in t.values]
            elif k == B.KIND_DATASEC:
                out += [f"\t type_id={m.type} offset={m.offset} size={m.size}" for m in t.members]
            else:
                out += [f"\t{m.name or '(anon)'} type_id={m.type} " +
                        (f"bitfield_size={m.bitfield_size} " if t.kflag else "") +
                        f"bits_offset={m.offset}" for m in t.members]
        elif k == B.KIND_ARRAY:
            out.append(f"{head} type_id={t.elem_type} index_type_id={t.index_type} nr_elems={t.nelems}")
        elif k == B.KIND_FUNC_PROTO:
            args = [("vararg" if not m.type and i == len(t.members) - 1 else f"{m.type} {m.name or '(anon)'}")
                    for i, m in enumerate(t.members)]
            out.append(f"{head} return={t.type} args=({', '.join(args) or 'void'})")
        elif k == B.KIND_VAR:
            out.append(f"{head} type_id={t.type} linkage={t.linkage}")
        elif k == B.KIND_FWD:
            out.append(f"{head} {'union' if t.kflag else 'struct'}")
        elif k == B.KIND_FLOAT:
            out.append(f"{head} size={t.size}")
        elif k == B.KIND_DECL_TAG:
            out.append(f"{head} type={t.type} component_idx={t.component_idx}")
        else:
            out.append(f"{head} type_id={t.type}")
    return "".join(line + "\n" for line in out)


def _check_metas(types: bytes, strs: bytes, fail) -> None:
    """btf_check_all_metas(): each record whole, of a known kind, its name inside the strings."""
    from ..loader.btf import _extra_size
    pos, tid, n = 0, 0, len(types)
    while pos < n:
        tid += 1
        left = n - pos
        if left < 12:
            raise fail(errno.EINVAL, f"[{tid}] meta_left:{left} meta_needed:12")
        name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
        if info & ~BTF_INFO_MASK:
            raise fail(errno.EINVAL, f"[{tid}] Invalid btf_info:{info:x}")
        kind = (info >> 24) & 0x1F
        extra = _extra_size(kind, info & 0xFFFF) if kind else None
        if extra is None:
            raise fail(errno.EINVAL, f"[{tid}] Invalid kind:{kind}")
        if name_off >= len(strs):
            raise fail(errno.EINVAL, f"[{tid}] Invalid name_offset:{name_off}")
        if left - 12 < extra:
            raise fail(errno.EINVAL, f"[{tid}] meta_left:{left - 12} meta_needed:{extra}")
        name = strs[name_off:strs.index(b"\0", name_off)]
        why = _kind_meta(kind, name if name or not name_off else b"\0", info, size_or_type,
                         types[pos + 12:pos + 12 + extra], strs)
        if why:
            from ..loader.btf import KIND_NAMES
            shown = name.decode("latin-1") or "(anon)"
            ref = (f" type_id={size_or_type}" if kind == 12 else
                   f" size={size_or_type}" if kind == 16 else "")
            code = ENOTSUPP if why == "Unsupported encoding" else errno.EINVAL
            raise fail(code, f"[{tid}] {KIND_NAMES[kind]} {shown}{ref} {why}")
        pos += 12 + extra


BTF_INFO_MASK = 0x9F00FFFF
_REF_KINDS = {2, 8, 9, 10, 11, 18}          # PTR TYPEDEF VOLATILE CONST RESTRICT TYPE_TAG


def _alpha(c: int) -> bool:
    """isalpha() of the kernel's Latin-1 ctype table."""
    return 65 <= c <= 90 or 97 <= c <= 122 or 192 <= c <= 255 and c not in (215, 247)


def valid_identifier(name: bytes) -> bool:
    """Linux's BTF name rule: letters (as its Latin-1 ctype knows them), '_' and '.', then digits too."""
    return bool(name) and (_alpha(name[0]) or name[0] in (95, 46)) and \
        all(_alpha(c) or 48 <= c <= 57 or c in (95, 46) for c in name[1:])


def _str_at(strs: bytes, off: int) -> bytes | None:
    return strs[off:strs.index(b"\0", off)] if off < len(strs) else None


def _printable_name(name: bytes) -> bool:
    """A DATASEC's name: printable characters (".data", ".rodata.str1.1", "license")."""
    return bool(name) and all(32 <= c < 127 or 160 <= c <= 255 for c in name)


def _kind_meta(kind: int, name: bytes, info: int, size_or_type: int, extra: bytes,
               strs: bytes) -> str | None:
    """The per-kind record rules of Linux's check_meta callbacks (the ones that need no lookup)."""
    vlen, kflag = info & 0xFFFF, info >> 31
    if kind == 1:                                   # INT
        if vlen:
            return "vlen != 0"
        if kflag:
            return "Invalid btf_info kind_flag"
        data = struct.unpack("<I", extra)[0]
        if data & ~0x0FFFFFFF:
            return f"Invalid int_data:{data:x}"
        bits, off, enc = data & 0xFF, (data >> 16) & 0xFF, (data >> 24) & 0x0F
        if bits + off > 128:
            return "nr_bits exceeds 128"
        if (bits + off + 7) // 8 > size_or_type:
            return "nr_bits exceeds type_size"
        if enc not in (0, 1, 2, 4):
            return "Unsupported encoding"       # ENOTSUPP, see _check_metas
    elif kind in _REF_KINDS:
        if vlen:
            return "vlen != 0"
        if kflag and kind != 18:
            return "Invalid btf_info kind_flag"
        if size_or_type > BTF_MAX_TYPE:
            return "Invalid type_id"
        if kind in (8, 18) and not valid_identifier(name) or kind not in (8, 18) and name:
            return "Invalid name"
    elif kind == 3:                                 # ARRAY
        elem, index, _ = struct.unpack("<III", extra)
        if name:
            return "Invalid name"
        if vlen:
            return "vlen != 0"
        if kflag:
            return "Invalid btf_info kind_flag"
        if size_or_type:
            return "size != 0"
        if not elem or elem > BTF_MAX_TYPE:
            return "Invalid elem"
        if not index or index > BTF_MAX_TYPE:
            return "Invalid index"
    elif kind == 13:                                # FUNC_PROTO
        if name:
            return "Invalid name"
        if kflag:
            return "Invalid btf_info kind_flag"
        for i in range(vlen):
            a_name_off = struct.unpack_from("<I", extra, 8 * i)[0]
            a_name = _str_at(strs, a_name_off)
            if a_name is None or a_name_off and not valid_identifier(a_name):
                return f"Invalid arg#{i + 1}"
    elif kind == 12:                                # FUNC
        if not valid_identifier(name):
            return "Invalid name"
        if vlen > 1:                # static or global; extern is for kernel BTF only
            return "Invalid func linkage"
        if kflag:
            return "Invalid btf_info kind_flag"
    elif kind in (4, 5):                            # STRUCT, UNION
        if name and not valid_identifier(name):
            return "Invalid name"
        last_off = 0
        for i in range(vlen):
            m_name, m_type, m_off = struct.unpack_from("<III", extra, 12 * i)
            mn = _str_at(strs, m_name)
            if mn is None:
                return f"Invalid member name_offset:{m_name}"
            if m_name and not valid_identifier(mn):
                return "Invalid name"
            if not m_type or m_type > BTF_MAX_TYPE:
                return "Invalid type_id"
            bit_off = m_off & 0xFFFFFF if kflag else m_off
            if kind == 5 and bit_off or bit_off < last_off:
                return "Invalid member bits_offset"
            last_off = bit_off
            if (bit_off + 7) // 8 > size_or_type:
                return "Member bits_offset exceeds its struct size"
    elif kind in (6, 19):                           # ENUM, ENUM64
        if not size_or_type or size_or_type > 8 or size_or_type & (size_or_type - 1):
            return "Unexpected size"
        if name and not valid_identifier(name):
            return "Invalid name"
        step = 8 if kind == 6 else 12
        for i in range(vlen):
            vn = _str_at(strs, struct.unpack_from("<I", extra, step * i)[0])
            if vn is None:
                return "Invalid value name_offset"
            if not valid_identifier(vn):
                return "Invalid name"
    elif kind == 14:                                # VAR
        if vlen:
            return "vlen != 0"
        if kflag:
            return "Invalid btf_info kind_flag"
        if not valid_identifier(name):
            return "Invalid name"
        if not size_or_type or size_or_type > BTF_MAX_TYPE:
            return "Invalid type_id"
        if struct.unpack("<I", extra)[0] not in (0, 1):
            return "Linkage not supported"
    elif kind == 15:                                # DATASEC
        if not size_or_type:
            return "size == 0"
        if kflag:
            return "Invalid btf_info kind_flag"
        if not _printable_name(name):
            return "Invalid name"
        end = total = 0
        for i in range(vlen):
            v_type, v_off, v_size = struct.unpack_from("<III", extra, 12 * i)
            if not v_type or v_type > BTF_MAX_TYPE:
                return "Invalid type"
            if v_off < end or v_off >= size_or_type:
                return "Invalid offset"
            if not v_size or v_size > size_or_type:
                return "Invalid size"
            end = v_off + v_size
            if end > size_or_type:
                return "Invalid offset+size"
            total += v_size
        if size_or_type < total:
            return "Invalid btf_info size"
    elif kind == 16:                                # FLOAT
        if vlen:
            return "vlen != 0"
        if kflag:
            return "Invalid btf_info kind_flag"
        if size_or_type not in (2, 4, 8, 12, 16):
            return "Invalid type_size"
    elif kind == 7:                                 # FWD
        if vlen:
            return "vlen != 0"
        if not valid_identifier(name):
            return "Invalid name"
    return None


def _check_types(btf, fail) -> None:
    """Linux's resolve pass: references in range and of the right kind, no loops, members inside."""
    from ..loader import btf as B

    nr = len(btf.types)
    if nr - 1 > BTF_MAX_TYPE:
        raise fail(errno.E2BIG, f"Exceeded max num of types {BTF_MAX_TYPE}")

    def ref(t, tid: int, what: str = "type_id") -> None:
        if tid >= nr:
            shown = f" type_id={tid}" if what == "type_id" else ""
            raise fail(errno.EINVAL, f"[{t.id}] {t.kind_name} {t.name or '(anon)'}{shown} Invalid {what}")

    for t in btf.types[1:]:
        k = t.kind
        if k in (B.KIND_PTR, B.KIND_TYPEDEF, B.KIND_VOLATILE, B.KIND_CONST, B.KIND_RESTRICT,
                   B.KIND_TYPE_TAG, B.KIND_VAR, B.KIND_DECL_TAG):
            ref(t, t.type)
            if (k in _MODS or k == B.KIND_PTR) and 0 < t.type < nr and btf.types[t.type].kind in (
                    B.KIND_VAR, B.KIND_DATASEC, B.KIND_DECL_TAG):
                # a variable, section or tag only describes: nothing can point to or qualify it
                raise fail(errno.EINVAL, f"[{t.id}] {t.kind_name} {t.name or '(anon)'} type_id={t.type} "
                           "Invalid type_id")
            if (k in _MODS or k == B.KIND_PTR) and _loops(btf, t.id, 2 if k == B.KIND_PTR else 3):
                raise fail(errno.EEXIST, f"[{t.id}] {t.kind_name} {t.name or '(anon)'} Loop detected")
        elif k in (B.KIND_STRUCT, B.KIND_UNION):
            for m in t.members:
                ref(t, m.type, "member")
            for m in t.members:
                why = _member_fits(btf, t, m)
                if why:
                    raise fail(errno.EINVAL, f"[{t.id}] {t.kind_name} {t.name or '(anon)'} {m.name} {why}")
        elif k == B.KIND_DATASEC:
            for m in t.members:
                ref(t, m.type, "member")
                v = btf.types[m.type]
                if v is None or v.kind != B.KIND_VAR:
                    raise fail(errno.EINVAL, f"[{t.id}] DATASEC {t.name} Not a VAR kind member")
                need = _size_of(btf, v.type)
                if need is not None and m.size < need:
                    raise fail(errno.EINVAL, f"[{t.id}] DATASEC {t.name} Invalid size")
        elif k == B.KIND_ARRAY:
            ref(t, t.elem_type, "elem")
            ref(t, t.index_type, "index")
            if _loops(btf, t.id):
                raise fail(errno.EEXIST, f"[{t.id}] ARRAY (anon) Loop detected")
            idx = _resolved(btf, t.index_type)
            if not _regular_int(idx):
                raise fail(errno.EINVAL, f"[{t.id}] ARRAY (anon) Invalid index")
            elem = _resolved(btf, t.elem_type)
            if elem is not None and elem.kind == B.KIND_INT and not _regular_int(elem):
                raise fail(errno.EINVAL, f"[{t.id}] ARRAY (anon) Invalid array of int")
            esize = _size_of(btf, t.elem_type)
            if esize is None:
                raise fail(errno.EINVAL, f"[{t.id}] ARRAY (anon) Invalid elem")
            if esize * t.nelems > 0xFFFFFFFF:
                raise fail(errno.EINVAL, f"[{t.id}] ARRAY (anon) Array size overflows U32_MAX")
        elif k == B.KIND_FUNC_PROTO:
            label = f"[{t.id}] FUNC_PROTO (anon)"
            if t.type and (t.type >= nr or not _value_type(btf, t.type)):
                raise fail(errno.EINVAL, f"{label} Invalid return type")
            for i, m in enumerate(t.members):
                last = i == len(t.members) - 1
                if m.type == 0 and last and i > 0:
                    continue                # a trailing void is "..."
                if m.type >= nr or not _value_type(btf, m.type) or m.type == 0:
                    raise fail(errno.EINVAL, f"{label} Invalid arg#{i + 1}")
        elif k == B.KIND_FUNC:
            ref(t, t.type)
            fp = btf.types[t.type]
            if fp is not None and fp.kind == B.KIND_FUNC_PROTO:
                for i, a in enumerate(fp.members):
                    # a BPF function names its arguments and is not variadic
                    if not a.type and i == len(fp.members) - 1 or a.type and not a.name:
                        raise fail(errno.EINVAL, f"[{t.id}] FUNC {t.name} type_id={t.type} Invalid arg#{i + 1}")
            if btf.types[t.type] is None or btf.types[t.type].kind != B.KIND_FUNC_PROTO:
                raise fail(errno.EINVAL, f"[{t.id}] FUNC {t.name} type_id={t.type} Invalid type_id")


_MODS = (8, 9, 10, 11, 18)


def _resolved(btf, tid: int):
    """The type behind typedefs and qualifiers (None for void, a bad id or a loop)."""
    for _ in range(32):
        t = btf.types[tid] if 0 < tid < len(btf.types) else None
        if t is None or t.kind not in _MODS:
            return t
        tid = t.type
    return None


def _size_of(btf, tid: int, depth: int = 0) -> int | None:
    """Byte size of a type with one, None for void, functions, variables and loops."""
    t = _resolved(btf, tid)
    if t is None or depth > 32:
        return None
    if t.kind == 2:
        return 8
    if t.kind == 3:
        e = _size_of(btf, t.elem_type, depth + 1)
        return None if e is None else e * t.nelems
    if t.kind in (1, 4, 5, 6, 16, 19):
        return t.size
    return None


def _member_fits(btf, t, m) -> str | None:
    """btf_*_check_member(): the member lies inside its struct, aligned unless an int."""
    mt = _resolved(btf, m.type)
    if mt is None and m.type:
        return None                 # reported by the reference checks
    if m.bitfield_size:
        return None
    if mt is not None and mt.kind == 1:
        start = m.offset + mt.bit_offset
        need = (mt.bits + start % 8 + 7) // 8
        if t.size < start // 8 or t.size - start // 8 < need:
            return "Member exceeds struct_size"
        return None
    if m.offset % 8:
        return "Member is not byte aligned"
    size = _size_of(btf, m.type)
    if size is None:
        return None if mt is not None and mt.kind == 7 else "Invalid member"
    if t.size < m.offset // 8 or t.size - m.offset // 8 < size:
        return "Member exceeds struct_size"
    return None


def _regular_int(t) -> bool:
    """An INT of whole bytes (1, 2, 4, 8 or 16) at bit offset 0: what indexes and arrays need."""
    return t is not None and t.kind == 1 and not t.bits % 8 and not t.bit_offset \
        and t.bits // 8 in (1, 2, 4, 8, 16)


def _loops(btf, tid: int, via: int = 3) -> bool:
    """Does following qualifiers and array elements (via 3) or pointers (via 2) from tid come
    back to a type already seen?  (A pointer ends an array's chain: its size is known.)"""
    seen = set()
    while 0 < tid < len(btf.types) and btf.types[tid] is not None:
        if tid in seen:
            return True
        seen.add(tid)
        t = btf.types[tid]
        if t.kind == 3 and via == 3:
            tid = t.elem_type
        elif t.kind in _MODS or t.kind == via == 2:
            tid = t.type
        else:
            return False
    return False


def _value_type(btf, tid: int) -> bool:
    """Can a function return or take this type?  Not a function, variable or section."""
    from ..loader import btf as B
    for _ in range(32):
        t = btf.types[tid] if 0 < tid < len(btf.types) else None
        if t is None:
            return False
        if t.kind not in (B.KIND_TYPEDEF, B.KIND_VOLATILE, B.KIND_CONST, B.KIND_RESTRICT, B.KIND_TYPE_TAG):
            return t.kind in (B.KIND_INT, B.KIND_PTR, B.KIND_ARRAY, B.KIND_STRUCT, B.KIND_UNION,
                              B.KIND_ENUM, B.KIND_FWD, B.KIND_FLOAT, B.KIND_ENUM64)
        tid = t.type
    return False


# -- objects ---------------------------------------------------------------------------

def create_btf_object(data: bytes) -> int:
    """A BTF object holding ``data`` (already checked); returns its new fd."""
    fd = kobj.create_object("btf", {"btf_size": len(data)}, len(data))
    try:
        kobj.obj_from_fd(fd).payload[:len(data)] = data
    except BaseException:
        os.close(fd)
        raise
    return fd


def btf_load(data: bytes, *, log_level: int = 0) -> tuple[int, str]:
    """Check and load a BTF blob: (new fd, log).  Raises :class:`BtfError`."""
    data = bytes(data)
    if len(data) > BTF_MAX_SIZE:
        raise BtfError(errno.E2BIG, f"BTF of {len(data)} bytes is larger than {BTF_MAX_SIZE}")
    _, log = check_btf(data, log_level)
    return create_btf_object(data), log


def btf_object(fd: int):
    """The BTF object behind an fd: EBADF if it is not open, EINVAL if it is not BTF."""
    try:
        os.fstat(fd)
    except (OSError, OverflowError):
        raise OSError(errno.EBADF, f"{os.strerror(errno.EBADF)}: BTF fd {fd}") from None
    try:
        obj = kobj.obj_from_fd(fd)
    except OSError:
        obj = None
    if obj is None or obj.kind != "btf":
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: fd {fd} is not a BTF object")
    return obj


def btf_bytes(obj) -> bytes:
    return bytes(obj.payload[:obj.fields["btf_size"]])


# -- bpf() commands --------------------------------------------------------------------

def btf_load_cmd(a: Attr) -> int:
    from ..prog import logbuf
    b = a.view(BtfLoadAttr)
    if b.btf_flags & ~BPF_F_TOKEN_FD:
        raise BtfError(errno.EINVAL, f"unknown btf_flags {b.btf_flags:#x}")
    if b.btf_flags & BPF_F_TOKEN_FD:
        raise BtfError(errno.EINVAL, "BPF tokens are not supported")
    if b.btf_size > BTF_MAX_SIZE:
        raise BtfError(errno.E2BIG, f"btf_size {b.btf_size} is larger than {BTF_MAX_SIZE}")
    level, size = b.btf_log_level, b.btf_log_size
    bad = logbuf.check_attrs(level, size, bool(b.btf_log_buf))
    if bad:
        raise BtfError(errno.EINVAL, bad)
    data = read(b.btf, b.btf_size, "btf")
    try:
        _, text = check_btf(data, level)
        err = None
    except BtfError as e:
        text, err = e.log, e
    out, true_size, over = logbuf.finalize(text, level, size)
    if out:
        write(b.btf_log_buf, out, "btf_log_buf")
    if a.size >= LOG_TRUE_SIZE_OFFSET + 4:
        a.write_back(LOG_TRUE_SIZE_OFFSET, true_size.to_bytes(4, "little"))
    if over:        # as Linux, a log that did not fit is the error, whatever the verdict
        raise BtfError(over, f"btf_log_size {size} too small, {true_size} needed"
                       + (f"; {err.message}" if err is not None else ""))
    if err is not None:
        raise err
    return create_btf_object(data)


def btf_info(obj, user: bytes) -> bytes:
    """struct bpf_btf_info, the blob copied to ``btf`` (min of both sizes) as Linux does."""
    ubtf, usize, _, uname, uname_len, _ = struct.unpack("<QIIQII", user)
    data = btf_bytes(obj)
    if ubtf and usize:
        write(ubtf, data[:min(usize, len(data))], "btf")
    if uname and uname_len:
        write(uname, b"\0", "name")
    return struct.pack("<QIIQII", ubtf, len(data), obj.id, uname, 0, 0)


def _info_handler(previous):
    def obj_get_info_by_fd(a: Attr) -> int:
        i = a.view(InfoAttr)
        try:
            obj = kobj.obj_from_fd(i.bpf_fd)
        except OSError:
            obj = None
        if obj is None or obj.kind != "btf":
            return previous(a)
        n = i.info_len
        if n > BTF_INFO_SIZE:
            if read(i.info + BTF_INFO_SIZE, n - BTF_INFO_SIZE, "info").strip(b"\0"):
                raise OSError(errno.E2BIG, f"{os.strerror(errno.E2BIG)}: non-zero bytes after the "
                              f"{BTF_INFO_SIZE}-byte bpf_btf_info")
            n = BTF_INFO_SIZE
        user = (read(i.info, n, "info") if n else b"").ljust(BTF_INFO_SIZE, b"\0")
        info = btf_info(obj, user)
        if n:
            write(i.info, info[:n], "info")
        a.write_back(InfoAttr.info_len.offset, n.to_bytes(4, "little"))
        return 0
    obj_get_info_by_fd._pybpf_btf = True
    return obj_get_info_by_fd


def install() -> None:
    from .commands import _fd_by_id, _next_id
    register(C.BPF_BTF_LOAD, btf_load_cmd, LAST_FIELD_END)
    register(C.BPF_BTF_GET_FD_BY_ID, _fd_by_id("btf"),
             GetIdAttr.fd_by_id_token_fd.offset + 4)
    register(C.BPF_BTF_GET_NEXT_ID, _next_id("btf"), GetIdAttr.next_id.offset + 4)
    entry = _handlers.get(C.BPF_OBJ_GET_INFO_BY_FD)
    if entry is not None and not getattr(entry[0], "_pybpf_btf", False):
        register(C.BPF_OBJ_GET_INFO_BY_FD, _info_handler(entry[0]), entry[1])


install()
