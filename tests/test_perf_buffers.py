"""PERF_EVENT_ARRAY rings shared between processes: perf_event objects, slot updates, samples
written by programs in other processes, lost counting, dead readers and dead writers."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runtime_util import asm

from pybpf import kobj
from pybpf.helpers import PerfBuffer, open_perf_buffer
from pybpf.kobj import perf_event as pe
from pybpf.map import Map
from pybpf.runtime import ExecProgram, run_kprobe

KPROBE = 2
TESTS = Path(__file__).parent
ENOSPC = -errno.ENOSPC & 0xFFFFFFFF
ENOENT = -errno.ENOENT & 0xFFFFFFFF

# sample = the first argument (di) repeated over 64 bytes, cut to the second (si) & 63 bytes
WRITER = """
r6 = r1
r7 = *(u64 *)(r6 + 112)
r8 = *(u64 *)(r6 + 104)
*(u64 *)(r10 - 8) = r7
*(u64 *)(r10 - 16) = r7
*(u64 *)(r10 - 24) = r7
*(u64 *)(r10 - 32) = r7
*(u64 *)(r10 - 40) = r7
*(u64 *)(r10 - 48) = r7
*(u64 *)(r10 - 56) = r7
*(u64 *)(r10 - 64) = r7
r1 = r6
r2 = map:pe ll
r3 = {index} ll
r4 = r10
r4 += -64
r5 = r8
r5 &= 63
call 25
exit"""


def writer(m, index=0xFFFFFFFF) -> ExecProgram:
    return ExecProgram.from_insns(asm(WRITER.format(index=index), {"pe": m}), KPROBE, [m])


class expected:
    """The sample WRITER makes: ``size`` bytes, padded as Linux pads (padding bytes are not
    cleared, so they are not compared)."""

    def __init__(self, seq: int, size: int) -> None:
        self.raw = (struct.pack("<Q", seq) * 8)[:size]
        self.padded = ((size + 4 + 7) & ~7) - 4

    def __eq__(self, other) -> bool:
        return isinstance(other, bytes) and len(other) == self.padded and other[:len(self.raw)] == self.raw

    def __len__(self) -> int:
        return self.padded

    def __repr__(self) -> str:
        return f"<{self.raw.hex()} padded to {self.padded}>"


def perf_map(entries=None, flags=0) -> Map:
    return Map.create("perf_event_array", 4, 4, entries or os.cpu_count(), flags)


def pin_cpu(cpu=0):
    os.sched_setaffinity(0, {cpu})


@pytest.fixture
def on_cpu0():
    old = os.sched_getaffinity(0)
    pin_cpu(0)
    yield 0
    os.sched_setaffinity(0, old)


# -- the perf_event object and its ring ----------------------------------------------------------

def test_event_object_and_record_layout(bpffs):
    fd = pe.open_event(0, 1)
    try:
        obj = kobj.obj_from_fd(fd)
        assert obj.kind == "perf_event" and obj.fields == {"type": "bpf_output", "cpu": 0, "page_cnt": 1}
        ring = pe.ring_of(obj)
        assert (ring.size, ring.cpu, ring.head, ring.tail) == (4096, 0, 0, 0)
        assert ring.output(b"abcde")
        assert ring.head == 24
        raw = bytes(ring.data[:24])
        # perf_event_header{type=SAMPLE, misc, size=24}, u32 raw size 12, data padded with zeroes
        assert raw == struct.pack("<IHHI", 9, 1, 24, 12) + b"abcde" + bytes(7)
        assert ring.read() == [(9, struct.pack("<I", 12) + b"abcde" + bytes(7))]
        assert ring.tail == 24
        with pytest.raises(OSError) as ei:
            obj.map_impl()
        assert ei.value.errno == errno.EINVAL
    finally:
        os.close(fd)


@pytest.mark.parametrize("cpu,pages", [(-1, 1), (10_000, 1), (0, 0), (0, 3), (0, 1 << 17)])
def test_open_event_bad_arguments(bpffs, cpu, pages):
    with pytest.raises(OSError) as ei:
        pe.open_event(cpu, pages)
    assert ei.value.errno == errno.EINVAL


def test_ring_wraps_and_keeps_one_byte_free(bpffs):
    fd = pe.open_event(0, 1)
    try:
        ring = pe.ring_of(kobj.obj_from_fd(fd))
        n = 0
        while ring.output(bytes([n % 256]) * 100):      # 112-byte records
            n += 1
        assert n == 4095 // 112 and ring.pending_lost == 1
        got = ring.read()
        assert [parse[1][4] for parse in got] == [i % 256 for i in range(n)]
        assert ring.take_lost() == 1 and ring.take_lost() == 0
        # the next records straddle the end of the data area and read back whole
        for i in range(30):
            assert ring.output(struct.pack("<I", i) * 25)
            (typ, body), = ring.read()
            assert typ == 9 and pe.parse_sample(body)[:100] == struct.pack("<I", i) * 25
    finally:
        os.close(fd)


def test_lost_record_written_when_room_returns(bpffs):
    fd = pe.open_event(0, 1)
    try:
        ring = pe.ring_of(kobj.obj_from_fd(fd))
        while ring.output(bytes(500)):
            pass
        assert not ring.output(bytes(500)) and ring.pending_lost == 2
        recs = ring.read()
        assert all(t == 9 for t, _ in recs)
        assert ring.output(b"x")
        (t1, b1), (t2, b2) = ring.read()
        assert t1 == pe.PERF_RECORD_LOST and pe.parse_lost(b1) == (ring.id, 2)
        assert t2 == 9 and pe.parse_sample(b2)[:1] == b"x"
        assert ring.pending_lost == 0 and ring.lost_total == 2
    finally:
        os.close(fd)


# -- slot updates: Linux's errnos ---------------------------------------------------------------

def _kernel_update_errnos():
    from kernel_oracle import kernel_available, kernel_map_create, sys_bpf
    if not kernel_available():
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = bytearray(128)
    struct.pack_into("<IIQQQ", attr, 0, 1, 128, 10, 1, 1 << 10)    # SOFTWARE, BPF_OUTPUT, RAW
    a = (ctypes.c_char * 128).from_buffer(attr)
    pfd = libc.syscall(298, a, -1, 0, -1, 8)
    if pfd < 0:
        return None
    mfd, _ = kernel_map_create(4, 4, 4, 2)
    reg = os.open("/etc/hostname" if os.path.exists("/etc/hostname") else "/", os.O_RDONLY)

    def upd(key, val, flags=0):
        k = ctypes.create_string_buffer(struct.pack("<I", key), 4)
        v = ctypes.create_string_buffer(struct.pack("<i", val), 4)
        at = bytearray(32)
        struct.pack_into("<IIQQQ", at, 0, mfd, 0, ctypes.addressof(k), ctypes.addressof(v), flags)
        return sys_bpf(2, at)[1]
    try:
        return {case: upd(*args(pfd, mfd, reg)) for case, args in _CASES.items()}
    finally:
        for fd in (pfd, mfd, reg):
            os.close(fd)


_CASES = {
    "ok": lambda p, m, r: (0, p),
    "map fd": lambda p, m, r: (1, m),
    "closed fd": lambda p, m, r: (1, 999),
    "negative fd": lambda p, m, r: (1, -1),
    "regular file": lambda p, m, r: (1, r),
    "index and bad fd": lambda p, m, r: (5, 999),
    "flags and bad fd": lambda p, m, r: (1, 999, 1),
    "flags and good fd": lambda p, m, r: (1, p, 2),
    "index and good fd": lambda p, m, r: (5, p),
}
LINUX_ERRNOS = {"ok": 0, "map fd": errno.EBADF, "closed fd": errno.EBADF, "negative fd": errno.EBADF,
                "regular file": errno.EBADF, "index and bad fd": errno.E2BIG,
                "flags and bad fd": errno.EINVAL, "flags and good fd": errno.EINVAL,
                "index and good fd": errno.E2BIG}


def test_slot_update_errnos_as_linux(bpffs):
    kernel = _kernel_update_errnos()
    if kernel is not None:
        assert kernel == LINUX_ERRNOS
    from pybpf.syscall import mapops
    m = perf_map(2)
    pfd = pe.open_event(0, 1)
    reg = os.open("/", os.O_RDONLY)
    try:
        got = {}
        for case, args in _CASES.items():
            key, val, *fl = args(pfd, m.fd, reg)
            try:
                mapops.update(m._obj, struct.pack("<I", key), struct.pack("<i", val), *fl)
                got[case] = 0
            except OSError as e:
                got[case] = e.errno
        assert got == LINUX_ERRNOS
        with pytest.raises(OSError) as ei:
            mapops.lookup(m._obj, struct.pack("<I", 0))
        assert ei.value.errno == 524                        # ENOTSUPP, as today
        assert m._obj.map_impl().get_id(0) == kobj.obj_from_fd(pfd).id
        # the slot's hold keeps the event after its last fd is gone; delete drops it
        eid = kobj.obj_from_fd(pfd).id
        os.close(pfd)
        pfd = -1
        kobj.sweep()
        assert any(h["id"] == eid and h["kind"] == "perf_event" for h in kobj.live_objects())
        del m[struct.pack("<I", 0)]
        kobj.gc()
        assert not any(h["id"] == eid for h in kobj.live_objects())
    finally:
        if pfd >= 0:
            os.close(pfd)
        os.close(reg)
        m.close()


def test_event_back_in_a_slot_after_delete_and_not_pinnable(bpffs):
    m = perf_map(2)
    fd = pe.open_event(0, 1)
    try:
        assert errno_of(kobj.pin, fd, "/sys/fs/bpf/ev") == errno.EINVAL      # as Linux
        for _ in range(2):
            m[0] = fd.to_bytes(4, "little")
            del m[0]
        m[1] = fd.to_bytes(4, "little")
        assert m._obj.map_impl().get_id(1) == kobj.obj_from_fd(fd).id
    finally:
        os.close(fd)
        m.close()


def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


# -- PerfBuffer in one process --------------------------------------------------------------------

def test_perf_buffer_same_process(bpffs, on_cpu0):
    m = perf_map()
    p = writer(m)
    got, lost = [], []
    assert run_kprobe(p, 1, 8).retval == ENOENT
    with open_perf_buffer(m, lambda cpu, data, size: got.append((cpu, data, size)), lost.append,
                          page_cnt=1) as buf:
        ids = [m._obj.map_impl().get_id(c) for c in range(os.cpu_count())]
        assert all(ids) and len(set(ids)) == len(ids)
        for seq in range(5):
            assert run_kprobe(p, seq, 3 + seq).retval == 0
        assert buf.poll(100) == 5
        assert got == [(0, expected(s, 3 + s), len(expected(s, 3 + s))) for s in range(5)]
        # 40-byte samples in one page: 102 fit (one byte stays free), the rest are lost
        res = [run_kprobe(p, s, 32).retval for s in range(150)]
        assert res.count(0) == 4095 // 48 and res.count(ENOSPC) == 150 - 4095 // 48
        got.clear()
        assert buf.poll(0) == 4095 // 48
        assert [d[1] for d in got] == [expected(s, 32) for s in range(4095 // 48)]
        assert sum(lost) == 150 - 4095 // 48
        assert buf.poll(0) == 0
    # close() emptied the slots it filled
    assert not any(m._obj.map_impl().get_id(c) for c in range(os.cpu_count()))
    assert run_kprobe(p, 1, 8).retval == ENOENT
    m.close()


def test_other_cpu_event_and_index(bpffs, on_cpu0):
    if os.cpu_count() < 2:
        pytest.skip("needs two CPUs")
    m = perf_map()
    with PerfBuffer(m, lambda *a: None, cpus=[1]) as buf:
        assert run_kprobe(writer(m, 1), 0, 8).retval == -errno.EOPNOTSUPP & 0xFFFFFFFF
        assert run_kprobe(writer(m, 0), 0, 8).retval == ENOENT
        assert run_kprobe(writer(m, 7000), 0, 8).retval == -errno.E2BIG & 0xFFFFFFFF
        assert buf.poll(0) == 0
    m.close()


def test_second_buffer_replaces_first_and_close_keeps_it(bpffs, on_cpu0):
    m = perf_map()
    p = writer(m)
    a, b = [], []
    first = PerfBuffer(m, lambda c, d, s: a.append(d))
    second = PerfBuffer(m, lambda c, d, s: b.append(d))
    assert run_kprobe(p, 1, 8).retval == 0
    first.close()                           # the slots hold the second buffer's events
    assert run_kprobe(p, 2, 8).retval == 0
    second.poll(0)
    assert (a, b) == ([], [expected(1, 8), expected(2, 8)])
    second.close()
    assert run_kprobe(p, 3, 8).retval == ENOENT
    m.close()


def test_callback_error_loses_no_sample(bpffs, on_cpu0):
    m = perf_map()
    p = writer(m)
    got = []

    def cb(cpu, data, size):
        if len(got) == 1 and not getattr(cb, "raised", False):
            cb.raised = True
            raise RuntimeError("consumer failed")
        got.append(data)
    with PerfBuffer(m, cb) as buf:
        for s in range(4):
            assert run_kprobe(p, s, 8).retval == 0
        with pytest.raises(RuntimeError):
            buf.poll(0)
        assert buf.poll(0) == 2          # the sample the callback failed on was handed over
    assert got == [expected(s, 8) for s in (0, 2, 3)]
    m.close()


def test_bad_buffer_arguments(bpffs):
    arr = Map.create("array", 4, 4, 1)
    with pytest.raises(ValueError):
        PerfBuffer(arr, lambda *a: None)
    with pytest.raises(ValueError):
        PerfBuffer(perf_map(), lambda *a: None, page_cnt=3)
    with pytest.raises(TypeError):
        PerfBuffer(3.5, lambda *a: None)
    ro = perf_map()
    ro_path = os.path.join(bpffs, "ro")
    ro.pin(ro_path)
    with pytest.raises(OSError) as ei:      # a read-only map fd cannot store the events
        PerfBuffer(Map.from_pinned(ro_path, readonly=True), lambda *a: None)
    assert ei.value.errno == errno.EPERM
    arr.close()


def test_events_freed_after_close(bpffs):
    m = perf_map()
    buf = PerfBuffer(m, lambda *a: None, page_cnt=2)
    ids = {r.id for r in buf.rings.values()}
    assert ids <= {h["id"] for h in kobj.live_objects() if h["kind"] == "perf_event"}
    buf.close()
    kobj.gc()
    assert not ids & {h["id"] for h in kobj.live_objects()}
    m.close()


# -- across processes -----------------------------------------------------------------------------

def _wait_exit(pid: int, timeout: float = 60) -> int:
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child hung")


def test_forked_writer_delivers_in_order(bpffs):
    m = perf_map()
    p = writer(m)
    got = []
    with PerfBuffer(m, lambda cpu, data, size: got.append((cpu, data))) as buf:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                pin_cpu(os.cpu_count() - 1)
                code = 0 if all(run_kprobe(p, s, 16).retval == 0 for s in range(100)) else 2
            finally:
                os._exit(code)
        assert _wait_exit(pid) == 0
        n = 0
        while n < 100:
            got_now = buf.poll(2000)
            assert got_now
            n += got_now
    assert got == [(os.cpu_count() - 1, expected(s, 16)) for s in range(100)]
    m.close()


CHILD_WRITER = """
import os, sys
sys.path.insert(0, {tests!r})
os.sched_setaffinity(0, {{0}})
from pybpf.map import Map
from pybpf.runtime import run_kprobe
import test_perf_buffers as t
m = Map.from_pinned({pin!r})
p = t.writer(m)
res = [run_kprobe(p, s, {size}).retval for s in range({start}, {start} + {count})]
print(" ".join(str(r) for r in res))
"""


def run_child_writer(pin: str, start: int, count: int, size: int = 8) -> list[int]:
    code = CHILD_WRITER.format(tests=str(TESTS), pin=pin, start=start, count=count, size=size)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ), check=False)
    assert out.returncode == 0, out.stderr
    return [int(x) for x in out.stdout.split()]


def test_separate_process_writes_into_pinned_map(bpffs):
    m = perf_map()
    pin = "/sys/fs/bpf/events"
    m.pin(pin)
    got, lost = [], []
    # the reader opens the map by id: it needs no fd from the creator
    with PerfBuffer(map_id=m.id, callback=lambda cpu, data, size: got.append((cpu, data)),
                    lost_cb=lost.append, page_cnt=1) as buf:
        res = run_child_writer(pin, 0, 200, 24)
        fit = 4095 // 40
        assert res == [0] * fit + [ENOSPC] * (200 - fit)
        buf.poll(0)
        assert got == [(0, expected(s, 24)) for s in range(fit)]
        assert sum(lost) == 200 - fit
        got.clear()
        assert run_child_writer(pin, 500, 3, 24) == [0, 0, 0]
        buf.poll(1000)
        assert got == [(0, expected(s, 24)) for s in range(500, 503)]
    m.close()


CHILD_READER = """
import os, sys, time
from pybpf.helpers import PerfBuffer
buf = PerfBuffer({pin!r}, lambda cpu, data, size: print(cpu, data.hex(), flush=True), page_cnt=1)
print("ready", flush=True)
while True:
    buf.poll(100)
