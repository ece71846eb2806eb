"""The common storage header, the cross-process writer lock, the undo journal and the seqlock.

Storage of every map type starts with a 4 KiB header page followed by an undo
journal and then the type's data.  Offsets are relative to the start of the
storage (file offset 4096 of the object file).

Concurrency model, shared by every map type:

* Writers (user-space commands that change the map) take a lock word in the
  header with a compare-and-swap.  The word holds the owner's thread id and
  start time, so a waiter can tell from /proc that the owner died (SIGKILL) and
  take the lock over; no kernel object is needed and a killed process never
  leaves the map locked.
* Before a writer changes a byte that a reader could reach, it appends the old
  bytes to the undo journal and only then writes.  Whoever takes the lock over
  from a dead writer rolls the journal back, so an interrupted update is
  undone as a whole.  Bytes that are unreachable (a free element being filled)
  are written without journalling: a rollback makes them unreachable again.
* Readers take no lock.  A sequence counter is odd while a writer is active;
  a reader retries when it changed under it (seqlock), which also protects
  readers from following links of elements freed and reused meanwhile.
  On x86-64 aligned 4/8-byte loads and stores through memoryviews are single
  instructions and stores are seen in program order, which the scheme relies on.
"""

from __future__ import annotations

import errno
import platform
import struct
import threading
import time

from ..native import atomics
from . import spec as S

MAGIC = b"PYBPFMP1"
HDR_SIZE = 4096
OFF_MAGIC = 0
OFF_SPEC = 8            # type, key, value, max_entries, flags, numa, ncpus, orig_max (u32 x8)
OFF_EXTRA = 40          # map_extra u64
OFF_INNER = 48          # inner type, key, value, max, flags (u32 x5) + pad
OFF_INNER_EXTRA = 72
OFF_NAME = 80           # 16 bytes
OFF_JOURNAL = 96        # journal_off u64, journal_size u64, data_off u64
OFF_LOCK = 128
OFF_SEQ = 192
OFF_JCOUNT = 256        # u32 entries in the journal
OFF_FROZEN = 264        # u32, 1 once BPF_MAP_FREEZE ran: user-space writes get EPERM
OFF_FIELDS = 320        # type-specific u32 fields, journalled like data
_SPEC_FMT = struct.Struct("<8I")
_INNER_FMT = struct.Struct("<5I")
_JENT = struct.Struct("<QI4x")

# x86-64 keeps stores in order and loads in order: plain aligned accesses suffice for
# the seqlock and the lock release.  Elsewhere the release goes through a real atomic.
_TSO = platform.machine() in ("x86_64", "AMD64", "i686")


def is_frozen(view) -> bool:
    """BPF_MAP_FREEZE state of the storage at view (any process sees it: it is in the file)."""
    return bool(struct.unpack_from("<I", view, OFF_FROZEN)[0])


def freeze(base_addr: int) -> bool:
    """Mark the storage at base_addr frozen; False if it already was (one freezer wins)."""
    return atomics.cmpxchg(base_addr + OFF_FROZEN, 0, 1, 32) == 0


def field_off(i: int) -> int:
    return OFF_FIELDS + 4 * i


# --- lock ownership -----------------------------------------------------------------------

# Per thread, not per tid: a tid is reused by later threads, and a stale start time
# would make other processes think the lock holder dead.
_local = threading.local()


def _thread_stat(tid: int) -> tuple[str, int] | None:
    """(state, start time) of a thread from /proc, None if it no longer exists."""
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ("?", 0)
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0].decode(), int(rest[19])


def owner_id() -> int:
    """This thread's lock identity: tid in the low half, its start time in the high half."""
    tid = threading.get_native_id()
    cached = getattr(_local, "owner", None)
    if cached is not None and cached[0] == tid:  # after fork() the tid differs
        return cached[1]
    st = _thread_stat(tid)
    start = st[1] if st else 0
    oid = ((start & 0xFFFFFFFF) << 32) | tid
    _local.owner = (tid, oid)
    return oid


def owner_alive(oid: int) -> bool:
    tid = oid & 0xFFFFFFFF
    st = _thread_stat(tid)
    if st is None:
        return False
    state, start = st
    if state in ("Z", "X", "x"):
        return False
    return state == "?" or (start & 0xFFFFFFFF) == oid >> 32


