"""The eBPF virtual machine: instruction semantics, checked memory, two engines.

- :mod:`pybpf.vm.semantics` — what every instruction computes (the single definition);
- :mod:`pybpf.vm.memory` — regions with stable addresses and checked access;
- :class:`VM` — ``VM(insns, helpers=..., max_insns=...).run(mem, trace=...) -> Result``.
"""

from .machine import DEFAULT_MAX_INSNS, VM, Env, Result, StopProgram
from .memory import Memory, Region, VmError

__all__ = ["VM", "Result", "StopProgram", "Memory", "Region", "VmError", "Env",
           "DEFAULT_MAX_INSNS"]
