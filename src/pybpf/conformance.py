"""The eBPF conformance suite format (``.data`` files) and its runner.

A file holds sections introduced by ``-- name`` lines: ``asm`` (the program,
conformance assembler syntax), ``mem`` (input memory as hex bytes), ``result``
(expected r0), ``raw`` (the expected encoding, one little-endian 64-bit word
per slot, used to cross-check the assembler), ``error`` (an expected failure),
and ``c`` / ``no register offset`` (notes, ignored).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import PybpfError
from .isa import Insn, decode, encode
from .vm import VM, StopProgram

UNWIND_HELPER = 5


def _unwind(vm, r1, r2, r3, r4, r5):
    # The suite's helper 5: returns its argument, and a zero argument ends
    # the program on the spot with r0 = 0 (call_unwind_fail.data).
    if r1 == 0:
        raise StopProgram(0)
    return r1


HELPERS = {UNWIND_HELPER: _unwind}


class ConformanceError(PybpfError):
    """A malformed ``.data`` file."""


@dataclass
class Case:
    name: str
    asm: str | None = None
    mem: bytes = b""
    result: int | None = None
    raw: list[int] | None = None
    error: str | None = None
    asm_line: int = 1          # line of the first asm line in the file


@dataclass
class Outcome:
    name: str
    passed: bool
    reason: str = ""
    r0: int | None = None


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(o.passed for o in self.outcomes)

    @property
    def failed(self) -> int:
        return len(self.outcomes) - self.passed

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


_SECTION = re.compile(r"^--\s*(.*?)\s*$")


def parse_hex_bytes(text: str, what: str = "memory") -> bytes:
    """``"aa bb 11"`` or ``"aabb11"`` (any whitespace, optional 0x per group) -> bytes."""
    out = bytearray()
    for tok in text.split():
        t = tok[2:] if tok.lower().startswith("0x") else tok
        if not re.fullmatch(r"(?:[0-9a-fA-F]{2})+", t):
            raise ConformanceError(f"bad hex byte {tok!r} in {what}")
        out += bytes.fromhex(t)
    return bytes(out)


def _int(text: str, what: str, source: str) -> int:
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise ConformanceError(f"{source}: bad {what} value {text.strip()!r}") from None


def parse(text: str, name: str = "<data>") -> Case:
    case = Case(name)
    sections: dict[str, list[str]] = {}
    starts: dict[str, int] = {}
    current = None
    for lineno, line in enumerate(text.splitlines(), 1):
        m = _SECTION.match(line)
        if m:
            current = m.group(1).lower()
            sections.setdefault(current, [])
            starts[current] = lineno + 1
            continue
        if current is not None:
            sections[current].append(line)
    if "asm" not in sections:
        raise ConformanceError(f"{name}: no '-- asm' section")
    case.asm = "\n".join(sections["asm"]) + "\n"
    case.asm_line = starts["asm"]
    if "mem" in sections:
        try:
            case.mem = parse_hex_bytes("\n".join(sections["mem"]))
        except ConformanceError as e:
            raise ConformanceError(f"{name}: {e}") from None
    if "result" in sections:
        body = " ".join(sections["result"]).strip()
        case.result = _int(body, "result", name) & ((1 << 64) - 1)
    if "raw" in sections:
        case.raw = [_int(t, "raw", name) for t in " ".join(sections["raw"]).split()]
    if "error" in sections:
        case.error = " ".join(sections["error"]).strip()
    if case.result is None and case.error is None:
        raise ConformanceError(f"{name}: neither '-- result' nor '-- error' section")
    return case


def assemble_case(case: Case) -> list[Insn]:
    from .asm import assemble

    # Pad so that assembler line numbers are the file's line numbers.
    text = "\n" * (case.asm_line - 1) + (case.asm or "")
    return assemble(text, source=case.name, syntax="conformance")


def run_case(case: Case, *, engine: str = "fast", max_insns: int | None = None) -> Outcome:
    try:
        insns = assemble_case(case)
        if case.raw is not None:
            raw = encode(insns)
            words = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
            if words != case.raw:
                bad = next((i for i, (a, b) in enumerate(zip(words, case.raw)) if a != b),
                           min(len(words), len(case.raw)))
                got = f"{words[bad]:#018x}" if bad < len(words) else "nothing"
                want = f"{case.raw[bad]:#018x}" if bad < len(case.raw) else "nothing"
                return Outcome(case.name, False, f"assembler encoding differs from '-- raw' at "
                                                 f"slot {bad}: got {got}, expected {want}")
        kwargs = {} if max_insns is None else {"max_insns": max_insns}
        vm = VM(insns, helpers=HELPERS, **kwargs)
        result = vm.run(case.mem, engine=engine)
    except PybpfError as e:
        if case.error is not None:
            return Outcome(case.name, True, f"failed as expected: {e}")
        return Outcome(case.name, False, str(e))
    if case.error is not None:
        return Outcome(case.name, False, f"expected an error ({case.error}), got r0={result.r0:#x}",
                       result.r0)
    if result.r0 != case.result:
        return Outcome(case.name, False, f"r0 = {result.r0:#x}, expected {case.result:#x}", result.r0)
    return Outcome(case.name, True, "", result.r0)


def run_file(path: str | Path, **kwargs) -> Outcome:
    path = Path(path)
    try:
        case = parse(path.read_text(), path.name)
    except (OSError, UnicodeDecodeError) as e:
        return Outcome(path.name, False, f"cannot read: {e}")
    except ConformanceError as e:
        return Outcome(path.name, False, str(e))
    return run_case(case, **kwargs)


def data_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ConformanceError(f"{path}: no such file or directory")
    return sorted(path.glob("*.data"))


def run_dir(path: str | Path, **kwargs) -> Report:
    """Run every ``.data`` file under ``path`` (or the one file)."""
    report = Report()
    for f in data_files(path):
        report.outcomes.append(run_file(f, **kwargs))
    return report


def run_plugin(program_hex: str, memory_hex: str | None = None) -> int:
    """bpf_conformance plugin protocol: program as hex bytes, memory as hex bytes -> r0."""
    text = re.sub(r"\s+", "", program_hex)
    if text.lower().startswith("0x"):
        text = text[2:]
    if len(text) % 2 or not re.fullmatch(r"[0-9a-fA-F]*", text):
        raise ConformanceError("program must be hex bytes")
    insns = decode(bytes.fromhex(text))
    mem = parse_hex_bytes(memory_hex or "")
    return VM(insns, helpers=HELPERS).run(mem).r0
