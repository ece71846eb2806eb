"""What each example must compute on a capture, worked out in plain Python from the packets.

Nothing here runs BPF: the tests compare these numbers with what the
programs leave in their maps (under pybpf and, where it works, the kernel).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

ETH_HLEN = 14
VLAN_TYPES = (0x8100, 0x88A8)


@dataclass
class Parsed:
    ethertype: int                    # outermost EtherType (what skb->protocol holds)
    l3type: int | None = None         # EtherType after at most one VLAN tag
    l3: int = 0                       # offset of the IP header in the frame
    version: int = 0
    src: bytes = b""                  # 16 bytes, IPv4 mapped
    dst: bytes = b""
    proto: int | None = None          # IPv4 protocol / IPv6 next header (after a fragment header)
    first_proto: int | None = None    # IPv4 protocol / the IPv6 header's own next header
    l4: int | None = None             # offset of the L4 header, None for non-first fragments
    ttl: int = 0
    ihl: int = 5
    frag_off: int = 0
    extra: dict = field(default_factory=dict)


def mapped(v4: bytes) -> bytes:
    return bytes(10) + b"\xff\xff" + v4


def parse(frame: bytes) -> Parsed:
    et = int.from_bytes(frame[12:14], "big")
    p = Parsed(et)
    off, l3type = ETH_HLEN, et
    if et in VLAN_TYPES:
        l3type = int.from_bytes(frame[16:18], "big")
        off += 4
    p.l3type, p.l3 = l3type, off
    if l3type == 0x0800:
        vihl, _tos, _tot, _id, frag, ttl, proto = struct.unpack_from("!BBHHHBB", frame, off)
        p.version, p.ihl, p.ttl, p.frag_off = 4, vihl & 15, ttl, frag
        p.src, p.dst = mapped(frame[off + 12:off + 16]), mapped(frame[off + 16:off + 20])
        p.proto = p.first_proto = proto
        p.l4 = None if frag & 0x1FFF else off + p.ihl * 4
    elif l3type == 0x86DD:
        p.version = 6
        nh, p.ttl = frame[off + 6], frame[off + 7]
        p.src, p.dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
        p.proto = p.first_proto = nh
        p.l4 = off + 40
        if nh == 44:
            p.proto = frame[off + 40]
            fo = int.from_bytes(frame[off + 42:off + 44], "big")
            p.l4 = None if fo & 0xFFF8 else off + 48
    return p


# -- sockex1 ------------------------------------------------------------------------------

def proto_bytes(frames) -> dict[int, int]:
    """Bytes (frame length minus Ethernet header) per IPv4 protocol / IPv6 next header.

    Untagged frames only: a socket filter's skb->protocol is the outer EtherType.
    """
    out: dict[int, int] = {}
    for f in frames:
        p = parse(f)
        if p.ethertype in (0x0800, 0x86DD):
            out[p.first_proto] = out.get(p.first_proto, 0) + len(f) - ETH_HLEN
    return out


# -- sockex2 / sockex3 --------------------------------------------------------------------

def flow_key(f: bytes) -> tuple | None:
    """(src, dst, proto, sport, dport) with printable addresses, or None for non-IP frames."""
    p = parse(f)
    if p.version == 0:
        return None
    sport = dport = 0
    if p.l4 is not None:
        if p.proto in (6, 17):
            sport, dport = struct.unpack_from("!HH", f, p.l4)
        elif p.proto in (1, 58):
            sport, dport = f[p.l4], f[p.l4 + 1]
    a = lambda b: str(ipaddress.IPv6Address(b).ipv4_mapped or ipaddress.IPv6Address(b))  # noqa: E731
    return (a(p.src), a(p.dst), p.proto, sport, dport)


def flows(frames) -> dict[tuple, tuple[int, int]]:
    out: dict[tuple, tuple[int, int]] = {}
    for f in frames:
        k = flow_key(f)
        if k is None:
            continue
        pk, by = out.get(k, (0, 0))
        out[k] = (pk + 1, by + len(f) - ETH_HLEN)
    return out


# -- xdp_filter ---------------------------------------------------------------------------

XDP_DROP, XDP_PASS, XDP_TX = 1, 2, 3


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _blocked(addr16: bytes, prefixes) -> str | None:
    a = ipaddress.IPv6Address(addr16)
    best = None
    for text in prefixes:
        net = ipaddress.ip_network(text)
        if net.version == 4:
            if a.ipv4_mapped is not None and a.ipv4_mapped in net:
                best = text if best is None or ipaddress.ip_network(best).prefixlen < net.prefixlen else best
        elif a.ipv4_mapped is None and a in net:
            best = text if best is None or ipaddress.ip_network(best).prefixlen < net.prefixlen else best
    return best


def xdp_filter(frames, blocked) -> tuple[list[tuple[int, bytes]], dict[str, int]]:
    """(verdict, frame after the program) per frame, and drops per blocked prefix."""
    out, hits = [], {b: 0 for b in blocked}
    for f in frames:
        p = parse(f)
        if len(f) < ETH_HLEN:
            out.append((XDP_DROP, f))
            continue
        if p.version:
            b = _blocked(p.src, blocked)
            if b:
                hits[b] += 1
                out.append((XDP_DROP, f))
                continue
        if (p.version == 4 and p.proto == 1 and p.ihl == 5 and not p.frag_off & 0x3FFF
                and f[p.l4] == 8):
            g = bytearray(f)
            g[0:6], g[6:12] = f[6:12], f[0:6]
            g[p.l3 + 12:p.l3 + 16], g[p.l3 + 16:p.l3 + 20] = f[p.l3 + 16:p.l3 + 20], f[p.l3 + 12:p.l3 + 16]
            g[p.l4] = 0
            g[p.l4 + 2:p.l4 + 4] = b"\0\0"
            tot = int.from_bytes(f[p.l3 + 2:p.l3 + 4], "big")
            g[p.l4 + 2:p.l4 + 4] = csum(bytes(g[p.l4:p.l3 + tot])).to_bytes(2, "big")
            out.append((XDP_TX, bytes(g)))
            continue
        out.append((XDP_PASS, f))
    return out, hits


# -- tc_classifier ------------------------------------------------------------------------

TC_ACT_OK, TC_ACT_SHOT = 0, 2
DSCP = [48, 46, 18, 8]
CONTROL, INTERACTIVE, WEB, BULK = range(4)


def _by_port(port: int) -> int:
    return INTERACTIVE if port in (22, 53, 123) else WEB if port in (80, 443) else BULK


def tc_class(f: bytes, p: Parsed) -> int:
    if p.proto in (1, 58):
        return CONTROL
    if p.proto not in (6, 17) or p.l4 is None:
        return BULK
    sport, dport = struct.unpack_from("!HH", f, p.l4)
    c = _by_port(dport)
    return c if c != BULK else _by_port(sport)


def tc_classifier(frames) -> tuple[list[tuple[int, bytes]], dict[int, tuple[int, int]], int]:
    """(verdict, frame after) per frame, (packets, bytes) per class, and TTL drops."""
    out, classes, drops = [], {c: (0, 0) for c in range(4)}, 0
    for f in frames:
        p = parse(f)
        if p.version == 0:
            out.append((TC_ACT_OK, f))
            continue
        g = bytearray(f)
        if p.version == 4:
            multicast = f[p.l3 + 16] & 0xF0 == 0xE0
            if p.ttl <= 1 and not multicast:
                drops += 1
                out.append((TC_ACT_SHOT, f))
                continue
            c = tc_class(f, p)
            g[p.l3 + 1] = DSCP[c] << 2 | f[p.l3 + 1] & 3
            g[p.l3 + 10:p.l3 + 12] = b"\0\0"
            g[p.l3 + 10:p.l3 + 12] = csum(bytes(g[p.l3:p.l3 + p.ihl * 4])).to_bytes(2, "big")
        else:
            c = tc_class(f, p)
            word = int.from_bytes(f[p.l3:p.l3 + 4], "big")
            word = (word & 0xF00FFFFF) | (DSCP[c] << 2) << 20
            g[p.l3:p.l3 + 4] = word.to_bytes(4, "big")
        pk, by = classes[c]
        classes[c] = (pk + 1, by + len(f))
        out.append((TC_ACT_OK, bytes(g)))
    return out, classes, drops


# -- tracex -------------------------------------------------------------------------------

def log2_hist(sizes) -> dict[int, int]:
    """Slot 0: size 0; slot k: sizes in [2^(k-1), 2^k) -- i.e. the bit length."""
    out: dict[int, int] = {}
    for s in sizes:
        out[s.bit_length()] = out.get(s.bit_length(), 0) + 1
    return out
