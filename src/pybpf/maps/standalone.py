"""A map storage in a file of its own, without the object layer.

Tests and benchmarks use it to exercise the storage engines in one or several
processes: the layout mimics the object file (4 KiB reserved header, storage
from offset 4096) so the addresses and sharing behave exactly as there.
"""

from __future__ import annotations

import ctypes
import mmap
import os

from . import attach, init_storage, storage_size
from .spec import MapSpec

OBJ_HDR = 4096


class StandaloneMap:
    """Owns an fd + mmap of a map file; .impl is the MapImpl handle."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._anchor = ctypes.c_char.from_buffer(self.mm)
        self.addr = ctypes.addressof(self._anchor)
        self._mv = memoryview(self.mm)
        self.view = self._mv[OBJ_HDR:]
        self.impl = None

    @classmethod
    def create(cls, spec: MapSpec, path: str | None = None, dir: str = "/dev/shm") -> "StandaloneMap":
        size = OBJ_HDR + storage_size(spec)
        if path is None:
            fd = os.open(dir, os.O_TMPFILE | os.O_RDWR, 0o600)
        else:
            fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
        os.ftruncate(fd, size)
        m = cls(fd, size)
        init_storage(m.view, m.addr + OBJ_HDR, spec)
        m.impl = attach(m.view, m.addr + OBJ_HDR)
        return m

    @classmethod
    def open(cls, fd_or_path) -> "StandaloneMap":
        fd = fd_or_path if isinstance(fd_or_path, int) else os.open(fd_or_path, os.O_RDWR)
        size = os.fstat(fd).st_size
        m = cls(fd, size)
        m.impl = attach(m.view, m.addr + OBJ_HDR)
        return m

    def close(self) -> None:
        if self.impl is not None:
            self.impl.close()
            self.impl = None
        self.view.release()
        self._mv.release()
        del self._anchor
        self.mm.close()
        os.close(self.fd)

    def __enter__(self):
        return self.impl

    def __exit__(self, *exc):
        self.close()
