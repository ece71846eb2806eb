"""Map keys and values shown through their BTF types: ``{packets: 18, bytes: 1724}``.

``pybpf run`` and the Python API use this to print what a C program declared instead
of raw bytes.  Whatever the bytes or the types, the result is a string: a type that
cannot be followed (a loop in the type graph, a size that does not fit the bytes) is
shown as hex rather than raising.
"""

from __future__ import annotations

import struct

from . import btf as B
from .btf import Btf
from .errors import ElfError

_INT_SIGNED, _INT_CHAR, _INT_BOOL = 1, 2, 4
MAX_ELEMS = 32          # longer arrays are cut, with a count of what was left out
_MAX_DEPTH = 16


def format_value(btf: Btf, type_id: int, raw: bytes) -> str:
    """``raw`` as a value of BTF type ``type_id``; hex where the type does not describe it."""
    try:
        return _fmt(btf, type_id, bytes(raw), 0, 0)
    except (ElfError, IndexError, KeyError, ValueError, struct.error, RecursionError):
        return raw.hex(" ")


def _hex(raw: bytes) -> str:
    return raw.hex(" ") if raw else "<empty>"


def _resolve(btf: Btf, tid: int) -> B.BtfType | None:
    for _ in range(B.MAX_RESOLVE_DEPTH):
        t = btf.get(tid) if tid else None
        if t is None or t.kind not in (B.KIND_TYPEDEF, B.KIND_VOLATILE, B.KIND_CONST, B.KIND_RESTRICT,
                                       B.KIND_TYPE_TAG, B.KIND_VAR):
            return t
        tid = t.type
    raise ValueError("type chain too long")


def _bits(raw: bytes, bit_off: int, nbits: int) -> int:
    v = int.from_bytes(raw, "little") >> bit_off
    return v & ((1 << nbits) - 1)


def _fmt_int(t: B.BtfType, raw: bytes, bit_off: int, nbits: int) -> str:
    size = t.size
    if nbits == 0:
        nbits = t.bits or size * 8
        bit_off += t.bit_offset
        if bit_off == 0 and nbits == size * 8:
            if len(raw) < size:
                raise ValueError("short")
            v = int.from_bytes(raw[:size], "little", signed=bool(t.encoding & _INT_SIGNED))
            return _int_text(t, v, nbits)
    need = (bit_off + nbits + 7) // 8
    if len(raw) < need:
        raise ValueError("short")
    v = _bits(raw[:max(need, size)], bit_off, nbits)
    if t.encoding & _INT_SIGNED and v >> (nbits - 1):
        v -= 1 << nbits
    return _int_text(t, v, nbits)


def _int_text(t: B.BtfType, v: int, nbits: int) -> str:
    if t.encoding & _INT_BOOL:
        return "true" if v else "false"
    if t.encoding & _INT_CHAR and nbits == 8 and 32 <= (v & 0xFF) < 127:
        return repr(chr(v & 0xFF))
    return str(v)


def _byte_kind(btf: Btf, tid: int) -> str:
    """'char' for C's plain char (text), 'byte' for other one-byte integers, else ''."""
    t = _resolve(btf, tid)
    if t is None or t.kind != B.KIND_INT or t.size != 1 or t.encoding & _INT_BOOL:
        return ""
    return "char" if t.encoding & _INT_CHAR or t.name == "char" else "byte"


def _text(raw: bytes) -> str | None:
    """A NUL-terminated printable string, NUL-padded; None where the bytes are not one."""
    head, _, tail = raw.partition(b"\0")
    if tail.strip(b"\0") or not all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return None
    return repr(head.decode("ascii"))


def _fmt(btf: Btf, tid: int, raw: bytes, bit_off: int, depth: int) -> str:
    if depth > _MAX_DEPTH:
        raise ValueError("types nest too deeply")
    t = _resolve(btf, tid)
    if t is None:
        return _hex(raw)
    k = t.kind
    if k == B.KIND_INT:
        return _fmt_int(t, raw, bit_off, 0)
    if k in (B.KIND_ENUM, B.KIND_ENUM64):
        v = int.from_bytes(raw[:t.size], "little", signed=bool(t.kflag))
        for name, val in t.values:
            if val == v or val == v & ((1 << (8 * t.size)) - 1):
                return name
        return str(v)
    if k == B.KIND_PTR:
        return f"{int.from_bytes(raw[:8], 'little'):#x}"
    if k == B.KIND_FLOAT:
        fmt = {4: "<f", 8: "<d"}.get(t.size)
        return repr(struct.unpack(fmt, raw[:t.size])[0]) if fmt else _hex(raw[:t.size])
    if k == B.KIND_ARRAY:
        esize = btf.size_of(t.elem_type)
        kind = _byte_kind(btf, t.elem_type)
        if kind:
            data = raw[:t.nelems]
            if len(data) < t.nelems:
                raise ValueError("short")
            text = _text(data) if kind == "char" else None
            if text is not None:
                return text
            if kind == "char" or t.nelems > 8:
                return data.hex()      # addresses, hashes, binary char buffers: one hex string
        shown = min(t.nelems, MAX_ELEMS)
        parts = [_fmt(btf, t.elem_type, raw[i * esize:(i + 1) * esize], 0, depth + 1) for i in range(shown)]
        if t.nelems > shown:
            parts.append(f"... {t.nelems - shown} more")
        return "[" + ", ".join(parts) + "]"
    if k in (B.KIND_STRUCT, B.KIND_UNION):
        parts = []
        for m in t.members:
            byte, bit = divmod(m.offset, 8)
            if t.kflag and m.bitfield_size:
                mt = _resolve(btf, m.type)
                if mt is None or mt.kind not in (B.KIND_INT, B.KIND_ENUM, B.KIND_ENUM64):
                    raise ValueError("bitfield of a non-integer")
                val = (_fmt_int(mt, raw[byte:], bit, m.bitfield_size) if mt.kind == B.KIND_INT
                       else str(_bits(raw[byte:], bit, m.bitfield_size)))
            else:
                msize = btf.size_of(m.type)
                val = _fmt(btf, m.type, raw[byte:byte + msize], bit, depth + 1)
            parts.append(f"{m.name}: {val}" if m.name else val)
        return "{" + ", ".join(parts) + "}"
    if k == B.KIND_DATASEC:
        parts = []
        for m in t.members:
            var = btf.get(m.type)
            parts.append(f"{var.name}: {_fmt(btf, var.type, raw[m.offset:m.offset + m.size], 0, depth + 1)}")
        return "{" + ", ".join(parts) + "}"
    return _hex(raw)
