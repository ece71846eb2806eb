"""A small reader of BTF (.BTF) and of its companion .BTF.ext.

Only what an object reader needs: every type kind parsed (so any valid BTF
reads), names, sizes through modifiers and typedefs, and the func/line
records of .BTF.ext that map instructions back to source lines.  Malformed
input raises :class:`ElfError` naming the section and the type id or offset.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import ElfError

BTF_MAGIC = 0xEB9F

KIND_INT = 1
KIND_PTR = 2
KIND_ARRAY = 3
KIND_STRUCT = 4
KIND_UNION = 5
KIND_ENUM = 6
KIND_FWD = 7
KIND_TYPEDEF = 8
KIND_VOLATILE = 9
KIND_CONST = 10
KIND_RESTRICT = 11
KIND_FUNC = 12
KIND_FUNC_PROTO = 13
KIND_VAR = 14
KIND_DATASEC = 15
KIND_FLOAT = 16
KIND_DECL_TAG = 17
KIND_TYPE_TAG = 18
KIND_ENUM64 = 19

KIND_NAMES = {
    KIND_INT: "INT", KIND_PTR: "PTR", KIND_ARRAY: "ARRAY", KIND_STRUCT: "STRUCT",
    KIND_UNION: "UNION", KIND_ENUM: "ENUM", KIND_FWD: "FWD", KIND_TYPEDEF: "TYPEDEF",
    KIND_VOLATILE: "VOLATILE", KIND_CONST: "CONST", KIND_RESTRICT: "RESTRICT",
    KIND_FUNC: "FUNC", KIND_FUNC_PROTO: "FUNC_PROTO", KIND_VAR: "VAR",
    KIND_DATASEC: "DATASEC", KIND_FLOAT: "FLOAT", KIND_DECL_TAG: "DECL_TAG",
    KIND_TYPE_TAG: "TYPE_TAG", KIND_ENUM64: "ENUM64",
}

# Kinds whose size_or_type field is a size rather than a type id.
SIZED_KINDS = {KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_DATASEC, KIND_FLOAT, KIND_ENUM64}
# Kinds that only qualify another type.
MODIFIER_KINDS = {KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG}
# The kernel gives up resolving a type chain after this many links.
MAX_RESOLVE_DEPTH = 32

_HDR = struct.Struct("<HBBIIIII")
_TYPE = struct.Struct("<III")
_U32 = struct.Struct("<I")


@dataclass
class Member:
    name: str
    type: int
    offset: int        # struct/union: bit offset; var in datasec: byte offset
    bitfield_size: int = 0
    size: int = 0      # datasec variables only


@dataclass
class BtfType:
    id: int
    kind: int
    name: str
    vlen: int
    kflag: bool
    size: int = 0      # sized kinds
    type: int = 0      # kinds that reference one type
    # kind specific
    encoding: int = 0
    bits: int = 0
    bit_offset: int = 0
    elem_type: int = 0
    index_type: int = 0
    nelems: int = 0
    members: list[Member] = field(default_factory=list)   # struct/union/proto/datasec
    values: list[tuple[str, int]] = field(default_factory=list)  # enum/enum64
    linkage: int = 0
    component_idx: int = -1
    pos: int = 0       # byte offset of the type record in the raw .BTF

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


class Btf:
    """Parsed .BTF: ``types[id]`` (id 0 is void and holds None) and the strings."""

    def __init__(self, data: bytes, *, file: str | None = None):
        self.file = file
        self.raw = bytes(data)
        self.types: list[BtfType | None] = [None]
        self._by_name: dict[str, list[int]] = {}
        self._parse()

    # -- errors --------------------------------------------------------------
    def _err(self, reason: str) -> ElfError:
        return ElfError(reason, file=self.file, section=".BTF")

    # -- parsing -------------------------------------------------------------
    def _parse(self) -> None:
        data = self.raw
        if len(data) < _HDR.size:
            raise self._err(f"truncated header ({len(data)} bytes, need {_HDR.size})")
        magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = _HDR.unpack_from(data)
        if magic == 0x9FEB:
            raise self._err("big-endian BTF is not supported")
        if magic != BTF_MAGIC:
            raise self._err(f"bad magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
        if version != 1:
            raise self._err(f"unsupported version {version}")
        if hdr_len < _HDR.size or hdr_len > len(data):
            raise self._err(f"bad header length {hdr_len}")
        body = len(data) - hdr_len
        if type_off % 4:
            raise self._err(f"type section offset {type_off} is not 4-byte aligned")
        if type_off + type_len > body or str_off + str_len > body:
            raise self._err(f"type section [{type_off}, +{type_len}) or string section "
                            f"[{str_off}, +{str_len}) beyond the {body} bytes after the header")
        if str_len and data[hdr_len + str_off] != 0:
            raise self._err("string section does not start with an empty string")
        self.strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
        self._types_at = hdr_len + type_off
        types = memoryview(data)[hdr_len + type_off: hdr_len + type_off + type_len]
        self._parse_types(types)

    def string(self, off: int) -> str:
        if off >= len(self.strings) and off:
            raise self._err(f"string offset {off} beyond the string section ({len(self.strings)} bytes)")
        end = self.strings.find(b"\0", off)
        if end < 0:
            raise self._err(f"string at offset {off} is not NUL-terminated")
        return self.strings[off:end].decode("utf-8", "replace")

    def _parse_types(self, buf: memoryview) -> None:
        pos = 0
        n = len(buf)
        tid = 0
        while pos < n:
            tid += 1
            if pos + 12 > n:
                raise self._err(f"type id {tid}: truncated at byte {pos} of the type section")
            name_off, info, size_or_type = _TYPE.unpack_from(buf, pos)
            pos += 12
            vlen = info & 0xFFFF
            kind = (info >> 24) & 0x1F
            kflag = bool(info >> 31)
            name = self.string(name_off)
            t = BtfType(tid, kind, name, vlen, kflag, pos=self._types_at + pos - 12)
            if kind in SIZED_KINDS:
                t.size = size_or_type
            else:
                t.type = size_or_type
            extra = _extra_size(kind, vlen)
            if extra is None:
                raise self._err(f"type id {tid}: unknown kind {kind}")
            if pos + extra > n:
                raise self._err(f"type id {tid} ({KIND_NAMES[kind]} '{name}'): truncated "
                                f"(needs {extra} bytes after byte {pos}, section has {n})")
            self._parse_extra(t, buf, pos)
            pos += extra
            self.types.append(t)
            if name:
                self._by_name.setdefault(name, []).append(tid)

    def _parse_extra(self, t: BtfType, buf: memoryview, pos: int) -> None:
        k = t.kind
        if k == KIND_INT:
            (v,) = _U32.unpack_from(buf, pos)
            t.encoding = (v >> 24) & 0x0F
            t.bit_offset = (v >> 16) & 0xFF
            t.bits = v & 0xFF
        elif k == KIND_ARRAY:
            t.elem_type, t.index_type, t.nelems = struct.unpack_from("<III", buf, pos)
        elif k in (KIND_STRUCT, KIND_UNION):
            for i in range(t.vlen):
                name_off, mtype, off = struct.unpack_from("<III", buf, pos + 12 * i)
                if t.kflag:
                    t.members.append(Member(self.string(name_off), mtype, off & 0xFFFFFF, off >> 24))
                else:
                    t.members.append(Member(self.string(name_off), mtype, off))
        elif k == KIND_ENUM:
            signed = t.kflag
            for i in range(t.vlen):
                name_off, val = struct.unpack_from("<Ii" if signed else "<II", buf, pos + 8 * i)
                t.values.append((self.string(name_off), val))
        elif k == KIND_ENUM64:
            for i in range(t.vlen):
                name_off, lo, hi = struct.unpack_from("<III", buf, pos + 12 * i)
                v = lo | (hi << 32)
                if t.kflag and v >> 63:
                    v -= 1 << 64
                t.values.append((self.string(name_off), v))
        elif k == KIND_FUNC_PROTO:
            for i in range(t.vlen):
                name_off, ptype = struct.unpack_from("<II", buf, pos + 8 * i)
                t.members.append(Member(self.string(name_off), ptype, 0))
        elif k == KIND_VAR:
            (t.linkage,) = _U32.unpack_from(buf, pos)
        elif k == KIND_DATASEC:
            for i in range(t.vlen):
                vtype, off, size = struct.unpack_from("<III", buf, pos + 12 * i)
                t.members.append(Member("", vtype, off, size=size))
        elif k == KIND_DECL_TAG:
            (idx,) = struct.unpack_from("<i", buf, pos)
            t.component_idx = idx

    # -- the kernel's view ----------------------------------------------------
    def for_kernel(self, section_sizes: dict[str, int],
                   symbol_offsets: dict[tuple[str, str], int]) -> bytes:
        """This BTF as BPF_BTF_LOAD accepts it.

        In an object file clang leaves DATASEC sizes and variable offsets to
        the linker; like libbpf we fill them from the ELF section sizes and
        symbol values and sort each DATASEC's variables by offset.
        """
        raw = bytearray(self.raw)
        for t in self.types:
            if t is None or t.kind != KIND_DATASEC:
                continue
            size = section_sizes.get(t.name, t.size)
            if size > 0xFFFFFFFF:
                raise self._err(f"DATASEC '{t.name}': section size {size} does not fit in 32 bits")
            struct.pack_into("<I", raw, t.pos + 8, size)
            entries = []
            for m in t.members:
                var = self.get(m.type)
                off = symbol_offsets.get((t.name, var.name), m.offset)
                if off > 0xFFFFFFFF:
                    raise self._err(f"DATASEC '{t.name}': variable '{var.name}' at offset {off} "
                                    f"does not fit in 32 bits")
                entries.append((off, m.type, m.size))
            entries.sort()
            for i, (off, vtype, vsize) in enumerate(entries):
                struct.pack_into("<III", raw, t.pos + 12 + 12 * i, vtype, off, vsize)
        return bytes(raw)

    # -- queries -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.types)

    def get(self, tid: int) -> BtfType:
        if not 0 < tid < len(self.types):
            raise self._err(f"type id {tid} out of range (1..{len(self.types) - 1})")
        return self.types[tid]  # type: ignore[return-value]

    def find(self, name: str, kind: int | None = None) -> BtfType | None:
        for tid in self._by_name.get(name, ()):
            t = self.types[tid]
            if kind is None or t.kind == kind:
                return t
        return None

    def skip_modifiers(self, tid: int) -> BtfType | None:
        """The type behind typedefs and qualifiers (None for void)."""
        for _ in range(MAX_RESOLVE_DEPTH):
            if tid == 0:
                return None
            t = self.get(tid)
            if t.kind not in MODIFIER_KINDS:
                return t
            tid = t.type
        raise self._err(f"type id {tid}: modifier chain longer than {MAX_RESOLVE_DEPTH} (loop?)")

    def size_of(self, tid: int, _depth: int = 0) -> int:
        """Size in bytes of a type as the kernel computes it."""
        if _depth > MAX_RESOLVE_DEPTH:
            raise self._err(f"type id {tid}: type chain longer than {MAX_RESOLVE_DEPTH} (loop?)")
        t = self.skip_modifiers(tid)
        if t is None:
            raise self._err(f"type id {tid}: void has no size")
        if t.kind in SIZED_KINDS:
            return t.size
        if t.kind == KIND_PTR:
            return 8
        if t.kind == KIND_ARRAY:
            return t.nelems * self.size_of(t.elem_type, _depth + 1)
        if t.kind == KIND_VAR:
            return self.size_of(t.type, _depth + 1)
        raise self._err(f"type id {t.id} ({t.kind_name} '{t.name}') has no size")

    def type_name(self, tid: int, _depth: int = 0) -> str:
        """A C-like spelling of a type, e.g. ``struct foo``, ``__u32``, ``char[16]``."""
        if tid == 0:
            return "void"
        if _depth > MAX_RESOLVE_DEPTH:
            return "..."
        t = self.get(tid)
        k = t.kind
        if k in (KIND_STRUCT, KIND_UNION):
            word = "struct" if k == KIND_STRUCT else "union"
            return f"{word} {t.name}" if t.name else f"{word} {{...}}"
        if k in (KIND_ENUM, KIND_ENUM64):
            return f"enum {t.name}" if t.name else "enum {...}"
        if k == KIND_FWD:
            return f"{'union' if t.kflag else 'struct'} {t.name}"
        if k == KIND_PTR:
            return self.type_name(t.type, _depth + 1) + " *"
        if k == KIND_ARRAY:
            return f"{self.type_name(t.elem_type, _depth + 1)}[{t.nelems}]"
        if k in (KIND_CONST, KIND_VOLATILE, KIND_RESTRICT):
            word = {KIND_CONST: "const", KIND_VOLATILE: "volatile", KIND_RESTRICT: "restrict"}[k]
            return f"{word} {self.type_name(t.type, _depth + 1)}"
        if k == KIND_TYPE_TAG:
            return self.type_name(t.type, _depth + 1)
        return t.name or KIND_NAMES.get(k, "?").lower()


def _extra_size(kind: int, vlen: int) -> int | None:
    if kind in (KIND_INT, KIND_VAR, KIND_DECL_TAG):
        return 4
    if kind == KIND_ARRAY:
        return 12
    if kind in (KIND_STRUCT, KIND_UNION, KIND_DATASEC, KIND_ENUM64):
        return 12 * vlen
    if kind in (KIND_ENUM, KIND_FUNC_PROTO):
        return 8 * vlen
    if kind in (KIND_PTR, KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT,
                KIND_FUNC, KIND_FLOAT, KIND_TYPE_TAG):
        return 0
    return None


# -- .BTF.ext ---------------------------------------------------------------

_EXT_HDR = struct.Struct("<HBBIIIII")


@dataclass(frozen=True)
class ExtFunc:
    insn_off: int      # byte offset in the ELF section
    type_id: int
    name: str


@dataclass(frozen=True)
class ExtLine:
    insn_off: int
    file: str
    source: str
    line: int
    col: int
    file_name_off: int
    line_off: int


@dataclass(frozen=True)
class ExtCore:
    """A CO-RE relocation (``struct bpf_core_relo``)."""

    insn_off: int
    type_id: int
    access: str
    kind: int


CORE_KIND_NAMES = ("field byte offset", "field byte size", "field exists", "field signed",
                   "field lshift", "field rshift", "local type id", "target type id",
                   "type exists", "type size", "enum value exists", "enum value",
                   "type matches")


@dataclass
class BtfExt:
    """func_info, line_info and CO-RE records of .BTF.ext, grouped by ELF section name."""

    funcs: dict[str, list[ExtFunc]] = field(default_factory=dict)
    lines: dict[str, list[ExtLine]] = field(default_factory=dict)
    core: dict[str, list[ExtCore]] = field(default_factory=dict)


def parse_btf_ext(data: bytes, btf: Btf, *, file: str | None = None) -> BtfExt:
    def err(reason: str) -> ElfError:
        return ElfError(reason, file=file, section=".BTF.ext")

    data = bytes(data)
    if len(data) < _EXT_HDR.size:
        raise err(f"truncated header ({len(data)} bytes, need {_EXT_HDR.size})")
    magic, version, _flags, hdr_len, f_off, f_len, l_off, l_len = _EXT_HDR.unpack_from(data)
    if magic != BTF_MAGIC:
        raise err(f"bad magic {magic:#06x} (expected {BTF_MAGIC:#06x})")
    if version != 1:
        raise err(f"unsupported version {version}")
    if hdr_len < _EXT_HDR.size or hdr_len > len(data):
        raise err(f"bad header length {hdr_len}")
    ext = BtfExt()

    def blocks(off: int, length: int, what: str, min_rec: int):
        if length == 0:
            return
        start = hdr_len + off
        end = start + length
        if end > len(data):
            raise err(f"{what} [{off}, +{length}) beyond the end of the section")
        if length < 4:
            raise err(f"{what}: truncated record size")
        (rec_size,) = _U32.unpack_from(data, start)
        if rec_size < min_rec or rec_size % 4:
            raise err(f"{what}: bad record size {rec_size}")
        pos = start + 4
        while pos < end:
            if pos + 8 > end:
                raise err(f"{what}: truncated block header at byte {pos - hdr_len - off}")
            sec_off, count = struct.unpack_from("<II", data, pos)
            pos += 8
            if count == 0:
                raise err(f"{what}: empty block")
            if pos + count * rec_size > end:
                raise err(f"{what}: block of {count} records of {rec_size} bytes is truncated")
            sec = btf.string(sec_off)
            yield sec, [data[pos + i * rec_size: pos + (i + 1) * rec_size] for i in range(count)]
            pos += count * rec_size

    try:
        for sec, recs in blocks(f_off, f_len, "func_info", 8):
            out = ext.funcs.setdefault(sec, [])
            for r in recs:
                insn_off, tid = struct.unpack_from("<II", r)
                t = btf.get(tid)
                out.append(ExtFunc(insn_off, tid, t.name))
        for sec, recs in blocks(l_off, l_len, "line_info", 16):
            out = ext.lines.setdefault(sec, [])
            for r in recs:
                insn_off, file_off, line_off, line_col = struct.unpack_from("<IIII", r)
                out.append(ExtLine(insn_off, btf.string(file_off), btf.string(line_off),
                                   line_col >> 10, line_col & 0x3FF, file_off, line_off))
        if hdr_len >= _EXT_HDR.size + 8:
            c_off, c_len = struct.unpack_from("<II", data, _EXT_HDR.size)
            for sec, recs in blocks(c_off, c_len, "core_relo", 16):
                out = ext.core.setdefault(sec, [])
                for r in recs:
                    insn_off, tid, access_off, kind = struct.unpack_from("<IIII", r)
                    btf.get(tid)
                    out.append(ExtCore(insn_off, tid, btf.string(access_off), kind))
    except ElfError as e:
        if e.section == ".BTF.ext":
            raise
        raise err(e.reason) from None
    return ext
