"""The memory a program may touch, and the checks that keep it inside it.

Registers hold real 64-bit addresses, exactly as in the kernel, so pointers
can be stored in memory, compared and passed to helpers.  Every address a
program dereferences must fall entirely inside one registered region; the
runtime never reads or writes anything else, so a wrong program gets a
:class:`VmError` naming the access instead of crashing the host process.
"""

from __future__ import annotations

import bisect
import ctypes
from dataclasses import dataclass, field
from typing import Any

from ..errors import PybpfError
from ..native import atomics
from .semantics import PACK, UNPACK


class VmError(PybpfError):
    """A program stopped by the runtime: bad memory access, budget exhausted, bad call..."""

    def __init__(self, message: str, pc: int | None = None):
        self.pc = pc
        self.trace: list[str] = []      # set by a traced run: the instructions before the fault
        super().__init__(message)


@dataclass(eq=False)
class Region:
    """``size`` bytes at the stable address ``base``; ``view`` is a byte memoryview of them."""

    name: str
    base: int
    size: int
    writable: bool
    view: memoryview = field(repr=False)
    keepalive: Any = field(default=None, repr=False)

    @property
    def end(self) -> int:
        return self.base + self.size

    def contains(self, addr: int, size: int = 1) -> bool:
        return self.base <= addr and addr + size <= self.base + self.size

    def describe(self) -> str:
        rw = "" if self.writable else ", read-only"
        return f"{self.name}: [{self.base:#x},{self.base:#x}+{self.size}){rw}"

    def read(self) -> bytes:
        return bytes(self.view)


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _as_region_memory(buf, address: int | None, size: int | None, writable: bool = True):
    """(address, size, view, keepalive) for any buffer or raw (address, size) pair.

    Writable buffers are used in place (the program sees and changes the
    caller's memory); a read-only buffer (bytes) may back a read-only region,
    through a private copy.
    """
    if buf is None:
        if address is None or size is None:
            raise ValueError("a region needs a buffer or an (address, size) pair")
        arr = (ctypes.c_char * size).from_address(address)
        return address, size, memoryview(arr).cast("B"), arr
    if isinstance(buf, ctypes.Array):
        arr = buf
    else:
        n = memoryview(buf).nbytes
        try:
            arr = (ctypes.c_char * n).from_buffer(buf)
        except TypeError as e:
            if writable:
                raise ValueError(f"a writable region needs writable memory: {e}") from None
            arr = (ctypes.c_char * n).from_buffer_copy(buf)
    n = ctypes.sizeof(arr)
    return ctypes.addressof(arr), n, memoryview(arr).cast("B"), (arr, buf)


class Memory:
    """The set of regions of one runtime, kept sorted by address."""

    def __init__(self) -> None:
        self._bases: list[int] = []
        self._regions: list[Region] = []

    # -- regions -------------------------------------------------------------

    def add_region(self, name: str, buf=None, *, writable: bool = True,
                   address: int | None = None, size: int | None = None,
                   keepalive: Any = None) -> Region:
        """Register memory the program may access.

        ``buf`` is any writable buffer (bytearray, ctypes array, mmap...), or
        pass ``address`` and ``size`` of memory someone else owns together
        with ``keepalive``, an object that keeps it mapped.
        """
        base, n, view, keep = _as_region_memory(buf, address, size, writable)
        region = Region(name, base, n, writable, view, (keep, keepalive))
        if n:
            i = bisect.bisect_right(self._bases, base)
            prev = self._regions[i - 1] if i else None
            nxt = self._regions[i] if i < len(self._regions) else None
            for other in (prev, nxt):
                if other is not None and other.size and base < other.end and other.base < base + n:
                    raise ValueError(f"region {name} overlaps {other.describe()}")
            self._bases.insert(i, base)
            self._regions.insert(i, region)
        return region

    def remove_region(self, region: Region | str) -> None:
        for i, r in enumerate(self._regions):
            if r is region or r.name == region:
                del self._regions[i]
                del self._bases[i]
                r.view.release()
                return
        if isinstance(region, Region) and not region.size:
            return
        raise KeyError(f"no region {region if isinstance(region, str) else region.name}")

    @property
    def regions(self) -> list[Region]:
        return list(self._regions)

    def find(self, addr: int, size: int = 1) -> Region | None:
        """The region holding all of ``[addr, addr+size)``, or None."""
        i = bisect.bisect_right(self._bases, addr) - 1
        if i >= 0:
            r = self._regions[i]
            if addr + size <= r.base + r.size:
                return r
        return None

    def nearest(self, addr: int) -> Region | None:
        if not self._regions:
            return None
        i = bisect.bisect_right(self._bases, addr)
        cands = self._regions[max(0, i - 1):i + 1]

        def dist(r: Region) -> int:
            if addr < r.base:
                return r.base - addr
            return max(0, addr - r.end + 1)
        return min(cands, key=dist)

    def where(self, addr: int) -> str:
        """``addr`` described relative to the nearest region."""
        addr &= (1 << 64) - 1          # what the 64-bit address arithmetic wrapped to
        addr_txt = f"{addr:#x}"
        r = self.nearest(addr)
        if r is None:
            return f"{addr_txt} (no memory regions)"
        rel = addr - r.base
        sign = "+" if rel >= 0 else "-"
        return f"{addr_txt} = {r.name}{sign}{abs(rel)} ({r.describe()})"

    # -- checked access ------------------------------------------------------

    def _check(self, addr: int, size: int, kind: str, write: bool) -> Region:
        r = self.find(addr, size)
        if r is None:
            raise VmError(f"out-of-bounds {kind} of {_bytes(size)} at {self.where(addr)}")
        if write and not r.writable:
            raise VmError(f"{kind} of {size} bytes to read-only memory at {self.where(addr)}")
        return r

    def load(self, addr: int, size: int, signed: bool = False) -> int:
        """The value at ``addr`` (little-endian); unsigned unless ``signed``."""
        r = self._check(addr, size, "load", False)
        return UNPACK[(size, signed)](r.view, addr - r.base)[0]

    def store(self, addr: int, size: int, value: int) -> None:
        r = self._check(addr, size, "store", True)
        PACK[size](r.view, addr - r.base, value & ((1 << (8 * size)) - 1))

    def read(self, addr: int, size: int) -> bytes:
        r = self._check(addr, size, "read", False) if size else None
        return bytes(r.view[addr - r.base:addr - r.base + size]) if r else b""

    def write(self, addr: int, data: bytes) -> None:
        if not data:
            return
        r = self._check(addr, len(data), "write", True)
        r.view[addr - r.base:addr - r.base + len(data)] = data

    def atomic_check(self, addr: int, size: int) -> Region:
        r = self._check(addr, size, "atomic access", True)
        if addr % size:
            raise VmError(f"misaligned atomic access of {_bytes(size)} at {self.where(addr)}")
        return r

    def atomic_fetch(self, name: str, addr: int, value: int, size: int) -> int:
        """Locked read-modify-write (add/or/and/xor/xchg); the old value."""
        self.atomic_check(addr, size)
        return atomics.fetch_op(name, addr, value, size * 8)

    def atomic_cmpxchg(self, addr: int, expected: int, new: int, size: int) -> int:
        self.atomic_check(addr, size)
        return atomics.cmpxchg(addr, expected, new, size * 8)
