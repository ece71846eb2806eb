"""A packet buffer with head- and tailroom, whose bytes a program reaches through registered memory.

Only the live bytes ``[meta or data, data_end)`` are registered, so a program
can never touch headroom or tailroom it has not claimed with a helper; the
region is re-registered each time a helper moves the pointers, as Linux's
``bpf_compute_data_pointers`` refreshes them.
"""

from __future__ import annotations

import ctypes
import threading

from ..vm.memory import Memory, Region

_pool = threading.local()
_POOL_MAX = 8


def take_buffer(size: int):
    """(ctypes array, byte view) of ``size`` zeroed bytes, reused between runs of this thread."""
    free = getattr(_pool, "free", None)
    if free is None:
        free = _pool.free = {}
    lst = free.get(size)
    if lst:
        buf, view = lst.pop()
        ctypes.memset(buf, 0, size)
        return buf, view
    buf = (ctypes.c_char * size)()
    return buf, memoryview(buf).cast("B")


def give_buffer(size: int, buf, view) -> None:
    lst = _pool.free.setdefault(size, [])
    if len(lst) < _POOL_MAX:
        lst.append((buf, view))


class PacketBuffer:
    def __init__(self, memory: Memory, data: bytes, *, headroom: int, frame_size: int,
                 reserved_tail: int = 0, meta: bytes = b"", name: str = "packet") -> None:
        if headroom < len(meta):
            raise ValueError("metadata larger than the headroom")
        if headroom + len(data) > frame_size:
            raise ValueError(f"packet of {len(data)} bytes does not fit a frame of {frame_size}")
        self.memory = memory
        self.name = name
        self.frame_size = frame_size
        self.hard_end = frame_size - reserved_tail
        self.buf, self.view = take_buffer(frame_size)
        self.base = ctypes.addressof(self.buf)
        self.start = headroom
        self.end = headroom + len(data)
        self.meta = headroom - len(meta)
        self.view[self.meta:self.start] = meta
        self.view[self.start:self.end] = data
        self.mac = self.start           # where the L2 header starts (skb: may differ from data)
        self.region: Region | None = None
        self.data_region: Region | None = None
        self._register()

    # the addresses a program sees
    @property
    def data(self) -> int:
        return self.base + self.start

    @property
    def data_end(self) -> int:
        return self.base + self.end

    @property
    def data_meta(self) -> int:
        return self.base + self.meta

    def __len__(self) -> int:
        return self.end - self.start

    def bytes(self) -> bytes:
        return bytes(self.view[self.start:self.end])

    def frame(self) -> bytes:
        """From the L2 header to the end (what an skb test run returns)."""
        return bytes(self.view[min(self.mac, self.start):self.end])

    def meta_bytes(self) -> bytes:
        return bytes(self.view[self.meta:self.start])

    def _register(self) -> None:
        self._unregister()
        lo = min(self.meta, self.start, self.mac)
        # one region over meta+data (data_meta..data_end are one span in Linux too)
        self.region = self.memory.add_region(self.name, address=self.base + lo, size=self.end - lo,
                                             keepalive=self.buf)
        # LD_ABS/LD_IND read relative to data: a view starting there
        self.data_region = Region(self.name, self.data, self.end - self.start, False,
                                  self.view[self.start:self.end], self.buf)

    def _unregister(self) -> None:
        if self.region is not None:
            try:
                self.memory.remove_region(self.region)
            except KeyError:
                pass
            self.region = None

    def move(self, *, start: int | None = None, end: int | None = None, meta: int | None = None,
             mac: int | None = None) -> None:
        """Set new offsets (already checked by the caller) and re-register."""
        if start is not None:
            self.start = start
        if end is not None:
            self.end = end
        if meta is not None:
            self.meta = meta
        if mac is not None:
            self.mac = mac
        if self.meta > self.start:
            self.meta = self.start
        self._register()

    def close(self) -> None:
        self._unregister()
        self.data_region = None
        if self.buf is not None:
            give_buffer(self.frame_size, self.buf, self.view)
            self.buf = None
