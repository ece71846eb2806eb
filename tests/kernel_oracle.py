"""The host kernel's real bpf(2), used as an oracle by differential tests.

Tests call :func:`require_kernel` (or use the ``kernel`` fixture from conftest)
so that they skip cleanly on machines where bpf() is not permitted.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

import pytest

_NR_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def sys_bpf(cmd: int, attr: ctypes.Array | bytearray, size: int | None = None) -> tuple[int, int]:
    """Call the kernel's bpf(); return (result, errno) without raising."""
    if isinstance(attr, bytearray):
        attr = (ctypes.c_char * len(attr)).from_buffer(attr)
    if size is None:
        size = ctypes.sizeof(attr)
    ctypes.set_errno(0)
    ret = _libc.syscall(ctypes.c_long(_NR_BPF or -1), ctypes.c_long(cmd), attr, ctypes.c_uint(size))
    return ret, (ctypes.get_errno() if ret < 0 else 0)


_available: bool | None = None


def kernel_available() -> bool:
    """True where this process may create a BPF map in the host kernel."""
    global _available
    if _available is None:
        if _NR_BPF is None or os.environ.get("PYBPF_NO_KERNEL"):
            _available = False
        else:
            attr = bytearray(72)
            attr[0:16] = (2).to_bytes(4, "little") + (4).to_bytes(4, "little") + \
                (8).to_bytes(4, "little") + (1).to_bytes(4, "little")  # ARRAY, 4, 8, 1
            fd, err = sys_bpf(0, attr)
            _available = fd >= 0
            if fd >= 0:
                os.close(fd)
            elif err not in (errno.EPERM, errno.ENOSYS, errno.EACCES):
                _available = False
    return _available


def require_kernel() -> None:
    if not kernel_available():
        pytest.skip("host kernel bpf() not available (needs root / CAP_BPF)")
