"""The Map Python API: dict-like access, conversions, per-CPU values, pinning, lifetimes."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.map import Map, MapError, MapSizeError
from pybpf.syscall import constants as C


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


class Pair(ctypes.Structure):
    _fields_ = [("a", ctypes.c_uint32), ("b", ctypes.c_uint32)]


def test_create_by_name_and_number():
    with Map.create("hash", 4, 8, 16, name="by_name") as a, Map.create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 4) as b:
        assert (a.type_name, a.name, a.key_size, a.value_size, a.max_entries) == ("hash", "by_name", 4, 8, 16)
        assert b.type == C.BPF_MAP_TYPE_ARRAY
        assert "id=" in repr(a)
    with pytest.raises(MapError, match="unknown map type"):
        Map.create("nope", 4, 4, 1)
    with pytest.raises(OSError) as e:
        Map.create("array", 8, 4, 1)
    assert e.value.errno == errno.EINVAL


def test_dict_protocol():
    with Map.create("hash", 4, 8, 16) as m:
        m[1] = 10
        m[b"\x02\0\0\0"] = (20).to_bytes(8, "little")
        m[ctypes.c_uint32(3)] = ctypes.c_uint64(30)
        assert m[1] == (10).to_bytes(8, "little")
        assert 2 in m and 4 not in m
        assert len(m) == 3
        assert sorted(int.from_bytes(k, "little") for k in m) == [1, 2, 3]
        assert sorted((int.from_bytes(k, "little"), int.from_bytes(v, "little")) for k, v in m.items()) == \
            [(1, 10), (2, 20), (3, 30)]
        del m[2]
        with pytest.raises(KeyError):
            m[2]
        with pytest.raises(KeyError):
            del m[2]
        assert m.get(2) is None and m.get(2, "x") == "x"
        m.key_type = int
        m.value_type = int
        assert sorted(m.items()) == [(1, 10), (3, 30)]
        assert sorted(m.values()) == [10, 30]
        m.clear()
        assert len(m) == 0


def test_update_flags():
    with Map.create("hash", 4, 4, 2) as m:
        m.update(1, 1, flags=C.BPF_NOEXIST)
        with pytest.raises(OSError) as e:
            m.update(1, 1, flags="noexist")
        assert e.value.errno == errno.EEXIST
        with pytest.raises(OSError) as e:
            m.update(5, 1, flags=C.BPF_EXIST)
        assert e.value.errno == errno.ENOENT
        m.update({2: 2})
        with pytest.raises(OSError) as e:
            m[3] = 3
        assert e.value.errno == errno.E2BIG
        with pytest.raises(MapError):
            m.update(1, 1, flags="sometimes")


def test_wrong_sizes_are_clear_errors():
    with Map.create("hash", 4, 8, 4) as m:
        with pytest.raises(MapSizeError, match="key: expected 4 bytes, got 3"):
            m[b"abc"] = 1
        with pytest.raises(MapSizeError, match="value: expected 8 bytes, got 4"):
            m[1] = b"abcd"
        with pytest.raises(MapSizeError, match="does not fit in 4 bytes"):
            m[1 << 40] = 1
        with pytest.raises(MapSizeError, match="expected 8 bytes, got 4"):
            m[1] = ctypes.c_uint32(1)
        with pytest.raises(MapSizeError, match="str"):
            m["k"] = 1
        assert isinstance(MapSizeError("x"), ValueError)


def test_ctypes_structures():
    with Map.create("hash", 8, 8, 4, key_type=Pair, value_type=Pair) as m:
        m[Pair(1, 2)] = Pair(3, 4)
        v = m[Pair(1, 2)]
        assert (v.a, v.b) == (3, 4)
        (k, v2), = m.items()
        assert (k.a, k.b, v2.a, v2.b) == (1, 2, 3, 4)


def test_negative_int_keys_and_values():
    with Map.create("hash", 4, 4, 4, value_type=int) as m:
        m[-1] = -2
        assert m[-1] == 0xFFFFFFFE


def test_array_semantics():
    with Map.create("array", 4, 4, 3) as m:
        assert len(m) == 3 and m[2] == bytes(4)
        assert 2 in m and 3 not in m
        with pytest.raises(KeyError):
            m[3]
        with pytest.raises(OSError) as e:
            m[3] = 1
        assert e.value.errno == errno.E2BIG
        with pytest.raises(OSError) as e:
            del m[0]
        assert e.value.errno == errno.EINVAL


def test_percpu_values():
    from pybpf.maps import ncpus
    n = ncpus()
    with Map.create("percpu_array", 4, 4, 2) as m:
        m[0] = [i + 1 for i in range(n)]
        assert m[0] == [(i + 1).to_bytes(4, "little") for i in range(n)]
        m.value_type = int
        assert m[0] == list(range(1, n + 1))
        with pytest.raises(MapSizeError, match=f"expected {n} values"):
            m[1] = [1] * (n + 1)
        with pytest.raises(MapSizeError, match="one value per possible CPU"):
            m[1] = 5


def test_pin_from_pinned_and_close(bpffs):
    m = Map.create("array", 4, 8, 4)
    m[0] = 5
    m.pin("/sys/fs/bpf/api_map")
    m.close()
    m.close()                                       # idempotent
    with pytest.raises(MapError, match="closed"):
        m[0]
    with pytest.raises(MapError, match="closed"):
        m.fd
    with Map.from_pinned("/sys/fs/bpf/api_map") as again:
        assert int.from_bytes(again[0], "little") == 5
        fd = again.fd
    with pytest.raises(OSError):
        os.fstat(fd)                                # the context manager closed it
    with pytest.raises(OSError) as e:
        Map.from_pinned("/sys/fs/bpf/none")
    assert e.value.errno == errno.ENOENT


def test_from_pinned_program_is_not_a_map(bpffs):
    from pybpf import kobj
    fd = kobj.create_object("prog", {}, 8)
    kobj.pin(fd, "/sys/fs/bpf/prog")
    with pytest.raises(MapError, match="not a map"):
        Map.from_pinned("/sys/fs/bpf/prog")
    os.close(fd)


def test_readonly_and_writeonly(bpffs):
    with Map.create("array", 4, 4, 2) as m:
        m[0] = 7
        m.pin("/sys/fs/bpf/rw")
    with Map.from_pinned("/sys/fs/bpf/rw", readonly=True) as ro:
        assert int.from_bytes(ro[0], "little") == 7
        with pytest.raises(OSError) as e:
            ro[0] = 1
        assert e.value.errno == errno.EPERM
    with Map.from_pinned("/sys/fs/bpf/rw", writeonly=True) as wo:
        wo[0] = 9
        with pytest.raises(OSError) as e:
            wo[0]
        assert e.value.errno == errno.EPERM


def test_queue_and_stack():
    with Map.create("queue", 0, 4, 3, value_type=int) as q, Map.create("stack", 0, 4, 3, value_type=int) as s:
        for i in (1, 2, 3):
            q.push(i)
            s.push(i)
        assert q.peek() == 1 and s.peek() == 3
        assert [q.pop() for _ in range(3)] == [1, 2, 3]
        assert [s.pop() for _ in range(3)] == [3, 2, 1]
        with pytest.raises(KeyError):
            q.pop()
        assert q.pop(None, "empty") == "empty"


def test_hash_pop_is_lookup_and_delete():
    with Map.create("hash", 4, 4, 4, value_type=int) as m:
        m[1] = 11
        assert m.pop(1) == 11 and 1 not in m


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["set", "del"]), st.integers(0, 20), st.integers(0, 2**64 - 1)),
                max_size=60))
def test_hash_behaves_like_a_bounded_dict(ops):
    model: dict[int, int] = {}
    with Map.create("hash", 4, 8, 8, key_type=int, value_type=int) as m:
        for op, k, v in ops:
            if op == "set":
                if k not in model and len(model) == 8:
                    with pytest.raises(OSError) as e:
                        m[k] = v
                    assert e.value.errno == errno.E2BIG
                else:
                    m[k] = v
                    model[k] = v
            else:
                if k in model:
                    del m[k]
                    del model[k]
                else:
                    with pytest.raises(KeyError):
                        del m[k]
        assert dict(m.items()) == model
        assert len(m) == len(model)


def test_bloom_lpm_and_ringbuf_through_the_api():
    with Map.create("bloom_filter", 0, 4, 100, map_extra=3) as b:
        b.push(5)
        assert 5 in b and 6 not in b
    with Map.create("lpm_trie", 8, 4, 16, flags=C.BPF_F_NO_PREALLOC, value_type=int) as lpm:
        lpm[(24).to_bytes(4, "little") + bytes([10, 1, 2, 0])] = 7
        assert lpm[(32).to_bytes(4, "little") + bytes([10, 1, 2, 3])] == 7
        assert lpm.get((32).to_bytes(4, "little") + bytes([10, 1, 3, 3])) is None
    with Map.create("ringbuf", 0, 0, 4096) as rb:
        rb._obj.map_impl().output(b"record")      # what bpf_ringbuf_output does
        assert list(rb.consume()) == [b"record"]
    with Map.create("array", 4, 4, 1) as a, pytest.raises(MapError):
        a.consume()