"""


def _start_reader(pin: str):
    proc = subprocess.Popen([sys.executable, "-c", CHILD_READER.format(pin=pin)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read()
    return proc


def test_reader_in_another_process(bpffs, on_cpu0):
    m = perf_map()
    pin = os.path.join(bpffs, "events")
    m.pin(pin)
    proc = _start_reader(pin)
    try:
        p = writer(m)
        for s in range(3):
            assert run_kprobe(p, s, 8).retval == 0
        lines = [proc.stdout.readline().split() for _ in range(3)]
        assert [(c, bytes.fromhex(d)) for c, d in lines] == [("0", expected(s, 8)) for s in range(3)]
    finally:
        proc.kill()
        proc.wait()
    m.close()


def test_killed_reader_never_blocks_writers(bpffs, on_cpu0, monkeypatch):
    from pybpf.helpers import perf
    monkeypatch.setattr(perf, "READER_CHECK_INTERVAL", 0.0)
    m = perf_map()
    pin = os.path.join(bpffs, "events")
    m.pin(pin)
    proc = _start_reader(pin)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    p = writer(m)
    t0 = time.monotonic()
    res = [run_kprobe(p, s, 32).retval for s in range(300)]
    assert time.monotonic() - t0 < 30
    fit = 4095 // 48
    # the ring fills, the first write that finds it full sees the reader gone and empties the slot
    assert res == [0] * fit + [ENOSPC] + [ENOENT] * (300 - fit - 1)
    m.close()


def test_preserve_elems_keeps_dead_readers_event(bpffs, on_cpu0, monkeypatch):
    from pybpf.helpers import perf
    monkeypatch.setattr(perf, "READER_CHECK_INTERVAL", 0.0)
    m = perf_map(flags=1 << 11)             # BPF_F_PRESERVE_ELEMS
    pin = os.path.join(bpffs, "events")
    m.pin(pin)
    proc = _start_reader(pin)
    proc.kill()
    proc.wait()
    res = [run_kprobe(writer(m), s, 32).retval for s in range(120)]
    fit = 4095 // 48
    assert res == [0] * fit + [ENOSPC] * (120 - fit)
    # a new reader takes the slots over and gets the new samples
    got = []
    with PerfBuffer(m, lambda c, d, s: got.append(d)) as buf:
        assert run_kprobe(writer(m), 9, 8).retval == 0
        buf.poll(0)
    assert got == [expected(9, 8)]
    m.close()


def test_writer_killed_inside_the_lock(bpffs):
    """A writer that dies holding the ring's lock (SIGKILL mid-record) is taken over."""
    fd = pe.open_event(0, 1)
    try:
        ring = pe.ring_of(kobj.obj_from_fd(fd))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                from pybpf.maps.layout import owner_id
                ring.w64[pe.OFF_LOCK >> 3] = owner_id()
                ring.data[0:8] = b"garbage!"             # a record never published
                os.write(w, b"x")
                time.sleep(60)
            finally:
                os._exit(0)
        os.read(r, 1)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
        t0 = time.monotonic()
        assert ring.output(b"after")
        assert time.monotonic() - t0 < 5
        (typ, body), = ring.read()
        assert typ == 9 and pe.parse_sample(body)[:5] == b"after"
    finally:
        os.close(fd)


