"""pybpf: the eBPF subsystem of Linux, rebuilt in userspace Python."""

from .map import Map
from .object import BpfObject, load
from .prog import Program
from . import runtime  # noqa: F401  (registers BPF_PROG_TEST_RUN with bpf())
from .syscall import bpf

__version__ = "0.1.0"
__all__ = ["bpf", "load", "BpfObject", "Map", "Program", "__version__"]
