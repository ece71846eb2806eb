"""Socket-buffer helpers: bytes, checksums, VLAN, tunnel keys, class ids, redirect verdicts."""

from __future__ import annotations

import errno
import socket
import struct

from ..runtime import verdicts as V
from ..runtime.skb import ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, TunnelInfo, be16
from . import csum as C
from .common import neg, read, skb_state, state, write

BPF_F_RECOMPUTE_CSUM = 1 << 0
BPF_F_INVALIDATE_HASH = 1 << 1
BPF_F_HDR_FIELD_MASK = 0xF
BPF_F_PSEUDO_HDR = 1 << 4
BPF_F_MARK_MANGLED_0 = 1 << 5
BPF_F_MARK_ENFORCE = 1 << 6
BPF_F_IPV6 = 1 << 7
BPF_F_INGRESS = 1 << 0
BPF_F_TUNINFO_IPV6 = 1 << 0
BPF_F_TUNINFO_FLAGS = 1 << 4
BPF_F_ZERO_CSUM_TX = 1 << 1
BPF_F_DONT_FRAGMENT = 1 << 2
BPF_F_SEQ_NUMBER = 1 << 3
BPF_F_NO_TUNNEL_KEY = 1 << 4
CSUM_MANGLED_0 = 0xFFFF
VLAN_HLEN = 4


def _pkt(vm):
    st = skb_state(vm)
    return st, st.packet


def _in_packet(pkt, offset: int, length: int) -> bool:
    return offset + length <= len(pkt)


def skb_store_bytes(vm, r1, r2, r3, r4, r5):
    st, pkt = _pkt(vm)
    offset, length, flags = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF, r5
    if flags & ~(BPF_F_RECOMPUTE_CSUM | BPF_F_INVALIDATE_HASH):
        return neg(errno.EINVAL)
    if offset > 0xFFFF:
        return neg(errno.EFAULT)
    if not _in_packet(pkt, offset, length):
        return neg(errno.EFAULT)
    data = read(vm, r3, length)
    start = pkt.start + offset
    pkt.view[start:start + length] = data
    if flags & BPF_F_INVALIDATE_HASH:
        st.skb.hash = 0
    st.packet_changed()
    return 0


def skb_load_bytes(vm, r1, r2, r3, r4, r5):
    st, pkt = _pkt(vm)
    offset, length = r2 & 0xFFFFFFFF, r4 & 0xFFFFFFFF
    if offset > 0xFFFF or not _in_packet(pkt, offset, length):
        write(vm, r3, b"\0" * length)
        return neg(errno.EFAULT)
    start = pkt.start + offset
    write(vm, r3, bytes(pkt.view[start:start + length]))
    return 0


def _sum_at(pkt, offset: int) -> int:
    return int.from_bytes(pkt.view[pkt.start + offset:pkt.start + offset + 2], "little")


def _set_sum(pkt, offset: int, value: int) -> None:
    pkt.view[pkt.start + offset:pkt.start + offset + 2] = (value & 0xFFFF).to_bytes(2, "little")


def l3_csum_replace(vm, r1, r2, r3, r4, r5):
    st, pkt = _pkt(vm)
    offset, frm, to, flags = r2 & 0xFFFFFFFF, r3, r4, r5
    if flags & ~BPF_F_HDR_FIELD_MASK:
        return neg(errno.EINVAL)
    if offset > 0xFFFF or offset & 1 or not _in_packet(pkt, offset, 2):
        return neg(errno.EFAULT)
    s = _sum_at(pkt, offset)
    kind = flags & BPF_F_HDR_FIELD_MASK
    if kind == 0:
        if frm:
            return neg(errno.EINVAL)
        s = C.csum_replace_by_diff(s, to & C.M32)
    elif kind == 2:
        s = C.csum_replace2(s, frm & 0xFFFF, to & 0xFFFF)
    elif kind == 4:
        s = C.csum_replace4(s, frm & C.M32, to & C.M32)
    else:
        return neg(errno.EINVAL)
    _set_sum(pkt, offset, s)
    st.packet_changed()
    return 0


