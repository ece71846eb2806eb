"""Multi-process and multi-thread safety of the map storage, and SIGKILL consistency."""

from __future__ import annotations

import errno
import os
import random
import signal
import struct
import threading
import time

import pytest

from pybpf.maps import MapSpec, spec as S
from pybpf.maps.standalone import StandaloneMap
from pybpf.native import atomics


def u32(i):
    return i.to_bytes(4, "little")


def u64(i):
    return i.to_bytes(8, "little")


def _fork(fn, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn(*args)
            code = 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def _wait_all(pids):
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


def test_processes_atomic_add_lose_nothing(tmp_path):
    path = str(tmp_path / "counters")
    m = StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, 4), path=path)
    n, procs = 20000, 4

    def worker():
        sm = StandaloneMap.open(path)  # a fresh mapping, at another address
        addrs = [sm.impl.value_address(u32(i)) for i in range(4)]
        for j in range(n):
            atomics.fetch_add(addrs[j & 3], 1)
        sm.close()

    _wait_all([_fork(worker) for _ in range(procs)])
    total = sum(int.from_bytes(m.impl.lookup(u32(i)), "little") for i in range(4))
    assert total == n * procs
    m.close()


def test_processes_hash_updates_never_lose_or_duplicate_keys(tmp_path):
    path = str(tmp_path / "hash")
    procs, own, shared = 4, 300, 40
    m = StandaloneMap.create(MapSpec(S.HASH, 8, 16, procs * own + shared), path=path)
    wins = StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, shared))

    def worker(p):
        sm = StandaloneMap.open(path)
        h = sm.impl
        rng = random.Random(p)
        for i in range(own):
            k = u64(p * 100000 + i)
            h.update(k, k + k, S.NOEXIST)
            if rng.random() < 0.3:  # churn: delete and re-add
                h.delete(k)
                h.update(k, k + k)
            sk = 10**9 + rng.randrange(shared)
            try:
                h.update(u64(sk), u64(sk) * 2, S.NOEXIST)
                atomics.fetch_add(wins.impl.value_address(u32(sk - 10**9)), 1)
            except OSError as e:
                assert e.errno == errno.EEXIST
            h.update(u64(sk), u64(sk) * 2, S.EXIST if rng.random() < 0.5 else S.ANY)
        sm.close()

    _wait_all([_fork(worker, p) for p in range(procs)])
    h = m.impl
    keys = list(h.keys())
    assert len(keys) == len(set(keys))
    expect = {u64(p * 100000 + i) for p in range(procs) for i in range(own)}
    sh = {k for k in keys if int.from_bytes(k, "little") >= 10**9}
    assert set(keys) - sh == expect
    for k in keys:
        assert h.lookup(k) == k + k
    # BPF_NOEXIST on the same key from several processes succeeds exactly once
    for k in sh:
        assert wins.impl.lookup(u32(int.from_bytes(k, "little") - 10**9)) == u64(1)
    assert h.check() == []
    assert len(h) == len(keys)
    m.close()
    wins.close()


def test_threads_hash_and_readers():
    m = StandaloneMap.create(MapSpec(S.HASH, 4, 8, 2000))
    h = m.impl
    stop = threading.Event()
    bad = []

    def writer(t):
        for i in range(400):
            k = u32(t * 1000 + i)
            h.update(k, k + k)
            if i % 3 == 0:
                h.delete(k)

    def reader():
        while not stop.is_set():
            for k in list(h.keys())[:50]:
                try:
                    v = h.lookup(k)
                    if v != k + k:
                        bad.append((k, v))
                except OSError as e:
                    if e.errno != errno.ENOENT:
                        bad.append(e)

    ts = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    r = threading.Thread(target=reader)
    r.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    r.join()
    assert not bad
    assert len(list(h.keys())) == 4 * (400 - 134)
    assert h.check() == []
    m.close()


def _pattern(key: int, gen: int) -> bytes:
    return struct.pack("<Q", (gen << 32) | (key & 0xFFFFFFFF)) * 8


def _churn(hpath, apath, seed, nkeys=300):
    h = StandaloneMap.open(hpath).impl
    a = StandaloneMap.open(apath).impl
    rng = random.Random(seed)
    gen = 0
    while True:
        gen += 1
        k = rng.randrange(nkeys)
        c = rng.random()
        try:
            if c < 0.5:
                h.update(u64(k), _pattern(k, gen))
            elif c < 0.7:
                h.delete(u64(k))
            elif c < 0.8:
                h.lookup_and_delete(u64(k))
            else:
                a.update(u32(k % 16), _pattern(k, gen))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.E2BIG):
                raise