def wait_for_lock(load, cas, addr: int, me: int) -> None:
    """Take the robust lock word at ``addr`` for owner ``me``: spin, then back off, and take
    it over when its owner thread has died holding it (one waiter wins the compare-and-swap).
    Shared by map storage and perf event rings."""
    spins = 0
    delay = 0.0
    last_check = time.monotonic()
    while True:
        cur = load(addr)
        if cur == 0:
            if cas(addr, 0, me) == 0:
                return
            continue
        spins += 1
        if spins < 64:
            time.sleep(0)
            continue
        delay = min(delay * 2 or 2e-5, 1e-3)
        time.sleep(delay)
        now = time.monotonic()
        if now - last_check > 2e-3:
            last_check = now
            if not owner_alive(cur) and cas(addr, cur, me) == cur:
                return


class Storage:
    """Process-local handle on one map's storage: header fields, lock, journal, seqlock."""

    def __init__(self, view: memoryview, base_addr: int):
        if view.readonly:
            raise OSError(errno.EPERM, "map storage view must be writable")
        self.view = view if view.format == "B" else view.cast("B")
        self.base = base_addr
        self.w32 = self.view.cast("I")
        self.w64 = self.view.cast("Q")
        self._lock_addr = base_addr + OFF_LOCK
        self._seq_i = OFF_SEQ // 8
        self._jcount_i = OFF_JCOUNT // 4
        self.joff, self.jsize, self.doff = struct.unpack_from("<QQQ", self.view, OFF_JOURNAL)
        self._jpos = 0
        self._writer = 0

    def release_views(self) -> None:
        """Drop everything exporting the caller's buffer so it can close its mmap."""
        self.__dict__.pop("lookup", None)  # fast-path closures hold the views
        for name in ("w32", "w64"):
            mv = getattr(self, name, None)
            if mv is not None:
                mv.release()
        self.view = None  # the caller owns (and releases) the view it passed

    # --- the lock --------------------------------------------------------------------------
    def acquire(self) -> None:
        me = owner_id()
        cur = atomics.cmpxchg(self._lock_addr, 0, me)
        if cur != 0 and cur != me:
            self._acquire_slow(me)
        # cur == me: this thread was interrupted (KeyboardInterrupt) between taking the
        # lock and entering its update; no code path nests updates, so it is stale.
        if self.w32[self._jcount_i] or self.w64[self._seq_i] & 1:
            self._recover()
        self._writer = me
        self._jpos = 0

    def _acquire_slow(self, me: int) -> None:
        wait_for_lock(atomics.load, atomics.cmpxchg, self._lock_addr, me)

    def release(self) -> None:
        self._writer = 0
        if _TSO:
            # an aligned 8-byte store is atomic and ordered after our earlier stores
            self.w64[OFF_LOCK >> 3] = 0
        else:
            atomics.store(self._lock_addr, 0)

    def _recover(self) -> None:
        """Undo a dead writer's partial update, newest change first."""
        n = self.w32[self._jcount_i]
        if n:
            entries = []
            pos = 0
            for _ in range(n):
                off, ln = _JENT.unpack_from(self.view, self.joff + pos)
                entries.append((off, ln, self.joff + pos + 16))
                pos += 16 + ((ln + 7) & ~7)
            for off, ln, src in reversed(entries):
                self.view[off:off + ln] = self.view[src:src + ln]
            self.w32[self._jcount_i] = 0
        s = self.w64[self._seq_i]
        if s & 1:
            self.w64[self._seq_i] = s + 1

    # --- writer transactions ----------------------------------------------------------------
    def begin(self) -> None:
        self.acquire()
        self.w64[self._seq_i] += 1

    def commit(self) -> None:
        self.w32[self._jcount_i] = 0
        self.w64[self._seq_i] += 1
        self.release()

    def abort(self) -> None:
        self._recover()
        self.release()

    def __enter__(self):
        self.begin()
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.commit()
        else:
            self.abort()
        return False

    def log(self, off: int, ln: int) -> None:
        """Save the bytes [off, off+ln) in the journal before they are overwritten."""
        pos = self._jpos
        need = 16 + ((ln + 7) & ~7)
        if pos + need > self.jsize:
            raise RuntimeError("pybpf map journal overflow (internal error)")
        j = self.joff + pos
        _JENT.pack_into(self.view, j, off, ln)
        self.view[j + 16:j + 16 + ln] = self.view[off:off + ln]
        self._jpos = pos + need
        self.w32[self._jcount_i] += 1

    def put32(self, off: int, value: int) -> None:
        self.log(off, 4)
        self.w32[off >> 2] = value

    def put64(self, off: int, value: int) -> None:
        self.log(off, 8)
        self.w64[off >> 3] = value

    def put(self, off: int, data) -> None:
        self.log(off, len(data))
        self.view[off:off + len(data)] = data

    def field(self, i: int) -> int:
        return self.w32[(OFF_FIELDS >> 2) + i]

    def set_field(self, i: int, value: int) -> None:
        self.put32(OFF_FIELDS + 4 * i, value)

    # --- readers ----------------------------------------------------------------------------
    def seq(self) -> int:
        """Current even sequence number, waiting out (or recovering from) a writer."""
        w64, i = self.w64, self._seq_i
        s = w64[i]
        if not s & 1:
            return s
        return self._wait_even()

    def _wait_even(self) -> int:
        w64, i = self.w64, self._seq_i
        t0 = time.monotonic()
        spins = 0
        while True:
            s = w64[i]
            if not s & 1:
                return s
            spins += 1
            if spins < 200:
                time.sleep(0)
                continue
            time.sleep(5e-5)
            if time.monotonic() - t0 > 2e-3:
                t0 = time.monotonic()
                holder = atomics.load(self._lock_addr)
                if holder == owner_id():
                    return s & ~1  # we are the writer (program-side read inside an update)
                if holder == 0 or not owner_alive(holder):
                    # A writer died mid-update: take the lock, which rolls it back.
                    self.acquire()
                    self.release()

    def retry(self, s: int) -> bool:
        return self.w64[self._seq_i] != s

    def check_header(self) -> list[str]:
        problems = []
        if bytes(self.view[0:8]) != MAGIC:
            problems.append("bad magic")
        if self.w64[self._seq_i] & 1:
            problems.append("sequence counter odd outside an update")
        if self.w32[self._jcount_i]:
            problems.append("journal not empty outside an update")
        return problems


