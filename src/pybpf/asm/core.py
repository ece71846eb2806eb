"""What both assembler syntaxes share: numbers, ranges, labels and jump resolution.

A parser turns each source line into zero or more :class:`Pending` slots; the
offsets that name a label are filled in by :func:`link` once every label's slot
index is known.  Slots (not source lines) are what jumps count, so LD_IMM64
counts twice, exactly as the kernel counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..errors import AsmError
from ..isa.insn import Insn

S16 = (-(1 << 15), (1 << 15) - 1)
S32 = (-(1 << 31), (1 << 31) - 1)
# 32-bit immediates may be written unsigned (0xffffffff) and are stored as s32.
IMM32 = (-(1 << 31), (1 << 32) - 1)
IMM64 = (-(1 << 63), (1 << 64) - 1)

_NUM = re.compile(r"^([+-]?)\s*(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO][0-7]+|[0-9]+)$")
LABEL_RE = re.compile(r"^[A-Za-z_.$][A-Za-z0-9_.$]*$")


def parse_number(text: str) -> int | None:
    """An integer literal (decimal, 0x, 0b, 0o; leading zeros are decimal), or None."""
    m = _NUM.match(text.strip())
    if not m:
        return None
    sign, digits = m.groups()
    low = digits.lower()
    if low.startswith("0x"):
        v = int(low[2:], 16)
    elif low.startswith("0b"):
        v = int(low[2:], 2)
    elif low.startswith("0o"):
        v = int(low[2:], 8)
    else:
        v = int(digits, 10)
    return -v if sign == "-" else v


def to_s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


@dataclass
class Pending:
    """One slot under construction; ``target`` names a label still to resolve."""

    insn: Insn
    line: int
    target: str | None = None
    field: str = "off"          # which field receives the pc-relative distance


class Program:
    """Collects slots and labels for one source text, then links them."""

    def __init__(self, source: str | None):
        self.source = source
        self.slots: list[Pending] = []
        self.labels: dict[str, int] = {}
        self.label_lines: dict[str, int] = {}
        # An implicit target used by the conformance syntax: "exit" names the
        # next exit instruction when no label of that name exists.
        self.exit_slots: list[int] = []

    def error(self, reason: str, line: int) -> AsmError:
        return AsmError(reason, line, self.source)

    def label(self, name: str, line: int) -> None:
        if not LABEL_RE.match(name):
            raise self.error(f"invalid label name {name!r}", line)
        if name in self.labels:
            raise self.error(f"duplicate label {name!r} (first defined on line "
                             f"{self.label_lines[name]})", line)
        self.labels[name] = len(self.slots)
        self.label_lines[name] = line

    def emit(self, insn: Insn, line: int, target: str | None = None, field: str = "off") -> None:
        if insn.code == 0x95:
            self.exit_slots.append(len(self.slots))
        self.slots.append(Pending(insn, line, target, field))

    def link(self, *, implicit_exit: bool = False) -> list[Insn]:
        out = []
        for pc, p in enumerate(self.slots):
            ins = p.insn
            if p.target is not None:
                dest = self.labels.get(p.target)
                if dest is None and implicit_exit and p.target == "exit":
                    dest = next((s for s in self.exit_slots if s > pc), None)
                    if dest is None:
                        raise self.error("jump to 'exit' but no exit instruction follows", p.line)
                if dest is None:
                    raise self.error(f"undefined label {p.target!r}", p.line)
                rel = dest - pc - 1
                lo, hi = S16 if p.field == "off" else S32
                if not lo <= rel <= hi:
                    width = 16 if p.field == "off" else 32
                    raise self.error(f"jump to {p.target!r} is {rel:+d} instructions away, "
                                     f"out of the {width}-bit offset range", p.line)
                ins = replace(ins, **{p.field: rel})
            out.append(ins)
        return out


def check_range(prog: Program, value: int, bounds: tuple[int, int], what: str, line: int) -> int:
    lo, hi = bounds
    if not lo <= value <= hi:
        raise prog.error(f"{what} {value} out of range [{lo}, {hi}]", line)
    return value


def strip_comment(text: str) -> str:
    """Drop ``;`` and ``//`` comments and ``#`` comments that start a word.

    A ``#`` glued to a word is not a comment: the kernel log writes helper calls
    as ``call bpf_map_lookup_elem#1``.
    """
    cut = len(text)
    for mark in (";", "//"):
        k = text.find(mark)
        if k != -1 and k < cut:
            cut = k
    m = _HASH_COMMENT.search(text)
    if m and m.start(1) < cut:
        cut = m.start(1)
    return text[:cut].strip()


_HASH_COMMENT = re.compile(r"(?:^|\s)(#)")
