"""LPM trie, queue/stack, ring buffer, bloom filter and the id-holding maps."""

from __future__ import annotations

import errno
import os
import signal
import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from pybpf.maps import MapSpec, spec as S
from pybpf.maps.ringbuf import BUSY, DISCARD
from pybpf.maps.standalone import StandaloneMap
from pybpf.native import atomics


def u32(i):
    return i.to_bytes(4, "little")


def errno_of(fn, *a):
    with pytest.raises(OSError) as ei:
        fn(*a)
    return ei.value.errno


@pytest.fixture
def mk():
    made = []

    def make(*args, **kw):
        m = StandaloneMap.create(MapSpec(*args, **kw))
        made.append(m)
        return m.impl
    yield make
    for m in made:
        m.close()


# --- LPM trie -------------------------------------------------------------------------------

def ip(plen, a, b, c, d):
    return u32(plen) + bytes([a, b, c, d])


def test_lpm_longest_prefix_wins(mk):
    t = mk(S.LPM_TRIE, 8, 4, 16, S.F_NO_PREALLOC)
    t.update(ip(8, 10, 0, 0, 0), b"net8")
    t.update(ip(16, 10, 1, 0, 0), b"n16a")
    t.update(ip(24, 10, 1, 2, 0), b"n24a")
    t.update(ip(0, 0, 0, 0, 0), b"dflt")
    assert t.lookup(ip(32, 10, 1, 2, 3)) == b"n24a"
    assert t.lookup(ip(32, 10, 1, 3, 3)) == b"n16a"
    assert t.lookup(ip(32, 10, 9, 9, 9)) == b"net8"
    assert t.lookup(ip(32, 11, 0, 0, 0)) == b"dflt"
    # the lookup key's own prefixlen bounds the match
    assert t.lookup(ip(20, 10, 1, 2, 3)) == b"n16a"
    t.delete(ip(0, 0, 0, 0, 0))
    assert errno_of(t.lookup, ip(32, 11, 0, 0, 0)) == errno.ENOENT
    assert errno_of(t.delete, ip(0, 0, 0, 0, 0)) == errno.ENOENT
    assert errno_of(t.update, ip(33, 0, 0, 0, 0), b"xxxx") == errno.EINVAL
    assert errno_of(t.update, ip(8, 10, 0, 0, 0), b"xxxx", S.NOEXIST) == errno.EEXIST
    assert errno_of(t.update, ip(9, 10, 0, 0, 0), b"xxxx", S.EXIST) == errno.ENOENT
    # bits past the prefix do not make a different entry
    t.update(ip(8, 10, 7, 7, 7), b"new8", S.EXIST)
    assert t.lookup(ip(32, 10, 200, 0, 0)) == b"new8"
    assert t.check() == []


def test_lpm_full_is_enospc(mk):
    t = mk(S.LPM_TRIE, 5, 1, 2, S.F_NO_PREALLOC)
    t.update(u32(8) + b"\1", b"a")
    t.update(u32(8) + b"\2", b"b")
    assert errno_of(t.update, u32(8) + b"\3", b"c") == errno.ENOSPC
    t.update(u32(8) + b"\2", b"c")


def test_lpm_get_next_key_postorder(mk):
    t = mk(S.LPM_TRIE, 5, 1, 16, S.F_NO_PREALLOC)
    for plen, byte in [(0, 0), (1, 0x80), (1, 0x00), (2, 0xC0), (8, 0x01), (8, 0xFF)]:
        t.update(u32(plen) + bytes([byte]), b"v")
    order = [(int.from_bytes(k[:4], "little"), k[4]) for k in t.keys()]
    # descendants before ancestors, 0 branch before 1 branch
    assert order == [(8, 0x01), (1, 0x00), (8, 0xFF), (2, 0xC0), (1, 0x80), (0, 0)]


def _naive_lpm(entries, key_bits, plen):
    best = None
    for (p, bits), v in entries.items():
        if p <= plen and bits[:p] == key_bits[:p] and (best is None or p > best[0]):
            best = (p, v)
    return best[1] if best else None


@given(st.lists(st.tuples(st.integers(0, 16), st.integers(0, 0xFFFF), st.binary(min_size=2, max_size=2)),
                max_size=30),
       st.lists(st.tuples(st.integers(0, 16), st.integers(0, 0xFFFF)), min_size=1, max_size=30))
@settings(max_examples=40, deadline=None)
def test_lpm_matches_naive_model(inserts, probes):
    with StandaloneMap.create(MapSpec(S.LPM_TRIE, 6, 2, 64, S.F_NO_PREALLOC)) as t:
        model = {}
        for plen, data, v in inserts:
            t.update(u32(plen) + data.to_bytes(2, "big"), v)
            model[(plen, format(data, "016b")[:plen])] = v
        for plen, data in probes:
            exp = _naive_lpm(model, format(data, "016b"), plen)
            try:
                got = t.lookup(u32(plen) + data.to_bytes(2, "big"))
            except OSError as e:
                assert e.errno == errno.ENOENT
                got = None
            assert got == exp
        assert len(list(t.keys())) == len(model)
        assert t.check() == []


