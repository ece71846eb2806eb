"""The socket buffer and XDP buffer models a program's context is built from.

``SkBuff`` holds every field of the uapi ``struct __sk_buff`` plus the state
helpers read or change that a context does not show (tunnel metadata, the
cgroup class id, the route realm, where the MAC header starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ETH_HLEN = 14
FRAG_SIZE = 4096              # a test run's fragments are pages
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8

# skb->pkt_type
PACKET_HOST, PACKET_BROADCAST, PACKET_MULTICAST, PACKET_OTHERHOST = 0, 1, 2, 3


def be16(v: int) -> int:
    """A host number as the __be16 Linux keeps (what a program reads on little-endian)."""
    return ((v & 0xFF) << 8) | ((v >> 8) & 0xFF)


@dataclass
class TunnelInfo:
    """Tunnel metadata of a packet (ip_tunnel_info): ids, addresses, tos/ttl/label."""
    tunnel_id: int = 0
    src: bytes = b"\0" * 4          # ipv4 (4 bytes) or ipv6 (16 bytes), network order
    dst: bytes = b"\0" * 4
    tos: int = 0
    ttl: int = 0
    label: int = 0
    flags: int = 0
    tx: bool = False                # set by bpf_skb_set_tunnel_key (for transmit)

    @property
    def ipv6(self) -> bool:
        return len(self.src) == 16


@dataclass
class SkBuff:
    """A packet as a socket filter or tc program sees it (fields named as in ``__sk_buff``)."""
    data: bytes = b""
    l2: bool = True                 # program's data starts at the MAC header (tc) or after it
    pkt_type: int = PACKET_HOST
    mark: int = 0
    queue_mapping: int = 0
    protocol: int | None = None     # __be16 as Linux stores it; None: from the Ethernet header
    vlan_present: int = 0
    vlan_tci: int = 0
    vlan_proto: int = 0             # __be16
    priority: int = 0
    ingress_ifindex: int = 0
    ifindex: int = 1
    tc_index: int = 0
    cb: list = field(default_factory=lambda: [0] * 5)
    hash: int = 0
    tc_classid: int = 0
    napi_id: int = 0
    tstamp: int = 0
    wire_len: int = 0
    gso_segs: int = 0
    gso_size: int = 0
    hwtstamp: int = 0
    tstamp_type: int = 0
    tunnel: TunnelInfo | None = None
    cgroup_classid: int = 0
    route_realm: int = 0

    def __post_init__(self) -> None:
        self.data = bytes(self.data)
        if self.protocol is None:
            self.protocol = eth_protocol(self.data)

    @property
    def len(self) -> int:
        return len(self.data) - (0 if self.l2 else ETH_HLEN)


def eth_protocol(frame: bytes) -> int:
    """skb->protocol as eth_type_trans sets it (the EtherType, kept big-endian)."""
    if len(frame) < ETH_HLEN:
        return 0
    t = int.from_bytes(frame[12:14], "big")
    if t < 0x600:       # 802.3 length field: Linux picks ETH_P_802_3 / ETH_P_802_2
        return be16(0x0001 if frame[14:16] == b"\xff\xff" else 0x0004)
    return be16(t)


def eth_pkt_type(frame: bytes, dev_addr: bytes = b"\0" * 6, broadcast: bytes = b"\0" * 6) -> int:
    """skb->pkt_type as eth_type_trans sets it for a device with ``dev_addr`` and ``broadcast``.

    The defaults are the loopback device's (a test run's): all-zero addresses, so
    ff:ff:ff:ff:ff:ff counts as multicast there, as in Linux.
    """
    if len(frame) < 6:
        return PACKET_HOST
    dst = frame[:6]
    if dst == dev_addr:
        return PACKET_HOST
    if dst[0] & 1:
        return PACKET_BROADCAST if dst == broadcast else PACKET_MULTICAST
    return PACKET_OTHERHOST


@dataclass
class XdpBuff:
    """A frame as an XDP program sees it: data, metadata in front, the receive queue."""
    data: bytes = b""
    meta: bytes = b""
    ingress_ifindex: int = 1
    rx_queue_index: int = 0
    egress_ifindex: int = 0
    # Fragments past the linear part (multi-buffer frames), each at most a page: the program
    # does not see them, but bpf_xdp_adjust_tail grows and shrinks them as Linux does.
    frags: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.data = bytes(self.data)
        self.meta = bytes(self.meta)
        if isinstance(self.frags, (bytes, bytearray)):
            raw = bytes(self.frags)
            self.frags = [raw[i:i + FRAG_SIZE] for i in range(0, len(raw), FRAG_SIZE)]
        self.frags = [bytearray(f) for f in self.frags]

    @property
    def frags_bytes(self) -> bytes:
        return b"".join(bytes(f) for f in self.frags)
