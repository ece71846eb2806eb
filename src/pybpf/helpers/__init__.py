"""The BPF helper functions, with Linux's semantics in user space.

``HELPERS`` maps helper ids to ``fn(vm, r1, r2, r3, r4, r5) -> int`` as the VM
calls them; each family lives in its own module.  Helpers find the current
invocation's state (context, packet, maps, verdict) on ``vm.state``, which
:mod:`pybpf.runtime` sets before running a program.
"""

from __future__ import annotations

from ..vm import StopProgram, VmError
from . import calls, csum, maps, perf, probe, ringbuf, skb, task, trace, xdp
from .perf import PerfBuffer, attach_counter, detach_counter, open_perf_buffer
from .trace import follow, read_lines, trace_fields

def _guarded(fid: int, fn):
    """A helper whose unexpected failures become a VmError naming it (never a traceback)."""
    name = f"bpf_{fn.__name__}"

    def helper(vm, r1, r2, r3, r4, r5):
        try:
            return fn(vm, r1, r2, r3, r4, r5)
        except (VmError, StopProgram):
            raise
        except OSError as e:
            raise VmError(f"{name}: {e.strerror or e}") from None
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:
            raise VmError(f"{name} cannot run here: {e}") from None
    helper.__name__ = fn.__name__
    helper.raw = fn
    return helper


HELPERS: dict = {}
for _m in (maps, task, probe, trace, csum, skb, xdp, ringbuf, perf, calls):
    for _fid, _fn in _m.HELPERS.items():
        HELPERS[_fid] = _guarded(_fid, _fn)

__all__ = ["HELPERS", "PerfBuffer", "open_perf_buffer", "attach_counter", "detach_counter",
           "read_lines", "follow", "trace_fields"]
