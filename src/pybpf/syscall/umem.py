"""Reading and writing the caller's memory through the addresses in a bpf_attr.

Linux's copy_from_user/copy_to_user return EFAULT for a bad address instead
of crashing.  We get the same guarantee from process_vm_readv/writev on our
own pid, which the kernel checks page by page; where those syscalls are not
permitted (seccomp), we fall back to a plain memmove that only catches NULL.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading

_libc = ctypes.CDLL(None, use_errno=True)


class _IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_readv = getattr(_libc, "process_vm_readv", None)
_writev = getattr(_libc, "process_vm_writev", None)
for _f in (_readv, _writev):
    if _f is not None:
        _f.restype = ctypes.c_ssize_t
        _f.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong,
                       ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.c_ulong]
_checked = _readv is not None and _writev is not None
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _efault(what: str) -> OSError:
    return OSError(errno.EFAULT, f"{os.strerror(errno.EFAULT)}: {what}")


class _Scratch(threading.local):
    def __init__(self):
        self.local = _IOVec()
        self.remote = _IOVec()
        self.plocal = ctypes.byref(self.local)
        self.premote = ctypes.byref(self.remote)


_scratch = _Scratch()
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def _vm(fn, local_addr: int, remote_addr: int, n: int) -> bool:
    global _checked
    s = _scratch
    s.local.base = local_addr
    s.local.len = n
    s.remote.base = remote_addr
    s.remote.len = n
    got = fn(_pid, s.plocal, 1, s.premote, 1, 0)
    if got == n:
        return True
    err = ctypes.get_errno()
    if got < 0 and err in (errno.ENOSYS, errno.EPERM):
        _checked = False        # not allowed here: fall back to unchecked copies
        return False
    raise _efault(f"bad address {remote_addr:#x}")


def read(addr: int, n: int, what: str = "pointer") -> bytes:
    """n bytes at the caller's address; EFAULT for NULL or unmapped memory."""
    if n == 0:
        return b""
    if not addr:
        raise _efault(f"{what} is NULL")
    if _checked:
        buf = (ctypes.c_char * n)()
        if _vm(_readv, ctypes.addressof(buf), addr, n):
            return buf.raw
    return ctypes.string_at(addr, n)


def write(addr: int, data: bytes, what: str = "pointer") -> None:
    """Copy data to the caller's address; EFAULT for NULL or unmapped/read-only memory."""
    n = len(data)
    if n == 0:
        return
    if not addr:
        raise _efault(f"{what} is NULL")
    if _checked:
        data = bytes(data)
        # the source is an immutable bytes object: its buffer address is stable while we hold it
        if _vm(_writev, ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value, addr, n):
            return
    ctypes.memmove(addr, bytes(data), n)


def read_cstr(addr: int, limit: int = 4096, what: str = "pathname") -> bytes:
    """A NUL-terminated string (strncpy_from_user): ENAMETOOLONG past limit."""
    if not addr:
        raise _efault(f"{what} is NULL")
    out = b""
    while len(out) < limit:
        chunk = _PAGE - (addr + len(out)) % _PAGE
        chunk = min(chunk, limit - len(out))
        part = read(addr + len(out), chunk, what)
        nul = part.find(b"\0")
        if nul >= 0:
            return out + part[:nul]
        out += part
    raise OSError(errno.ENAMETOOLONG, f"{os.strerror(errno.ENAMETOOLONG)}: {what}")
