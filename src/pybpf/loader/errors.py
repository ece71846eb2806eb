"""The one error type of the object reader."""

from __future__ import annotations

from ..errors import PybpfError


class ElfError(PybpfError):
    """A BPF object file that cannot be read, or that uses what we do not support.

    The message always starts with the file and then names the section,
    symbol or relocation at fault, so that a user can find the culprit with
    ``llvm-readelf``/``llvm-objdump`` without reading our source.
    """

    def __init__(self, reason: str, *, file: str | None = None, section: str | None = None,
                 symbol: str | None = None, reloc: str | None = None):
        self.reason = reason
        self.file = file
        self.section = section
        self.symbol = symbol
        self.reloc = reloc
        parts = []
        if file:
            parts.append(file)
        if section is not None:
            parts.append(f"section '{section}'")
        if reloc is not None:
            parts.append(reloc)
        if symbol is not None:
            parts.append(f"symbol '{symbol}'")
        parts.append(reason)
        super().__init__(_printable(": ".join(parts)))


def _printable(text: str) -> str:
    """Names come from the file: escape control characters so a message stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
