"""Map helpers: lookup/update/delete, push/pop/peek (Linux's bpf_map_*_elem)."""

from __future__ import annotations

import errno

from ..maps import spec as S
from .common import neg, read, state, write

MAP_IN_MAP = (S.ARRAY_OF_MAPS, S.HASH_OF_MAPS)


def _cpu(st, ref) -> int:
    return st.cpu % max(1, ref.impl.ncpus) if ref.impl.percpu else 0


def map_lookup_elem(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ref = st.runtime.map_at(r1)
    key = read(vm, r2, ref.impl.key_size)
    if ref.map_type in MAP_IN_MAP:
        from ..syscall.mapops import ref_object
        inner = ref_object(ref.obj, key)
        return 0 if inner is None else st.runtime.map_ref(inner).ptr
    addr = ref.impl.value_address(key, _cpu(st, ref))
    return addr or 0


def map_update_elem(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ref = st.runtime.map_at(r1)
    key = read(vm, r2, ref.impl.key_size)
    value = read(vm, r3, ref.impl.value_size)
    try:
        ref.impl.update_from_program(key, value, r4, _cpu(st, ref))
    except OSError as e:
        return neg(e.errno or errno.EINVAL)
    return 0


def map_delete_elem(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ref = st.runtime.map_at(r1)
    key = read(vm, r2, ref.impl.key_size)
    try:
        ref.impl.delete_from_program(key)
    except OSError as e:
        return neg(e.errno or errno.EINVAL)
    return 0


def map_push_elem(vm, r1, r2, r3, r4, r5):
    ref = state(vm).runtime.map_at(r1)
    value = read(vm, r2, ref.impl.value_size)
    try:
        ref.impl.push(value, r3)
    except OSError as e:
        return neg(e.errno or errno.EINVAL)
    return 0


def _take(vm, r1, r2, pop: bool):
    ref = state(vm).runtime.map_at(r1)
    try:
        value = ref.impl.pop() if pop else ref.impl.peek()
    except OSError as e:
        return neg(e.errno or errno.EINVAL)
    write(vm, r2, value[:ref.impl.value_size])
    return 0


def map_pop_elem(vm, r1, r2, r3, r4, r5):
    return _take(vm, r1, r2, True)


def map_peek_elem(vm, r1, r2, r3, r4, r5):
    ref = state(vm).runtime.map_at(r1)
    if ref.map_type == S.BLOOM_FILTER:
        try:
            ref.impl.peek(read(vm, r2, ref.impl.value_size))
        except OSError as e:
            return neg(e.errno or errno.ENOENT)
        return 0
    return _take(vm, r1, r2, False)


HELPERS = {1: map_lookup_elem, 2: map_update_elem, 3: map_delete_elem, 87: map_push_elem,
           88: map_pop_elem, 89: map_peek_elem}
