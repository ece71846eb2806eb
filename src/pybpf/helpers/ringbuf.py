"""BPF ring buffer helpers over the RINGBUF map storage (records readable from Python)."""

from __future__ import annotations

import errno

from .common import neg, read, state

BPF_RB_NO_WAKEUP = 1
BPF_RB_FORCE_WAKEUP = 2


def _ring(vm, ptr):
    return state(vm).runtime.map_at(ptr).impl


def ringbuf_output(vm, r1, r2, r3, r4, r5):
    if r4 & ~(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP):
        return neg(errno.EINVAL)
    data = read(vm, r2, r3 & 0xFFFFFFFF)
    rc = _ring(vm, r1).output(data)
    return neg(-rc) if rc else 0


def ringbuf_reserve(vm, r1, r2, r3, r4, r5):
    if r3:
        return 0
    addr = _ring(vm, r1).reserve(r2 & 0xFFFFFFFF)
    return addr or 0


def _commit(vm, addr, flags, discard: bool):
    st = state(vm)
    ref = st.runtime.maps_by_ptr
    for m in ref.values():
        impl = m.impl
        if hasattr(impl, "reserve") and m.region is not None and m.region.contains(addr):
            (impl.discard if discard else impl.submit)(addr)
            return 0
    raise OSError(errno.EINVAL, f"{addr:#x} is not a reserved ring buffer record")


def ringbuf_submit(vm, r1, r2, r3, r4, r5):
    return _commit(vm, r1, r2, False)


def ringbuf_discard(vm, r1, r2, r3, r4, r5):
    return _commit(vm, r1, r2, True)


def ringbuf_query(vm, r1, r2, r3, r4, r5):
    return _ring(vm, r1).query(r2)


HELPERS = {130: ringbuf_output, 131: ringbuf_reserve, 132: ringbuf_submit, 133: ringbuf_discard,
           134: ringbuf_query}