# --- queue / stack ------------------------------------------------------------------------

def test_queue_fifo_and_overwrite(mk):
    q = mk(S.QUEUE, 0, 4, 3)
    assert errno_of(q.peek) == errno.ENOENT
    assert errno_of(q.pop) == errno.ENOENT
    for i in range(3):
        q.push(u32(i))
    assert errno_of(q.push, u32(9)) == errno.E2BIG
    q.push(u32(3), S.EXIST)  # drops the oldest
    assert q.peek() == u32(1)
    assert [q.pop() for _ in range(3)] == [u32(1), u32(2), u32(3)]
    assert errno_of(q.push, u32(1), S.NOEXIST) == errno.EINVAL
    assert errno_of(q.delete, None) == errno.EINVAL
    assert errno_of(q.get_next_key, None) == errno.EINVAL
    q.update(None, u32(7))
    assert q.lookup(None) == u32(7)
    assert q.lookup_and_delete(None) == u32(7)
    assert errno_of(q.lookup_and_delete, None, 1) == errno.EINVAL


def test_stack_lifo_and_overwrite(mk):
    s = mk(S.STACK, 0, 4, 3)
    for i in range(3):
        s.push(u32(i))
    s.push(u32(3), S.EXIST)  # overwrites the bottom (oldest)
    assert [s.pop() for _ in range(3)] == [u32(3), u32(2), u32(1)]
    assert errno_of(s.pop) == errno.ENOENT


def test_queue_between_processes(tmp_path):
    path = str(tmp_path / "q")
    m = StandaloneMap.create(MapSpec(S.QUEUE, 0, 8, 4000), path=path)
    pids = []
    for p in range(3):
        pid = os.fork()
        if pid == 0:
            try:
                q = StandaloneMap.open(path).impl
                for i in range(1000):
                    q.push(struct.pack("<II", p, i))
            finally:
                os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    got = [struct.unpack("<II", m.impl.pop()) for _ in range(3000)]
    assert errno_of(m.impl.pop) == errno.ENOENT
    for p in range(3):
        assert [i for q, i in got if q == p] == list(range(1000))  # per-producer FIFO
    m.close()


# --- ring buffer ----------------------------------------------------------------------------

def test_ringbuf_record_format(mk):
    rb = mk(S.RINGBUF, 0, 0, 4096)
    a = rb.reserve(5)
    hdr = a - 8
    assert atomics.load(hdr, 32) == 5 | BUSY
    assert rb.consume() == []  # a busy record blocks the consumer
    rb.view[a - rb.base:a - rb.base + 5] = b"hello"
    rb.submit(a)
    assert atomics.load(hdr, 32) == 5
    b = rb.reserve(3)
    assert b - a == 8 + 8  # 8-byte header + data padded to 8
    rb.discard(b)
    assert atomics.load(b - 8, 32) == 3 | DISCARD
    assert rb.output(b"xyz") == 0
    assert rb.consume() == [b"hello", b"xyz"]
    assert rb.consumer_pos == rb.producer_pos == 16 + 16 + 16
    assert errno_of(rb.submit, a) == errno.EINVAL  # already committed


def test_ringbuf_full_and_wraparound(mk):
    rb = mk(S.RINGBUF, 0, 0, 4096)
    assert rb.reserve(4096) is None
    assert rb.reserve(1, flags=1) is None
    n = 0
    while rb.output(bytes([n % 256]) * 100) == 0:
        n += 1
    assert n == 4095 // 112  # positions never run a full ring ahead of the consumer
    assert rb.producer_pos == n * 112
    assert rb.output(b"y" * 100) == -errno.EAGAIN
    recs = rb.consume(limit=11)
    assert recs == [bytes([i]) * 100 for i in range(11)]
    # now records wrap (after a discarded filler of the 64-byte tail): data stays contiguous
    for i in range(10):
        assert rb.output(bytes([200 + i]) * 100) == 0
    rest = rb.consume()
    assert rest == [bytes([i % 256]) * 100 for i in range(11, n)] + [bytes([200 + i]) * 100 for i in range(10)]
    assert rb.check() == []