# --- header encoding ------------------------------------------------------------------------

def journal_size_for(spec: S.MapSpec) -> int:
    """Journal big enough for the largest single update of this map."""
    uvs = S.user_value_size(spec)
    need = 2048 + 2 * (S.round8(uvs) + S.round8(spec.key_size) + 64)
    return -(-need // 4096) * 4096


def write_header(view: memoryview, spec: S.MapSpec, jsize: int) -> int:
    view[0:HDR_SIZE] = bytes(HDR_SIZE)
    view[OFF_MAGIC:OFF_MAGIC + 8] = MAGIC
    _SPEC_FMT.pack_into(view, OFF_SPEC, spec.map_type, spec.key_size, spec.value_size,
                        S.effective_max_entries(spec), spec.map_flags, spec.numa_node,
                        S.ncpus(), spec.max_entries)
    struct.pack_into("<Q", view, OFF_EXTRA, spec.map_extra)
    inner = spec.inner_map_spec
    if inner is not None:
        _INNER_FMT.pack_into(view, OFF_INNER, inner.map_type, inner.key_size, inner.value_size,
                             inner.max_entries, inner.map_flags)
        struct.pack_into("<Q", view, OFF_INNER_EXTRA, inner.map_extra)
    name = spec.name.encode()[:15]
    view[OFF_NAME:OFF_NAME + len(name)] = name
    data_off = HDR_SIZE + jsize
    struct.pack_into("<QQQ", view, OFF_JOURNAL, HDR_SIZE, jsize, data_off)
    return data_off


def read_spec(view: memoryview) -> S.MapSpec:
    if bytes(view[0:8]) != MAGIC:
        raise OSError(errno.EINVAL, "not a pybpf map storage (bad magic)")
    t, ks, vs, me, fl, numa, ncpu, orig = _SPEC_FMT.unpack_from(view, OFF_SPEC)
    if ncpu != S.ncpus():
        raise OSError(errno.EINVAL, f"map storage laid out for {ncpu} CPUs, this host has {S.ncpus()}")
    extra, = struct.unpack_from("<Q", view, OFF_EXTRA)
    it, iks, ivs, ime, ifl = _INNER_FMT.unpack_from(view, OFF_INNER)
    inner = None
    if it:
        iextra, = struct.unpack_from("<Q", view, OFF_INNER_EXTRA)
        inner = S.MapSpec(it, iks, ivs, ime, ifl, map_extra=iextra)
    name = bytes(view[OFF_NAME:OFF_NAME + 16]).split(b"\0", 1)[0].decode()
    sp = S.MapSpec(t, ks, vs, orig, fl, inner, extra, name, numa)
    return sp


def storage_size_unchecked(spec: S.MapSpec) -> int:
    from . import _impl_class
    cls = _impl_class(spec.map_type)
    return HDR_SIZE + journal_size_for(spec) + cls.data_size(spec)
