"""``read_object``: a clang-compiled BPF object file into an :class:`ObjectSpec`."""

from __future__ import annotations

import os
from pathlib import Path

from .btf import Btf, BtfExt, parse_btf_ext
from .elf import (R_BPF_64_64, R_BPF_64_ABS64, RELOC_NAMES, SHT_NOBITS, SHT_PROGBITS,
                  ElfObject, parse_elf)
from .errors import ElfError
from .maps import (BTF_SECTION, LEGACY_SECTION, btf_maps, global_data_kind, global_data_map,
                   legacy_maps, object_name)
from .reloc import FunctionTable, MapTargets, collect_refs, link
from .sections import classify
from .spec import (MAP_TYPE_PROG_ARRAY, CoreReloc, FuncInfo, LineInfo, MapDef, ObjectSpec,
                   ProgramDef)

TEXT_SECTION = ".text"
LICENSE_SECTION = "license"
VERSION_SECTION = "version"
# libbpf keeps at most this many bytes of the license string.
LICENSE_MAX = 64
# Sections libbpf turns into special maps we do not build: refusing them beats
# returning a spec that silently lacks a map.
_UNSUPPORTED_SECTIONS = ((".struct_ops", "struct_ops maps"),
                         (".addr_space", "arena (address space) globals"))


