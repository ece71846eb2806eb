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
    """The type behind modifiers, and behind a variable (a global's type)."""
    t = btf.skip_modifiers(tid)
    return btf.skip_modifiers(t.type) if t is not None and t.kind == B.KIND_VAR else t


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


# -- bpftool's form: a JSON tree of a value, and its JSON writer -------------------------
#
# ``bpftool map dump`` shows maps with BTF through its btf_dumper: each key and value as
# JSON (structs as objects by member name, arrays as lists, char arrays holding text as
# strings, enums by name), printed by its json_writer; in plain mode the writer is pretty
# and a few scalars are written bare (bit fields and 128-bit integers in hex, pointers
# as %p, non-printable chars in hex).  value_tree() builds that tree once; write_json()
# prints it in either layout, so the text and the -j output share one walk.


class Raw(str):
    """A token written as it is (not quoted): bpftool's plain-text scalars such as 0x1f."""


class Obj(list):
    """A JSON object as (name, value) pairs: member names may repeat (anonymous members)."""


def value_tree(btf: Btf, type_id: int, raw: bytes, *, plain: bool):
    """``raw`` as bpftool's btf_dumper shows a value of ``type_id``: a tree of int, bool,
    str, :class:`Raw`, list and :class:`Obj`.  Bytes the type cannot describe (a short
    buffer, a type loop, a kind bpftool does not print) give a list of hex bytes."""
    raw = bytes(raw)
    try:
        return _tree(btf, type_id, raw, 0, plain, 0)
    except (ElfError, IndexError, KeyError, ValueError, TypeError, AttributeError, struct.error,
            RecursionError):
        return [Raw(f"0x{b:02x}") if plain else f"0x{b:02x}" for b in raw]


def _hexnum(v: int, plain: bool):
    text = f"0x{v:x}"
    return Raw(text) if plain else text


def _bitfield(raw: bytes, bit_off: int, nbits: int, plain: bool):
    need = (bit_off + nbits + 7) // 8
    if len(raw) < need:
        raise ValueError("short")
    return _hexnum(_bits(raw[:need], bit_off, nbits), plain)