def test_concurrent_writers_in_many_processes(bpffs):
    m = perf_map()
    p = writer(m, 0)
    got, lost = [], []
    nproc, per = 4, 300
    with PerfBuffer(m, lambda c, d, s: got.append(d), lost.append, page_cnt=1, cpus=[0]) as buf:
        pids = []
        for k in range(nproc):
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    pin_cpu(0)
                    res = [run_kprobe(p, (k << 32) | s, 8 + 8 * (s % 7)).retval for s in range(per)]
                    code = 0 if set(res) <= {0, ENOSPC} else 3
                finally:
                    os._exit(code)
            pids.append(pid)
        live, codes = set(pids), []
        deadline = time.monotonic() + 120
        while live and time.monotonic() < deadline:
            for pid in list(live):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    live.discard(pid)
                    codes.append(os.waitstatus_to_exitcode(status))
            time.sleep(0.02)        # a slow reader: the one-page ring overflows now and then
            buf.poll(0)
        for pid in live:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not live and codes == [0] * nproc
        buf.poll(0)
    assert len(got) + sum(lost) == nproc * per
    print(f"{len(got)} samples, {sum(lost)} lost")
    last = {}
    for d in got:
        seq = struct.unpack_from("<Q", d)[0]
        k, s = seq >> 32, seq & 0xFFFFFFFF
        assert d == expected(seq, 8 + 8 * (s % 7))         # never torn
        assert s > last.get(k, -1)                          # each writer's samples in order
        last[k] = s
    m.close()