def _sigkill_loop(tmp_path, rounds, map_type, nkeys=300):
    hpath, apath = str(tmp_path / "h"), str(tmp_path / "a")
    hm = StandaloneMap.create(MapSpec(map_type, 8, 64, 200), path=hpath)
    am = StandaloneMap.create(MapSpec(S.ARRAY, 4, 64, 16), path=apath)
    rng = random.Random(1)
    for r in range(rounds):
        pid = _fork(_churn, hpath, apath, r, nkeys)
        time.sleep(rng.uniform(0.002, 0.04))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), "writer died on its own"
        h = hm.impl
        assert h.check() == [], f"round {r}"
        for k in h.keys():
            v = h.lookup(k)
            words = struct.unpack("<8Q", v)
            assert len(set(words)) == 1 and words[0] & 0xFFFFFFFF == int.from_bytes(k, "little")
        for i in range(16):
            words = struct.unpack("<8Q", am.impl.lookup(u32(i)))
            assert len(set(words)) == 1, f"torn array value after kill, round {r}"
        assert am.impl.check() == []
    hm.close()
    am.close()


@pytest.mark.parametrize("map_type", [S.HASH, S.LRU_HASH])
def test_sigkill_writer_leaves_map_consistent(tmp_path, map_type):
    _sigkill_loop(tmp_path, 15, map_type)


@pytest.mark.slow
@pytest.mark.parametrize("map_type", [S.HASH, S.LRU_HASH])
def test_sigkill_writer_soak(tmp_path, map_type):
    _sigkill_loop(tmp_path, 300, map_type)


@pytest.mark.slow
def test_sigkill_lru_writer_evicting_soak(tmp_path):
    """Keys far outnumber max_entries, so most updates evict: a kill often lands inside
    an evicting update (the case test_maps_crash_points.py checks step by step)."""
    _sigkill_loop(tmp_path, 300, S.LRU_HASH, nkeys=3000)


def test_lock_taken_over_from_dead_holder(tmp_path):
    """A process killed while holding the writer lock does not block others."""
    path = str(tmp_path / "m")
    m = StandaloneMap.create(MapSpec(S.HASH, 4, 4, 8), path=path)
    r, w = os.pipe()

    def holder():
        sm = StandaloneMap.open(path)
        sm.impl.begin()
        sm.impl.put32(sm.impl.b_off, 7)  # half-done change, must be rolled back
        os.write(w, b"x")
        time.sleep(60)

    pid = _fork(holder)
    os.read(r, 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    t0 = time.monotonic()
    m.impl.update(u32(1), u32(2))
    assert time.monotonic() - t0 < 1.0
    assert m.impl.lookup(u32(1)) == u32(2)
    assert m.impl.check() == []
    os.close(r)
    os.close(w)
    m.close()


def test_reader_recovers_from_dead_writer(tmp_path):
    path = str(tmp_path / "m")
    m = StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, 4), path=path)
    m.impl.update(u32(0), u64(5))
    r, w = os.pipe()

    def holder():
        sm = StandaloneMap.open(path)
        sm.impl.begin()
        sm.impl.put(sm.impl.value_offset(0), u64(99))
        os.write(w, b"x")
        time.sleep(60)

    pid = _fork(holder)
    os.read(r, 1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert m.impl.lookup(u32(0)) == u64(5)  # the dead writer's change is rolled back
    os.close(r)
    os.close(w)
    m.close()


def _churn_other(qpath, lpath, seed):
    q = StandaloneMap.open(qpath).impl
    t = StandaloneMap.open(lpath).impl
    rng = random.Random(seed)
    n = 0
    while True:
        n += 1
        c = rng.random()
        try:
            if c < 0.3:
                q.push(_pattern(n, n)[:16], S.EXIST)
            elif c < 0.5:
                q.pop()
            else:
                plen = rng.randrange(17)
                key = u32(plen) + rng.randrange(1 << 16).to_bytes(2, "big")
                if c < 0.8:
                    t.update(key, _pattern(plen, n)[:16])
                else:
                    t.delete(key)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOSPC):
                raise


