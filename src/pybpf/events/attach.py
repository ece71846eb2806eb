"""What tracepoints and kprobes share: turning what users attach into runnable programs."""

from __future__ import annotations

import threading
import warnings

from ..errors import PybpfError
from ..runtime.core import ExecProgram


class EventError(PybpfError):
    pass


def as_exec(prog, prog_type: int) -> ExecProgram:
    """An ExecProgram from a Program, a prog fd, an ExecProgram or instructions."""
    return ExecProgram.of(prog, prog_type)


_active = threading.local()


class Attachments:
    """The programs attached to one event, run in attach order each time it fires."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.progs: list[ExecProgram] = []
        self.errors: list[str] = []
        self.hits = 0
        self.misses = 0             # events skipped because they fired inside a program run
        self._lock = threading.Lock()

    def add(self, prog: ExecProgram) -> None:
        with self._lock:
            self.progs.append(prog)

    def remove(self, prog) -> None:
        if not isinstance(prog, ExecProgram):
            prog = ExecProgram.of(prog, 0)
        with self._lock:
            self.progs = [p for p in self.progs if p is not prog and not (
                isinstance(prog, ExecProgram) and prog.key is not None and p.key == prog.key)]

    def run(self, runner) -> list[int]:
        """runner(prog) -> RunResult; a faulting program is recorded, never raised into the app.

        An event fired while this thread is already running a program (a probed function
        called by a helper or by a program's own event) is skipped and counted, as Linux
        counts recursion misses instead of nesting programs.
        """
        if getattr(_active, "depth", 0):
            self.misses += 1
            return []
        self.hits += 1
        out = []
        _active.depth = 1
        try:
            return self._run_all(runner, out)
        finally:
            _active.depth = 0

    def _run_all(self, runner, out) -> list[int]:
        for prog in list(self.progs):
            try:
                out.append(runner(prog).retval)
            except PybpfError as e:
                msg = f"{self.what}: program {prog.name or prog.prog_id or '?'} stopped: {e}"
                if len(self.errors) < 100:
                    self.errors.append(msg)
                if len(self.errors) == 1:
                    warnings.warn(msg, RuntimeWarning, stacklevel=3)
                out.append(None)
        return out
