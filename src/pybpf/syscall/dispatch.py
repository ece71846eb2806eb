"""``bpf(cmd, attr, size)``: the command interface, binary-compatible with bpf(2).

Commands are registered with :func:`register` (map and object commands here;
PROG_LOAD, PROG_TEST_RUN, ... by the packages that implement them).  The
dispatcher does what Linux's __sys_bpf does before any command runs: the
tail-zero check of an oversized attr (E2BIG), copying at most
sizeof(union bpf_attr) bytes, and CHECK_ATTR (non-zero bytes after the
command's last field: EINVAL).
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Callable

from .attr import LAST_FIELD_END, SIZEOF_ATTR
from .umem import read as _uread
from .umem import write as _uwrite


class Attr:
    """One command's view of the caller's attr: the bytes, and where to write results back."""

    __slots__ = ("raw", "addr", "size")

    def __init__(self, raw: bytes, addr: int | None, size: int):
        self.raw = raw          # always SIZEOF_ATTR bytes, zero-filled past size
        self.addr = addr        # caller's buffer, None if it is read-only (bytes)
        self.size = size

    def view(self, struct_type):
        return struct_type.from_buffer_copy(self.raw[:ctypes.sizeof(struct_type)].ljust(
            ctypes.sizeof(struct_type), b"\0"))

    def u32(self, off: int) -> int:
        return int.from_bytes(self.raw[off:off + 4], "little")

    def u64(self, off: int) -> int:
        return int.from_bytes(self.raw[off:off + 8], "little")

    def write_back(self, off: int, data: bytes) -> None:
        """Store an output field into the caller's attr (only the first ``size`` bytes exist)."""
        if off + len(data) > self.size:
            return
        if self.addr is None:
            raise OSError(errno.EFAULT, "attr is read-only (bytes); pass a bytearray or ctypes object")
        _uwrite(self.addr + off, data, "attr")


Handler = Callable[[Attr], int]
_handlers: dict[int, tuple[Handler, int]] = {}


def register(cmd: int, handler: Handler, last_field_end: int | None = None) -> None:
    """Make ``bpf(cmd, ...)`` call handler(attr); last_field_end is the CHECK_ATTR bound."""
    if last_field_end is None:
        last_field_end = LAST_FIELD_END.get(cmd, SIZEOF_ATTR)
    _handlers[cmd] = (handler, last_field_end)


def registered() -> list[int]:
    return sorted(_handlers)


_CTYPES = (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)


def _buffer(attr) -> tuple[bytes | None, int | None, int]:
    """(contents or None, address or None, length) of a ctypes object or bytes-like attr."""
    if attr is None:
        return None, None, 0
    if isinstance(attr, _CTYPES):
        # our caller's live ctypes object: valid memory, read it directly
        n = ctypes.sizeof(attr)
        return ctypes.string_at(ctypes.addressof(attr), n), ctypes.addressof(attr), n
    if isinstance(attr, int):           # a raw address, as a C caller would pass
        return None, attr, -1
    mv = memoryview(attr)
    if not mv.c_contiguous:
        raise TypeError("attr must be a contiguous buffer")
    mv = mv.cast("B")
    if mv.readonly:
        return bytes(mv), None, len(mv)
    buf = (ctypes.c_char * len(mv)).from_buffer(mv) if len(mv) else None
    return bytes(mv), (ctypes.addressof(buf) if buf is not None else None), len(mv)


def bpf(cmd: int, attr=None, size: int | None = None) -> int:
    """Run one bpf(2) command; returns an fd or 0, raises OSError(errno) like the syscall.

    attr is a ctypes object, a bytes-like buffer (writable if the command
    returns data in attr), or an int address; size defaults to the buffer's
    length and may not exceed it.
    """
    contents, addr, length = _buffer(attr)
    if size is None:
        size = max(length, 0)
    if size < 0 or size > 0xFFFFFFFF:
        raise OSError(errno.EINVAL, "bad attr size")
    if length >= 0 and size > length:
        raise OSError(errno.EFAULT, f"size {size} is larger than the attr buffer ({length} bytes)")

    def fetch(off: int, n: int) -> bytes:
        if contents is not None:
            return contents[off:off + n]
        if n <= 0:
            return b""
        return _uread(addr + off, n, "attr")

    if size > SIZEOF_ATTR:
        if size > 4096:
            raise OSError(errno.E2BIG, "attr size larger than a page")
        if fetch(SIZEOF_ATTR, size - SIZEOF_ATTR).strip(b"\0"):
            raise OSError(errno.E2BIG, f"non-zero bytes after sizeof(union bpf_attr) = {SIZEOF_ATTR}")
        size = SIZEOF_ATTR
    raw = fetch(0, size).ljust(SIZEOF_ATTR, b"\0")
    entry = _handlers.get(cmd) if isinstance(cmd, int) else None
    if entry is None:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: unknown or unsupported bpf command {cmd}")
    handler, end = entry
    if raw[end:].strip(b"\0"):
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: non-zero bytes after the last field of command {cmd}")
    return handler(Attr(raw, addr, size))
