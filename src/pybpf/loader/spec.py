"""The runtime-independent description of a BPF object file.

Reading an object (``read_object``) yields an :class:`ObjectSpec`: every map
with the attributes ``BPF_MAP_CREATE`` needs, every program with its linked
instructions and the map references still to be patched once maps have file
descriptors (``resolve``).  Nothing here touches the kernel or our runtime.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..isa.insn import Insn

if TYPE_CHECKING:  # pragma: no cover
    from .btf import Btf, BtfExt

# libbpf's values of the ``pinning`` attribute of BTF-defined maps.
PIN_NONE = 0
PIN_BY_NAME = 1
DEFAULT_PIN_ROOT = "/sys/fs/bpf"

# Map flags libbpf gives the maps behind global variables.
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_MMAPABLE = 1 << 10

# Map types this module needs to reason about (linux/bpf.h).
MAP_TYPE_ARRAY = 2
MAP_TYPE_PROG_ARRAY = 3
MAP_TYPE_ARRAY_OF_MAPS = 12
MAP_TYPE_HASH_OF_MAPS = 13

# Where a map definition came from.
KIND_LEGACY = "legacy"     # struct bpf_map_def in SEC("maps")
KIND_BTF = "btf"           # BTF-defined map in SEC(".maps")
KIND_DATA = "data"         # .data / .data.*
KIND_RODATA = "rodata"     # .rodata / .rodata.*
KIND_BSS = "bss"           # .bss / .bss.*

# Kinds of map reference in a program.
RELOC_MAP_FD = "fd"        # LD_IMM64 of the map itself  -> BPF_PSEUDO_MAP_FD
RELOC_MAP_VALUE = "value"  # LD_IMM64 of an address in it -> BPF_PSEUDO_MAP_VALUE


@dataclass
class MapDef:
    """What ``BPF_MAP_CREATE`` needs, plus what must happen right after it."""

    name: str
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    numa_node: int = 0
    map_extra: int = 0
    pinning: int = PIN_NONE
    kind: str = KIND_BTF
    section: str = ""
    section_offset: int = 0
    # Map-in-map: the template of the inner maps.
    inner: MapDef | None = None
    # Slots filled at load time: index -> name of a map (map-in-map) or of a
    # program (prog array), from relocations in the ``values`` member.
    init_slots: dict[int, str] = field(default_factory=dict)
    # Global-data maps: the initial value (all of it, key 0) and whether the
    # map is frozen once written (.rodata).
    data: bytes | None = None
    frozen: bool = False
    # Global-data maps: variable name -> (offset, size) in the value.
    variables: dict[str, tuple[int, int]] = field(default_factory=dict)
    key_type_id: int = 0
    value_type_id: int = 0
    key_type: str | None = None
    value_type: str | None = None

    @property
    def is_global_data(self) -> bool:
        return self.kind in (KIND_DATA, KIND_RODATA, KIND_BSS)

    def pin_path(self, root: str = DEFAULT_PIN_ROOT) -> str | None:
        """Where LIBBPF_PIN_BY_NAME puts this map in the BPF file system, else None."""
        if self.pinning != PIN_BY_NAME:
            return None
        return f"{root.rstrip('/')}/{self.name}"


@dataclass(frozen=True)
class MapReloc:
    """An LD_IMM64 at ``insn`` (slot index in the linked program) that names a map.

    ``kind`` is :data:`RELOC_MAP_FD` or :data:`RELOC_MAP_VALUE`; for the latter
    ``offset`` is the byte offset in the map's value (global variables).
    """

    insn: int
    map: str
    kind: str
    offset: int = 0


@dataclass(frozen=True)
class LineInfo:
    """Source position of the instruction at slot ``insn`` (from .BTF.ext).

    ``file_name_off``/``line_off`` are the .BTF string offsets the kernel's
    ``struct bpf_line_info`` wants.
    """

    insn: int
    file: str
    line: int
    col: int
    source: str
    file_name_off: int = 0
    line_off: int = 0


@dataclass(frozen=True)
class FuncInfo:
    """Start of a function at slot ``insn`` of a linked program (from .BTF.ext)."""

    insn: int
    name: str
    type_id: int


@dataclass(frozen=True)
class CoreReloc:
    """A CO-RE relocation of the instruction at slot ``insn`` (from .BTF.ext).

    Resolving one needs the running kernel's BTF; we record them so that
    nothing is silently loaded with the compile-time offsets.
    """

    insn: int
    type_id: int
    type_name: str
    access: str
    kind: int

    def describe(self) -> str:
        from .btf import CORE_KIND_NAMES
        what = CORE_KIND_NAMES[self.kind] if self.kind < len(CORE_KIND_NAMES) else f"kind {self.kind}"
        return f"{what} of '{self.type_name}', access {self.access}"


@dataclass
class ProgramDef:
    """One program: its entry function followed by copies of every subprogram
    it reaches through bpf-to-bpf calls or function pointers (as libbpf lays
    them out), with call offsets already fixed."""

    name: str
    section: str
    prog_type: int
    expected_attach_type: int
    insns: list[Insn]
    relocs: list[MapReloc] = field(default_factory=list)
    # Where the attach target written in the section name is, e.g. the
    # function of "kprobe/do_sys_open"; None if the section carries none.
    attach_to: str | None = None
    sleepable: bool = False
    # Appended subprograms: name -> first slot in ``insns``.
    subprograms: dict[str, int] = field(default_factory=dict)
    func_info: list[FuncInfo] = field(default_factory=list)
    line_info: list[LineInfo] = field(default_factory=list)
    core_relocs: list[CoreReloc] = field(default_factory=list)
    # libbpf's SEC("?name"): present in the object but not loaded by default.
    autoload: bool = True
    section_offset: int = 0
    size: int = 0   # bytes of the entry function alone

    def func_info_bytes(self) -> bytes:
        """``struct bpf_func_info`` records for BPF_PROG_LOAD (rec size 8)."""
        return b"".join(struct.pack("<II", f.insn, f.type_id) for f in self.func_info)

    def line_info_bytes(self) -> bytes:
        """``struct bpf_line_info`` records for BPF_PROG_LOAD (rec size 16)."""
        return b"".join(struct.pack("<IIII", li.insn, li.file_name_off, li.line_off,
                                    (li.line << 10) | (li.col & 0x3FF)) for li in self.line_info)

    def source_of(self, insn: int) -> LineInfo | None:
        """The source line an instruction came from: the last line_info entry at or before it."""
        best = None
        for li in self.line_info:
            if li.insn <= insn:
                if best is None or li.insn >= best.insn:
                    best = li
        if best is None:
            return None
        # A line record never crosses into the next function copy.
        for start in self.subprograms.values():
            if best.insn < start <= insn:
                return None
        return best


@dataclass
class ObjectSpec:
    """Everything read from one object file."""

    name: str
    path: str | None
    maps: dict[str, MapDef]
    programs: dict[str, ProgramDef]
    license: str = ""
    kern_version: int = 0
    btf: Btf | None = None
    btf_ext: BtfExt | None = None
    # .BTF with DATASEC sizes and offsets filled in, ready for BPF_BTF_LOAD.
    btf_for_kernel: bytes | None = None
    # Functions of .text that programs may call (not loadable on their own).
    subprograms: list[str] = field(default_factory=list)
    machine: int = 247