# -- differential: the host kernel's ring, record for record ------------------------------------

OUT = """
r2 = 0x6867666564636261 ll
*(u64 *)(r10 - 64) = r2
*(u64 *)(r10 - 56) = r2
*(u64 *)(r10 - 48) = r2
*(u64 *)(r10 - 40) = r2
*(u64 *)(r10 - 32) = r2
*(u64 *)(r10 - 24) = r2
*(u64 *)(r10 - 16) = r2
*(u64 *)(r10 - 8) = r2
r2 = map:pe ll
r3 = 0xffffffff ll
r4 = r10
r4 += -64
r5 = {size}
call 25
exit"""
SIZES = [0, 1, 3, 4, 5, 8, 12, 13, 40, 64]
FILL = 40


def _scenario(run_size, ring_bytes, consume):
    """Samples of every size; then 100 samples of FILL bytes into the full ring; consume; one more.

    Returns (the records before the fill, the retvals of the fill, the records after it)."""
    first = [run_size(s) for s in SIZES]
    assert first == [0] * len(SIZES)
    before = ring_bytes()
    consume()
    fill = [run_size(FILL) for _ in range(100)]
    consume()
    assert run_size(5) == 0
    return before, fill, ring_bytes()


def _unwrap(data, tail: int, head: int) -> bytes:
    n = len(data)
    return b"".join(bytes([data[p % n]]) for p in range(tail, head))