def l4_csum_replace(vm, r1, r2, r3, r4, r5):
    st, pkt = _pkt(vm)
    offset, frm, to, flags = r2 & 0xFFFFFFFF, r3, r4, r5
    if flags & ~(BPF_F_MARK_MANGLED_0 | BPF_F_MARK_ENFORCE | BPF_F_PSEUDO_HDR | BPF_F_HDR_FIELD_MASK
                 | BPF_F_IPV6):
        return neg(errno.EINVAL)
    if offset > 0xFFFF or offset & 1 or not _in_packet(pkt, offset, 2):
        return neg(errno.EFAULT)
    s = _sum_at(pkt, offset)
    mmzero = flags & BPF_F_MARK_MANGLED_0
    if mmzero and not flags & BPF_F_MARK_ENFORCE and s == 0:
        return 0            # UDP without a checksum stays without one
    kind = flags & BPF_F_HDR_FIELD_MASK
    # A test-run/replayed skb is CHECKSUM_NONE: the checksum field is updated as is,
    # pseudo-header or not (inet_proto_csum_replace*).
    if kind == 0:
        if frm:
            return neg(errno.EINVAL)
        s = C.csum_replace_by_diff(s, to & C.M32)
    elif kind == 2:
        s = C.csum_replace2(s, frm & 0xFFFF, to & 0xFFFF)
    elif kind == 4:
        s = C.csum_replace4(s, frm & C.M32, to & C.M32)
    else:
        return neg(errno.EINVAL)
    if mmzero and s == 0:
        s = CSUM_MANGLED_0
    _set_sum(pkt, offset, s)
    st.packet_changed()
    return 0


def _ifindex_exists(ifindex: int) -> bool:
    try:
        socket.if_indextoname(ifindex)
        return True
    except OSError:
        return False


def clone_redirect(vm, r1, r2, r3, r4, r5):
    st, pkt = _pkt(vm)
    ifindex, flags = r2 & 0xFFFFFFFF, r3
    if flags & ~BPF_F_INGRESS:
        return neg(errno.EINVAL)
    if not _ifindex_exists(ifindex):
        return neg(errno.EINVAL)
    st.clones.append((ifindex, flags, pkt.frame()))
    return 0


def redirect(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    ifindex, flags = r1 & 0xFFFFFFFF, r2
    if st.xdp is not None:
        if flags:
            return V.XDP_ABORTED
        st.redirect = (ifindex, flags)
        return V.XDP_REDIRECT
    if flags & ~BPF_F_INGRESS:
        return V.TC_ACT_SHOT
    st.redirect = (ifindex, flags)
    return V.TC_ACT_REDIRECT


def get_cgroup_classid(vm, r1, r2, r3, r4, r5):
    return skb_state(vm).skb.cgroup_classid & 0xFFFFFFFF


def get_route_realm(vm, r1, r2, r3, r4, r5):
    return skb_state(vm).skb.route_realm & 0xFFFFFFFF


# -- VLAN ---------------------------------------------------------------------------------

def _eth_type_vlan(proto_be: int) -> bool:
    return proto_be in (be16(ETH_P_8021Q), be16(ETH_P_8021AD))


def _insert_tag(st, proto_be: int, tci: int) -> int:
    """Put a tag after the MAC addresses in the packet (__vlan_insert_tag)."""
    pkt = st.packet
    if pkt.mac - VLAN_HLEN < 0 or pkt.end - pkt.mac < 12:
        return neg(errno.ENOMEM)
    mac = pkt.mac
    pkt.view[mac - VLAN_HLEN:mac + 8] = bytes(pkt.view[mac:mac + 12])
    pkt.view[mac + 8:mac + 12] = proto_be.to_bytes(2, "little") + tci.to_bytes(2, "big")
    pkt.move(start=pkt.start - VLAN_HLEN, mac=mac - VLAN_HLEN, meta=pkt.start - VLAN_HLEN)
    return 0


def _pop_tag(st) -> tuple[int, int] | None:
    """Remove the tag after the MAC addresses (__skb_vlan_pop): (tci, inner proto) or None."""
    pkt = st.packet
    mac = pkt.mac
    if pkt.end - mac < ETH_HLEN + VLAN_HLEN:
        return None
    tci = int.from_bytes(pkt.view[mac + 14:mac + 16], "big")
    inner = int.from_bytes(pkt.view[mac + 16:mac + 18], "little")
    pkt.view[mac + VLAN_HLEN:mac + 12 + VLAN_HLEN] = bytes(pkt.view[mac:mac + 12])
    start = pkt.start + VLAN_HLEN if pkt.start < mac + ETH_HLEN else pkt.start
    pkt.move(start=start, mac=mac + VLAN_HLEN, meta=start)
    return tci, inner


def skb_vlan_push(vm, r1, r2, r3, r4, r5):
    st = skb_state(vm)
    skb = st.skb
    proto, tci = r2 & 0xFFFF, r3 & 0xFFFF
    if not _eth_type_vlan(proto):
        proto = be16(ETH_P_8021Q)
    if skb.vlan_present:
        rc = _insert_tag(st, skb.vlan_proto, skb.vlan_tci)
        if rc:
            return rc
        skb.protocol = skb.vlan_proto
    skb.vlan_present, skb.vlan_proto, skb.vlan_tci = 1, proto, tci
    st.packet_changed()
    return 0


def skb_vlan_pop(vm, r1, r2, r3, r4, r5):
    st = skb_state(vm)
    skb = st.skb
    if skb.vlan_present:
        skb.vlan_present, skb.vlan_tci, skb.vlan_proto = 0, 0, 0
    else:
        if not _eth_type_vlan(skb.protocol):
            return 0
        got = _pop_tag(st)
        if got is None:
            return neg(errno.EINVAL)
        skb.protocol = got[1]
    if _eth_type_vlan(skb.protocol):
        proto = skb.protocol
        got = _pop_tag(st)
        if got is None:
            st.packet_changed()
            return neg(errno.EINVAL)
        skb.protocol = got[1]
        skb.vlan_present, skb.vlan_proto, skb.vlan_tci = 1, proto, got[0]
    st.packet_changed()
    return 0


# -- tunnel keys ---------------------------------------------------------------------------
# struct bpf_tunnel_key: tunnel_id u32; remote_ipv4/remote_ipv6[4]; tos u8; ttl u8;
# tunnel_ext/tunnel_flags u16; tunnel_label u32; local_ipv4/local_ipv6[4]  (44 bytes)
TUNNEL_KEY_SIZE = 44
_COMPAT_SIZES = (22, 24, 28)      # offsetof tunnel_ext, tunnel_label, local_ipv4


def _addr_words(raw: bytes, ipv6: bool) -> bytes:
    """Addresses are host-order u32 words in bpf_tunnel_key (be32_to_cpu of each)."""
    if not ipv6:
        return int.from_bytes(raw[:4], "big").to_bytes(4, "little") + b"\0" * 12
    return b"".join(int.from_bytes(raw[i:i + 4], "big").to_bytes(4, "little") for i in range(0, 16, 4))


def _words_addr(raw: bytes, ipv6: bool) -> bytes:
    n = 16 if ipv6 else 4
    return b"".join(int.from_bytes(raw[i:i + 4], "little").to_bytes(4, "big") for i in range(0, n, 4))


def skb_get_tunnel_key(vm, r1, r2, r3, r4, r5):
    st = skb_state(vm)
    size, flags = r3 & 0xFFFFFFFF, r4
    info = st.skb.tunnel
    if info is None or flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_TUNINFO_FLAGS) or \
            (size != TUNNEL_KEY_SIZE and size not in _COMPAT_SIZES):
        write(vm, r2, b"\0" * size)
        return neg(errno.EINVAL)
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    if ipv6 != info.ipv6:
        write(vm, r2, b"\0" * size)
        return neg(errno.EINVAL)
    ext = info.flags if flags & BPF_F_TUNINFO_FLAGS else 0
    key = (struct.pack("<I", info.tunnel_id & 0xFFFFFFFF) + _addr_words(info.src, ipv6)
           + struct.pack("<BBHI", info.tos, info.ttl, ext, info.label & 0xFFFFF)
           + _addr_words(info.dst, ipv6))
    write(vm, r2, key[:size])
    return 0


