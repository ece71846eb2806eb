"""Map definitions of an object: SEC("maps"), SEC(".maps") and global data."""

from __future__ import annotations

import re
import struct

from . import btf as B
from .btf import Btf
from .elf import SHT_NOBITS, STT_OBJECT, STT_SECTION, ElfObject, Section, Symbol
from .errors import ElfError
from .spec import (BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, KIND_BSS, KIND_BTF, KIND_DATA,
                   KIND_LEGACY, KIND_RODATA, MAP_TYPE_ARRAY, MAP_TYPE_ARRAY_OF_MAPS,
                   MAP_TYPE_HASH_OF_MAPS, MAP_TYPE_PROG_ARRAY, PIN_BY_NAME, PIN_NONE, MapDef)

LEGACY_SECTION = "maps"
BTF_SECTION = ".maps"
BPF_OBJ_NAME_LEN = 16
MAP_TYPE_PERF_EVENT_ARRAY = 4
# A damaged header can claim any .bss size; beyond this we refuse rather than
# materialise the zeros (the kernel refuses far smaller array values anyway).
GLOBAL_DATA_MAX = 64 << 20

# Legacy struct bpf_map_def fields, in order; objects use a prefix of these.
_LEGACY_FIELDS = ("type", "key_size", "value_size", "max_entries", "map_flags",
                  "inner_map_idx", "numa_node")
LEGACY_MIN_SIZE = 16
LEGACY_MAX_SIZE = 4 * len(_LEGACY_FIELDS)

# Integer attributes of a BTF-defined map, as __uint()/__ulong() members.
_INT_ATTRS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size",
              "pinning", "map_extra")


def global_data_kind(name: str) -> str | None:
    """The global-data kind of a section name, as libbpf recognises them."""
    for prefix, kind in ((".data", KIND_DATA), (".rodata", KIND_RODATA), (".bss", KIND_BSS)):
        if name == prefix or name.startswith(prefix + "."):
            return kind
    return None


def object_name(path: str | None, given: str | None) -> str:
    """libbpf's object name: the file's base name up to its first dot."""
    if given is not None:
        return given[:BPF_OBJ_NAME_LEN - 1]
    if path is None:
        return "obj"
    base = path.replace("\\", "/").rsplit("/", 1)[-1]
    base = base.split(".", 1)[0]
    return (base or "obj")[:BPF_OBJ_NAME_LEN - 1]


def internal_map_name(obj_name: str, section: str) -> str:
    """libbpf's name for the map behind a global-data section.

    "<first 8 chars of the object name>.data"; sections with a second dot
    (.data.foo, .rodata.str1.1) keep their own name, capped at 15 chars.
    """
    sfx_len = min(max(7, len(section)), BPF_OBJ_NAME_LEN - 1)
    if "." in section[1:]:
        pfx_len = 0
    else:
        pfx_len = min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    name = obj_name[:pfx_len] + section[:sfx_len]
    return re.sub(r"[^A-Za-z0-9_.]", "_", name)


def _section_symbols(obj: ElfObject, sec: Section) -> list[Symbol]:
    return sorted((s for s in obj.symbols if s.shndx == sec.index and s.type != STT_SECTION
                   and s.name), key=lambda s: s.value)


# -- SEC("maps") -----------------------------------------------------------

def legacy_maps(obj: ElfObject, sec: Section) -> list[MapDef]:
    syms = _section_symbols(obj, sec)
    if not syms:
        return []
    nr = len(syms)
    if sec.type == SHT_NOBITS or sec.size == 0 or sec.size % nr:
        raise obj.err(f"cannot tell the map definition size: {nr} map symbols in {sec.size} bytes",
                      section=sec.name)
    def_size = sec.size // nr
    if def_size < LEGACY_MIN_SIZE:
        raise obj.err(f"map definitions of {def_size} bytes are too small (struct bpf_map_def "
                      f"needs at least {LEGACY_MIN_SIZE}: type, key_size, value_size, max_entries)",
                      section=sec.name)
    if def_size % 4:
        raise obj.err(f"map definitions of {def_size} bytes are not made of 4-byte fields",
                      section=sec.name)
    out, inner_idx = [], []
    for s in syms:
        if s.value % 4 or s.value + def_size > sec.size:
            raise obj.err(f"definition at offset {s.value} does not fit the {sec.size}-byte "
                          f"section in {def_size}-byte entries", section=sec.name, symbol=s.name)
        raw = sec.data[s.value:s.value + def_size]
        nfields = min(def_size // 4, len(_LEGACY_FIELDS))
        vals = dict(zip(_LEGACY_FIELDS, struct.unpack_from(f"<{nfields}I", raw)))
        extra = raw[LEGACY_MAX_SIZE:]
        if any(extra):
            raise obj.err(f"map definition of {def_size} bytes has non-zero bytes after the "
                          f"{LEGACY_MAX_SIZE} we understand", section=sec.name, symbol=s.name)
        out.append(MapDef(name=s.name, type=vals["type"], key_size=vals["key_size"],
                          value_size=vals["value_size"], max_entries=vals["max_entries"],
                          map_flags=vals.get("map_flags", 0), numa_node=vals.get("numa_node", 0),
                          kind=KIND_LEGACY, section=sec.name, section_offset=s.value))
        inner_idx.append(vals.get("inner_map_idx"))
    for m, idx in zip(out, inner_idx):
        if m.type in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) and idx is not None:
            if idx >= len(out):
                raise obj.err(f"inner_map_idx {idx} out of range ({len(out)} maps)",
                              section=sec.name, symbol=m.name)
            tmpl = out[idx]
            if tmpl is m:
                raise obj.err("map-in-map names itself as its inner map", section=sec.name,
                              symbol=m.name)
            m.inner = _template(tmpl, m.name)
    return out


