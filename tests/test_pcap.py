"""Captures: both file formats read back what was written, and damage is reported with its offset."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from pybpf.events.pcap import CaptureError, PcapWriter, read_packets


def _pcapng(packets, tsresol=None, endian="<"):
    def block(btype, body):
        body += b"\0" * (-len(body) % 4)
        n = len(body) + 12
        return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)
    out = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack(endian + "HH", 0, 0)
    out += block(1, struct.pack(endian + "HHI", 1, 0, 65535) + opts)
    for ts, data in packets:
        out += block(6, struct.pack(endian + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data)
    return out


def test_pcap_round_trip(tmp_path):
    p = tmp_path / "a.pcap"
    with PcapWriter(p) as w:
        w.write(b"\x01\x02\x03", 1_500_000_000)
        w.write(b"x" * 60, 2_000_000_001)
    pkts = list(read_packets(p))
    assert [x.data for x in pkts] == [b"\x01\x02\x03", b"x" * 60]
    assert [x.timestamp_ns for x in pkts] == [1_500_000_000, 2_000_000_001]


def test_pcap_microsecond_big_endian(tmp_path):
    p = tmp_path / "b.pcap"
    p.write_bytes(struct.pack(">IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                  + struct.pack(">IIII", 3, 7, 2, 2) + b"hi")
    (pkt,) = read_packets(p)
    assert pkt.data == b"hi" and pkt.timestamp_ns == 3_000_007_000


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng(tmp_path, endian):
    p = tmp_path / "c.pcapng"
    p.write_bytes(_pcapng([(5, b"abc"), (6, b"defgh")], tsresol=9, endian=endian))
    pkts = list(read_packets(p))
    assert [(x.data, x.timestamp_ns) for x in pkts] == [(b"abc", 5), (b"defgh", 6)]


def test_truncated_pcap_names_offset(tmp_path):
    p = tmp_path / "t.pcap"
    with PcapWriter(p) as w:
        w.write(b"y" * 40)
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(CaptureError, match=r"t.pcap: at byte 40: truncated packet data"):
        list(read_packets(p))


def test_not_a_capture(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello world")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        list(read_packets(p))


@settings(max_examples=200)
@given(st.data())
def test_damaged_capture_never_crashes(tmp_path_factory, data):
    blob = bytearray(_pcapng([(1, b"a" * 20), (2, b"b" * 7)]))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(blob) - 1))
        blob[i] = data.draw(st.integers(0, 255))
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    p = tmp_path_factory.mktemp("f") / "d.pcapng"
    p.write_bytes(bytes(blob))
    try:
        list(read_packets(p))
    except CaptureError:
        pass
