"""PERF_EVENT_ARRAY: per-CPU event rings any process can read, as BCC's ``open_perf_buffer``.

As in Linux, the reader opens one BPF-output perf event per CPU
(:func:`pybpf.kobj.perf_event.open_event`, an object whose payload is a ring
in shared memory) and stores each event's fd in the map slot of its CPU;
``bpf_perf_event_output`` in any process appends a PERF_RECORD_SAMPLE to the
ring of the slot, and ``PerfBuffer.poll()`` in the reader hands the samples
to ``callback(cpu, data, size)``.  A full ring loses the sample (counted in
a PERF_RECORD_LOST record written once there is room again, or collected by
the next poll, and reported to ``lost_cb(count)``) and the helper returns
-ENOSPC, as Linux.

Linux removes the events a reader stored when the reader's map file is
released (its process exits), unless the map has BPF_F_PRESERVE_ELEMS.  Here
a writer that finds a ring full checks whether the ring's reader process is
still alive, and if not empties the slot, so that later writes get -ENOENT.

``bpf_perf_event_read`` reads counters registered in this process with
:func:`attach_counter` (pybpf has no hardware counters).
"""

from __future__ import annotations

import collections
import errno
import os
import threading
import time

from .common import neg, read, state

BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32
BPF_F_PRESERVE_ELEMS = 1 << 11
PAGE_SIZE = 4096
READER_CHECK_INTERVAL = 0.5     # seconds between two checks of one ring's reader by a writer

_lock = threading.Lock()
_counters: dict[tuple, object] = {}
# (map key, slot) -> (event id, event handle, ring): the events this process writes to
_slots: dict[tuple, tuple] = {}
_reader_checked: dict[int, float] = {}


def _map_obj(m):
    from .. import kobj
    if hasattr(m, "_obj"):
        return m._obj
    if isinstance(m, int):
        return kobj.obj_from_fd(m)
    return m


def _own_map(m, map_id):
    """A Map the buffer owns (its own fd): from a Map, an fd, a pin path, a handle or an id."""
    from ..map import Map
    if map_id is not None:
        if m is not None:
            raise ValueError("give either a map or map_id, not both")
        return Map.from_id(map_id)
    if isinstance(m, Map):
        return Map.from_fd(m.fd)
    if isinstance(m, int) and not isinstance(m, bool):
        return Map.from_fd(m)
    if isinstance(m, (str, bytes, os.PathLike)):
        return Map.from_pinned(os.fsdecode(m))
    if hasattr(m, "new_fd") and getattr(m, "kind", None) == "map":
        return Map(m.new_fd())
    raise TypeError(f"expected a Map, a map fd, a pin path or map_id=, not {type(m).__name__}")


class PerfBuffer:
    """Samples written by programs (of any process) into the slots of one PERF_EVENT_ARRAY.

    ``map``: a Map, a map fd, a pin path (``/sys/fs/bpf/...``), or ``map_id=``.
    One perf event with a ring of ``page_cnt`` pages is opened per CPU in
    ``cpus`` (default: every CPU that has a slot) and stored in slot ``cpu``.
    """

    def __init__(self, map=None, callback=None, lost_cb=None, page_cnt: int = 8, cpus=None, *,
                 map_id=None) -> None:
        from .. import kobj
        from ..kobj import perf_event
        from ..maps import ncpus
        if callback is None:
            raise TypeError("PerfBuffer needs a callback(cpu, data, size)")
        if type(page_cnt) is not int or page_cnt <= 0 or page_cnt & (page_cnt - 1):
            raise ValueError(f"page_cnt must be a power of two, not {page_cnt}")
        self.callback = callback
        self.lost_cb = lost_cb
        self.rings: dict = {}
        self._pending: dict = {}
        self._fds: dict[int, int] = {}
        self.map = None
        self.map = _own_map(map, map_id)
        try:
            if self.map.type != 4:
                raise ValueError(f"map id {self.map.id} is not a PERF_EVENT_ARRAY")
            impl = self.map._obj.map_impl()
            self.cpus = list(cpus) if cpus is not None else list(range(min(ncpus(), impl.max_entries)))
            for cpu in self.cpus:
                fd = perf_event.open_event(cpu, page_cnt)
                self._fds[cpu] = fd
                self.rings[cpu] = perf_event.ring_of(kobj.obj_from_fd(fd))
                self.map.update(cpu.to_bytes(4, "little"), fd.to_bytes(4, "little"))
        except BaseException:
            self.close()
            raise

    def poll(self, timeout: int = -1) -> int:
        """Deliver the samples written so far; wait up to ``timeout`` ms (-1: forever) for one.

        Returns how many samples were handed to the callback.
        """
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout / 1000
        nap = 0.0005
        while True:
            n = self._deliver()
            if n or (deadline is not None and time.monotonic() >= deadline):
                return n
            wait = nap if deadline is None else max(0.0, min(nap, deadline - time.monotonic()))
            time.sleep(wait)
            nap = min(nap * 2, 0.02)

    def _deliver(self) -> int:
        from ..kobj.perf_event import (
            PERF_RECORD_LOST,
            PERF_RECORD_SAMPLE,
            parse_lost,
            parse_sample,
        )
        n = 0
        for cpu, ring in list(self.rings.items()):
            ring.claim_reader()
            # records already taken from the ring wait here if a callback raises
            recs = self._pending.setdefault(cpu, collections.deque())
            recs.extend(ring.read())
            while recs:
                typ, body = recs.popleft()
                if typ == PERF_RECORD_SAMPLE:
                    data = parse_sample(body)
                    n += 1
                    self.callback(cpu, data, len(data))
                elif typ == PERF_RECORD_LOST and self.lost_cb is not None:
                    self.lost_cb(parse_lost(body)[1])
            lost = ring.take_lost()
            if lost and self.lost_cb is not None:
                self.lost_cb(lost)
        return n

    def close(self) -> None:
        """Empty the slots that still hold this buffer's events and close the events."""
        from .. import kobj
        from ..syscall.mapops import _hold_tag
        m = self.map
        if m is not None and m._fd >= 0 and self.rings:
            impl = m._obj.map_impl()
            for cpu, ring in self.rings.items():
                key = cpu.to_bytes(4, "little")
                if impl.clear_if(cpu, ring.id):
                    _drop_hold_of(kobj, m._obj, _hold_tag(key), ring.id)
                _forget((m._obj.key, cpu))
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = {}
        self.rings = {}
        if m is not None:
            self.map = None
            m.close()
        kobj.sweep()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if self._fds:
                self.close()
        except Exception:       # noqa: BLE001, S110 (at interpreter exit modules may be gone)
            pass