def _template(m: MapDef, outer: str) -> MapDef:
    return MapDef(name=f"{outer}.inner", type=m.type, key_size=m.key_size,
                  value_size=m.value_size, max_entries=m.max_entries, map_flags=m.map_flags,
                  numa_node=m.numa_node, map_extra=m.map_extra, kind=m.kind, section=m.section,
                  key_type_id=m.key_type_id, value_type_id=m.value_type_id,
                  key_type=m.key_type, value_type=m.value_type)


# -- SEC(".maps") ----------------------------------------------------------

class _BtfMapReader:
    def __init__(self, obj: ElfObject, btf: Btf, sec: Section):
        self.obj, self.btf, self.sec = obj, btf, sec

    def err(self, reason: str, symbol: str) -> ElfError:
        return self.obj.err(reason, section=self.sec.name, symbol=symbol)

    def _int_attr(self, mname: str, tid: int, where: str) -> int:
        t = self.btf.skip_modifiers(tid)
        if t is not None and t.kind == B.KIND_PTR:
            arr = self.btf.skip_modifiers(t.type)
            if arr is not None and arr.kind == B.KIND_ARRAY:
                return arr.nelems
        if t is not None and t.kind in (B.KIND_ENUM, B.KIND_ENUM64) and len(t.values) == 1:
            return t.values[0][1] & ((1 << 64) - 1)
        kind = t.kind_name if t is not None else "void"
        raise self.err(f"attribute '{mname}' must be __uint()/__ulong() (found {kind})", where)

    def _type_attr(self, mname: str, tid: int, where: str) -> int:
        t = self.btf.skip_modifiers(tid)
        if t is None or t.kind != B.KIND_PTR:
            kind = t.kind_name if t is not None else "void"
            raise self.err(f"attribute '{mname}' must be __type() (a pointer, found {kind})", where)
        return t.type

    def parse(self, name: str, tid: int, offset: int, *, inner: bool = False) -> tuple[MapDef, int | None]:
        """The map defined by struct type ``tid``; also the byte offset of 'values' if any."""
        btf = self.btf
        st = btf.skip_modifiers(tid)
        if st is None or st.kind != B.KIND_STRUCT:
            kind = st.kind_name if st is not None else "void"
            raise self.err(f"map definition must be a struct (found {kind})", name)
        attrs: dict[str, int] = {}
        key_tid = value_tid = 0
        inner_def: MapDef | None = None
        values_off = None
        values_kind = None
        for i, m in enumerate(st.members):
            if m.name in _INT_ATTRS:
                attrs[m.name] = self._int_attr(m.name, m.type, name)
            elif m.name == "key":
                key_tid = self._type_attr(m.name, m.type, name)
            elif m.name == "value":
                value_tid = self._type_attr(m.name, m.type, name)
            elif m.name == "values":
                if i != len(st.members) - 1:
                    raise self.err("'values' must be the last attribute", name)
                if inner:
                    raise self.err("an inner map definition cannot have 'values'", name)
                arr = btf.skip_modifiers(m.type)
                if arr is None or arr.kind != B.KIND_ARRAY:
                    raise self.err("'values' must be __array() (an array of pointers)", name)
                ptr = btf.skip_modifiers(arr.elem_type)
                if ptr is None or ptr.kind != B.KIND_PTR:
                    raise self.err("'values' must be an array of pointers", name)
                target = btf.skip_modifiers(ptr.type)
                if target is not None and target.kind == B.KIND_STRUCT:
                    inner_def, _ = self.parse(f"{name}.inner", target.id, offset, inner=True)
                    values_kind = "map"
                elif target is not None and target.kind == B.KIND_FUNC_PROTO:
                    values_kind = "prog"
                else:
                    kind = target.kind_name if target is not None else "void"
                    raise self.err(f"'values' must point to a map definition or a function "
                                   f"(found {kind})", name)
                values_off = m.offset // 8
            else:
                raise self.err(f"unknown attribute '{m.name}'", name)
        mtype = attrs.get("type", 0)
        key_size = attrs.get("key_size", 0)
        value_size = attrs.get("value_size", 0)
        if key_tid:
            sz = btf.size_of(key_tid)
            if key_size and key_size != sz:
                raise self.err(f"conflicting key size {key_size} != {sz} (size of the key type)", name)
            key_size = sz
        if value_tid:
            sz = btf.size_of(value_tid)
            if value_size and value_size != sz:
                raise self.err(f"conflicting value size {value_size} != {sz} (size of the value "
                               f"type)", name)
            value_size = sz
        if values_kind is not None:
            want = (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) if values_kind == "map" \
                else (MAP_TYPE_PROG_ARRAY,)
            if mtype not in want:
                raise self.err(f"'values' of {'maps' if values_kind == 'map' else 'programs'} "
                               f"needs map type {' or '.join(map(str, want))}, not {mtype}", name)
            if value_tid:
                raise self.err("'value' and 'values' are mutually exclusive", name)
            if value_size and value_size != 4:
                raise self.err(f"conflicting value size {value_size} != 4 (maps and programs "
                               f"are stored as 4-byte ids)", name)
            value_size = 4
            if key_size == 0:
                key_size = 4
        if mtype == MAP_TYPE_PERF_EVENT_ARRAY:
            key_size = key_size or 4
            value_size = value_size or 4
        pinning = attrs.get("pinning", PIN_NONE)
        if pinning not in (PIN_NONE, PIN_BY_NAME):
            raise self.err(f"unsupported pinning {pinning} (LIBBPF_PIN_NONE 0 or "
                           f"LIBBPF_PIN_BY_NAME 1)", name)
        if inner and pinning != PIN_NONE:
            raise self.err("an inner map definition cannot be pinned", name)
        d = MapDef(name=name, type=mtype, key_size=key_size, value_size=value_size,
                   max_entries=attrs.get("max_entries", 0), map_flags=attrs.get("map_flags", 0),
                   numa_node=attrs.get("numa_node", 0), map_extra=attrs.get("map_extra", 0),
                   pinning=pinning, kind=KIND_BTF, section=self.sec.name, section_offset=offset,
                   inner=inner_def, key_type_id=key_tid, value_type_id=value_tid,
                   key_type=btf.type_name(key_tid) if key_tid else None,
                   value_type=btf.type_name(value_tid) if value_tid else None)
        return d, values_off


