"""The program tag: Linux's fingerprint of a program, stable across loads.

Linux hashes the instructions with the map fds of LD_IMM64 taken out (they
differ from load to load).  The host kernel (6.18) reports the first 8 bytes of
a SHA-256 over them (older kernels used SHA-1); tests compare with it.
"""

from __future__ import annotations

import hashlib

from ..isa import opcodes as op
from ..isa.insn import Insn, encode


def prog_tag(insns: list[Insn]) -> bytes:
    out = []
    after_map = False
    for ins in insns:
        if not after_map and ins.code == op.LD_IMM64 and ins.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE):
            after_map = True
            ins = Insn(ins.code, ins.dst, ins.src, ins.off, 0)
        elif after_map and ins.code == 0 and ins.dst == 0 and ins.src == 0 and ins.off == 0:
            after_map = False
            ins = Insn(0, 0, 0, 0, 0)
        else:
            after_map = False
        out.append(ins)
    return hashlib.sha256(encode(out)).digest()[:8]
