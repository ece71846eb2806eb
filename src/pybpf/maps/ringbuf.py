"""RINGBUF: Linux's BPF ring buffer record format in shared memory.

The data area is max_entries bytes (a power of two); consumer and producer
positions are u64 counters that only grow.  Each record is an 8-byte header
{u32 len | BUSY bit 31 | DISCARD bit 30, u32 pg_off} followed by the data,
padded to 8 bytes.  reserve() writes a BUSY header and advances the producer
position under the map lock; submit()/discard() clear BUSY with one atomic
store, so they need no lock; the consumer reads committed records in order
and stops at the first BUSY one.

Differences from Linux, both forced by living in a plain file mapping:
* Linux maps the data pages twice so that a record may wrap around the end;
  here a record that would wrap is preceded by a discarded padding record
  filling the tail, so every record's data is contiguous for programs.
* pg_off holds the reserving thread's id instead of a page offset: if that
  thread is killed between reserve and submit, the consumer discards the
  record instead of stalling forever behind it.
"""

from __future__ import annotations

import errno
import threading

from ..native import atomics
from . import spec as S
from .base import MapImpl, as_bytes, check_flags, err
from .layout import OFF_FIELDS, _thread_stat

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_CONS, _PROD, _PEND = OFF_FIELDS, OFF_FIELDS + 8, OFF_FIELDS + 16
MAX_RECORD = 0x0FFFFFFF - HDR


class RingbufMap(MapImpl):
    map_type = S.RINGBUF

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        return spec.max_entries

    def _setup(self) -> None:
        self.mask = self.max_entries - 1
        self.data_addr = self.base + self.doff

    # positions ------------------------------------------------------------------------------
    @property
    def consumer_pos(self) -> int:
        return self.w64[_CONS >> 3]

    @property
    def producer_pos(self) -> int:
        return self.w64[_PROD >> 3]

    def avail_data(self) -> int:
        return self.producer_pos - self.consumer_pos

    def query(self, flags: int) -> int:
        """bpf_ringbuf_query: 0 avail data, 1 ring size, 2 consumer pos, 3 producer pos."""
        return {0: self.avail_data, 1: lambda: self.max_entries, 2: lambda: self.consumer_pos,
                3: lambda: self.producer_pos}.get(flags, lambda: 0)()

    def _hdr_len(self, pos: int) -> int:
        return self.w32[(self.doff + (pos & self.mask)) >> 2]

    # producer side (programs) ---------------------------------------------------------------------
    def reserve(self, size: int, flags: int = 0) -> int | None:
        """Address of `size` writable bytes in the ring, or None if there is no room."""
        flags = check_flags(flags)
        if flags or size < 0 or size > MAX_RECORD:
            return None
        ln = (size + HDR + 7) & ~7
        total = self.max_entries
        if ln > total:
            return None
        with self:
            cons = self.w64[_CONS >> 3]
            prod = self.w64[_PROD >> 3]
            pend = self.w64[_PEND >> 3]
            while pend < prod:
                h = self._hdr_len(pend)
                if h & BUSY:
                    break
                pend += ((h & ~DISCARD) + HDR + 7) & ~7
            pad = 0
            off = prod & self.mask
            if off + ln > total:
                pad = total - off
            new_prod = prod + pad + ln
            if new_prod - cons > self.mask or new_prod - pend > self.mask:
                if pend != self.w64[_PEND >> 3]:
                    self.put64(_PEND, pend)
                return None
            tid = threading.get_native_id()
            if pad:
                # a discarded record fills the tail so the real one starts at offset 0
                self._write_hdr(off, (pad - HDR) | DISCARD, tid)
                off = 0
            self._write_hdr(off, size | BUSY, tid)
            self.put64(_PEND, pend)
            self.put64(_PROD, new_prod)
            return self.data_addr + off + HDR

    def _write_hdr(self, off: int, length: int, tid: int) -> None:
        i = (self.doff + off) >> 2
        self.w32[i] = length
        self.w32[i + 1] = tid

    def _commit(self, addr: int, discard: bool) -> None:
        off = addr - HDR - self.data_addr
        if not 0 <= off < self.max_entries or off & 7:
            raise err(errno.EINVAL, f"address {addr:#x} is not a record of this ring buffer")
        h = atomics.load(self.data_addr + off, 32)
        if not h & BUSY:
            raise err(errno.EINVAL, f"record at {addr:#x} was already submitted or discarded")
        new = (h & ~BUSY) | (DISCARD if discard else 0)
        atomics.store(self.data_addr + off, new, 32)

    def submit(self, addr: int, flags: int = 0) -> None:
        flags = check_flags(flags)
        self._commit(addr, False)

    def discard(self, addr: int, flags: int = 0) -> None:
        flags = check_flags(flags)
        self._commit(addr, True)

    def output(self, data: bytes, flags: int = 0) -> int:
        """bpf_ringbuf_output: 0, or -EAGAIN when the ring has no room."""
        flags = check_flags(flags)
        data = as_bytes(data, "data")
        addr = self.reserve(len(data))
        if addr is None:
            return -errno.EAGAIN
        o = addr - self.base
        self.view[o:o + len(data)] = data
        self.submit(addr)
        return 0

    # consumer side (user space) -----------------------------------------------------------------
    def consume(self, limit: int | None = None) -> list[bytes]:
        """Take the committed records in order (up to limit), freeing their space."""
        out: list[bytes] = []
        cons_i = _CONS >> 3
        while limit is None or len(out) < limit:
            cons = self.w64[cons_i]
            prod = atomics.load(self.base + _PROD)
            if cons >= prod:
                break
            off = cons & self.mask
            h = atomics.load(self.data_addr + off, 32)
            if h & BUSY:
                tid = self.w32[((self.doff + off) >> 2) + 1]
                if _thread_alive(tid):
                    break
                # its producer died between reserve and submit: drop the record
                atomics.cmpxchg(self.data_addr + off, h, (h & ~BUSY) | DISCARD, 32)
                continue
            ln = h & ~DISCARD
            if not h & DISCARD:
                o = self.doff + off + HDR
                out.append(self.view[o:o + ln].tobytes())
            atomics.store(self.base + _CONS, cons + ((ln + HDR + 7) & ~7))
        return out

    def __iter__(self):
        return iter(self.consume())

    # user-space element commands are not supported by Linux ring buffers
    def keys(self):
        return iter(())

    def _check_locked(self) -> list[str]:
        cons, prod, pend = self.w64[_CONS >> 3], self.w64[_PROD >> 3], self.w64[_PEND >> 3]
        p = []
        if not cons <= prod or prod - cons > self.max_entries:
            p.append(f"consumer {cons} / producer {prod} positions inconsistent")
        if not pend <= prod:
            p.append(f"pending {pend} beyond producer {prod}")
        return p


def _thread_alive(tid: int) -> bool:
    st = _thread_stat(tid)
    return st is not None and st[0] not in ("Z", "X", "x")