def btf_maps(obj: ElfObject, sec: Section, btf: Btf | None) -> tuple[list[MapDef], dict[str, int]]:
    """The maps of SEC(".maps") and, for each with 'values', the byte offset of that member."""
    syms = [s for s in _section_symbols(obj, sec) if s.type in (STT_OBJECT, 0)]
    if not syms:
        return [], {}
    if btf is None:
        raise obj.err("BTF-defined maps need the .BTF section (compile with -g)", section=sec.name)
    ds = btf.find(sec.name, B.KIND_DATASEC)
    if ds is None:
        raise obj.err(f".BTF has no DATASEC '{sec.name}'", section=sec.name)
    vars_by_name = {}
    for m in ds.members:
        v = btf.get(m.type)
        if v.kind != B.KIND_VAR:
            raise obj.err(f"DATASEC entry type id {m.type} is {v.kind_name}, not VAR",
                          section=sec.name)
        vars_by_name[v.name] = v
    reader = _BtfMapReader(obj, btf, sec)
    out, values_at = [], {}
    for s in syms:
        var = vars_by_name.get(s.name)
        if var is None:
            raise obj.err("has no BTF variable in DATASEC '.maps'", section=sec.name, symbol=s.name)
        if s.value + s.size > sec.size:
            raise obj.err(f"definition [{s.value}, +{s.size}) beyond the section", section=sec.name,
                          symbol=s.name)
        d, voff = reader.parse(s.name, var.type, s.value)
        out.append(d)
        if voff is not None:
            values_at[s.name] = voff
    return out, values_at


# -- .data / .rodata / .bss --------------------------------------------------

def global_data_map(obj: ElfObject, sec: Section, kind: str, obj_name: str,
                    btf: Btf | None) -> MapDef:
    if sec.size > GLOBAL_DATA_MAX:
        raise obj.err(f"{sec.size} bytes of global data: more than the {GLOBAL_DATA_MAX >> 20} MiB "
                      f"we accept for one section", section=sec.name)
    data = bytes(sec.size) if sec.type == SHT_NOBITS else sec.data
    flags = BPF_F_MMAPABLE | (BPF_F_RDONLY_PROG if kind == KIND_RODATA else 0)
    variables = {}
    for s in _section_symbols(obj, sec):
        if s.type == STT_OBJECT:
            variables[s.name] = (s.value, s.size)
    d = MapDef(name=internal_map_name(obj_name, sec.name), type=MAP_TYPE_ARRAY, key_size=4,
               value_size=sec.size, max_entries=1, map_flags=flags, kind=kind, section=sec.name,
               data=data, frozen=kind == KIND_RODATA, variables=variables)
    if btf is not None:
        ds = btf.find(sec.name, B.KIND_DATASEC)
        if ds is not None:
            d.value_type_id = ds.id
            d.value_type = sec.name
    return d
