"""Contexts in the runtime layout the verifier rewrites context accesses to.

``pybpf.verifier.context.RUNTIME`` says where each field lives; here we fill
those structures from the packet models before a run, refresh the parts a
helper changed (packet pointers, length, VLAN state), and read back what the
program may write (mark, priority, cb[], ...) afterwards.
"""

from __future__ import annotations

import ctypes
import struct

from ..verifier.context import PT_REGS, RUNTIME
from ..verifier.progtypes import KPROBE, SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP
from .packet import PacketBuffer, give_buffer, take_buffer
from .skb import ETH_HLEN, SkBuff, XdpBuff

SKB_TYPES = (SOCKET_FILTER, SCHED_CLS, SCHED_ACT)
SKB_LAYOUT = RUNTIME[SCHED_CLS]
XDP_LAYOUT = RUNTIME[XDP]
KPROBE_LAYOUT = RUNTIME[KPROBE]

# Fields a program may write (the verifier allows nothing else): read back after the run.
SKB_WRITABLE = ("mark", "priority", "tc_index", "tc_classid", "queue_mapping", "tstamp",
                "cb[0]", "cb[1]", "cb[2]", "cb[3]", "cb[4]")
SKB_HEADROOM = 128          # NET_SKB_PAD plus room for VLAN pushes without reallocating
SKB_FRAME = 128 + 4096 + 320
XDP_HEADROOM = 256          # XDP_PACKET_HEADROOM
XDP_FRAME = 4096            # the page an XDP test run uses
XDP_TAILROOM = 320          # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
XDP_FRAME_STRUCT = 40       # sizeof(struct xdp_frame): headroom adjust_head cannot claim