def _kernel_scenario():
    import mmap

    from kernel_oracle import (
        kernel_available,
        kernel_map_create,
        kernel_prog_load,
        sys_bpf,
    )

    from pybpf.isa import encode
    if not kernel_available():
        pytest.skip("host kernel bpf() not available")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    attr = bytearray(128)
    struct.pack_into("<IIQQQ", attr, 0, 1, 128, 10, 1, 1 << 10)    # SOFTWARE, BPF_OUTPUT, RAW
    pfd = libc.syscall(298, (ctypes.c_char * 128).from_buffer(attr), -1, 0, -1, 8)
    if pfd < 0:
        pytest.skip("perf_event_open not permitted")
    ring = mmap.mmap(pfd, 2 * 4096)
    mfd, _ = kernel_map_create(4, 4, 4, os.cpu_count())
    k = ctypes.create_string_buffer(struct.pack("<I", 0), 4)
    v = ctypes.create_string_buffer(struct.pack("<i", pfd), 4)
    at = bytearray(32)
    struct.pack_into("<IIQQQ", at, 0, mfd, 0, ctypes.addressof(k), ctypes.addressof(v), 0)
    assert sys_bpf(2, at) == (0, 0)
    progs = {}
    for size in SIZES + [FILL]:
        insns = asm(OUT.format(size=size), {"pe": mfd})
        fd, _, log = kernel_prog_load(encode(insns), 3)
        assert fd >= 0, log
        progs[size] = fd
    pkt = ctypes.create_string_buffer(bytes(64), 64)

    def run_size(size):
        t = bytearray(80)
        struct.pack_into("<IIIIQQII", t, 0, progs[size], 0, 64, 0, ctypes.addressof(pkt), 0, 1, 0)
        assert sys_bpf(10, t)[0] == 0
        return struct.unpack_from("<I", t, 4)[0]

    def ring_bytes():
        head, tail = struct.unpack_from("<QQ", ring, 1024)
        return _unwrap(ring[4096:], tail, head)

    def consume():
        struct.pack_into("<Q", ring, 1032, struct.unpack_from("<Q", ring, 1024)[0])
    try:
        return _scenario(run_size, ring_bytes, consume), struct.unpack_from("<Q", ring, 1024)[0]
    finally:
        for fd in list(progs.values()) + [mfd]:
            os.close(fd)
        ring.close()
        os.close(pfd)


