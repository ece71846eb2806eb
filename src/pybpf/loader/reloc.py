"""Relocations of program code, bpf-to-bpf call linking, and map fd patching.

Each function of each executable section gets the list of its references:
calls and function addresses (to another function) and LD_IMM64s of maps or
global variables.  A program is then its entry function followed by a copy
of every function it reaches, appended in the order they are first met while
scanning (libbpf's layout), with every call offset recomputed for the copy.
Map references stay symbolic (:class:`MapReloc`) until :func:`resolve`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterable

from ..errors import InsnError
from ..isa import opcodes as op
from ..isa.insn import Insn, check_program, decode
from .elf import (R_BPF_64_32, R_BPF_64_64, R_BPF_NONE, RELOC_NAMES, SHN_UNDEF, STT_FUNC,
                  ElfObject, Reloc, Section)
from .errors import ElfError
from .spec import RELOC_MAP_FD, RELOC_MAP_VALUE, MapReloc, ObjectSpec

REF_CALL = "call"
REF_FUNC = "func"


@dataclass
class Ref:
    idx: int                           # slot in the function
    kind: str                          # REF_CALL, REF_FUNC, RELOC_MAP_FD, RELOC_MAP_VALUE
    target: tuple[int, int] | None = None   # (section index, first slot) of a function
    map: str | None = None
    offset: int = 0


@dataclass
class Func:
    name: str
    section: Section
    start: int                         # first slot in the section
    insns: list[Insn]
    refs: list[Ref] = field(default_factory=list)

    @property
    def key(self) -> tuple[int, int]:
        return (self.section.index, self.start)

    @property
    def end(self) -> int:
        return self.start + len(self.insns)


class FunctionTable:
    """Every function (STT_FUNC) of every executable section, with its code."""

    def __init__(self, obj: ElfObject):
        self.obj = obj
        self.by_key: dict[tuple[int, int], Func] = {}
        self._starts: dict[int, list[int]] = {}
        self.section_insns: dict[int, list[Insn]] = {}
        for sec in obj.sections:
            if sec.is_exec and sec.size:
                self._add_section(sec)

    def _add_section(self, sec: Section) -> None:
        obj = self.obj
        if sec.size % 8:
            raise obj.err(f"size {sec.size} is not a multiple of the 8-byte instruction",
                          section=sec.name)
        insns = decode(sec.data, check=False)
        self.section_insns[sec.index] = insns
        syms = sorted((s for s in obj.symbols if s.shndx == sec.index and s.type == STT_FUNC),
                      key=lambda s: s.value)
        prev_end = 0
        for s in syms:
            if s.value % 8 or s.size % 8:
                raise obj.err(f"function at offset {s.value} of size {s.size} is not made of "
                              f"whole 8-byte instructions", section=sec.name, symbol=s.name)
            if s.size == 0:
                raise obj.err("function of size 0", section=sec.name, symbol=s.name)
            if s.value + s.size > sec.size:
                raise obj.err(f"function [{s.value}, +{s.size}) crosses the end of the "
                              f"{sec.size}-byte section", section=sec.name, symbol=s.name)
            if s.value < prev_end:
                raise obj.err(f"function at offset {s.value} overlaps the previous one",
                              section=sec.name, symbol=s.name)
            prev_end = s.value + s.size
            start, n = s.value // 8, s.size // 8
            body = insns[start:start + n]
            try:
                check_program(body)
            except InsnError as e:
                raise obj.err(f"insn {e.index}: {e.reason}", section=sec.name, symbol=s.name) from None
            f = Func(s.name, sec, start, body)
            self.by_key[f.key] = f
            self._starts.setdefault(sec.index, []).append(start)

    def containing(self, shndx: int, slot: int) -> Func | None:
        starts = self._starts.get(shndx, [])
        i = bisect.bisect_right(starts, slot) - 1
        if i < 0:
            return None
        f = self.by_key[(shndx, starts[i])]
        return f if slot < f.end else None

    def functions_of(self, shndx: int) -> list[Func]:
        return [self.by_key[(shndx, s)] for s in self._starts.get(shndx, [])]


@dataclass
class MapTargets:
    """Where relocations may point to reach a map."""

    by_symbol_offset: dict[tuple[int, int], str]       # (section, offset) -> map (maps/.maps)
    data_sections: dict[int, tuple[str, int]]          # section -> (map name, size)


def collect_refs(obj: ElfObject, table: FunctionTable, targets: MapTargets) -> None:
    """Attach to each function the references its relocations (and plain calls) make."""
    for shndx, insns in table.section_insns.items():
        sec = obj.sections[shndx]
        relocated = set()
        if shndx in obj.relocs:
            relname, rels = obj.relocs[shndx]
            for r in rels:
                slot = _record(obj, table, targets, sec, relname, insns, r)
                if slot is not None:
                    relocated.add(slot)
        # Calls inside one section that the compiler resolved itself.
        for f in table.functions_of(shndx):
            for j, ins in enumerate(f.insns):
                slot = f.start + j
                if ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL and slot not in relocated:
                    tgt = slot + ins.imm + 1
                    callee = table.by_key.get((shndx, tgt))
                    if callee is None:
                        raise obj.err(f"insn {j}: call to insn {tgt} of the section, which is not "
                                      f"the start of a function", section=sec.name, symbol=f.name)
                    f.refs.append(Ref(j, REF_CALL, target=callee.key))
        for f in table.functions_of(shndx):
            f.refs.sort(key=lambda r: r.idx)


def _record(obj: ElfObject, table: FunctionTable, targets: MapTargets, sec: Section,
            relname: str, insns: list[Insn], r: Reloc) -> int | None:
    rname = RELOC_NAMES.get(r.type, str(r.type))
    where = f"relocation #{r.index} in '{relname}' ({rname}) at offset {r.offset:#x}"
    sym = r.symbol
    symname = sym.label(obj.sections)

    def err(reason: str) -> ElfError:
        return obj.err(reason, section=sec.name, reloc=where, symbol=symname)

    if r.type == R_BPF_NONE:
        return None
    if r.type not in RELOC_NAMES:
        raise err(f"unknown relocation type {r.type}")
    if r.type not in (R_BPF_64_64, R_BPF_64_32):
        raise err(f"{rname} is a data relocation; it cannot apply to program code")
    if r.offset % 8 or r.offset >= sec.size:
        raise err(f"offset is not the start of an instruction of the {sec.size}-byte section")
    slot = r.offset // 8
    f = table.containing(sec.index, slot)
    if f is None:
        raise err(f"insn {slot} of the section is in no function")
    j = slot - f.start
    ins = insns[slot]
    if r.addend is not None:
        raise err("RELA relocations are not used for BPF code (clang emits SHT_REL)")
    if sym.shndx == SHN_UNDEF:
        what = "function (kfunc)" if ins.code == op.OP_CALL else "variable (__kconfig/__ksym)"
        raise err(f"reference to extern {what} '{sym.name}' is not supported")
    if not sym.shndx < len(obj.sections):
        raise err(f"symbol's section index {sym.shndx} is not a section of this object")
    tsec = obj.sections[sym.shndx]
    if r.type == R_BPF_64_32:
        if ins.code != op.OP_CALL or ins.src != op.PSEUDO_CALL:
            raise err(f"insn {j} of '{f.name}' (code {ins.code:#04x}, src {ins.src}) is not a "
                      f"bpf-to-bpf call")
        if not tsec.is_exec:
            raise err(f"call into section '{tsec.name}', which holds no code")
        imm = ins.imm
        if sym.value % 8:
            raise err(f"call target offset {sym.value} is not a whole instruction")
        tgt = sym.value // 8 + imm + 1
        callee = table.by_key.get((tsec.index, tgt))
        if callee is None:
            raise err(f"call to insn {tgt} of '{tsec.name}', which is not the start of a function")
        f.refs.append(Ref(j, REF_CALL, target=callee.key))
        return slot
    # R_BPF_64_64: the LD_IMM64 of an address.
    if ins.code != op.LD_IMM64:
        raise err(f"insn {j} of '{f.name}' (code {ins.code:#04x}) is not a 64-bit immediate load")
    off = sym.value + ins.imm
    if tsec.is_exec:
        if off % 8 or not 0 <= off < tsec.size:
            raise err(f"function address {off} is not an instruction of '{tsec.name}'")
        callee = table.by_key.get((tsec.index, off // 8))
        if callee is None:
            raise err(f"address of insn {off // 8} of '{tsec.name}', which is not the start of "
                      f"a function")
        f.refs.append(Ref(j, REF_FUNC, target=callee.key))
        return slot
    key = (tsec.index, off)
    if key in targets.by_symbol_offset:
        f.refs.append(Ref(j, RELOC_MAP_FD, map=targets.by_symbol_offset[key]))
        return slot
    if tsec.index in targets.data_sections:
        name, size = targets.data_sections[tsec.index]
        if not 0 <= off <= size:
            raise err(f"offset {off} outside the {size} bytes of '{tsec.name}'")
        f.refs.append(Ref(j, RELOC_MAP_VALUE, map=name, offset=off))
        return slot
    if tsec.name in ("maps", ".maps"):
        raise err(f"no map is defined at offset {off} of '{tsec.name}'")
    raise err(f"reference to section '{tsec.name}', which holds neither maps, global data "
              f"nor code")


@dataclass
class Linked:
    insns: list[Insn]
    relocs: list[MapReloc]
    placed: dict[tuple[int, int], int]      # function -> first slot in the program


def link(entry: Func, table: FunctionTable) -> Linked:
    """The program of ``entry``: it, then each function it reaches, in libbpf's order.

    Like libbpf, a callee is appended when first met and scanned at once,
    before the rest of its caller (depth first); an explicit stack keeps deep
    call chains away from Python's recursion limit.
    """
    out = list(entry.insns)
    placed = {entry.key: 0}
    relocs = []
    stack = [(entry, 0)]
    while stack:
        f, i = stack[-1]
        if i == len(f.refs):
            stack.pop()
            continue
        stack[-1] = (f, i + 1)
        ref = f.refs[i]
        idx = placed[f.key] + ref.idx
        if ref.kind not in (REF_CALL, REF_FUNC):
            relocs.append(MapReloc(idx, ref.map, ref.kind, ref.offset))
            continue
        descend = ref.target not in placed
        if descend:
            callee = table.by_key[ref.target]
            placed[ref.target] = len(out)
            out.extend(callee.insns)
        rel = placed[ref.target] - idx - 1
        ins = out[idx]
        if ref.kind == REF_CALL:
            out[idx] = Insn(ins.code, ins.dst, op.PSEUDO_CALL, ins.off, rel)
        else:
            out[idx] = Insn(op.LD_IMM64, ins.dst, op.PSEUDO_FUNC, 0, rel)
            out[idx + 1] = Insn(0, 0, 0, 0, 0)
        if descend:
            stack.append((callee, 0))
    relocs.sort(key=lambda r: r.insn)
    return Linked(out, relocs, placed)


def resolve(spec: ObjectSpec, map_fds: dict[str, int],
            programs: Iterable[str] | None = None) -> dict[str, list[Insn]]:
    """Each program's instructions with its map references turned into fds, as for PROG_LOAD.

    ``programs`` limits the work to those names (default: every program).

    A map reference becomes ``LD_IMM64`` with ``src = BPF_PSEUDO_MAP_FD`` and
    ``imm = fd``; a global variable reference ``src = BPF_PSEUDO_MAP_VALUE``,
    ``imm = fd`` and the byte offset in the upper slot.
    """
    out = {}
    names = list(spec.programs) if programs is None else list(programs)
    for name in names:
        prog = spec.programs.get(name)
        if prog is None:
            raise ElfError("no such program", file=spec.path or spec.name, symbol=name)
        if prog.core_relocs:
            c = prog.core_relocs[0]
            raise ElfError(f"insn {c.insn}: CO-RE relocation ({c.describe()}) is not supported "
                           f"({len(prog.core_relocs)} in this program)",
                           file=spec.path or spec.name, symbol=name)
        insns = list(prog.insns)
        for r in prog.relocs:
            if r.map not in map_fds:
                raise ElfError(f"insn {r.insn}: map '{r.map}' has no file descriptor",
                               file=spec.path or spec.name, symbol=name)
            fd = map_fds[r.map]
            dst = insns[r.insn].dst
            if r.kind == RELOC_MAP_FD:
                insns[r.insn] = Insn(op.LD_IMM64, dst, op.PSEUDO_MAP_FD, 0, fd)
                insns[r.insn + 1] = Insn(0, 0, 0, 0, 0)
            else:
                insns[r.insn] = Insn(op.LD_IMM64, dst, op.PSEUDO_MAP_VALUE, 0, fd)
                insns[r.insn + 1] = Insn(0, 0, 0, 0, r.offset)
        out[name] = insns
    return out