def _tree_int(t: B.BtfType, raw: bytes, bit_off: int, plain: bool):
    nbits = t.bits
    if bit_off or t.bit_offset or nbits % 8:
        total = bit_off + t.bit_offset
        return _bitfield(raw[total // 8:], total % 8, nbits, plain)
    if nbits == 128:
        if len(raw) < 16:
            raise ValueError("short")
        return _hexnum(int.from_bytes(raw[:16], "little"), plain)
    enc = t.encoding
    if enc in (0, _INT_SIGNED):
        if nbits not in (8, 16, 32, 64):
            return _bitfield(raw, 0, nbits, plain)
        n = nbits // 8
        if len(raw) < n:
            raise ValueError("short")
        return int.from_bytes(raw[:n], "little", signed=enc == _INT_SIGNED)
    if enc == _INT_CHAR:
        if not raw:
            raise ValueError("short")
        c = raw[0]
        if 32 <= c < 127:
            return chr(c)
        return Raw(f"0x{c:x}") if plain else chr(c)
    if enc == _INT_BOOL:
        if len(raw) < t.size:
            raise ValueError("short")
        return any(raw[:t.size])
    raise ValueError("unknown int encoding")


def _str_array(btf: Btf, t: B.BtfType, raw: bytes) -> str | None:
    """bpftool's is_str_array: chars (not through a typedef), NUL-terminated, printable."""
    if not t.nelems:
        return None
    e = btf.get(t.elem_type) if t.elem_type else None
    for _ in range(B.MAX_RESOLVE_DEPTH):
        if e is None or e.kind not in (B.KIND_VOLATILE, B.KIND_CONST, B.KIND_RESTRICT, B.KIND_TYPE_TAG):
            break
        e = btf.get(e.type) if e.type else None
    if e is None or e.kind != B.KIND_INT or e.size != 1:
        return None
    if e.encoding != _INT_CHAR and e.name != "char":
        return None
    for i, c in enumerate(raw[:t.nelems]):
        if c == 0:
            return raw[:i].decode("ascii")
        if c <= 0x1F or c >= 0x7F:
            return None
    return None


def _tree(btf: Btf, tid: int, raw: bytes, bit_off: int, plain: bool, depth: int):
    if depth > _MAX_DEPTH:
        raise ValueError("types nest too deeply")
    t = btf.get(tid)
    for _ in range(B.MAX_RESOLVE_DEPTH):
        if t.kind not in (B.KIND_TYPEDEF, B.KIND_VOLATILE, B.KIND_CONST, B.KIND_RESTRICT):
            break
        t = btf.get(t.type)
    else:
        raise ValueError("type chain too long")
    k = t.kind
    if k == B.KIND_INT:
        return _tree_int(t, raw, bit_off, plain)
    if k in (B.KIND_STRUCT, B.KIND_UNION):
        out = Obj()
        for m in t.members:
            byte, bit = divmod(m.offset, 8)
            if t.kflag and m.bitfield_size:
                val = _bitfield(raw[byte:], bit, m.bitfield_size, plain)
            else:
                val = _tree(btf, m.type, raw[byte:], bit, plain, depth + 1)
            out.append((m.name, val))
        return out
    if k == B.KIND_ARRAY:
        text = _str_array(btf, t, raw)
        if text is not None:
            return text
        esize = btf.size_of(t.elem_type)
        if len(raw) < esize * t.nelems:
            raise ValueError("short")
        return [_tree(btf, t.elem_type, raw[i * esize:], 0, plain, depth + 1) for i in range(t.nelems)]
    if k == B.KIND_ENUM:
        if t.size not in (1, 2, 4, 8) or len(raw) < t.size:
            raise ValueError("bad enum")
        v = int.from_bytes(raw[:t.size], "little", signed=True)
        for name, val in t.values:
            if val == v or val == v & ((1 << (8 * t.size)) - 1):
                return name
        return v
    if k == B.KIND_ENUM64:
        if len(raw) < 8:
            raise ValueError("short")
        v = int.from_bytes(raw[:8], "little")
        for name, val in t.values:
            if val & 0xFFFFFFFFFFFFFFFF == v:
                return name
        return v - (1 << 64) if v >> 63 else v
    if k == B.KIND_PTR:
        if len(raw) < 8:
            raise ValueError("short")
        v = int.from_bytes(raw[:8], "little")
        if plain:
            return Raw(f"0x{v:x}" if v else "(nil)")
        return v
    if k == B.KIND_VAR:
        return Obj([(t.name, _tree(btf, t.type, raw, bit_off, plain, depth + 1))])
    if k == B.KIND_DATASEC:
        return Obj([(t.name, [_tree(btf, m.type, raw[m.offset:], 0, plain, depth + 1)
                              for m in t.members])])
    if k == B.KIND_FLOAT and t.size in (4, 8) and len(raw) >= t.size:
        # bpftool has no float printer ("(unsupported-kind"); the number says more
        v = struct.unpack("<f" if t.size == 4 else "<d", raw[:t.size])[0]
        import math
        if plain:
            return Raw(repr(v))
        return v if math.isfinite(v) else repr(v)       # JSON has no inf / nan
    raise ValueError(f"{t.kind_name} cannot be shown")


class JsonWriter:
    """bpftool's json_writer: the same separators, line breaks and indentation (four spaces
    per level when pretty), so that the output reads as bpftool's, byte for byte."""

    def __init__(self, pretty: bool):
        self.pretty = pretty
        self.depth = 0
        self.sep = ""
        self.out: list[str] = []

    def _eol(self) -> None:
        if self.pretty:
            self.out.append("\n" + "    " * self.depth)

    def _eor(self) -> None:
        if self.sep:
            self.out.append(self.sep)
        self.sep = ","

    def begin(self, c: str) -> None:
        self._eor()
        self.out.append(c)
        self.depth += 1
        self.sep = ""

    def end(self, c: str) -> None:
        self.depth -= 1
        if self.sep:
            self._eol()
        self.out.append(c)
        self.sep = ","

    def name(self, name: str) -> None:
        self._eor()
        self._eol()
        self.sep = ""
        self.out.append(_quote(name) + (": " if self.pretty else ":"))

    def scalar(self, text: str) -> None:
        self._eor()
        self.out.append(text)

    def value(self, v) -> None:
        if isinstance(v, (Obj, dict)):
            self.begin("{")
            for n, x in (v.items() if isinstance(v, dict) else v):
                self.name(n)
                self.value(x)
            self.end("}")
        elif isinstance(v, list):
            self.begin("[")
            for x in v:
                self.value(x)
            self.end("]")
        elif isinstance(v, Raw):
            self.scalar(str(v))
        elif isinstance(v, str):
            self.scalar(_quote(v))
        elif v is None:
            self.scalar("null")
        elif isinstance(v, bool):
            self.scalar("true" if v else "false")
        elif isinstance(v, float):
            self.scalar(repr(v))
        else:
            self.scalar(str(int(v)))

    def text(self) -> str:
        """What was written, with the newline jsonw_destroy() ends the output with."""
        return "".join(self.out) + "\n"


_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f", "\b": "\\b", "\\": "\\\\", '"': '\\"'}


def _quote(s: str) -> str:
    return '"' + "".join(_ESCAPES.get(c) or (f"\\u{ord(c):04x}" if ord(c) < 32 or 127 <= ord(c) < 256
                                                 else c) for c in s) + '"'
