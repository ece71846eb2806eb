"""Instruction text for traces and error messages.

The assembler package owns the disassembler; while it is unavailable (or
fails on an odd encoding) we still name the raw fields rather than nothing.
"""

from __future__ import annotations

from typing import Sequence

from ..isa import Insn


def insn_text(insns: Sequence[Insn], pc: int) -> str:
    try:
        from ..asm import format_insn
        text = format_insn(insns, pc)
        if text:
            return text
    except Exception:  # noqa: BLE001 - a missing or partial disassembler must not hide the real error
        pass
    ins = insns[pc]
    return f"opcode {ins.code:#04x} dst=r{ins.dst} src=r{ins.src} off={ins.off} imm={ins.imm}"
