"""eBPF assembler and disassembler.

Two input syntaxes (see :mod:`pybpf.asm.llvm` and :mod:`pybpf.asm.conformance`) and
three output styles (see :mod:`pybpf.asm.printer`):

- ``assemble(text, source=None, syntax="auto")`` -> list of :class:`~pybpf.isa.Insn`
  slots; syntax ``"llvm"``, ``"conformance"`` or ``"auto"``.  Errors are
  :class:`~pybpf.errors.AsmError` carrying the source name and line number.
- ``disassemble(insns, style="llvm")`` -> one string per slot (``""`` for the
  second slot of LD_IMM64); ``format_insn(insns, i, style=...)`` for one slot.
  Styles: ``"llvm"`` (exactly LLVM 19 ``llvm-objdump -d --mcpu=v4``), ``"pybpf"``
  (llvm plus the extensions that keep every encoded bit, so that
  ``assemble(disassemble(x, style="pybpf")) == x``), ``"kernel"`` (the
  verifier log's ``print_bpf_insn`` format) and ``"conformance"`` (the
  conformance suite's syntax).  Every style but ``"llvm"`` reads back
  losslessly; ``"llvm"`` loses exactly what llvm-objdump loses.
"""

from __future__ import annotations

import re

from ..errors import AsmError
from ..isa.insn import Insn
from .conformance import MNEMONICS as _CONF_MNEMONICS
from .conformance import assemble_conformance
from .core import strip_comment
from .llvm import assemble_llvm
from .printer import STYLES, disassemble, format_insn

__all__ = ["assemble", "disassemble", "format_insn", "detect_syntax", "SYNTAXES", "STYLES"]

SYNTAXES = ("auto", "llvm", "conformance")

_LABEL_PREFIX = re.compile(r"^(?:[A-Za-z_.$][\w.$]*\s*:\s*)+")


def detect_syntax(text: str) -> str:
    """``"conformance"`` if the text uses ``%r`` registers or mnemonic-first lines, else ``"llvm"``."""
    if "%r" in text:
        return "conformance"
    for raw in text.splitlines():
        line = _LABEL_PREFIX.sub("", strip_comment(raw))
        if not line:
            continue
        words = line.split()
        first = words[0].lower()
        if first in ("exit", "call", "callx"):
            continue
        if first == "lock":
            return "llvm" if line[4:].lstrip().startswith("*") else "conformance"
        if first in _CONF_MNEMONICS and not (len(words) > 1 and words[1].startswith(("=", "+=", "-="))):
            return "conformance"
        return "llvm"
    return "llvm"


def assemble(text: str, *, source: str | None = None, syntax: str = "auto") -> list[Insn]:
    """Assemble ``text`` into instruction slots."""
    if syntax not in SYNTAXES:
        raise AsmError(f"unknown syntax {syntax!r} (expected one of {', '.join(SYNTAXES)})", None, source)
    if syntax == "auto":
        syntax = detect_syntax(text)
    if syntax == "conformance":
        return assemble_conformance(text, source)
    return assemble_llvm(text, source)