def skb_set_tunnel_key(vm, r1, r2, r3, r4, r5):
    st = skb_state(vm)
    size, flags = r3 & 0xFFFFFFFF, r4
    if flags & ~(BPF_F_TUNINFO_IPV6 | BPF_F_ZERO_CSUM_TX | BPF_F_DONT_FRAGMENT | BPF_F_SEQ_NUMBER
                 | BPF_F_NO_TUNNEL_KEY):
        return neg(errno.EINVAL)
    if size != TUNNEL_KEY_SIZE and size not in _COMPAT_SIZES:
        return neg(errno.EINVAL)
    raw = read(vm, r2, size).ljust(TUNNEL_KEY_SIZE, b"\0")
    ipv6 = bool(flags & BPF_F_TUNINFO_IPV6)
    tid, = struct.unpack_from("<I", raw, 0)
    tos, ttl, _ext, label = struct.unpack_from("<BBHI", raw, 20)
    if ipv6 and label & ~0xFFFFF:
        return neg(errno.EINVAL)
    st.skb.tunnel = TunnelInfo(tunnel_id=tid, src=_words_addr(raw[28:44], ipv6),
                               dst=_words_addr(raw[4:20], ipv6), tos=tos, ttl=ttl,
                               label=label if ipv6 else 0, flags=flags, tx=True)
    return 0


HELPERS = {9: skb_store_bytes, 10: l3_csum_replace, 11: l4_csum_replace, 13: clone_redirect,
           17: get_cgroup_classid, 18: skb_vlan_push, 19: skb_vlan_pop, 20: skb_get_tunnel_key,
           21: skb_set_tunnel_key, 23: redirect, 24: get_route_realm, 26: skb_load_bytes}
