"""SIGKILL of a map writer at every journalled step: the taker-over restores the map exactly.

A forked child runs one update with a hook that SIGKILLs the child just before its
n-th journal write (every store made up to there, journalled or not, has happened)
or just before the commit; the parent then takes the lock over, which rolls the
journal back, and checks that the map is consistent and holds exactly what it held
before the update.  Unlike the random-delay kill loops in test_maps_concurrency.py
this reaches every step deterministically, e.g. an LRU update that evicts.
"""

from __future__ import annotations

import os
import signal

import pytest

from pybpf.maps import MapSpec, spec as S
from pybpf.maps.layout import Storage
from pybpf.maps.standalone import StandaloneMap

HASHES = [S.HASH, S.PERCPU_HASH, S.LRU_HASH, S.LRU_PERCPU_HASH]
N = 8  # max_entries


def k8(i: int) -> bytes:
    return i.to_bytes(8, "little")


def val(m, k: int, gen: int) -> bytes:
    return (k * 1000 + gen).to_bytes(8, "little") * (m.user_value_size // 8)


def prog_val(k: int, gen: int) -> bytes:
    return (k * 1000 + gen).to_bytes(8, "little")


def fill(m, n=N):
    for k in range(n):
        m.update(k8(k), val(m, k, 0))


def fill_with_holes(m):
    fill(m, 6)
    m.delete(k8(2))  # elements on the free list, not only past the bump index
    m.delete(k8(4))


def snapshot(m) -> dict:
    out = {}
    for k in m.keys():
        try:
            out[k] = m.lookup(k)
        except OSError as e:  # listed but not findable: a corrupt chain
            out[k] = f"lookup errno {e.errno}"
    return out


# name -> (prepare, operation); every operation succeeds on the prepared map
HASH_OPS = {
    "insert (bump)": (lambda m: fill(m, 3), lambda m: m.update(k8(50), val(m, 50, 1))),
    "insert (free list)": (fill_with_holes, lambda m: m.update(k8(50), val(m, 50, 1))),
    "update in place": (fill, lambda m: m.update(k8(3), val(m, 3, 1))),
    "delete": (fill, lambda m: m.delete(k8(3))),
    "lookup_and_delete": (fill, lambda m: m.lookup_and_delete(k8(3))),
    "program insert": (fill_with_holes, lambda m: m.update_from_program(k8(51), prog_val(51, 1), 0, 0)),
}
LRU_OPS = {  # a full LRU map evicts to make room
    "insert into full (evicts)": (fill, lambda m: m.update(k8(77), val(m, 77, 1))),
    "program insert into full (evicts)": (fill, lambda m: m.update_from_program(k8(78), prog_val(78, 1), 0, 0)),
}


def _kill_at(step: int, op, path: str) -> None:
    """Child: run op on the map at path, SIGKILLing ourselves before the step-th journal
    write (or before the commit when step equals the number of journal writes)."""
    m = StandaloneMap.open(path).impl
    count = [0]
    log, commit = Storage.log, Storage.commit

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def hooked_log(self, off, ln):
        if count[0] == step:
            die()
        count[0] += 1
        return log(self, off, ln)

    def hooked_commit(self):
        if count[0] == step:
            die()
        return commit(self)

    Storage.log, Storage.commit = hooked_log, hooked_commit  # this child's copy only
    op(m)


def _run_op_with_kills(tmp_path, map_type, prep, op) -> int:
    path = str(tmp_path / "m")
    step = 0
    while True:
        sm = StandaloneMap.create(MapSpec(map_type, 8, 8, N), path=path)
        m = sm.impl
        prep(m)
        before = snapshot(m)
        pid = os.fork()
        if pid == 0:
            try:
                _kill_at(step, op, path)
            finally:
                os._exit(0)  # the update completed: no step left to kill at
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            assert os.waitstatus_to_exitcode(status) == 0
            sm.close()
            return step
        assert m.check() == [], f"killed before journal step {step}"
        assert snapshot(m) == before, f"killed before journal step {step}: contents changed"
        op(m)  # the map is usable again and the update now goes through
        assert m.check() == []
        sm.close()
        step += 1


CASES = [(t, name) for t in HASHES for name in HASH_OPS] + \
        [(t, name) for t in (S.LRU_HASH, S.LRU_PERCPU_HASH) for name in LRU_OPS]


@pytest.mark.parametrize("map_type,name", CASES, ids=[f"{S.type_name(t)}-{n}" for t, n in CASES])
def test_hash_update_killed_at_every_step_is_rolled_back(tmp_path, map_type, name):
    prep, op = {**HASH_OPS, **LRU_OPS}[name]
    steps = _run_op_with_kills(tmp_path, map_type, prep, op)
    assert steps >= 1  # every update journals something: the hook did fire


def test_array_update_killed_at_every_step_is_rolled_back(tmp_path):
    def prep(m):
        for i in range(4):
            m.update(i.to_bytes(4, "little"), k8(i))
    path = str(tmp_path / "m")
    step = 0
    while True:
        sm = StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, 4), path=path)
        prep(sm.impl)
        pid = os.fork()
        if pid == 0:
            try:
                _kill_at(step, lambda m: m.update((2).to_bytes(4, "little"), k8(99)), path)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        if not os.WIFSIGNALED(status):
            sm.close()
            break
        assert sm.impl.check() == []
        assert [sm.impl.lookup(i.to_bytes(4, "little")) for i in range(4)] == [k8(i) for i in range(4)]
        sm.close()
        step += 1
    assert step >= 1
