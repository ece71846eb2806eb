"""Storage-level semantics of the array and hash map families (errnos as Linux)."""

from __future__ import annotations

import errno

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from pybpf.maps import MapSpec, attach, init_storage, ncpus, spec as S, storage_size, validate
from pybpf.maps.standalone import StandaloneMap
from pybpf.native import atomics


def u32(i):
    return i.to_bytes(4, "little")


def u64(i):
    return i.to_bytes(8, "little")


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


def test_ncpus_matches_sysfs():
    text = open("/sys/devices/system/cpu/possible").read().strip()
    assert ncpus() == int(text.split(",")[-1].split("-")[-1]) + 1


def test_storage_size_is_page_multiple_and_validates():
    assert storage_size(MapSpec(S.ARRAY, 4, 8, 1000)) % 4096 == 0
    with pytest.raises(OSError) as ei:
        storage_size(MapSpec(S.ARRAY, 8, 8, 10))
    assert ei.value.errno == errno.EINVAL


def test_huge_map_is_enomem():
    with pytest.raises(OSError) as ei:
        validate(MapSpec(S.ARRAY, 4, 1 << 20, 0xFFFFFFFF))
    assert ei.value.errno == errno.ENOMEM


def test_array_basics(mk):
    a = mk(S.ARRAY, 4, 12, 10)
    assert a.lookup(u32(3)) == bytes(12)
    a.update(u32(3), b"x" * 12)
    assert a.lookup(u32(3)) == b"x" * 12
    a.update(u32(3), b"y" * 12, S.EXIST)
    assert a.lookup(u32(3)) == b"y" * 12
    assert errno_of(a.lookup, u32(10)) == errno.ENOENT
    assert errno_of(a.update, u32(10), b"z" * 12) == errno.E2BIG
    assert errno_of(a.update, u32(1), b"z" * 12, S.NOEXIST) == errno.EEXIST
    assert errno_of(a.update, u32(1), b"z" * 12, 3) == errno.EINVAL
    assert errno_of(a.update, u32(1), b"z" * 12, S.F_LOCK) == errno.EINVAL
    assert errno_of(a.delete, u32(1)) == errno.EINVAL
    assert errno_of(a.update, u32(1), b"z" * 11) == errno.EINVAL
    assert errno_of(a.lookup, b"\0" * 8) == errno.EINVAL
    assert a.get_next_key(None) == u32(0)
    assert a.get_next_key(u32(4)) == u32(5)
    assert a.get_next_key(u32(99)) == u32(0)
    assert errno_of(a.get_next_key, u32(9)) == errno.ENOENT
    assert list(a.keys()) == [u32(i) for i in range(10)]
    assert errno_of(a.lookup_and_delete, u32(1)) == S.ENOTSUPP
    assert a.check() == []


def test_array_value_address_is_shared_memory(mk):
    a = mk(S.ARRAY, 4, 8, 4)
    addr = a.value_address(u32(2))
    atomics.fetch_add(addr, 5)
    atomics.fetch_add(addr, 7)
    assert a.lookup(u32(2)) == u64(12)
    assert a.value_address(u32(4)) is None


def test_percpu_array_user_view(mk):
    n = ncpus()
    a = mk(S.PERCPU_ARRAY, 4, 4, 3)
    assert a.lookup(u32(0)) == bytes(8 * n)
    val = b"".join(u64(c + 1) for c in range(n))
    a.update(u32(1), val)
    assert a.lookup(u32(1)) == val
    assert errno_of(a.update, u32(1), b"\0" * 4) == errno.EINVAL
    atomics.fetch_add(a.value_address(u32(1), cpu=n - 1), 100, 32)
    assert a.lookup(u32(1))[8 * (n - 1):8 * (n - 1) + 4] == (n + 100).to_bytes(4, "little")


def test_two_handles_share_data(mk):
    a = mk(S.HASH, 8, 8, 16)
    sm2_view = a.view  # a second attach on the same memory
    b = attach(sm2_view, a.base)
    a.update(u64(1), u64(11))
    assert b.lookup(u64(1)) == u64(11)
    b.delete(u64(1))
    assert errno_of(a.lookup, u64(1)) == errno.ENOENT
    b.close()


