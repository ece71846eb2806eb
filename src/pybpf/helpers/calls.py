"""Control-transfer helpers: bpf_tail_call (PROG_ARRAY, at most 33 in a chain) and bpf_loop."""

from __future__ import annotations

import errno

from ..runtime.core import FUNC_MASK, FUNC_TAG, MAX_TAIL_CALL_CNT
from ..vm import StopProgram
from .common import neg, state

BPF_MAX_LOOPS = 1 << 23


def tail_call(vm, r1, r2, r3, r4, r5):
    """Jump into prog_array[index]; on failure fall through, as Linux does."""
    st = state(vm)
    ref = st.runtime.map_at(r2)
    index = r3 & 0xFFFFFFFF
    if index >= ref.impl.max_entries:
        return neg(errno.E2BIG)
    if st.tail_calls >= MAX_TAIL_CALL_CNT:
        return neg(errno.EBUSY)
    from ..syscall.mapops import ref_object
    obj = ref_object(ref.obj, index.to_bytes(4, "little"))
    if obj is None:
        return neg(errno.ENOENT)
    target = st.runtime.program_of(obj)
    if target.prog_type != st.prog_type:
        return neg(errno.EINVAL)
    st.tail_calls += 1
    st.pending_tail = target
    raise StopProgram(0)


def _callback(fn: int):
    return fn & ~FUNC_MASK if fn & FUNC_MASK == FUNC_TAG else None


def loop(vm, r1, r2, r3, r4, r5):
    """bpf_loop(nr_loops, callback, ctx, flags): callback(i, ctx) until it returns 1."""
    st = state(vm)
    nr, entry, ctx, flags = r1 & 0xFFFFFFFF, _callback(r2), r3, r4
    if flags:
        return neg(errno.EINVAL)
    if nr > BPF_MAX_LOOPS:
        return neg(errno.E2BIG)
    if entry is None:
        return neg(errno.EINVAL)
    for i in range(nr):
        r0, _ = st.runtime.call_callback(st, entry, i, ctx)
        if r0 & 0xFFFFFFFFFFFFFFFF == 1:
            return i + 1
    return nr


def for_each_map_elem(vm, r1, r2, r3, r4, r5):
    """bpf_for_each_map_elem(map, callback, ctx, flags): callback(map, &key, &value, ctx) per element.

    Arrays go over every index, hashes over the present keys; a callback returning 1
    stops; the result is the number of elements visited.
    """
    st = state(vm)
    ref = st.runtime.map_at(r1)
    entry = _callback(r2)
    if r4:
        return neg(errno.EINVAL)
    if entry is None:
        return neg(errno.EINVAL)
    impl = ref.impl
    cpu = st.cpu % max(1, impl.ncpus) if impl.percpu else 0
    keybuf = st.runtime.key_scratch(impl.key_size)
    n = 0
    for key in list(impl.keys()):
        addr = impl.value_address(key, cpu)
        if addr is None:
            continue
        keybuf.view[:len(key)] = key
        n += 1
        r0, _ = st.runtime.call_callback(st, entry, r1, keybuf.base, addr, r3)
        if r0 & 0xFFFFFFFFFFFFFFFF == 1:
            break
    return n


HELPERS = {12: tail_call, 164: for_each_map_elem, 181: loop}
