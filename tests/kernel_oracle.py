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


# --- verifier differential helpers (PROG_LOAD / MAP_CREATE) ---------------------------------

def kernel_map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
                      flags: int = 0, inner_map_fd: int = 0) -> tuple[int, int]:
    """BPF_MAP_CREATE in the host kernel; returns (fd, errno). The caller closes the fd."""
    attr = bytearray(72)
    for off, v in ((0, map_type), (4, key_size), (8, value_size), (12, max_entries), (16, flags),
                   (20, inner_map_fd)):
        attr[off:off + 4] = v.to_bytes(4, "little")
    return sys_bpf(0, attr)


def kernel_prog_load(code: bytes, prog_type: int, *, license: str = "GPL", log_level: int = 0,
                     log_size: int = 1 << 20, expected_attach_type: int = 0,
                     prog_flags: int = 0) -> tuple[int, int, str]:
    """BPF_PROG_LOAD in the host kernel; returns (fd, errno, log). The caller closes the fd."""
    insns = ctypes.create_string_buffer(bytes(code), max(len(code), 1))
    lic = ctypes.create_string_buffer(license.encode() + b"\0")
    log = ctypes.create_string_buffer(log_size if log_level else 1)
    attr = bytearray(160)
    attr[0:4] = prog_type.to_bytes(4, "little")
    attr[4:8] = (len(code) // 8).to_bytes(4, "little")
    attr[8:16] = ctypes.addressof(insns).to_bytes(8, "little")
    attr[16:24] = ctypes.addressof(lic).to_bytes(8, "little")
    if log_level:
        attr[24:28] = log_level.to_bytes(4, "little")
        attr[28:32] = log_size.to_bytes(4, "little")
        attr[32:40] = ctypes.addressof(log).to_bytes(8, "little")
    attr[44:48] = prog_flags.to_bytes(4, "little")
    attr[68:72] = expected_attach_type.to_bytes(4, "little")
    fd, err = sys_bpf(5, attr, 144)
    text = log.value.decode(errors="replace") if log_level else ""
    return fd, err, text


# --- attr builders shared by the pybpf bpf() tests and the kernel differential tests ------

import struct as _struct


def attr_map_create(map_type: int, key_size: int, value_size: int, max_entries: int,
                    map_flags: int = 0, inner_map_fd: int = 0, name: bytes = b"",
                    map_extra: int = 0, size: int = 72) -> bytearray:
    """union bpf_attr for BPF_MAP_CREATE (layout of include/uapi/linux/bpf.h)."""
    a = bytearray(max(size, 72))
    _struct.pack_into("<7I", a, 0, map_type, key_size, value_size, max_entries, map_flags,
                      inner_map_fd, 0)
    a[28:28 + len(name)] = name
    _struct.pack_into("<Q", a, 64, map_extra)
    return a


def attr_elem(map_fd: int, key: int = 0, value: int = 0, flags: int = 0, size: int = 32) -> bytearray:
    """union bpf_attr for BPF_MAP_*_ELEM / GET_NEXT_KEY; key/value are addresses."""
    a = bytearray(max(size, 32))
    _struct.pack_into("<I4xQQQ", a, 0, map_fd, key, value, flags)
    return a


def attr_obj(pathname: int, bpf_fd: int = 0, file_flags: int = 0, size: int = 16) -> bytearray:
    """union bpf_attr for BPF_OBJ_PIN / BPF_OBJ_GET; pathname is an address."""
    a = bytearray(max(size, 16))
    _struct.pack_into("<QII", a, 0, pathname, bpf_fd, file_flags)
    return a


# --- interpreter differential helper (PROG_TEST_RUN) ---------------------------------------

def kernel_prog_test_run(prog_fd: int, data: bytes = bytes(64), repeat: int = 1) -> tuple[int, int]:
    """BPF_PROG_TEST_RUN in the host kernel; returns (retval (u32), errno)."""
    data_in = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
    data_out = ctypes.create_string_buffer(max(len(data), 1) + 256)
    attr = bytearray(80)
    _struct.pack_into("<IIIIQQII", attr, 0, prog_fd, 0, len(data), len(data_out),
                      ctypes.addressof(data_in), ctypes.addressof(data_out), repeat, 0)
    ret, err = sys_bpf(10, attr)
    if ret < 0:
        return -1, err
    return int.from_bytes(attr[4:8], "little"), 0
