"""Reading pcap and pcapng captures and writing pcap, with no dependency.

Replaying a capture through a socket filter, tc or XDP program is the main way
users feed packets to pybpf, so a damaged capture must be reported precisely
(file and byte offset) instead of being half-read silently.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ..errors import PybpfError

LINKTYPE_ETHERNET = 1
_PCAP_MAGICS = {
    0xA1B2C3D4: ("<", 1_000_000), 0xD4C3B2A1: (">", 1_000_000),
    0xA1B23C4D: ("<", 1_000_000_000), 0x4D3CB2A1: (">", 1_000_000_000),
}
_PCAPNG_SHB = 0x0A0D0D0A
_BOM = 0x1A2B3C4D
_MAX_PACKET = 256 * 1024 * 1024  # a bigger length field is corruption, not a packet


class CaptureError(PybpfError):
    def __init__(self, path: str, offset: int, reason: str):
        self.path, self.offset, self.reason = path, offset, reason
        super().__init__(f"{path}: at byte {offset}: {reason}")


@dataclass(frozen=True, slots=True)
class Packet:
    data: bytes
    timestamp_ns: int
    orig_len: int
    linktype: int = LINKTYPE_ETHERNET
    interface: int = 0


def read_packets(path: str | Path) -> Iterator[Packet]:
    """Yield the packets of a pcap or pcapng file in order."""
    path = str(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4:
            raise CaptureError(path, 0, "file too short to be a capture")
        magic = struct.unpack("<I", head)[0]
        if magic in _PCAP_MAGICS:
            yield from _read_pcap(path, f, magic)
        elif magic == _PCAPNG_SHB:
            yield from _read_pcapng(path, f)
        else:
            raise CaptureError(path, 0, f"not a pcap or pcapng file (magic {head.hex()})")


def _read_exact(path: str, f: BinaryIO, n: int, what: str) -> bytes:
    at = f.tell()
    data = f.read(n)
    if len(data) != n:
        raise CaptureError(path, at, f"truncated {what}: wanted {n} bytes, found {len(data)}")
    return data


def _read_pcap(path: str, f: BinaryIO, magic: int) -> Iterator[Packet]:
    endian, units = _PCAP_MAGICS[magic]
    hdr = _read_exact(path, f, 20, "pcap file header")
    _vmaj, _vmin, _zone, _sig, _snap, linktype = struct.unpack(endian + "HHiIII", hdr)
    rec = struct.Struct(endian + "IIII")
    scale = 1_000_000_000 // units
    while True:
        at = f.tell()
        raw = f.read(16)
        if not raw:
            return
        if len(raw) < 16:
            raise CaptureError(path, at, "truncated packet record header")
        sec, frac, incl, orig = rec.unpack(raw)
        if incl > _MAX_PACKET:
            raise CaptureError(path, at, f"packet length {incl} is not plausible")
        data = _read_exact(path, f, incl, "packet data")
        yield Packet(data, sec * 1_000_000_000 + frac * scale, orig, linktype & 0xFFFF)


def _read_pcapng(path: str, f: BinaryIO) -> Iterator[Packet]:
    f.seek(0)
    endian = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, ticks per second)
    while True:
        at = f.tell()
        head = f.read(8)
        if not head:
            return
        if len(head) < 8:
            raise CaptureError(path, at, "truncated block header")
        btype = struct.unpack(endian + "I", head[:4])[0]
        if btype == _PCAPNG_SHB:
            bom = _read_exact(path, f, 4, "section header")
            if struct.unpack("<I", bom)[0] == _BOM:
                endian = "<"
            elif struct.unpack(">I", bom)[0] == _BOM:
                endian = ">"
            else:
                raise CaptureError(path, at + 8, "bad byte-order magic in section header")
            interfaces = []
            length = struct.unpack(endian + "I", head[4:])[0]
            if length < 28 or length % 4:
                raise CaptureError(path, at, f"bad section header length {length}")
            _read_exact(path, f, length - 12, "section header")
            continue
        length = struct.unpack(endian + "I", head[4:])[0]
        if length < 12 or length % 4 or length > _MAX_PACKET:
            raise CaptureError(path, at, f"bad block length {length}")
        body = _read_exact(path, f, length - 8, "block")[:-4]
        if btype == 1:  # interface description
            if len(body) < 8:
                raise CaptureError(path, at, "truncated interface description block")
            linktype = struct.unpack(endian + "H", body[:2])[0]
            interfaces.append((linktype, _tsresol(body[8:], endian)))
        elif btype in (6, 3):  # enhanced / simple packet
            if btype == 6:
                if len(body) < 20:
                    raise CaptureError(path, at, "truncated enhanced packet block")
                iface, th, tl, incl, orig = struct.unpack(endian + "IIIII", body[:20])
                data = body[20:20 + incl]
                ts = (th << 32) | tl
            else:
                if len(body) < 4:
                    raise CaptureError(path, at, "truncated simple packet block")
                iface, ts = 0, 0
                orig = struct.unpack(endian + "I", body[:4])[0]
                data = body[4:4 + orig]
                incl = len(data)
            if iface >= len(interfaces):
                raise CaptureError(path, at, f"packet names interface {iface}, which is not described")
            if len(data) < incl:
                raise CaptureError(path, at, "packet data runs past its block")
            linktype, tps = interfaces[iface]
            yield Packet(bytes(data), ts * 1_000_000_000 // tps, orig, linktype, iface)


def _tsresol(options: bytes, endian: str) -> int:
    pos = 0
    while pos + 4 <= len(options):
        code, olen = struct.unpack(endian + "HH", options[pos:pos + 4])
        if code == 0:
            break
        if code == 9 and olen >= 1:
            v = options[pos + 4]
            return 2 ** (v & 0x7F) if v & 0x80 else 10 ** v
        pos += 4 + ((olen + 3) & ~3)
    return 1_000_000


class PcapWriter:
    """Writes a classic little-endian nanosecond pcap file."""

    def __init__(self, path: str | Path, linktype: int = LINKTYPE_ETHERNET, snaplen: int = 262144):
        self._f = open(path, "wb")
        self._f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data: bytes, timestamp_ns: int = 0, orig_len: int | None = None) -> None:
        sec, ns = divmod(timestamp_ns, 1_000_000_000)
        self._f.write(struct.pack("<IIII", sec, ns, len(data), len(data) if orig_len is None else orig_len))
        self._f.write(data)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