def test_sigkill_queue_and_lpm_stay_consistent(tmp_path):
    qpath, lpath = str(tmp_path / "q"), str(tmp_path / "l")
    qm = StandaloneMap.create(MapSpec(S.QUEUE, 0, 16, 50), path=qpath)
    lm = StandaloneMap.create(MapSpec(S.LPM_TRIE, 6, 16, 100, S.F_NO_PREALLOC), path=lpath)
    rng = random.Random(2)
    for r in range(12):
        pid = _fork(_churn_other, qpath, lpath, r)
        time.sleep(rng.uniform(0.002, 0.04))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert qm.impl.check() == [] and lm.impl.check() == [], f"round {r}"
        for _ in range(len(qm.impl)):
            words = struct.unpack("<2Q", qm.impl.pop())
            assert words[0] == words[1]
        for k in lm.impl.keys():
            words = struct.unpack("<2Q", lm.impl.lookup(k))
            assert words[0] == words[1]
    qm.close()
    lm.close()


@pytest.mark.parametrize("map_type", [S.HASH, S.ARRAY])
def test_readers_never_see_torn_values_across_processes(tmp_path, map_type):
    """Lookups racing updates and deletes in other processes return whole values."""
    path = str(tmp_path / "m")
    ks = 8 if map_type == S.HASH else 4
    m = StandaloneMap.create(MapSpec(map_type, ks, 64, 64), path=path)
    stop_at = time.monotonic() + 1.0

    def writer(seed):
        mm = StandaloneMap.open(path).impl
        rng = random.Random(seed)
        gen = seed << 20
        while time.monotonic() < stop_at:
            gen += 1
            k = rng.randrange(64 if map_type == S.ARRAY else 48)
            if map_type == S.HASH and rng.random() < 0.3:
                try:
                    mm.delete(k.to_bytes(ks, "little"))
                except OSError:
                    pass
            else:
                mm.update(k.to_bytes(ks, "little"), _pattern(k, gen))

    def reader():
        mm = StandaloneMap.open(path).impl
        n = 0
        while time.monotonic() < stop_at:
            for k in range(48):
                try:
                    v = mm.lookup(k.to_bytes(ks, "little"))
                except OSError as e:
                    assert e.errno == errno.ENOENT
                    continue
                words = struct.unpack("<8Q", v)
                if map_type == S.HASH:  # arrays, as in Linux, may tear under a live writer
                    assert len(set(words)) == 1, words
                    assert words[0] & 0xFFFFFFFF == k
                n += 1
        assert n > 0

    _wait_all([_fork(writer, 1), _fork(writer, 2), _fork(reader)])
    assert m.impl.check() == []
    m.close()


def test_owner_identity_per_thread_and_after_fork():
    from pybpf.maps.layout import owner_alive, owner_id
    me = owner_id()
    assert owner_alive(me)
    other = []
    t = threading.Thread(target=lambda: other.append(owner_id()))
    t.start()
    t.join()
    assert other[0] != me
    deadline = time.monotonic() + 2
    while owner_alive(other[0]) and time.monotonic() < deadline:
        time.sleep(0.01)  # the OS thread may outlive join() by a moment
    assert not owner_alive(other[0])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, struct.pack("<Q", owner_id()))
        os._exit(0)
    child = struct.unpack("<Q", os.read(r, 8))[0]
    os.waitpid(pid, 0)
    assert child != me and not owner_alive(child)
    os.close(r)
    os.close(w)


def _ringbuf_producer(path, seed):
    rb = StandaloneMap.open(path).impl
    rng = random.Random(seed)
    n = 0
    while True:
        n += 1
        size = rng.randrange(1, 200)
        body = struct.pack("<I", n) * ((size + 3) // 4)
        if rb.output(body[:max(size, 4)]) != 0:
            time.sleep(0.0005)


def test_sigkill_ringbuf_producer(tmp_path):
    path = str(tmp_path / "rb")
    m = StandaloneMap.create(MapSpec(S.RINGBUF, 0, 0, 16384), path=path)
    rb = m.impl
    rng = random.Random(3)
    total = 0
    for r in range(12):
        pid = _fork(_ringbuf_producer, path, r)
        deadline = time.monotonic() + rng.uniform(0.005, 0.05)
        while time.monotonic() < deadline:
            for rec in rb.consume():
                (first,) = struct.unpack_from("<I", rec)
                assert rec == (struct.pack("<I", first) * 60)[:len(rec)]
                total += 1
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert rb.check() == []
        for rec in rb.consume():
            (first,) = struct.unpack_from("<I", rec)
            assert rec == (struct.pack("<I", first) * 60)[:len(rec)]
            total += 1
        # a record reserved by the dead producer is dropped, not waited for
        assert rb.consumer_pos == rb.producer_pos
    assert total > 0
    m.close()
