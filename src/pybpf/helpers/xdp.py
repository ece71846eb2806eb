"""XDP helpers: moving the start, the end and the metadata of the frame."""

from __future__ import annotations

import errno

from ..runtime.contexts import XDP_FRAME_STRUCT
from ..runtime.skb import ETH_HLEN, FRAG_SIZE
from .common import neg, s32, xdp_state


def xdp_adjust_head(vm, r1, r2, r3, r4, r5):
    st = xdp_state(vm)
    pkt, delta = st.packet, s32(r2)
    start, meta = pkt.start + delta, pkt.meta + delta
    if meta < XDP_FRAME_STRUCT or start > pkt.end - ETH_HLEN:
        return neg(errno.EINVAL)
    metalen = pkt.start - pkt.meta
    if metalen:
        pkt.view[meta:meta + metalen] = bytes(pkt.view[pkt.meta:pkt.start])
    pkt.move(start=start, meta=meta, mac=start)
    st.packet_changed()
    return 0


def _frags_tail(st, delta: int) -> int:
    """bpf_xdp_adjust_tail on a multi-buffer frame: the last fragment grows, or fragments
    are trimmed from the end (then the linear part, once none is left)."""
    frags, pkt = st.xdp.frags, st.packet
    if delta > 0:
        if delta > FRAG_SIZE - len(frags[-1]):
            return neg(errno.EINVAL)
        frags[-1] += bytes(delta)
        return 0
    shrink = -delta
    total = len(pkt) + sum(len(f) for f in frags)
    if shrink > total - ETH_HLEN:
        return neg(errno.EINVAL)
    while frags and shrink > 0:
        cut = min(shrink, len(frags[-1]))
        del frags[-1][len(frags[-1]) - cut:]
        shrink -= cut
        if not frags[-1]:
            frags.pop()
    if not frags and shrink:
        pkt.move(end=pkt.end - shrink)
        st.packet_changed()
    return 0


def xdp_adjust_tail(vm, r1, r2, r3, r4, r5):
    st = xdp_state(vm)
    pkt, delta = st.packet, s32(r2)
    if st.xdp.frags:
        return _frags_tail(st, delta)
    end = pkt.end + delta
    if end > pkt.hard_end or end < pkt.start + ETH_HLEN:
        return neg(errno.EINVAL)
    if delta > 0:
        pkt.view[pkt.end:end] = bytes(delta)
    pkt.move(end=end)
    st.packet_changed()
    return 0


def xdp_adjust_meta(vm, r1, r2, r3, r4, r5):
    st = xdp_state(vm)
    pkt, delta = st.packet, s32(r2)
    meta = pkt.meta + delta
    metalen = pkt.start - meta
    if meta < XDP_FRAME_STRUCT or meta > pkt.start or metalen & 3 or metalen > 32:
        return neg(errno.EACCES)
    pkt.move(meta=meta)
    st.packet_changed()
    return 0


HELPERS = {44: xdp_adjust_head, 54: xdp_adjust_meta, 65: xdp_adjust_tail}
