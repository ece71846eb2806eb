"""Exception hierarchy shared by every layer.

Every error pybpf raises on bad input derives from :class:`PybpfError`, so the
CLI can print it as one clear line instead of a traceback.
"""


class PybpfError(Exception):
    """Base of every error pybpf raises for bad input or a refused operation."""


class InsnError(PybpfError):
    """A malformed instruction encoding; ``index`` is the slot index (as the kernel counts)."""

    def __init__(self, index: int, reason: str):
        self.index = index
        self.reason = reason
        super().__init__(f"insn {index}: {reason}")


class AsmError(PybpfError):
    """Assembler input that cannot be parsed; carries file name and line number."""

    def __init__(self, reason: str, line: int | None = None, source: str | None = None):
        self.reason = reason
        self.line = line
        self.source = source
        where = ""
        if source is not None and line is not None:
            where = f"{source}:{line}: "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(f"{where}{reason}")
