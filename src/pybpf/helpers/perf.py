"""PERF_EVENT_ARRAY: per-CPU event rings read from Python, as BCC's ``open_perf_buffer``.

Linux keeps perf event fds in the map's slots; pybpf has no perf events, so
a slot is "open" while this process has a :class:`PerfBuffer` (or a counter
from :func:`attach_counter`) registered for it.  ``bpf_perf_event_output``
into an open slot queues the sample; ``PerfBuffer.poll()`` hands samples to
the callback as ``callback(cpu, data, size)``.  A full ring loses samples
(counted, reported to ``lost_cb``) and the helper returns -ENOSPC, as Linux.
"""

from __future__ import annotations

import collections
import errno
import threading
import time

from .common import neg, read, state

BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32
PAGE_SIZE = 4096

_lock = threading.Lock()
_rings: dict[tuple, "_Ring"] = {}
_counters: dict[tuple, object] = {}


def _map_obj(m):
    from .. import kobj
    if hasattr(m, "_obj"):
        return m._obj
    if isinstance(m, int):
        return kobj.obj_from_fd(m)
    return m


class _Ring:
    def __init__(self, cpu: int, capacity: int) -> None:
        self.cpu = cpu
        self.capacity = capacity
        self.used = 0
        self.samples: collections.deque = collections.deque()
        self.lost = 0
        self.cond = threading.Condition()

    def put(self, data: bytes) -> bool:
        size = ((len(data) + 4 + 7) & ~7) - 4          # raw samples are padded to 8 with their size
        cost = 8 + 4 + size                            # perf_event_header + size + data
        with self.cond:
            if self.used + cost > self.capacity:
                self.lost += 1
                return False
            self.used += cost
            self.samples.append((data.ljust(size, b"\0"), cost))
            self.cond.notify_all()
        return True

    def take(self):
        with self.cond:
            out = list(self.samples)
            self.samples.clear()
            self.used = 0
            lost, self.lost = self.lost, 0
        return [d for d, _ in out], lost


class PerfBuffer:
    """Samples written by programs into the slots of one PERF_EVENT_ARRAY map."""

    def __init__(self, map, callback, lost_cb=None, page_cnt: int = 8, cpus=None) -> None:
        from ..maps import ncpus
        if page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise ValueError(f"page_cnt must be a power of two, not {page_cnt}")
        obj = _map_obj(map)
        impl = obj.map_impl()
        if impl.spec.map_type != 4:
            raise ValueError(f"map id {obj.id} is not a PERF_EVENT_ARRAY")
        self.obj = obj
        self.callback = callback
        self.lost_cb = lost_cb
        self.cpus = list(cpus) if cpus is not None else list(range(min(ncpus(), impl.max_entries)))
        self.rings: dict[int, _Ring] = {}
        with _lock:
            for cpu in self.cpus:
                k = (obj.key, cpu)
                if k in _rings:
                    raise ValueError(f"slot {cpu} of map id {obj.id} already has a perf buffer")
            for cpu in self.cpus:
                self.rings[cpu] = _rings[(obj.key, cpu)] = _Ring(cpu, page_cnt * PAGE_SIZE)

    def poll(self, timeout: int = -1) -> int:
        """Deliver queued samples; wait up to ``timeout`` ms (-1: forever) for the first."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout / 1000
        while True:
            n = self._deliver()
            if n or (deadline is not None and time.monotonic() >= deadline):
                return n
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            time.sleep(wait)

    def _deliver(self) -> int:
        n = 0
        for cpu, ring in self.rings.items():
            samples, lost = ring.take()
            if lost and self.lost_cb is not None:
                self.lost_cb(lost)
            for data in samples:
                self.callback(cpu, data, len(data))
                n += 1
        return n

    def close(self) -> None:
        with _lock:
            for cpu, ring in self.rings.items():
                if _rings.get((self.obj.key, cpu)) is ring:
                    del _rings[(self.obj.key, cpu)]
        self.rings = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_perf_buffer(map, callback, lost_cb=None, page_cnt: int = 8) -> PerfBuffer:
    return PerfBuffer(map, callback, lost_cb, page_cnt)


def attach_counter(map, index: int, read_fn) -> None:
    """Make slot ``index`` a counter: bpf_perf_event_read returns ``read_fn()``."""
    _counters[(_map_obj(map).key, index)] = read_fn


def detach_counter(map, index: int) -> None:
    _counters.pop((_map_obj(map).key, index), None)


def _index(st, ref, flags):
    index = flags & BPF_F_INDEX_MASK
    if index == BPF_F_CURRENT_CPU:
        index = st.cpu
    if index >= ref.impl.max_entries:
        return None, neg(errno.E2BIG)
    return index, 0


def perf_event_read(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ref = st.runtime.map_at(r1)
    if r2 & ~BPF_F_INDEX_MASK:
        return neg(errno.EINVAL)
    index, err = _index(st, ref, r2)
    if index is None:
        return err
    fn = _counters.get((ref.obj.key, index))
    if fn is None:
        return neg(errno.ENOENT)
    return int(fn()) & 0xFFFFFFFFFFFFFFFF


def perf_event_output(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ref = st.runtime.map_at(r2)
    flags = r3
    on_packet = st.packet is not None
    allowed = BPF_F_INDEX_MASK | (BPF_F_CTXLEN_MASK if on_packet else 0)
    if flags & ~allowed:
        return neg(errno.EINVAL)
    ctx_len = (flags & BPF_F_CTXLEN_MASK) >> 32
    if ctx_len > (len(st.packet) if on_packet else 0):
        return neg(errno.EFAULT)
    index, err = _index(st, ref, flags)
    if index is None:
        return err
    ring = _rings.get((ref.obj.key, index))
    if ring is None:
        return neg(errno.ENOENT)
    if ring.cpu != st.cpu:
        return neg(errno.EOPNOTSUPP)       # the event lives on another CPU
    data = read(vm, r4, r5 & 0xFFFFFFFF)
    if ctx_len:
        data += st.packet.bytes()[:ctx_len]
    return 0 if ring.put(data) else neg(errno.ENOSPC)


HELPERS = {22: perf_event_read, 25: perf_event_output}
