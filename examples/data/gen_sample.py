"""Writes sample.pcap: the capture every example runs over.

A deterministic (seeded) mix of about 200 Ethernet frames as a small office
link would see them: TCP sessions (handshake, data, teardown) to web, SSH and
mail servers, DNS and NTP over UDP, ICMP and ICMPv6 echo, traceroute probes
with TTL 1, one 802.1Q-tagged VLAN, fragmented IPv4 and IPv6 datagrams, an
IPv4 packet with options, and ARP.  Every IP, TCP, UDP and ICMP checksum is
correct, so programs that verify or update checksums see real traffic.

    python examples/data/gen_sample.py [OUT]     (default: sample.pcap beside this file)

Running it again gives the same bytes; tests check the committed file that way.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import sys
from pathlib import Path

ETH_IPV4, ETH_IPV6, ETH_ARP, ETH_VLAN = 0x0800, 0x86DD, 0x0806, 0x8100
TCP, UDP, ICMP, ICMPV6, IGMP = 6, 17, 1, 58, 2
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

GATEWAY_MAC = bytes.fromhex("00005e000101")


def mac(n: int) -> bytes:
    return bytes.fromhex("020000") + n.to_bytes(3, "big")


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(dst: bytes, src: bytes, ethertype: int, payload: bytes, vlan: int | None = None) -> bytes:
    if vlan is None:
        return dst + src + struct.pack("!H", ethertype) + payload
    return dst + src + struct.pack("!HHH", ETH_VLAN, vlan, ethertype) + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64, ident: int = 0,
         df: bool = True, mf: bool = False, frag: int = 0, tos: int = 0, options: bytes = b"",
         total: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag // 8)
    length = ihl * 4 + len(payload) if total is None else total
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, tos, length, ident, flags, ttl, proto, 0,
                       ip(src), ip(dst)) + options
    head = head[:10] + struct.pack("!H", csum(head)) + head[12:]
    return head + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, *, hlim: int = 64, flow: int = 0) -> bytes:
    return struct.pack("!IHBB16s16s", 0x60000000 | flow, len(payload), nh, hlim, ip(src), ip(dst)) + payload


def pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    if ":" in src:
        return ip(src) + ip(dst) + struct.pack("!IxxxB", length, proto)
    return ip(src) + ip(dst) + struct.pack("!xBH", proto, length)


def tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
        data: bytes = b"", window: int = 64240) -> bytes:
    opts = b"\x02\x04\x05\xb4\x01\x03\x03\x07" if flags & SYN else b""   # MSS 1460, wscale 7
    off = (20 + len(opts)) // 4
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, off << 4, flags, window, 0, 0) + opts + data
    c = csum(pseudo(src, dst, TCP, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    seg = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    c = csum(pseudo(src, dst, UDP, len(seg)) + seg) or 0xFFFF
    return seg[:6] + struct.pack("!H", c) + seg[8:]


def icmp(kind: int, code: int, ident: int, seq: int, data: bytes) -> bytes:
    msg = struct.pack("!BBHHH", kind, code, 0, ident, seq) + data
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def icmpv6(src: str, dst: str, kind: int, code: int, body: bytes) -> bytes:
    msg = struct.pack("!BBH", kind, code, 0) + body
    c = csum(pseudo(src, dst, ICMPV6, len(msg)) + msg)
    return msg[:2] + struct.pack("!H", c) + msg[4:]


def dns_query(ident: int, name: str, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def dns_answer(query: bytes, addr: bytes) -> bytes:
    head = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], 0x8180, 1, 1, 0, 0)
    rtype = 1 if len(addr) == 4 else 28
    return head + query[12:] + struct.pack("!HHHIH", 0xC00C, rtype, 1, 300, len(addr)) + addr


class Capture:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.frames: list[tuple[int, bytes]] = []
        self.t = 1_700_000_000 * 10**9

    def add(self, frame: bytes) -> None:
        self.t += self.rng.randint(20_000, 4_000_000)
        self.frames.append((self.t, frame))

    def payload(self, lo: int, hi: int) -> bytes:
        n = self.rng.randint(lo, hi)
        return bytes(self.rng.getrandbits(8) for _ in range(n))


def v4_frame(c: Capture, client: int, src, dst, proto, l4, out: bool, **kw) -> None:
    a, b = (mac(client), GATEWAY_MAC) if out else (GATEWAY_MAC, mac(client))
    kw.setdefault("ident", c.rng.getrandbits(16))
    c.add(eth(b, a, ETH_IPV4, ipv4(src, dst, proto, l4, **kw)))


def v6_frame(c: Capture, client: int, src, dst, nh, l4, out: bool, **kw) -> None:
    a, b = (mac(client), GATEWAY_MAC) if out else (GATEWAY_MAC, mac(client))
    c.add(eth(b, a, ETH_IPV6, ipv6(src, dst, nh, l4, **kw)))


def tcp_session(c: Capture, client: int, cip: str, sip: str, sport: int, dport: int,
                exchanges: int, resp: tuple[int, int]) -> None:
    """Handshake, request/response rounds, FIN teardown; IPv4 or IPv6 by the address."""
    frame = v6_frame if ":" in cip else v4_frame
    proto = TCP
    cs, ss = c.rng.getrandbits(32), c.rng.getrandbits(32)
    send = lambda out, fl, data=b"": frame(  # noqa: E731
        c, client, cip if out else sip, sip if out else cip, proto,
        tcp(cip if out else sip, sip if out else cip, sport if out else dport,
            dport if out else sport, cs if out else ss, ss if out else cs, fl, data), out)
    send(True, SYN)
    cs += 1
    send(False, SYN | ACK)
    ss += 1
    send(True, ACK)
    for _ in range(exchanges):
        req = c.payload(40, 300)
        send(True, PSH | ACK, req)
        cs = (cs + len(req)) & 0xFFFFFFFF
        rsp = c.payload(*resp)
        send(False, PSH | ACK, rsp)
        ss = (ss + len(rsp)) & 0xFFFFFFFF
        send(True, ACK)
    send(True, FIN | ACK)
    cs += 1
    send(False, FIN | ACK)
    ss += 1
    send(True, ACK)


def build(seed: int = 5) -> list[tuple[int, bytes]]:
    c = Capture(seed)
    rng = c.rng
    # DNS lookups before the sessions, as a browser does.
    for i, (name, addr) in enumerate([("example.com", "93.184.216.34"), ("mail.example.org", "198.51.100.25"),
                                      ("git.example.net", "203.0.113.10")]):
        q = dns_query(0x1000 + i, name)
        sport = 50000 + i
        v4_frame(c, 1, "10.0.0.11", "10.0.0.1", UDP, udp("10.0.0.11", "10.0.0.1", sport, 53, q), True, df=False)
        a = dns_answer(q, ip(addr))
        v4_frame(c, 1, "10.0.0.1", "10.0.0.11", UDP, udp("10.0.0.1", "10.0.0.11", 53, sport, a), False, df=False)
    q = dns_query(0x2000, "v6.example.com", 28)
    v6_frame(c, 2, "2001:db8:1::12", "2001:db8:1::1", UDP,
             udp("2001:db8:1::12", "2001:db8:1::1", 53001, 53, q), True)
    v6_frame(c, 2, "2001:db8:1::1", "2001:db8:1::12", UDP,
             udp("2001:db8:1::1", "2001:db8:1::12", 53, 53001, dns_answer(q, ip("2001:db8:feed::80"))), False)

    tcp_session(c, 1, "10.0.0.11", "93.184.216.34", 51000, 443, 4, (600, 1400))
    tcp_session(c, 3, "10.0.0.13", "93.184.216.34", 51500, 80, 2, (200, 1200))
    tcp_session(c, 2, "2001:db8:1::12", "2001:db8:feed::80", 40000, 443, 3, (500, 1400))
    tcp_session(c, 4, "10.0.0.14", "203.0.113.10", 52222, 22, 6, (40, 160))
    tcp_session(c, 1, "10.0.0.11", "198.51.100.25", 53333, 25, 2, (60, 200))

    # ICMP echo from two hosts, then the replies.
    for seq in range(1, 5):
        data = bytes(range(48))
        v4_frame(c, 3, "10.0.0.13", "8.8.8.8", ICMP, icmp(8, 0, 0x4242, seq, data), True)
        v4_frame(c, 3, "8.8.8.8", "10.0.0.13", ICMP, icmp(0, 0, 0x4242, seq, data), False, ttl=117)
    for seq in range(1, 4):
        body = struct.pack("!HH", 0x77, seq) + bytes(range(56))
        v6_frame(c, 2, "2001:db8:1::12", "2001:4860:4860::8888", ICMPV6,
                 icmpv6("2001:db8:1::12", "2001:4860:4860::8888", 128, 0, body), True)
        v6_frame(c, 2, "2001:4860:4860::8888", "2001:db8:1::12", ICMPV6,
                 icmpv6("2001:4860:4860::8888", "2001:db8:1::12", 129, 0, body), False, hlim=118)
    # Neighbour solicitation (link-local, hop limit 255).
    ns = bytes(4) + ip("fe80::1") + b"\x01\x01" + GATEWAY_MAC
    c.add(eth(bytes.fromhex("3333ff000001"), mac(2), ETH_IPV6,
              ipv6("fe80::2", "ff02::1:ff00:1", ICMPV6, icmpv6("fe80::2", "ff02::1:ff00:1", 135, 0, ns), hlim=255)))

    # Traceroute: UDP probes with TTL 1..3 and the time-exceeded answers to TTL 1.
    for ttl in (1, 1, 1, 2, 2, 3):
        dport = 33434 + len(c.frames) % 20
        probe = udp("10.0.0.14", "1.1.1.1", 44444, dport, bytes(24))
        v4_frame(c, 4, "10.0.0.14", "1.1.1.1", UDP, probe, True, ttl=ttl, df=False)
        if ttl == 1:
            orig = ipv4("10.0.0.14", "1.1.1.1", UDP, probe, ttl=1, df=False)[:28]
            v4_frame(c, 4, "10.0.0.1", "10.0.0.14", ICMP, icmp(11, 0, 0, 0, orig), False, ttl=255)

    # NTP and QUIC.
    for _ in range(3):
        v4_frame(c, 3, "10.0.0.13", "192.0.2.123", UDP, udp("10.0.0.13", "192.0.2.123", 123, 123, bytes(48)), True)
        answer = udp("192.0.2.123", "10.0.0.13", 123, 123, c.payload(48, 48))
        v4_frame(c, 3, "192.0.2.123", "10.0.0.13", UDP, answer, False)
    for _ in range(8):
        out = rng.random() < 0.4
        a, b = ("10.0.0.11", "93.184.216.34") if out else ("93.184.216.34", "10.0.0.11")
        sp, dp = (55555, 443) if out else (443, 55555)
        v4_frame(c, 1, a, b, UDP, udp(a, b, sp, dp, c.payload(60, 1200)), out)

    # A tagged VLAN (id 42): a printer and its server.
    for i in range(6):
        out = i % 2 == 0
        a, b = ("172.16.42.7", "172.16.42.1") if out else ("172.16.42.1", "172.16.42.7")
        sp, dp = (9100, 515) if out else (515, 9100)
        payload = udp(a, b, sp, dp, c.payload(30, 200))
        src, dst = (mac(7), GATEWAY_MAC) if out else (GATEWAY_MAC, mac(7))
        c.add(eth(dst, src, ETH_IPV4, ipv4(a, b, UDP, payload, ident=rng.getrandbits(16)), vlan=(3 << 13) | 42))

    # A 3000-byte UDP datagram in three IPv4 fragments (offsets 0, 1480, 2960).
    big = udp("10.0.0.13", "192.0.2.200", 40001, 5001, c.payload(2992, 2992))
    ident = 0xBEEF
    for off in range(0, len(big), 1480):
        part = big[off:off + 1480]
        more = off + 1480 < len(big)
        v4_frame(c, 3, "10.0.0.13", "192.0.2.200", UDP, part, True, df=False, mf=more, frag=off,
                 ident=ident)
    # An IPv6 datagram in two fragments (Fragment header, next header UDP).
    big6 = udp("2001:db8:1::12", "2001:db8:2::99", 40002, 5002, c.payload(1800, 1800))
    for off in (0, 1448):
        part = big6[off:off + 1448]
        more = off == 0
        fh = struct.pack("!BBHI", UDP, 0, off | int(more), 0xCAFE0001)
        v6_frame(c, 2, "2001:db8:1::12", "2001:db8:2::99", 44, fh + part, True)

    # IGMPv2 membership report with a Router Alert option (IHL 6).
    igmp = struct.pack("!BBH4s", 0x16, 0, 0, ip("239.1.2.3"))
    igmp = igmp[:2] + struct.pack("!H", csum(igmp)) + igmp[4:]
    c.add(eth(bytes.fromhex("01005e010203"), mac(4), ETH_IPV4,
              ipv4("10.0.0.14", "239.1.2.3", IGMP, igmp, ttl=1, tos=0xC0, df=False, options=b"\x94\x04\x00\x00")))

    # ARP: who-has and is-at.
    arp_req = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 1, mac(1), ip("10.0.0.11"), bytes(6), ip("10.0.0.1"))
    c.add(eth(b"\xff" * 6, mac(1), ETH_ARP, arp_req + bytes(18)))
    arp_rep = struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 2, GATEWAY_MAC, ip("10.0.0.1"), mac(1), ip("10.0.0.11"))
    c.add(eth(mac(1), GATEWAY_MAC, ETH_ARP, arp_rep + bytes(18)))

    # Background: short TCP ACK-only segments and a few DNS lookups until ~200 frames.
    n = 0
    while len(c.frames) < 200:
        n += 1
        if n % 5 == 0:
            q = dns_query(0x3000 + n, f"host{n}.example.com")
            v4_frame(c, 4, "10.0.0.14", "10.0.0.1", UDP, udp("10.0.0.14", "10.0.0.1", 52000 + n, 53, q), True, df=False)
        else:
            v4_frame(c, 1, "93.184.216.34", "10.0.0.11", TCP,
                     tcp("93.184.216.34", "10.0.0.11", 443, 51000, rng.getrandbits(32), rng.getrandbits(32),
                         ACK, c.payload(0, 1400)), False)
    return c.frames


def write(path: str | Path) -> int:
    import pybpf.events.pcap as pcap
    frames = build()
    with pcap.PcapWriter(path) as w:
        for ts, frame in frames:
            w.write(frame, ts)
    return len(frames)


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("sample.pcap")
    print(f"wrote {write(out)} packets to {out}")