def test_hash_basics(mk):
    h = mk(S.HASH, 8, 16, 4)
    assert errno_of(h.lookup, u64(1)) == errno.ENOENT
    assert errno_of(h.get_next_key, None) == errno.ENOENT
    assert errno_of(h.update, u64(1), b"a" * 16, S.EXIST) == errno.ENOENT
    h.update(u64(1), b"a" * 16, S.NOEXIST)
    assert errno_of(h.update, u64(1), b"b" * 16, S.NOEXIST) == errno.EEXIST
    h.update(u64(1), b"b" * 16, S.EXIST)
    assert h.lookup(u64(1)) == b"b" * 16
    for i in range(2, 5):
        h.update(u64(i), bytes([i]) * 16)
    assert errno_of(h.update, u64(5), b"c" * 16) == errno.E2BIG
    h.update(u64(4), b"d" * 16)  # replacing when full is fine
    assert sorted(h.keys()) == [u64(i) for i in range(1, 5)]
    assert h.lookup_and_delete(u64(2)) == b"\2" * 16
    assert errno_of(h.delete, u64(2)) == errno.ENOENT
    assert errno_of(h.update, u64(1), b"a" * 16, 5) == errno.EINVAL
    assert errno_of(h.update, u64(1), b"a" * 16, S.F_LOCK) == errno.EINVAL
    assert errno_of(h.lookup, b"short") == errno.EINVAL
    h.update(u64(5), b"e" * 16)
    assert len(h) == 4
    assert h.check() == []


def test_hash_get_next_key_missing_key_restarts(mk):
    h = mk(S.HASH, 4, 4, 64)
    for i in range(40):
        h.update(u32(i), u32(i))
    first = h.get_next_key(None)
    assert h.get_next_key(u32(1000)) == first
    ks = list(h.keys())
    assert sorted(ks) == sorted(u32(i) for i in range(40))


def test_percpu_hash_program_update_sets_one_cpu(mk):
    n = ncpus()
    h = mk(S.PERCPU_HASH, 4, 8, 8)
    h.update_from_program(u32(1), u64(7), cpu=n - 1)
    v = h.lookup(u32(1))
    assert v[8 * (n - 1):] == u64(7) and v[:8 * (n - 1)] == bytes(8 * (n - 1))
    h.update_from_program(u32(1), u64(9), cpu=0)
    v = h.lookup(u32(1))
    assert v[:8] == u64(9) and v[8 * (n - 1):] == u64(7)
    full = b"".join(u64(c) for c in range(n))
    h.update(u32(2), full)
    assert h.lookup(u32(2)) == full


@pytest.mark.parametrize("t", [S.LRU_HASH, S.LRU_PERCPU_HASH])
def test_lru_evicts_instead_of_failing(mk, t):
    h = mk(t, 4, 8, 16)
    vs = S.user_value_size(h.spec)
    for i in range(16):
        h.update(u32(i), bytes(vs))
    # programs touching a key keep it alive
    assert h.value_address(u32(0)) is not None
    for i in range(16, 40):
        h.update(u32(i), bytes(vs))
        assert h.value_address(u32(0)) is not None
    assert len(h) == 16
    assert h.lookup(u32(0)) == bytes(vs)
    assert h.lookup(u32(39)) == bytes(vs)
    assert h.check() == []
    assert errno_of(h.update, u32(99), bytes(vs), S.EXIST) == errno.ENOENT


def test_lru_evicts_oldest_unreferenced(mk):
    h = mk(S.LRU_HASH, 4, 4, 8)
    for i in range(8):
        h.update(u32(i), u32(i))
    h.update(u32(100), u32(100))
    present = {int.from_bytes(k, "little") for k in h.keys()}
    assert 100 in present and len(present) == 8
    assert 0 not in present  # the clock hand starts at the oldest element


def test_no_common_lru_rounds_max_entries():
    n = ncpus()
    sp = MapSpec(S.LRU_HASH, 4, 4, n + 1, S.F_NO_COMMON_LRU)
    assert S.effective_max_entries(sp) == 2 * n


@given(st.dictionaries(st.binary(min_size=6, max_size=6), st.binary(min_size=5, max_size=5),
                       max_size=50))
@settings(max_examples=30, deadline=None)
def test_hash_holds_any_key_set(d):
    with StandaloneMap.create(MapSpec(S.HASH, 6, 5, 50)) as h:
        for k, v in d.items():
            h.update(k, v, S.NOEXIST)
        assert {k: h.lookup(k) for k in h.keys()} == d
        assert h.check() == []