def test_ring_bytes_identical_to_linux(bpffs, on_cpu0):
    from pybpf.runtime import run_skb
    from pybpf.syscall import mapops
    kernel, kernel_head = _kernel_scenario()
    m = perf_map()
    fd = pe.open_event(0, 1)
    ring = pe.ring_of(kobj.obj_from_fd(fd))
    mapops.update(m._obj, struct.pack("<I", 0), struct.pack("<i", fd))
    progs = {s: ExecProgram.from_insns(asm(OUT.format(size=s), {"pe": m}), 3, [m]) for s in SIZES + [FILL]}

    def ring_bytes():
        return _unwrap(ring.data, ring.tail, ring.head)

    def consume():
        ring.w64[pe.OFF_DATA_TAIL >> 3] = ring.head
    try:
        ours = _scenario(lambda s: run_skb(progs[s], bytes(64)).retval, ring_bytes, consume)
    finally:
        os.close(fd)
        m.close()
    before, fill, after = ours
    kbefore, kfill, kafter = kernel
    assert before == kbefore
    assert fill == kfill and ENOSPC in fill
    # PERF_RECORD_LOST carries the event's id, which differs: compare the rest
    assert after[:8] == kafter[:8] and after[16:] == kafter[16:]
    assert struct.unpack_from("<IHHQQ", after)[4] == fill.count(ENOSPC)
    assert ring.head == kernel_head
