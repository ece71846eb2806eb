"""The ELF container of a BPF object: sections, symbols and relocations.

pyelftools does the parsing; this module checks what a BPF object must be
(64-bit little-endian relocatable, EM_BPF or EM_NONE), bounds every section
against the file, and turns everything into plain records so that later
stages never touch pyelftools (nor its exceptions) again.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile

from .errors import ElfError

EM_NONE = 0
EM_BPF = 247
ET_REL = 1

SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOBITS = 8
SHT_REL = 9
SHF_WRITE = 0x1
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4

STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
SHN_UNDEF = 0
SHN_ABS = 0xFFF1
SHN_COMMON = 0xFFF2

# BPF relocation types (llvm/BinaryFormat/ELFRelocs/BPF.def).
R_BPF_NONE = 0
R_BPF_64_64 = 1
R_BPF_64_ABS64 = 2
R_BPF_64_ABS32 = 3
R_BPF_64_NODYLD32 = 4
R_BPF_64_32 = 10
RELOC_NAMES = {R_BPF_NONE: "R_BPF_NONE", R_BPF_64_64: "R_BPF_64_64",
               R_BPF_64_ABS64: "R_BPF_64_ABS64", R_BPF_64_ABS32: "R_BPF_64_ABS32",
               R_BPF_64_NODYLD32: "R_BPF_64_NODYLD32", R_BPF_64_32: "R_BPF_64_32"}



@dataclass
class Section:
    index: int
    name: str
    type: int
    flags: int
    size: int
    data: bytes          # zeros are not materialised for SHT_NOBITS: data is b""
    link: int
    info: int
    entsize: int

    @property
    def is_exec(self) -> bool:
        return self.type == SHT_PROGBITS and bool(self.flags & SHF_EXECINSTR)


@dataclass
class Symbol:
    index: int
    name: str
    value: int
    size: int
    type: int
    bind: int
    shndx: int

    def label(self, sections: list[Section]) -> str:
        """How to name this symbol in a message (section symbols have no name)."""
        if self.name:
            return self.name
        if self.type == STT_SECTION and 0 < self.shndx < len(sections):
            return sections[self.shndx].name
        return f"#{self.index}"


@dataclass
class Reloc:
    index: int          # position in its relocation section
    offset: int
    type: int
    symbol: Symbol
    addend: int | None  # None for SHT_REL (the addend is in the relocated bytes)


@dataclass
class ElfObject:
    label: str           # file name (or "<bytes>") used in messages
    machine: int
    sections: list[Section]
    symbols: list[Symbol]
    # target section index -> (relocation section name, relocations)
    relocs: dict[int, tuple[str, list[Reloc]]] = field(default_factory=dict)

    def section_by_name(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def err(self, reason: str, **where) -> ElfError:
        return ElfError(reason, file=self.label, **where)


def parse_elf(data: bytes, label: str) -> ElfObject:
    """Check the identity of a BPF object and read its sections, symbols and relocations."""
    def err(reason: str, **where) -> ElfError:
        return ElfError(reason, file=label, **where)

    if len(data) < 4 or data[:4] != b"\x7fELF":
        raise err("not an ELF file (bad magic)")
    if len(data) < 64:
        raise err(f"truncated ELF header ({len(data)} bytes, need 64)")
    ei_class, ei_data = data[4], data[5]
    if ei_class != 2:
        raise err(f"not a 64-bit ELF object (EI_CLASS {ei_class}); BPF objects are ELF64")
    if ei_data == 2:
        raise err("big-endian object (EI_DATA ELFDATA2MSB): only little-endian BPF objects "
                  "are supported (compile with -target bpfel or -target bpf on a little-endian host)")
    if ei_data != 1:
        raise err(f"unknown byte order (EI_DATA {ei_data})")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_type != ET_REL:
        raise err(f"not a relocatable object (e_type {e_type}); expected the .o that clang -c makes")
    if e_machine not in (EM_NONE, EM_BPF):
        raise err(f"wrong machine {e_machine} (expected EM_BPF {EM_BPF} or EM_NONE {EM_NONE})")
    e_shoff, = struct.unpack_from("<Q", data, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 58)
    if e_shnum == 0 and e_shoff:
        raise err("extended section numbering (e_shnum 0) is not supported")
    if e_shnum and e_shentsize != 64:
        raise err(f"bad section header size {e_shentsize} (expected 64)")
    if e_shoff + e_shnum * 64 > len(data):
        raise err(f"section header table [{e_shoff}, +{e_shnum * 64}) beyond the end of the "
                  f"file ({len(data)} bytes): truncated object")
    if e_shnum and e_shstrndx >= e_shnum:
        raise err(f"section name table index {e_shstrndx} out of range ({e_shnum} sections)")

    _check_section_headers(data, e_shoff, e_shnum, e_shstrndx, err)
    try:
        elf = ELFFile(io.BytesIO(data))
        sections = _read_sections(elf, data, err)
        symbols = _read_symbols(elf, sections, err)
        obj = ElfObject(label, e_machine, sections, symbols)
        _read_relocs(elf, obj, err)
    except ElfError:
        raise
    except (_PyElfError, Exception) as e:
        # The headers were checked above; this guards pyelftools' remaining
        # corners (it raises many exception types on garbage).
        raise err(f"malformed ELF: {type(e).__name__}: {e}") from None
    return obj


_SHDR = struct.Struct("<IIQQQQIIQQ")
# Types a relocatable BPF object never has but that pyelftools would interpret
# (dynamic linking, notes, symbol versions): refusing them keeps garbage away
# from code paths we do not control.
_FOREIGN_TYPES = {5: "SHT_HASH", 6: "SHT_DYNAMIC", 7: "SHT_NOTE", 11: "SHT_DYNSYM",
                  0x6FFFFFF6: "SHT_GNU_HASH", 0x6FFFFFFD: "SHT_GNU_verdef",
                  0x6FFFFFFE: "SHT_GNU_verneed", 0x6FFFFFFF: "SHT_GNU_versym"}


def _check_section_headers(data: bytes, shoff: int, shnum: int, shstrndx: int, err) -> None:
    """Validate the raw section headers before pyelftools interprets them."""
    heads = [_SHDR.unpack_from(data, shoff + 64 * i) for i in range(shnum)]
    names = b""
    if shnum:
        _, t, _, _, off, size, *_ = heads[shstrndx]
        if t != SHT_STRTAB:
            raise err(f"section name table (section #{shstrndx}) is not a string table")
        if off + size > len(data):
            raise err(f"section name table [{off}, +{size}) beyond the end of the file "
                      f"({len(data)} bytes): truncated object")
        names = data[off:off + size]

    def name_of(i: int) -> str:
        off = heads[i][0]
        end = names.find(b"\0", off)
        if off >= len(names) or end < 0:
            raise err(f"section #{i}: name offset {off} outside the section name table")
        return names[off:end].decode("utf-8", "replace") or f"#{i}"

    for i, (_n, stype, _f, _a, off, size, link, info, _al, entsize) in enumerate(heads):
        if i == 0:
            continue
        name = name_of(i)
        if stype in _FOREIGN_TYPES:
            raise err(f"unexpected {_FOREIGN_TYPES[stype]} section in a relocatable BPF object",
                      section=name)
        if stype not in (SHT_NOBITS, 0) and off + size > len(data):
            raise err(f"truncated: [{off}, +{size}) goes beyond the end of the file "
                      f"({len(data)} bytes)", section=name)
        want = {SHT_SYMTAB: 24, SHT_REL: 16, SHT_RELA: 24}.get(stype)
        if want is None:
            continue
        if entsize != want:
            raise err(f"entry size {entsize}, expected {want}", section=name)
        if size % want:
            raise err(f"size {size} is not a multiple of the {want}-byte entry", section=name)
        need = SHT_STRTAB if stype == SHT_SYMTAB else SHT_SYMTAB
        if not 0 < link < shnum or heads[link][1] != need:
            what = "string table" if need == SHT_STRTAB else "symbol table"
            raise err(f"sh_link {link} does not name a {what}", section=name)
        if stype != SHT_SYMTAB and not 0 < info < shnum:
            raise err(f"relocates section index {info}, which does not exist", section=name)


def _read_sections(elf: ELFFile, data: bytes, err) -> list[Section]:
    shoff = elf.header["e_shoff"]
    out = []
    for i in range(elf.num_sections()):
        s = elf.get_section(i)
        h = s.header
        try:
            name = s.name
        except UnicodeDecodeError:
            raise err(f"section #{i} has a name that is not valid text") from None
        # pyelftools names known types and leaves others as numbers; read the raw word.
        stype, = struct.unpack_from("<I", data, shoff + i * 64 + 4)
        size, off = h["sh_size"], h["sh_offset"]
        where = name or f"#{i}"
        if stype not in (SHT_NOBITS, 0) and off + size > len(data):
            raise err(f"truncated: [{off}, +{size}) goes beyond the end of the file "
                      f"({len(data)} bytes)", section=where)
        body = b"" if stype in (SHT_NOBITS, 0) else data[off:off + size]
        out.append(Section(i, name, stype, h["sh_flags"], size, body, h["sh_link"], h["sh_info"],
                           h["sh_entsize"]))
    return out


def _read_symbols(elf: ELFFile, sections: list[Section], err) -> list[Symbol]:
    tabs = [s for s in sections if s.type == SHT_SYMTAB]
    if not tabs:
        raise err("no symbol table (.symtab): stripped object?")
    if len(tabs) > 1:
        raise err(f"{len(tabs)} symbol tables; a relocatable object has one")
    tab = tabs[0]
    if tab.entsize != 24:
        raise err(f"bad symbol entry size {tab.entsize} (expected 24)", section=tab.name)
    if tab.size % 24:
        raise err(f"size {tab.size} is not a multiple of the 24-byte symbol entry",
                  section=tab.name)
    if not 0 < tab.link < len(sections) or sections[tab.link].type != SHT_STRTAB:
        raise err(f"string table index {tab.link} does not name a string table", section=tab.name)
    strtab = sections[tab.link].data
    out = []
    for i, (st_name, st_info, _other, shndx, value, size) in enumerate(
            struct.iter_unpack("<IBBHQQ", tab.data)):
        if st_name >= len(strtab) and st_name:
            raise err(f"symbol #{i}: name offset {st_name} beyond the string table", section=tab.name)
        end = strtab.find(b"\0", st_name)
        if end < 0:
            raise err(f"symbol #{i}: name is not NUL-terminated", section=tab.name)
        try:
            name = strtab[st_name:end].decode()
        except UnicodeDecodeError:
            raise err(f"symbol #{i}: name is not valid UTF-8", section=tab.name) from None
        out.append(Symbol(i, name, value, size, st_info & 0xF, st_info >> 4, shndx))
    return out


def _read_relocs(elf: ELFFile, obj: ElfObject, err) -> None:
    nsyms = len(obj.symbols)
    for s in obj.sections:
        if s.type not in (SHT_REL, SHT_RELA):
            continue
        target = s.info
        if not 0 < target < len(obj.sections):
            raise err(f"relocates section index {target}, which does not exist", section=s.name)
        entsize = 16 if s.type == SHT_REL else 24
        if s.size % entsize:
            raise err(f"size {s.size} is not a multiple of the {entsize}-byte entry", section=s.name)
        rels = []
        if s.type == SHT_REL:
            entries = ((o, inf, None) for o, inf in struct.iter_unpack("<QQ", s.data))
        else:
            entries = struct.iter_unpack("<QQq", s.data)
        for i, (offset, info, addend) in enumerate(entries):
            sym_idx, rtype = info >> 32, info & 0xFFFFFFFF
            if not sym_idx < nsyms:
                raise err(f"symbol index {sym_idx} out of range ({nsyms} symbols)",
                          section=s.name, reloc=f"relocation #{i} at offset {offset:#x}")
            rels.append(Reloc(i, offset, rtype, obj.symbols[sym_idx], addend))
        if target in obj.relocs:
            raise err(f"second relocation section for '{obj.sections[target].name}'", section=s.name)
        obj.relocs[target] = (s.name, rels)