class HashModel(RuleBasedStateMachine):
    """Random command sequences against a dict with Linux's rules."""

    MAX = 8

    @initialize(t=st.sampled_from([S.HASH, S.PERCPU_HASH]))
    def setup(self, t):
        self.sm = StandaloneMap.create(MapSpec(t, 2, 3, self.MAX))
        self.m = self.sm.impl
        self.vs = S.user_value_size(self.m.spec)
        self.model = {}

    keys = st.integers(0, 15).map(lambda i: i.to_bytes(2, "little"))

    @rule(k=keys, v=st.binary(min_size=1, max_size=1), flags=st.sampled_from([0, 1, 2]))
    def update(self, k, v, flags):
        v = v * self.vs
        exp = 0
        if flags == S.NOEXIST and k in self.model:
            exp = errno.EEXIST
        elif flags == S.EXIST and k not in self.model:
            exp = errno.ENOENT
        elif k not in self.model and len(self.model) >= self.MAX:
            exp = errno.E2BIG
        try:
            self.m.update(k, v, flags)
            got = 0
        except OSError as e:
            got = e.errno
        assert got == exp
        if not exp:
            self.model[k] = v

    @rule(k=keys)
    def delete(self, k):
        try:
            self.m.delete(k)
            assert k in self.model
            del self.model[k]
        except OSError as e:
            assert e.errno == errno.ENOENT and k not in self.model

    @rule(k=keys)
    def lookup_and_delete(self, k):
        try:
            v = self.m.lookup_and_delete(k)
            assert self.model.pop(k) == v
        except OSError as e:
            assert e.errno == errno.ENOENT and k not in self.model

    @rule(k=keys)
    def lookup(self, k):
        try:
            assert self.m.lookup(k) == self.model[k]
        except OSError as e:
            assert e.errno == errno.ENOENT and k not in self.model

    @invariant()
    def iteration_matches(self):
        if hasattr(self, "m"):
            ks = list(self.m.keys())
            assert len(ks) == len(set(ks)) == len(self.model)
            assert set(ks) == set(self.model)

    def teardown(self):
        if hasattr(self, "m"):
            assert self.m.check() == []
            self.sm.close()


TestHashModel = HashModel.TestCase
TestHashModel.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)


def test_init_storage_rejects_small_view():
    sp = MapSpec(S.ARRAY, 4, 8, 1000)
    buf = bytearray(4096)
    with pytest.raises(OSError) as ei:
        init_storage(memoryview(buf), 0, sp)
    assert ei.value.errno == errno.EINVAL


def test_attach_rejects_garbage():
    buf = bytearray(8192)
    with pytest.raises(OSError) as ei:
        attach(memoryview(buf), 0)
    assert ei.value.errno == errno.EINVAL


@given(st.lists(st.tuples(st.sampled_from(["update", "delete", "touch"]), st.integers(0, 30)),
                max_size=120))
@settings(max_examples=40, deadline=None)
def test_lru_invariants(ops):
    """Never above max_entries, a just-written key is present, values belong to their keys."""
    with StandaloneMap.create(MapSpec(S.LRU_HASH, 4, 4, 8)) as h:
        for op, k in ops:
            if op == "update":
                h.update(u32(k), u32(k * 3))
                assert h.lookup(u32(k)) == u32(k * 3)
            elif op == "delete":
                try:
                    h.delete(u32(k))
                except OSError as e:
                    assert e.errno == errno.ENOENT
            else:
                h.value_address(u32(k))
            ks = list(h.keys())
            assert len(ks) == len(set(ks)) == len(h) <= 8
            for key in ks:
                assert h.lookup(key) == u32(int.from_bytes(key, "little") * 3)
        assert h.check() == []


@given(st.lists(st.tuples(st.integers(0, 12), st.binary(min_size=3, max_size=3),
                          st.sampled_from([0, 1, 2, 3])), max_size=60))
@settings(max_examples=40, deadline=None)
def test_array_model(ops):
    with StandaloneMap.create(MapSpec(S.ARRAY, 4, 3, 10)) as a:
        model = [bytes(3)] * 10
        for k, v, flags in ops:
            if flags == 3:
                exp = errno.EINVAL
            elif k >= 10:
                exp = errno.E2BIG
            elif flags == S.NOEXIST:
                exp = errno.EEXIST
            else:
                exp = 0
            try:
                a.update(u32(k), v, flags)
                got = 0
            except OSError as e:
                got = e.errno
            assert got == exp
            if not exp:
                model[k] = v
        assert [a.lookup(u32(i)) for i in range(10)] == model


def test_attach_rejects_truncated_storage():
    sm = StandaloneMap.create(MapSpec(S.HASH, 8, 8, 1000))
    try:
        short = sm.view[:8192]
        with pytest.raises(OSError) as ei:
            attach(short, sm.addr + 4096)
        assert ei.value.errno == errno.EINVAL
        short.release()
    finally:
        sm.close()
