"""perf_event objects: a BPF-output event's ring buffer, shared by every process.

Linux's reader opens a PERF_COUNT_SW_BPF_OUTPUT event per CPU, mmaps its
ring and stores the event's fd in a PERF_EVENT_ARRAY slot; programs in any
context then write samples into that ring.  Here the event is an object of
kind ``perf_event`` (an fd like any other object) whose payload is the ring:

* payload page 0 is the control page, laid out where Linux's
  ``struct perf_event_mmap_page`` keeps them: data_head at 1024, data_tail at
  1032, data_offset at 1040, data_size at 1048; pybpf's own words (writer
  lock, pending lost count, CPU, reader identity) follow at 2048;
* then ``page_cnt`` pages of data, where records are stored exactly as Linux
  stores them: PERF_RECORD_SAMPLE = perf_event_header + u32 size + raw data
  padded so the record is a multiple of 8 (the padding bytes are skipped,
  not cleared, so they show older ring contents, as in Linux),
  PERF_RECORD_LOST = header + u64 id + u64 count; a record may wrap around
  the end of the data area.  tests/test_perf_buffers.py checks the bytes
  against the host kernel's ring.

Writers (programs, any process, any thread) serialise on a lock word holding
the owner's thread id and start time, taken over when that thread is dead
(as map writers do), so a writer killed mid-record never blocks the others;
the record becomes visible only when data_head moves past it.  The single
reader copies records out and then advances data_tail.  A writer never waits
for the reader: a full ring loses the sample and counts it.
"""

from __future__ import annotations

import errno
import os
import platform
import struct

from ..maps.layout import owner_id, wait_for_lock
from ..native import atomics
from .objects import HEADER_SIZE, BpfObject, _err, create_object, obj_from_fd

KIND = "perf_event"
PAGE_SIZE = 4096
MAX_PAGES = 1 << 16

OFF_DATA_HEAD = 1024
OFF_DATA_TAIL = 1032
OFF_DATA_OFFSET = 1040
OFF_DATA_SIZE = 1048
OFF_MAGIC = 2048
OFF_LOCK = 2056        # u64 owner id (tid | start time << 32) of the writer inside
OFF_LOST = 2064        # u64 samples lost and not yet reported
OFF_CPU = 2072         # u32
OFF_READER = 2080      # u64 pid | start time << 32 of the reading process
OFF_SAMPLES = 2088     # u64 samples written (statistics)
OFF_LOST_TOTAL = 2096  # u64 samples ever lost (statistics)
MAGIC = b"PYBPFPE1"

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_RECORD_MISC_KERNEL = 1     # what Linux puts in a BPF program's samples
_HDR = struct.Struct("<IHH")
_SAMPLE_HDR = struct.Struct("<IHHI")
_LOST = struct.Struct("<IHHQQ")
LOST_SIZE = _LOST.size
MAX_RECORD = 0xFFFF & ~7      # perf_event_header.size is a u16

_TSO = platform.machine() in ("x86_64", "AMD64", "i686")


def _ncpus() -> int:
    from ..maps import ncpus
    return ncpus()


def open_event(cpu: int, page_cnt: int = 8) -> int:
    """A new BPF-output perf event on ``cpu`` with a ring of ``page_cnt`` pages; its fd.

    The calling process is recorded as the ring's reader.
    """
    if type(cpu) is not int or not 0 <= cpu < _ncpus():
        raise _err(errno.EINVAL, f"cpu {cpu} out of range (0..{_ncpus() - 1})")
    if type(page_cnt) is not int or page_cnt <= 0 or page_cnt & (page_cnt - 1) or page_cnt > MAX_PAGES:
        raise _err(errno.EINVAL, f"page_cnt must be a power of two up to {MAX_PAGES}, not {page_cnt}")
    size = PAGE_SIZE * (1 + page_cnt)
    fd = create_object(KIND, {"type": "bpf_output", "cpu": cpu, "page_cnt": page_cnt}, size,
                       name="bpf_output")
    try:
        obj = obj_from_fd(fd)
        w = memoryview(obj.mm).cast("B")[HEADER_SIZE:HEADER_SIZE + PAGE_SIZE]
        struct.pack_into("<QQ", w, OFF_DATA_OFFSET, PAGE_SIZE, PAGE_SIZE * page_cnt)
        struct.pack_into("<I", w, OFF_CPU, cpu)
        struct.pack_into("<Q", w, OFF_READER, process_identity())
        w[OFF_MAGIC:OFF_MAGIC + 8] = MAGIC     # last: marks the control page complete
        w.release()
    except BaseException:
        os.close(fd)
        raise
    return fd


