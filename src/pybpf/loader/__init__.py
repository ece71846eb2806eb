"""Reading clang-compiled BPF ELF objects into a runtime-independent description.

``read_object("prog.o")`` returns an :class:`ObjectSpec` (maps, programs with
linked bpf-to-bpf calls and pending map references, license, version, BTF);
``resolve(spec, map_fds)`` patches map file descriptors in, ready for
``BPF_PROG_LOAD``.
"""

from .btf import Btf, BtfExt
from .errors import ElfError
from .reader import read_object
from .reloc import resolve
from .sections import classify
from .spec import (PIN_BY_NAME, PIN_NONE, RELOC_MAP_FD, RELOC_MAP_VALUE, CoreReloc, FuncInfo,
                   LineInfo, MapDef, MapReloc, ObjectSpec, ProgramDef)

__all__ = ["read_object", "resolve", "classify", "ElfError", "ObjectSpec", "MapDef", "ProgramDef",
           "MapReloc", "LineInfo", "FuncInfo", "CoreReloc", "Btf", "BtfExt", "PIN_NONE",
           "PIN_BY_NAME", "RELOC_MAP_FD", "RELOC_MAP_VALUE"]