def open_perf_buffer(map=None, callback=None, lost_cb=None, page_cnt: int = 8, *, map_id=None) -> PerfBuffer:
    return PerfBuffer(map, callback, lost_cb, page_cnt, map_id=map_id)


def _drop_hold_of(kobj, holder, tag: str, held_id: int) -> None:
    """Drop the slot's hold if it is still on object ``held_id`` (not a newer reader's)."""
    path = kobj.held_path(holder, tag)
    if path is None:
        return
    fd = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        h = kobj.read_header(fd)
    except OSError:
        return
    finally:
        if fd is not None:
            os.close(fd)
    if h is not None and h["id"] == held_id:
        kobj.drop_hold(holder, tag)


# -- counters (bpf_perf_event_read) ----------------------------------------------------------

def attach_counter(map, index: int, read_fn) -> None:
    """Make slot ``index`` a counter: bpf_perf_event_read returns ``read_fn()``."""
    _counters[(_map_obj(map).key, index)] = read_fn


def detach_counter(map, index: int) -> None:
    _counters.pop((_map_obj(map).key, index), None)


# -- the rings programs write to ---------------------------------------------------------------

def _forget(k) -> None:
    from .. import kobj
    with _lock:
        old = _slots.pop(k, None)
    if old is not None:
        kobj.release(old[1])


def _forget_map(map_obj) -> None:
    """The runtime unregistered a map: drop this process's handles on the events of its slots."""
    for k in [k for k in list(_slots) if k[0] == map_obj.key]:
        _forget(k)


def _ring_for(ref, index: int):
    """This process's ring for the event in slot ``index`` (None if the slot is empty)."""
    sid = ref.impl.get_id(index)
    k = (ref.obj.key, index)
    c = _slots.get(k)
    if c is not None and c[0] == sid and c[1].mm is not None:
        return c[2]
    if not sid:
        if c is not None:
            _forget(k)
        return None
    return _attach(ref, index, sid, k)


def _attach(ref, index: int, sid: int, k):
    from .. import kobj
    from ..kobj import perf_event
    from ..syscall.mapops import _hold_tag
    obj = None
    path = kobj.held_path(ref.obj, _hold_tag(index.to_bytes(4, "little")))
    try:
        if path is not None:
            obj = kobj.obj_from_path(path)
        if obj is None or obj.id != sid:
            obj = kobj.find_by_id(sid, perf_event.KIND)
    except OSError:
        return None         # the event is gone: the slot is as good as empty
    if obj.kind != perf_event.KIND or not obj.writable:
        return None         # (not writable: another user's event, mode 0600; a private copy would swallow samples)
    kobj.acquire(obj)
    try:
        ring = perf_event.ring_of(obj)
    except OSError:
        kobj.release(obj)
        return None
    with _lock:
        old = _slots.get(k)
        _slots[k] = (sid, obj, ring)
    if old is not None:
        kobj.release(old[1])
    return ring


def _reader_gone(ref, index: int, ring) -> bool:
    """A full ring whose reader process died: empty its slot (Linux releases the reader's
    events with its map file); True if the slot was emptied."""
    if ref.impl.map_flags & BPF_F_PRESERVE_ELEMS:
        return False
    now = time.monotonic()
    if now - _reader_checked.get(ring.id, 0.0) < READER_CHECK_INTERVAL:
        return False
    _reader_checked[ring.id] = now
    if ring.reader_alive():
        return False
    if ref.impl.clear_if(index, ring.id):
        _forget((ref.obj.key, index))
        _reader_checked.pop(ring.id, None)
        return True
    return False


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
    if fn is not None:
        return int(fn()) & 0xFFFFFFFFFFFFFFFF
    ring = _ring_for(ref, index)
    if ring is None:
        return neg(errno.ENOENT)
    if ring.cpu != st.cpu:
        return neg(errno.EINVAL)        # perf_event_read_local: a CPU event of another CPU
    return 0                            # a BPF-output event counts nothing


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
    ring = _ring_for(ref, index)
    if ring is None:
        return neg(errno.ENOENT)
    if ring.cpu != st.cpu:
        return neg(errno.EOPNOTSUPP)       # the event lives on another CPU
    data = read(vm, r4, r5 & 0xFFFFFFFF)
    if ctx_len:
        data += st.packet.bytes()[:ctx_len]
    if ring.output(data):
        return 0
    _reader_gone(ref, index, ring)
    return neg(errno.ENOSPC)


HELPERS = {22: perf_event_read, 25: perf_event_output}


def _register() -> None:
    from ..runtime import core
    if _forget_map not in core.map_release_listeners:
        core.map_release_listeners.append(_forget_map)


_register()