def event_from_fd(fd: int) -> BpfObject:
    """The perf event behind fd, for a PERF_EVENT_ARRAY update: EBADF for anything else.

    (Linux's perf_event_get() answers EBADF both for a closed fd and for an
    open file that is not a perf event, a BPF map's included.)
    """
    try:
        obj = obj_from_fd(fd)
    except OSError as e:
        if e.errno in (errno.EBADF, errno.EINVAL):
            raise _err(errno.EBADF, f"fd {fd} is not a perf event") from None
        raise
    if obj.kind != KIND:
        raise _err(errno.EBADF, f"fd {fd} is a {obj.kind}, not a perf event")
    return obj


def ring_of(obj: BpfObject) -> PerfRing:
    """This process's ring handle on a perf_event object (kept on the object handle)."""
    r = obj.impl
    if r is None:
        if obj.kind != KIND:
            raise _err(errno.EINVAL, f"object id {obj.id} is a {obj.kind}, not a perf event")
        r = obj.impl = PerfRing(obj)
    return r


# -- process identity (is the reader still there?) ------------------------------------------

def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rindex(b")") + 2:].split()
    if rest[0] in (b"Z", b"X", b"x"):
        return None
    return int(rest[19])


_me: tuple[int, int] | None = None


def process_identity() -> int:
    global _me
    pid = os.getpid()
    if _me is None or _me[0] != pid:
        _me = (pid, ((_start_time(pid) or 0) & 0xFFFFFFFF) << 32 | pid)
    return _me[1]


def identity_alive(ident: int) -> bool:
    if not ident:
        return False
    st = _start_time(ident & 0xFFFFFFFF)
    return st is not None and (st & 0xFFFFFFFF) == ident >> 32


# -- the ring -----------------------------------------------------------------------------