def test_ringbuf_dead_reserver_does_not_stall(tmp_path):
    path = str(tmp_path / "rb")
    m = StandaloneMap.create(MapSpec(S.RINGBUF, 0, 0, 8192), path=path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            rb = StandaloneMap.open(path).impl
            rb.reserve(16)  # never submitted
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.read(r, 1)
    m.impl.output(b"after")
    assert m.impl.consume() == []  # the producer is alive: wait for it
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert m.impl.consume() == [b"after"]
    os.close(r)
    os.close(w)
    m.close()


def test_ringbuf_producers_in_processes(tmp_path):
    path = str(tmp_path / "rb")
    m = StandaloneMap.create(MapSpec(S.RINGBUF, 0, 0, 1 << 20), path=path)
    pids = []
    for p in range(2):
        pid = os.fork()
        if pid == 0:
            try:
                rb = StandaloneMap.open(path).impl
                for i in range(2000):
                    while rb.output(struct.pack("<II", p, i)) != 0:
                        time.sleep(0.001)
            finally:
                os._exit(0)
        pids.append(pid)
    got = []
    while len(got) < 4000:
        got += [struct.unpack("<II", x) for x in m.impl.consume()]
    for pid in pids:
        os.waitpid(pid, 0)
    for p in range(2):
        assert [i for q, i in got if q == p] == list(range(2000))
    m.close()


# --- bloom filter ---------------------------------------------------------------------------

def test_bloom_no_false_negatives(mk):
    b = mk(S.BLOOM_FILTER, 0, 8, 1000)
    vals = [os.urandom(8) for _ in range(1000)]
    for v in vals:
        b.push(v)
    assert all(b.peek(v) == v for v in vals)
    fp = sum(1 for _ in range(2000) if not _raises(b.peek, os.urandom(8)))
    assert fp < 2000 * 0.05
    assert errno_of(b.push, vals[0], S.EXIST) == errno.EINVAL
    assert errno_of(b.push, b"short") == errno.EINVAL
    assert errno_of(b.delete, None) == errno.EOPNOTSUPP


def _raises(fn, *a):
    try:
        fn(*a)
        return False
    except OSError:
        return True


# --- id holding maps -----------------------------------------------------------------------

@pytest.mark.parametrize("t", [S.PROG_ARRAY, S.ARRAY_OF_MAPS])
def test_id_arrays(mk, t):
    inner = MapSpec(S.ARRAY, 4, 4, 1) if t == S.ARRAY_OF_MAPS else None
    a = mk(t, 4, 4, 4, inner_map_spec=inner)
    assert errno_of(a.lookup, u32(0)) == errno.ENOENT
    assert a.exchange(u32(1), 77) == 0
    assert a.lookup(u32(1)) == u32(77)
    assert a.exchange(u32(1), 78) == 77
    assert errno_of(a.update, u32(1), u32(5), S.NOEXIST) == errno.EINVAL
    assert errno_of(a.update, u32(4), u32(5)) == errno.E2BIG
    assert a.ids() == [78]
    a.delete(u32(1))
    assert errno_of(a.delete, u32(1)) == errno.ENOENT
    assert errno_of(a.delete, u32(9)) == errno.E2BIG
    assert a.get_id(1) == 0


def test_perf_event_array_lookup_not_supported(mk):
    a = mk(S.PERF_EVENT_ARRAY, 4, 4, 4)
    a.update(u32(0), u32(3))
    assert errno_of(a.lookup, u32(0)) == S.ENOTSUPP
    assert a.get_id(0) == 3


def test_hash_of_maps_keeps_inner_spec(mk):
    inner = MapSpec(S.HASH, 4, 8, 10)
    h = mk(S.HASH_OF_MAPS, 4, 4, 8, inner_map_spec=inner)
    assert h.spec.inner_map_spec == MapSpec(S.HASH, 4, 8, 10)
    h.update(u32(1), u32(41))
    h.update(u32(2), u32(42))
    assert sorted(h.ids()) == [41, 42]


@given(st.sampled_from([S.QUEUE, S.STACK]),
       st.lists(st.tuples(st.sampled_from(["push", "push_exist", "pop", "peek"]),
                          st.binary(min_size=2, max_size=2)), max_size=80))
@settings(max_examples=40, deadline=None)
def test_queue_stack_model(t, ops):
    from collections import deque
    with StandaloneMap.create(MapSpec(t, 0, 2, 4)) as q:
        model = deque()
        for op, v in ops:
            if op.startswith("push"):
                full = len(model) == 4
                try:
                    q.push(v, S.EXIST if op == "push_exist" else 0)
                    assert not full or op == "push_exist"
                    if full:
                        model.popleft()  # the oldest element goes, for both kinds
                    model.append(v)
                except OSError as e:
                    assert e.errno == errno.E2BIG and full and op == "push"
            else:
                try:
                    got = q.pop() if op == "pop" else q.peek()
                except OSError as e:
                    assert e.errno == errno.ENOENT and not model
                    continue
                exp = model[0] if t == S.QUEUE else model[-1]
                assert got == exp
                if op == "pop":
                    model.popleft() if t == S.QUEUE else model.pop()
            assert len(q) == len(model)
