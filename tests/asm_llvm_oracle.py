"""Run LLVM 19's llvm-objdump on raw instruction slots: the oracle of the llvm style."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

LLVM_BIN = Path("/usr/lib/llvm-19/bin")
OBJDUMP = LLVM_BIN / "llvm-objdump"
LLVM_MC = LLVM_BIN / "llvm-mc"

_LINE = re.compile(r"^\s*(\d+):\t(.*)$")
_SYMBOLIZED = re.compile(r" <[^<>]*>$")


def available() -> bool:
    return OBJDUMP.exists() and LLVM_MC.exists()


def objdump_listing(insns) -> str:
    """The instruction lines of ``llvm-objdump -d --no-show-raw-insn --mcpu=v4``, verbatim."""
    return "\n".join(line for line in _run_objdump(insns).splitlines() if _LINE.match(line))


def objdump(insns) -> dict[int, str]:
    """``{slot index: text}`` as llvm-objdump 19 (--mcpu=v4) prints it, target symbols removed."""
    result = {}
    for line in _run_objdump(insns).splitlines():
        m = _LINE.match(line)
        if m:
            result[int(m.group(1))] = _SYMBOLIZED.sub("", m.group(2))
    return result


def _run_objdump(insns) -> str:
    body = "".join(f"\t.quad {int.from_bytes(i.pack(), 'little'):#018x}\n" for i in insns)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "p.s")
        obj = os.path.join(d, "p.o")
        Path(src).write_text("\t.text\n\t.globl f\nf:\n" + body)
        subprocess.run([str(LLVM_MC), "-triple", "bpfel", "-filetype=obj", src, "-o", obj],
                       check=True, capture_output=True)
        return subprocess.run([str(OBJDUMP), "-d", "--no-show-raw-insn", "--mcpu=v4", obj],
                              check=True, capture_output=True, text=True).stdout


def llvm_mc_assemble(text: str) -> bytes:
    """Bytes of ``.text`` that llvm-mc 19 produces for BPF assembly ``text``."""
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "p.s")
        obj = os.path.join(d, "p.o")
        Path(src).write_text("\t.text\n" + text + "\n")
        subprocess.run([str(LLVM_MC), "-triple", "bpfel", "-mcpu=v4", "-filetype=obj", src, "-o", obj],
                       check=True, capture_output=True, text=True)
        from elftools.elf.elffile import ELFFile
        with open(obj, "rb") as f:
            return ELFFile(f).get_section_by_name(".text").data()