class PerfRing:
    """Process-local view of one perf event's ring: writer and reader sides."""

    def __init__(self, obj: BpfObject) -> None:
        mv = memoryview(obj.mm).cast("B")
        page = mv[HEADER_SIZE:HEADER_SIZE + PAGE_SIZE]
        if bytes(page[OFF_MAGIC:OFF_MAGIC + 8]) != MAGIC:
            raise _err(errno.EINVAL, f"object id {obj.id} is not an initialised perf event")
        off, size = struct.unpack_from("<QQ", page, OFF_DATA_OFFSET)
        if off != PAGE_SIZE or size <= 0 or size & (size - 1) or HEADER_SIZE + off + size > obj.size:
            raise _err(errno.EINVAL, f"perf event id {obj.id}: corrupt control page")
        self.id = obj.id
        self.cpu = struct.unpack_from("<I", page, OFF_CPU)[0]
        self.size = size
        self.mask = size - 1
        self.ctl = page
        self.w64 = page.cast("Q")
        self.data = mv[HEADER_SIZE + PAGE_SIZE:HEADER_SIZE + PAGE_SIZE + size]
        self.ctl_addr = obj.payload_addr
        self._lock_addr = self.ctl_addr + OFF_LOCK
        self._mv = mv
        # the native atomics themselves, bound once: this is every sample's path
        get = atomics._get
        self._cas, self._load = get("cmpxchg", 64), get("load", 64)
        self._add, self._xchg, self._store = get("add", 64), get("xchg", 64), get("store", 64)

    def close(self) -> None:
        for name in ("w64", "ctl", "data", "_mv"):
            v = getattr(self, name, None)
            if v is not None:
                v.release()
                setattr(self, name, None)

    # counters -------------------------------------------------------------------------------
    @property
    def head(self) -> int:
        return self.w64[OFF_DATA_HEAD >> 3]

    @property
    def tail(self) -> int:
        return self.w64[OFF_DATA_TAIL >> 3]

    @property
    def pending_lost(self) -> int:
        return self.w64[OFF_LOST >> 3]

    @property
    def samples_written(self) -> int:
        return self.w64[OFF_SAMPLES >> 3]

    @property
    def lost_total(self) -> int:
        return self.w64[OFF_LOST_TOTAL >> 3]

    @property
    def reader(self) -> int:
        return self.w64[OFF_READER >> 3]

    def claim_reader(self) -> None:
        """Record this process as the reader (after a fork, the child that polls)."""
        me = process_identity()
        if self.w64[OFF_READER >> 3] != me:
            self.w64[OFF_READER >> 3] = me

    def reader_alive(self) -> bool:
        return identity_alive(self.reader)

    # writer side ------------------------------------------------------------------------------
    def _lock(self) -> int:
        me = owner_id()
        cur = self._cas(self._lock_addr, 0, me)
        if cur == 0 or cur == me:       # == me: a stale lock of ours (interrupted writer)
            return me
        return self._lock_slow(me)

    def _lock_slow(self, me: int) -> int:
        # a dead owner never published its record: taking its lock over loses nothing
        wait_for_lock(self._load, self._cas, self._lock_addr, me)
        return me

    def _unlock(self) -> None:
        if _TSO:
            self.w64[OFF_LOCK >> 3] = 0
        else:
            self._store(self._lock_addr, 0)

    def _put(self, pos: int, blob: bytes) -> None:
        o = pos & self.mask
        n = len(blob)
        first = min(n, self.size - o)
        self.data[o:o + first] = blob[:first]
        if first < n:
            self.data[0:n - first] = blob[first:]

    def output(self, raw: bytes, misc: int = PERF_RECORD_MISC_KERNEL) -> bool:
        """Append a PERF_RECORD_SAMPLE with ``raw`` as its raw data; False if it was lost."""
        n = len(raw)
        raw_size = ((n + 4 + 7) & ~7) - 4
        rec = 8 + 4 + raw_size
        if rec > MAX_RECORD:
            self._lose()
            return False
        # the padding is skipped, not written, as Linux does: it shows what the ring held before
        blob = _SAMPLE_HDR.pack(PERF_RECORD_SAMPLE, misc, rec, raw_size) + raw
        w64 = self.w64
        self._lock()
        try:
            head = w64[OFF_DATA_HEAD >> 3]
            tail = self._load(self.ctl_addr + OFF_DATA_TAIL)
            have_lost = w64[OFF_LOST >> 3] != 0
            need = rec + (LOST_SIZE if have_lost else 0)
            # Linux's CIRC_SPACE: one byte always stays free, so head never catches up with tail
            if (tail - head - 1) & self.mask < need or head - tail > self.mask:
                self._lose()
                return False
            pos = head
            if have_lost:
                # the reader may have collected the count meanwhile: claim it atomically
                lost = self._xchg(self.ctl_addr + OFF_LOST, 0)
                if lost:
                    self._put(pos, _LOST.pack(PERF_RECORD_LOST, 0, LOST_SIZE, self.id, lost))
                    pos += LOST_SIZE
            o = pos & self.mask
            if o + len(blob) <= self.size:
                self.data[o:o + len(blob)] = blob
            else:
                self._put(pos, blob)
            pos += rec
            w64[OFF_SAMPLES >> 3] += 1
            # publish: the reader sees the record only once head has moved past it
            if _TSO:
                w64[OFF_DATA_HEAD >> 3] = pos
            else:
                self._store(self.ctl_addr + OFF_DATA_HEAD, pos)
            return True
        finally:
            self._unlock()

    def _lose(self) -> None:
        self._add(self.ctl_addr + OFF_LOST, 1)
        self._add(self.ctl_addr + OFF_LOST_TOTAL, 1)

    # reader side ------------------------------------------------------------------------------
    def _get(self, pos: int, n: int) -> bytes:
        o = pos & self.mask
        first = min(n, self.size - o)
        if first == n:
            return bytes(self.data[o:o + n])
        return bytes(self.data[o:]) + bytes(self.data[:n - first])

    def read(self, limit: int | None = None) -> list[tuple[int, bytes]]:
        """Take the published records (type, body after the 8-byte header) and free their space."""
        head = self._load(self.ctl_addr + OFF_DATA_HEAD)
        tail = self.w64[OFF_DATA_TAIL >> 3]
        out = []
        while tail < head and (limit is None or len(out) < limit):
            typ, _misc, size = _HDR.unpack(self._get(tail, 8))
            if size < 8 or size & 7 or size > head - tail:
                tail = head         # cannot happen with our writers; never loop on garbage
                break
            out.append((typ, self._get(tail + 8, size - 8)))
            tail += size
        if _TSO:
            self.w64[OFF_DATA_TAIL >> 3] = tail
        else:
            self._store(self.ctl_addr + OFF_DATA_TAIL, tail)
        return out

    def take_lost(self) -> int:
        """Collect the lost count no PERF_RECORD_LOST reported yet (the ring had no room since)."""
        if not self.w64[OFF_LOST >> 3]:
            return 0
        return self._xchg(self.ctl_addr + OFF_LOST, 0)


def parse_sample(body: bytes) -> bytes:
    """The raw data of a PERF_RECORD_SAMPLE body (u32 size + data, padding included)."""
    n, = struct.unpack_from("<I", body, 0)
    return body[4:4 + n]


def parse_lost(body: bytes) -> tuple[int, int]:
    """(event id, lost count) of a PERF_RECORD_LOST body."""
    return struct.unpack_from("<QQ", body, 0)


__all__ = [
    "KIND",
    "PERF_RECORD_LOST",
    "PERF_RECORD_SAMPLE",
    "PerfRing",
    "event_from_fd",
    "identity_alive",
    "open_event",
    "parse_lost",
    "parse_sample",
    "process_identity",
    "ring_of",
]
