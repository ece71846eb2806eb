"""Bad arguments to every storage command give OSError (EINVAL and friends), never a TypeError."""

from __future__ import annotations

import pytest

from pybpf.maps import MapSpec, spec as S
from pybpf.maps.standalone import StandaloneMap

SPECS = [
    MapSpec(S.ARRAY, 4, 8, 4), MapSpec(S.PERCPU_ARRAY, 4, 8, 4), MapSpec(S.HASH, 4, 8, 4),
    MapSpec(S.PERCPU_HASH, 4, 8, 4), MapSpec(S.LRU_HASH, 4, 8, 4), MapSpec(S.LRU_PERCPU_HASH, 4, 8, 4),
    MapSpec(S.LPM_TRIE, 8, 8, 4, S.F_NO_PREALLOC), MapSpec(S.QUEUE, 0, 8, 4), MapSpec(S.STACK, 0, 8, 4),
    MapSpec(S.RINGBUF, 0, 0, 4096), MapSpec(S.BLOOM_FILTER, 0, 8, 4), MapSpec(S.PROG_ARRAY, 4, 4, 4),
    MapSpec(S.PERF_EVENT_ARRAY, 4, 4, 4),
    MapSpec(S.ARRAY_OF_MAPS, 4, 4, 4, inner_map_spec=MapSpec(S.ARRAY, 4, 4, 1)),
    MapSpec(S.HASH_OF_MAPS, 4, 4, 4, inner_map_spec=MapSpec(S.ARRAY, 4, 4, 1)),
]
BAD = [None, 5, -1, "str", b"", b"\0" * 3, b"\0" * 4, bytearray(4), memoryview(b"\0" * 8),
       b"\0" * 100, [1], 1.5]
FLAGS = [0, 1, 2, 3, 4, 0xFFFF, -1, None, "x", 1.0]


def _call(fn, *args):
    try:
        fn(*args)
    except OSError:
        pass


@pytest.mark.parametrize("sp", SPECS, ids=lambda sp: S.type_name(sp.map_type))
def test_no_type_errors(sp):
    with StandaloneMap.create(sp) as m:
        for k in BAD:
            _call(m.get_next_key, k)
            _call(m.delete, k)
            _call(m.value_address, k)
            for fl in FLAGS:
                _call(m.lookup, k, fl)
                _call(m.lookup_and_delete, k, fl)
                for v in BAD:
                    _call(m.update, k, v, fl)
                    _call(m.update_from_program, k, v, fl)
        for v in BAD:
            for fl in FLAGS:
                _call(m.push, v, fl)
            _call(m.peek, v)
        assert m.check() == []
