"""The program runtime: contexts per program type, running programs, test runs, verdicts.

- :class:`ExecProgram` — a program ready to run (from a prog object or verified instructions);
- :func:`run`, :func:`run_skb`, :func:`run_xdp`, :func:`run_kprobe`, :func:`run_raw` — one run
  (or ``repeat``) on a packet model (:class:`SkBuff`, :class:`XdpBuff`) or an event record;
- ``BPF_PROG_TEST_RUN`` is registered with :func:`pybpf.bpf` by :mod:`pybpf.runtime.testrun`.
"""

from . import verdicts
from .core import ExecProgram, Runtime, RunState, runtime, trace_listeners
from .execute import RunResult, run, run_kprobe, run_raw, run_skb, run_xdp
from .skb import SkBuff, TunnelInfo, XdpBuff
from . import testrun  # noqa: F401  (registers BPF_PROG_TEST_RUN)
from .testrun import TestRunResult, test_run

__all__ = ["ExecProgram", "Runtime", "RunState", "runtime", "trace_listeners", "RunResult", "run",
           "run_kprobe", "run_raw", "run_skb", "run_xdp", "SkBuff", "TunnelInfo", "XdpBuff",
           "verdicts", "test_run", "TestRunResult"]
