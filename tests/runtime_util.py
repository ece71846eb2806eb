"""Shared by the runtime/helper tests: assembling programs that name maps."""

from __future__ import annotations

import dataclasses
import re

from pybpf.asm import assemble
from pybpf.isa import opcodes as op

_MARK = 0x7EAD0000


def asm(text: str, maps: dict | None = None):
    """Assemble LLVM-syntax text; ``map:NAME`` in an ``rX = map:NAME ll`` names maps[NAME] (an fd)."""
    names = list((maps or {}).keys())
    text = re.sub(r"map:(\w+)", lambda m: str(_MARK + names.index(m.group(1))), text)
    insns = assemble(text)
    out = list(insns)
    for i, ins in enumerate(out):
        if ins.code == op.LD_IMM64 and _MARK <= ins.imm < _MARK + len(names):
            fd = maps[names[ins.imm - _MARK]]
            fd = fd.fd if hasattr(fd, "fd") else fd
            out[i] = dataclasses.replace(ins, src=op.PSEUDO_MAP_FD, imm=fd)
    return out