def _put(view: memoryview, layout, name: str, value: int) -> None:
    off, size = layout.fields[name]
    view[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _get(view: memoryview, layout, name: str) -> int:
    off, size = layout.fields[name]
    return int.from_bytes(view[off:off + size], "little")


class Ctx:
    """A context structure registered in the runtime's memory."""

    def __init__(self, memory, size: int, name: str = "ctx", writable: bool = True) -> None:
        self.cap = max(size, 8)
        self.buf, self.view = take_buffer(self.cap)
        self.memory = memory
        self.region = memory.add_region(name, address=ctypes.addressof(self.buf), size=size,
                                        keepalive=self.buf, writable=writable)

    def close(self) -> None:
        try:
            self.memory.remove_region(self.region)
        except KeyError:
            pass
        if self.buf is not None:
            give_buffer(self.cap, self.buf, self.view)
            self.buf = None


# -- __sk_buff ------------------------------------------------------------------------

def skb_packet(memory, skb: SkBuff) -> PacketBuffer:
    pkt = PacketBuffer(memory, skb.data, headroom=SKB_HEADROOM, frame_size=max(
        SKB_FRAME, SKB_HEADROOM + len(skb.data) + 64))
    if not skb.l2:
        pkt.move(start=pkt.start + ETH_HLEN, meta=pkt.start + ETH_HLEN, mac=pkt.start)
    return pkt


def _packer(layout, names):
    """Contiguous runs of ``names``: [(struct.Struct, offset, [names])], so that writing one
    group of fields never touches the bytes of another (pack_into pads with zeroes)."""
    import struct
    spec = sorted((layout.fields[n][0], layout.fields[n][1], n) for n in names)
    runs, cur = [], None
    for off, size, n in spec:
        code = {1: "B", 2: "H", 4: "I", 8: "Q"}[size]
        if cur is not None and cur[3] == off:
            cur[0] += code
            cur[2].append(n)
            cur[3] = off + size
        else:
            cur = ["<" + code, off, [n], off + size]
            runs.append(cur)
    return [(struct.Struct(f), off, ns) for f, off, ns, _ in runs]


_SKB_SYNC = _packer(SKB_LAYOUT, ("len", "protocol", "vlan_present", "vlan_tci", "vlan_proto", "hash",
                                 "data", "data_end", "data_meta"))
_SKB_INIT = _packer(SKB_LAYOUT, ("pkt_type", "mark", "queue_mapping", "priority", "ingress_ifindex",
                                 "ifindex", "tc_index", "tc_classid", "napi_id", "tstamp", "gso_segs",
                                 "gso_size", "hwtstamp", "tstamp_type", "wire_len")
                    + tuple(f"cb[{i}]" for i in range(5)))
_SKB_BACK = _packer(SKB_LAYOUT, SKB_WRITABLE)
_M32 = 0xFFFFFFFF


def skb_sync(state) -> None:
    """Write the fields only the runtime changes (length, pointers, VLAN, protocol)."""
    skb, pkt = state.skb, state.packet
    vals = {"len": len(pkt), "protocol": skb.protocol, "vlan_present": skb.vlan_present,
            "vlan_tci": skb.vlan_tci, "vlan_proto": skb.vlan_proto, "hash": skb.hash,
            "data": pkt.data, "data_end": pkt.data_end, "data_meta": pkt.data_meta}
    view = state.ctx_view
    for st, off, names in _SKB_SYNC:
        st.pack_into(view, off, *[vals[n] for n in names])


def skb_ctx(state, skb: SkBuff) -> Ctx:
    ctx = Ctx(state.runtime.memory, SKB_LAYOUT.size)
    for st, off, names in _SKB_INIT:
        vals = []
        for n in names:
            v = skb.cb[int(n[3])] if n.startswith("cb[") else getattr(skb, n)
            mask = 0xFF if n == "tstamp_type" else 0xFFFFFFFFFFFFFFFF if n in ("tstamp", "hwtstamp") else _M32
            vals.append(v & mask)
        st.pack_into(ctx.view, off, *vals)
    state.ctx_view = ctx.view
    skb_sync(state)
    return ctx


def skb_readback(state) -> None:
    skb = state.skb
    for st, off, names in _SKB_BACK:
        for n, val in zip(names, st.unpack_from(state.ctx_view, off)):
            if n.startswith("cb["):
                skb.cb[int(n[3])] = val
            else:
                setattr(skb, n, val)
    skb.data = state.packet.frame()


# -- xdp_md -----------------------------------------------------------------------------

def xdp_packet(memory, xdp: XdpBuff) -> PacketBuffer:
    return PacketBuffer(memory, xdp.data, headroom=XDP_HEADROOM, frame_size=XDP_FRAME,
                        reserved_tail=XDP_TAILROOM, meta=xdp.meta)


def xdp_sync(state) -> None:
    pkt, v = state.packet, state.ctx_view
    _put(v, XDP_LAYOUT, "data", pkt.data)
    _put(v, XDP_LAYOUT, "data_end", pkt.data_end)
    _put(v, XDP_LAYOUT, "data_meta", pkt.data_meta)


def xdp_ctx(state, xdp: XdpBuff) -> Ctx:
    ctx = Ctx(state.runtime.memory, XDP_LAYOUT.size)
    v = ctx.view
    for name in ("ingress_ifindex", "rx_queue_index", "egress_ifindex"):
        _put(v, XDP_LAYOUT, name, getattr(xdp, name))
    state.ctx_view = v
    xdp_sync(state)
    return ctx


def xdp_readback(state) -> None:
    state.xdp.data = state.packet.bytes()
    state.xdp.meta = state.packet.meta_bytes()


# -- pt_regs and tracepoint records ------------------------------------------------------

REG_NAMES = [f.name for f in PT_REGS]
ARG_REGS = ("di", "si", "dx", "cx", "r8", "r9")


def pt_regs(values: dict | None = None, args=()) -> bytes:
    """A struct pt_regs image: ``args`` go to di, si, dx, cx, r8, r9 (x86-64 calling convention)."""
    regs = dict.fromkeys(REG_NAMES, 0)
    for name, a in zip(ARG_REGS, args):
        regs[name] = a
    for k, val in (values or {}).items():
        if k not in regs:
            raise ValueError(f"pt_regs has no register {k!r} (has {', '.join(REG_NAMES)})")
        regs[k] = val
    return b"".join(struct.pack("<Q", regs[n] & 0xFFFFFFFFFFFFFFFF) for n in REG_NAMES)


def raw_ctx(state, data: bytes, name: str, writable: bool = False) -> Ctx:
    ctx = Ctx(state.runtime.memory, len(data), name=name, writable=writable)
    ctx.view[:len(data)] = data        # through the view: the region itself may be read-only
    state.ctx_view = ctx.view
    return ctx
