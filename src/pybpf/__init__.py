"""pybpf: the eBPF subsystem of Linux, rebuilt in userspace Python."""

__version__ = "0.1.0"