def read_object(source: str | os.PathLike | bytes | bytearray | memoryview, *,
                name: str | None = None) -> ObjectSpec:
    """Read a BPF ELF object (a path or its bytes) into a runtime-independent description.

    ``name`` overrides the object name (which prefixes global-data map names);
    by default it is the file's base name up to the first dot, as in libbpf.
    Every problem raises :class:`ElfError` naming the file and the section,
    symbol or relocation at fault.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, path = bytes(source), None
        label = name or "<bytes>"
    else:
        path = os.fspath(source)
        label = path
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ElfError(f"cannot read: {e.strerror or e}", file=path) from None
    obj = parse_elf(data, label)
    try:
        return _build(obj, path, name)
    except ElfError:
        raise
    except RecursionError:
        raise obj.err("structure nested too deeply") from None
    except Exception as e:  # a last guard: bad input must never escape as a traceback
        raise obj.err(f"malformed object ({type(e).__name__}: {e})") from None


def _build(obj: ElfObject, path: str | None, given_name: str | None) -> ObjectSpec:
    oname = object_name(path, given_name)
    spec = ObjectSpec(name=oname, path=path, maps={}, programs={}, machine=obj.machine)

    lic = obj.section_by_name(LICENSE_SECTION)
    if lic is not None:
        raw = lic.data[:LICENSE_MAX]
        spec.license = raw.split(b"\0", 1)[0].decode("utf-8", "replace")
    ver = obj.section_by_name(VERSION_SECTION)
    if ver is not None:
        if ver.size != 4 or ver.type == SHT_NOBITS:
            raise obj.err(f"must hold one 4-byte kernel version, not {ver.size} bytes",
                          section=ver.name)
        spec.kern_version = int.from_bytes(ver.data, "little")

    btf_sec = obj.section_by_name(".BTF")
    if btf_sec is not None:
        spec.btf = Btf(btf_sec.data, file=obj.label)
        ext_sec = obj.section_by_name(".BTF.ext")
        if ext_sec is not None:
            spec.btf_ext = parse_btf_ext(ext_sec.data, spec.btf, file=obj.label)

    # Maps.
    by_offset: dict[tuple[int, int], str] = {}
    data_sections: dict[int, tuple[str, int]] = {}
    values_at: dict[str, int] = {}

    def add(m: MapDef, shndx: int | None) -> None:
        if m.name in spec.maps:
            raise obj.err(f"map name '{m.name}' defined twice", section=m.section)
        spec.maps[m.name] = m
        if shndx is not None:
            by_offset[(shndx, m.section_offset)] = m.name

    for sec in obj.sections:
        for prefix, what in _UNSUPPORTED_SECTIONS:
            if sec.size and (sec.name == prefix or sec.name.startswith(prefix + ".")):
                raise obj.err(f"{what} are not supported", section=sec.name)
        if sec.name == LEGACY_SECTION and not sec.is_exec:
            for m in legacy_maps(obj, sec):
                add(m, sec.index)
        elif sec.name == BTF_SECTION and not sec.is_exec:
            found, voffs = btf_maps(obj, sec, spec.btf)
            for m in found:
                add(m, sec.index)
            values_at.update(voffs)
        elif sec.size and not sec.is_exec and sec.type in (SHT_PROGBITS, SHT_NOBITS) \
                and global_data_kind(sec.name):
            m = global_data_map(obj, sec, global_data_kind(sec.name), oname, spec.btf)
            add(m, None)
            data_sections[sec.index] = (m.name, sec.size)

    # Code.
    table = FunctionTable(obj)
    collect_refs(obj, table, MapTargets(by_offset, data_sections))
    text = obj.section_by_name(TEXT_SECTION)
    if text is not None:
        spec.subprograms = [f.name for f in table.functions_of(text.index)]
    groups = _group_debug_info(obj, table, spec.btf_ext) if spec.btf_ext is not None else {}
    for shndx in sorted(table.section_insns):
        sec = obj.sections[shndx]
        if sec.name == TEXT_SECTION:
            continue
        # libbpf: SEC("?xdp") is an xdp program that is not loaded by default.
        autoload = not sec.name.startswith("?")
        kind = classify(sec.name if autoload else sec.name[1:])
        for f in table.functions_of(shndx):
            if f.name in spec.programs:
                raise obj.err("program name defined twice", section=sec.name, symbol=f.name)
            linked = link(f, table)
            prog = ProgramDef(name=f.name, section=sec.name, prog_type=kind.prog_type,
                              expected_attach_type=kind.expected_attach_type,
                              insns=linked.insns, relocs=linked.relocs, attach_to=kind.attach_to,
                              sleepable=kind.sleepable, autoload=autoload,
                              section_offset=f.start * 8,
                              size=len(f.insns) * 8)
            for key, base in linked.placed.items():
                if base:
                    prog.subprograms[table.by_key[key].name] = base
            if spec.btf_ext is not None:
                _debug_info(prog, linked.placed, groups, spec.btf)
            spec.programs[f.name] = prog

    _map_slots(obj, spec, values_at)
    if spec.btf is not None:
        sizes = {s.name: s.size for s in obj.sections if s.name}
        offsets = {(obj.sections[s.shndx].name, s.name): s.value for s in obj.symbols
                   if s.name and 0 < s.shndx < len(obj.sections)}
        spec.btf_for_kernel = spec.btf.for_kernel(sizes, offsets)
    return spec


def _group_debug_info(obj: ElfObject, table: FunctionTable, ext: BtfExt) -> dict:
    """.BTF.ext records by function: key -> (funcs, lines, core), offsets relative to it."""
    groups: dict = {}
    by_name = {}
    for shndx in table.section_insns:
        by_name.setdefault(obj.sections[shndx].name, shndx)
    for slot, records in enumerate((ext.funcs, ext.lines, ext.core)):
        for secname, recs in records.items():
            shndx = by_name.get(secname)
            if shndx is None:
                continue
            for rec in recs:
                if rec.insn_off % 8:
                    continue
                f = table.containing(shndx, rec.insn_off // 8)
                if f is None:
                    continue
                groups.setdefault(f.key, ([], [], []))[slot].append(
                    (rec.insn_off // 8 - f.start, rec))
    return groups


def _debug_info(prog: ProgramDef, placed: dict, groups: dict, btf: Btf) -> None:
    for key, base in placed.items():
        funcs, lines, core = groups.get(key, ((), (), ()))
        for k, rec in funcs:
            prog.func_info.append(FuncInfo(base + k, rec.name, rec.type_id))
        for k, rec in lines:
            prog.line_info.append(LineInfo(base + k, rec.file, rec.line, rec.col, rec.source,
                                           rec.file_name_off, rec.line_off))
        for k, rec in core:
            prog.core_relocs.append(CoreReloc(base + k, rec.type_id, btf.type_name(rec.type_id),
                                              rec.access, rec.kind))
    prog.func_info.sort(key=lambda x: x.insn)
    prog.line_info.sort(key=lambda x: x.insn)
    prog.core_relocs.sort(key=lambda x: x.insn)


def _map_slots(obj: ElfObject, spec: ObjectSpec, values_at: dict[str, int]) -> None:
    """Initial contents of map-in-map and prog-array maps, from relocations in .maps."""
    sec = obj.section_by_name(BTF_SECTION)
    if sec is None or sec.index not in obj.relocs:
        return
    relname, rels = obj.relocs[sec.index]
    btf_maps_sorted = sorted((m for m in spec.maps.values() if m.section == BTF_SECTION),
                             key=lambda m: m.section_offset)
    sym_size = {s.name: s.size for s in obj.symbols if s.shndx == sec.index}
    for r in rels:
        rname = RELOC_NAMES.get(r.type, str(r.type))
        where = f"relocation #{r.index} in '{relname}' ({rname}) at offset {r.offset:#x}"
        symname = r.symbol.label(obj.sections)

        def err(reason: str) -> ElfError:
            return obj.err(reason, section=sec.name, reloc=where, symbol=symname)

        if r.type not in (R_BPF_64_ABS64, R_BPF_64_64):
            raise err("only 64-bit absolute relocations can fill map slots")
        owner = None
        for m in btf_maps_sorted:
            if m.section_offset <= r.offset < m.section_offset + sym_size.get(m.name, 0):
                owner = m
        if owner is None or owner.name not in values_at:
            raise err("relocation is not inside the 'values' of a map")
        rel = r.offset - owner.section_offset - values_at[owner.name]
        if rel < 0 or rel % 8:
            raise err(f"relocation is not on a slot of the 'values' of map '{owner.name}'")
        slot = rel // 8
        if slot >= owner.max_entries:
            raise err(f"slot {slot} of map '{owner.name}' beyond its max_entries "
                      f"{owner.max_entries}")
        tsym = r.symbol
        if owner.type == MAP_TYPE_PROG_ARRAY:
            if tsym.name not in spec.programs:
                raise err(f"prog array '{owner.name}' slot {slot} must name a program")
            owner.init_slots[slot] = tsym.name
        else:
            target = next((m for m in spec.maps.values() if m.section == BTF_SECTION and
                           tsym.shndx == sec.index and m.section_offset == tsym.value), None)
            if target is None:
                raise err(f"map-in-map '{owner.name}' slot {slot} must name a map of '.maps'")
            owner.init_slots[slot] = target.name
