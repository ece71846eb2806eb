"""Differential: BPF_PROG_TEST_RUN in the host kernel vs pybpf (retval, data_out, ctx_out, errnos)."""

from __future__ import annotations

import struct

import pytest
from kernel_oracle import require_kernel
from runtime_util import asm
from testrun_diff import Pair

from pybpf.verifier.context import SK_BUFF

SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP = 1, 3, 4, 6


@pytest.fixture(autouse=True)
def _private_trace_pipe(monkeypatch):
    """trace_printk lines of these tests stay in the process (not in the user's trace pipe)."""
    import pybpf.runtime.core
    monkeypatch.setattr(pybpf.runtime.core, "trace_pipe_enabled", False)


@pytest.fixture(autouse=True)
def _kernel():
    require_kernel()


def ipv4_udp(payload: bytes = b"hello world!", dst_mac=b"\0" * 6) -> bytes:
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + 8 + len(payload), 1, 0, 64, 17, 0,
                               bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    s = sum(struct.unpack(">10H", bytes(ip)))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    ip[10:12] = struct.pack(">H", ~s & 0xFFFF)
    udp = struct.pack(">HHHH", 1234, 5678, 8 + len(payload), 0x1D2C) + payload
    return dst_mac + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + bytes(ip) + udp


FRAMES = [ipv4_udp(), ipv4_udp(b"x" * 100, b"\xff" * 6), ipv4_udp(b"", b"\x01\x00\x5e\x00\x00\x01"),
          ipv4_udp(b"abc", b"\x02\x11\x22\x33\x44\x55"), bytes(range(14)),
          b"\0" * 12 + b"\x81\x00" + b"\x00\x05\x08\x00" + ipv4_udp()[14:]]


def check(pair, data, **kw):
    k, p = pair.run(data, **kw)
    assert p.same(k), f"kernel {k}\npybpf  {p}"
    return k


# -- context fields --------------------------------------------------------------------------

_SKB_READABLE = ["len", "pkt_type", "mark", "queue_mapping", "protocol", "vlan_present", "vlan_tci",
                 "vlan_proto", "priority", "ingress_ifindex", "ifindex", "tc_index", "cb[0]", "cb[4]",
                 "hash", "napi_id", "wire_len", "gso_segs", "gso_size"]


def _skb_ctx(**fields) -> bytes:
    raw = bytearray(192)
    offs = {f.name: f for f in SK_BUFF}
    for k, v in fields.items():
        f = offs[k]
        raw[f.off:f.off + f.size] = v.to_bytes(f.size, "little")
    return bytes(raw)


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, SCHED_CLS, SCHED_ACT])
@pytest.mark.parametrize("name", _SKB_READABLE + ["tc_classid", "tstamp"])
def test_skb_field(prog_type, name):
    f = {x.name: x for x in SK_BUFF}[name]
    if prog_type == SOCKET_FILTER and name in ("tc_classid", "tstamp", "wire_len"):
        pytest.skip("closed to socket filters")
    size = {4: "u32", 8: "u64"}[f.size]
    pair = Pair(asm(f"r0 = *({size} *)(r1 + {f.off})\nexit"), prog_type)
    try:
        for frame in FRAMES:
            check(pair, frame)
        ctx = _skb_ctx(mark=7, priority=3, ingress_ifindex=1, ifindex=1, **{"cb[0]": 9, "cb[4]": 11},
                       tstamp=12345, wire_len=200, gso_segs=2, gso_size=1400)
        check(pair, FRAMES[0], ctx=ctx, ctx_cap=192)
    finally:
        pair.close()


def test_socket_filter_ld_abs_and_len():
    prog = asm("""
r6 = r1
r0 = *(u8 *)skb[0]
r7 = r0
r0 = *(u16 *)skb[2]
r7 += r0
r0 = *(u32 *)(r6 + 0)
r0 += r7
exit""")
    pair = Pair(prog, SOCKET_FILTER)
    try:
        for frame in FRAMES:
            check(pair, frame)
    finally:
        pair.close()


def test_tc_writes_fields_and_ctx_out():
    mark, prio, cb0 = (SK_BUFF[2].off, {f.name: f.off for f in SK_BUFF}["priority"],
                       {f.name: f.off for f in SK_BUFF}["cb[0]"])
    pair = Pair(asm(f"""
r2 = 77
*(u32 *)(r1 + {mark}) = r2
r2 = 5
*(u32 *)(r1 + {prio}) = r2
r2 = 0x12345678
*(u32 *)(r1 + {cb0}) = r2
r0 = 0
exit"""), SCHED_CLS)
    try:
        check(pair, FRAMES[0], ctx=_skb_ctx(mark=1), ctx_cap=192)
        check(pair, FRAMES[0], ctx=_skb_ctx(), ctx_cap=100)           # ENOSPC on ctx_out
    finally:
        pair.close()


# -- packet-changing helpers ---------------------------------------------------------------

STORE = """
r6 = r1
r1 = {value} ll
*(u64 *)(r10 - 8) = r1
r1 = r6
r2 = {offset}
r3 = r10
r3 += -8
r4 = {length}
r5 = {flags}
call 9
exit"""


@pytest.mark.parametrize("prog_type", [SCHED_CLS, SCHED_ACT])
@pytest.mark.parametrize("offset,length,flags", [(0, 8, 0), (20, 4, 0), (30, 8, 1), (50, 8, 0),
                                                  (54, 4, 0), (0x10000, 1, 0), (0, 8, 8), (-1, 2, 0)])
def test_skb_store_bytes(prog_type, offset, length, flags):
    pair = Pair(asm(STORE.format(value=0x1122334455667788, offset=offset, length=length, flags=flags)),
                prog_type)
    try:
        for frame in FRAMES[:2]:
            check(pair, frame)
    finally:
        pair.close()


LOAD = """
r6 = r1
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = r6
r2 = {offset}
r3 = r10
r3 += -8
r4 = {length}
call 26
r1 = *(u64 *)(r10 - 8)
r0 <<= 32
r0 ^= r1
exit"""


@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, SCHED_CLS])
@pytest.mark.parametrize("offset,length", [(0, 8), (40, 4), (50, 8), (54, 8), (60, 1), (-2, 2)])
def test_skb_load_bytes(prog_type, offset, length):
    pair = Pair(asm(LOAD.format(offset=offset, length=length)), prog_type)
    try:
        for frame in FRAMES[:4]:
            check(pair, frame)
    finally:
        pair.close()


CSUM = """
r1 = r1
r2 = {offset}
r3 = {frm} ll
r4 = {to} ll
r5 = {flags}
call {helper}
exit"""


@pytest.mark.parametrize("helper", [10, 11])
@pytest.mark.parametrize("offset,frm,to,flags", [
    (24, 0x0A000001, 0xC0A80001, 4), (24, 0x0100, 0x0200, 2), (24, 0, 0x12345678, 0),
    (24, 5, 6, 0), (25, 1, 2, 2), (40, 0x0A000002, 0x0A000003, 4 | 0x10), (40, 1, 2, 2 | 0x20),
    (40, 1, 2, 2 | 0x20 | 0x40), (24, 1, 2, 3), (24, 1, 2, 0x100), (0x10000, 1, 2, 2), (70, 1, 2, 2)])
def test_csum_replace(helper, offset, frm, to, flags):
    pair = Pair(asm(CSUM.format(offset=offset, frm=frm, to=to, flags=flags, helper=helper)), SCHED_CLS)
    try:
        for frame in FRAMES[:4]:
            check(pair, frame)
        zero_udp_sum = bytearray(FRAMES[0])
        zero_udp_sum[40:42] = b"\0\0"
        check(pair, bytes(zero_udp_sum))
    finally:
        pair.close()


CSUM_DIFF = """
r1 = {a} ll
*(u64 *)(r10 - 8) = r1
r1 = {b} ll
*(u64 *)(r10 - 16) = r1
r1 = r10
r1 += -8
r2 = {from_size}
r3 = r10
r3 += -16
r4 = {to_size}
r5 = {seed} ll
call 28
exit"""


@pytest.mark.parametrize("a,b,from_size,to_size,seed", [
    (0x0A000001, 0xC0A80001, 4, 4, 0), (0xFFFFFFFF, 0, 4, 4, 0), (0x12345678, 0xFFFFFFFF, 8, 8, 0x1234),
    (0, 0, 0, 4, 0xFFFFFFFF), (0x1, 0x2, 4, 0, 0), (1, 2, 3, 4, 0), (0, 0, 0, 0, 77),
    (0xFFFF0000FFFF0000, 0x0000FFFF0000FFFF, 8, 8, 0xFFFFFFFF)])
def test_csum_diff(a, b, from_size, to_size, seed):
    pair = Pair(asm(CSUM_DIFF.format(a=a, b=b, from_size=from_size, to_size=to_size, seed=seed)),
                SCHED_CLS)
    try:
        check(pair, FRAMES[0])
    finally:
        pair.close()


VLAN = """
r6 = r1
{ops}
r0 = *(u32 *)(r6 + {present})
r0 <<= 16
r1 = *(u32 *)(r6 + {tci})
r0 |= r1
r0 <<= 8
r1 = *(u32 *)(r6 + {proto})
r0 ^= r1
r1 = *(u32 *)(r6 + {protocol})
r0 ^= r1
r1 = *(u32 *)(r6 + 0)
r0 += r1
r0 += r7
exit"""
_OFF = {f.name: f.off for f in SK_BUFF}


def _vlan_prog(ops):
    lines = ["r7 = 0"]
    for op_ in ops:
        if op_[0] == "push":
            lines += ["r1 = r6", f"r2 = {op_[1]}", f"r3 = {op_[2]}", "call 18", "r7 += r0"]
        else:
            lines += ["r1 = r6", "call 19", "r7 += r0"]
    return VLAN.format(ops="\n".join(lines), present=_OFF["vlan_present"], tci=_OFF["vlan_tci"],
                       proto=_OFF["vlan_proto"], protocol=_OFF["protocol"])


@pytest.mark.parametrize("ops", [
    [("push", 0x0081, 5)], [("push", 0x0081, 5), ("push", 0xA888, 7)], [("push", 0x1234, 9)],
    [("pop",)], [("push", 0x0081, 5), ("pop",)], [("push", 0x0081, 5), ("push", 0x0081, 6), ("pop",)],
    [("push", 0x0081, 5), ("push", 0x0081, 6), ("push", 0x0081, 7)]])
def test_vlan_push_pop(ops):
    pair = Pair(asm(_vlan_prog(ops)), SCHED_CLS)
    try:
        for frame in (FRAMES[0], FRAMES[5]):
            check(pair, frame)
    finally:
        pair.close()


# -- XDP --------------------------------------------------------------------------------------

XDP_ADJUST = """
r6 = r1
r1 = r6
r2 = {delta}
call {helper}
r7 = r0
r2 = *(u32 *)(r6 + 0)
r3 = *(u32 *)(r6 + 4)
r4 = r2
r4 += 1
if r4 > r3 goto +2
r5 = 0x5a
*(u8 *)(r2 + 0) = r5
r0 = r3
r0 -= r2
r0 <<= 16
r7 &= 0xffff
r0 |= r7
exit"""


@pytest.mark.parametrize("helper,delta", [(44, -14), (44, 14), (44, -216), (44, -217), (44, -300),
                                          (44, 60), (44, 200), (65, -10), (65, 100), (65, 4000),
                                          (65, -100), (65, 3000), (65, 3690), (65, 3700)])
def test_xdp_adjust(helper, delta):
    pair = Pair(asm(XDP_ADJUST.format(helper=helper, delta=delta)), XDP)
    try:
        for frame in FRAMES[:3]:
            check(pair, frame)
        check(pair, FRAMES[0], repeat=3)
    finally:
        pair.close()


def test_xdp_meta_and_ctx():
    prog = asm("""
r2 = *(u32 *)(r1 + 8)
r3 = *(u32 *)(r1 + 0)
r4 = r2
r4 += 4
if r4 > r3 goto +3
r5 = *(u32 *)(r2 + 0)
r5 += 1
*(u32 *)(r2 + 0) = r5
r0 = *(u32 *)(r1 + 12)
r0 <<= 8
r1 = *(u32 *)(r1 + 16)
r0 |= r1
exit""")
    pair = Pair(prog, XDP)
    try:
        frame = FRAMES[0]
        for meta in (0, 4, 8, 32, 36, 216):
            ctx = struct.pack("<6I", meta, len(frame), 0, 0, 0, 0)
            check(pair, frame, ctx=ctx, ctx_cap=24)
        for bad in (struct.pack("<6I", 3, len(frame), 0, 0, 0, 0), struct.pack("<6I", 220, len(frame), 0, 0, 0, 0),
                    struct.pack("<6I", 0, len(frame) - 1, 0, 0, 0, 0), struct.pack("<6I", 0, len(frame), 4, 0, 0, 0),
                    struct.pack("<6I", 8, 4, 0, 0, 0, 0), struct.pack("<6I", 0, len(frame) + 1, 0, 0, 0, 0),
                    struct.pack("<6I", 8, 20, 0, 0, 0, 0), struct.pack("<6I", 0, 0, 0, 0, 0, 0),
                    struct.pack("<6I", 0, len(frame), 0, 1, 0, 0), struct.pack("<6I", 0, len(frame), 0, 1, 5, 0),
                    struct.pack("<6I", 0, len(frame), 0, 0, 1, 0), struct.pack("<6I", 0, len(frame), 0, 0, 0, 1),
                    struct.pack("<6I", 0, len(frame), 0, 9999, 0, 0)):
            check(pair, frame, ctx=bad, ctx_cap=24)
        # the data after the metadata must still hold an Ethernet header; checked before the device
        for n, meta, end, ingress in ((15, 4, 15, 0), (18, 4, 18, 0), (15, 4, 15, 9999), (15, 0, 13, 0),
                                      (200, 8, 14, 0), (200, 0, 0, 0)):
            check(pair, bytes(range(n)), ctx=struct.pack("<6I", meta, end, 0, ingress, 0, 0), ctx_cap=24)
    finally:
        pair.close()


# -- attr rules ---------------------------------------------------------------------------------

@pytest.mark.parametrize("prog_type", [SOCKET_FILTER, SCHED_CLS, XDP])
def test_attr_rules(prog_type):
    pair = Pair(asm("r0 = 1\nexit"), prog_type)
    try:
        for n in (0, 13, 14, 15, 3520, 3521, 3712, 3713, 73152, 73153):
            check(pair, bytes(n))
        check(pair, FRAMES[1], data_cap=10)                # ENOSPC, data_size_out = full size
        check(pair, FRAMES[1], data_cap=None)              # no data_out at all
        check(pair, FRAMES[0], flags=1)
        check(pair, FRAMES[0], ctx=bytes(200), ctx_cap=192)     # zero tail past the struct: fine
        check(pair, FRAMES[0], ctx=bytes(192) + b"\1", ctx_cap=192)   # E2BIG
        check(pair, bytes(5), ctx=bytes(192) + b"\1", ctx_cap=192)    # which check comes first
        if prog_type != XDP:
            for field in ("len", "protocol", "hash", "tc_classid", "napi_id", "data"):
                check(pair, FRAMES[0], ctx=_skb_ctx(**{field: 1}), ctx_cap=192)
            check(pair, FRAMES[0], ctx=_skb_ctx(ifindex=9999), ctx_cap=192)
            check(pair, FRAMES[0], ctx=_skb_ctx(wire_len=10), ctx_cap=192)
            check(pair, FRAMES[0], ctx=_skb_ctx(gso_segs=70000), ctx_cap=192)
    finally:
        pair.close()


def test_kprobe_has_no_test_run():
    pair = Pair(asm("r0 = 0\nexit"), 2)
    try:
        check(pair, FRAMES[0])
    finally:
        pair.close()


def test_tail_call_chain_matches_kernel():
    """A program tail-calling itself: 1 run + 33 tail calls in both (MAX_TAIL_CALL_CNT)."""
    import os as _os

    from kernel_oracle import attr_elem, kernel_map_create, sys_bpf

    from pybpf.map import Map
    cb0 = _OFF["cb[0]"]
    text = f"""
r6 = r1
r2 = *(u32 *)(r6 + {cb0})
r2 += 1
*(u32 *)(r6 + {cb0}) = r2
r1 = r6
r2 = map:pa ll
r3 = {{slot}}
call 12
r0 = *(u32 *)(r6 + {cb0})
exit"""
    kfd, err = kernel_map_create(3, 4, 4, 4)
    assert kfd >= 0, err
    pa = Map.create("prog_array", 4, 4, 4)
    try:
        for slot in (0, 1, 9):
            pair = Pair(asm(text.format(slot=slot), {"pa": pa}), SCHED_CLS,
                        kernel_insns=asm(text.format(slot=slot), {"pa": kfd}), maps=[pa])
            import ctypes
            key, val = ctypes.c_uint32(0), ctypes.c_uint32(pair.kfd)
            ret, e = sys_bpf(2, attr_elem(kfd, ctypes.addressof(key), ctypes.addressof(val)))
            assert ret == 0, e
            pa[0] = pair.prog.fd
            try:
                k = check(pair, FRAMES[0])
                assert k.retval == (34 if slot == 0 else 1)
            finally:
                del pa[0]
                sys_bpf(3, attr_elem(kfd, ctypes.addressof(key)))
                pair.close()
    finally:
        _os.close(kfd)
        pa.close()


# -- randomized differential --------------------------------------------------------------------

def _random_case(rng):
    """A random program of packet-changing helper calls and a random frame."""
    kind = rng.choice(["xdp", "tc"])
    lines = ["r6 = r1", "r7 = 0"]
    for _ in range(rng.randint(1, 4)):
        if kind == "xdp":
            helper = rng.choice([44, 65])
            delta = rng.choice([rng.randint(-300, 300), rng.randint(-20, 20), 4 * rng.randint(-60, 60)])
            lines += ["r1 = r6", f"r2 = {delta}", f"call {helper}", "r7 <<= 3", "r0 &= 7", "r7 ^= r0"]
        else:
            h = rng.choice([9, 10, 11, 26, 28])
            off = rng.choice([rng.randint(0, 80), rng.randint(-4, 70000)])
            if h == 9:
                lines += ["r1 = 0x0123456789abcdef ll", "*(u64 *)(r10 - 8) = r1", "r1 = r6", f"r2 = {off}",
                          "r3 = r10", "r3 += -8", f"r4 = {rng.choice([1, 2, 4, 8])}",
                          f"r5 = {rng.choice([0, 1, 2, 3, 4])}", "call 9"]
            elif h in (10, 11):
                lines += ["r1 = r6", f"r2 = {off}", f"r3 = {rng.getrandbits(32)} ll",
                          f"r4 = {rng.getrandbits(32)} ll",
                          f"r5 = {rng.choice([0, 2, 4, 0x10 | 4, 0x20 | 2, 0x60 | 2, 5])}", f"call {h}"]
            elif h == 26:
                lines += ["r1 = r6", f"r2 = {off}", "r3 = r10", "r3 += -16", "r4 = 8", "call 26",
                          "r1 = *(u64 *)(r10 - 16)", "r7 ^= r1"]
            else:
                lines += [f"r1 = {rng.getrandbits(32)} ll", "*(u64 *)(r10 - 24) = r1", "r1 = r10",
                          "r1 += -24", f"r2 = {rng.choice([0, 4, 8])}", "r3 = r10", "r3 += -24",
                          f"r4 = {rng.choice([0, 4, 8])}", f"r5 = {rng.getrandbits(32)} ll", "call 28"]
            lines += ["r7 <<= 5", "r7 ^= r0"]
    lines += ["r0 = r7", "exit"]
    n = rng.choice([14, 15, 34, 60, 64, 200, 1500, 3600, 4000, 9000])
    frame = bytes(rng.getrandbits(8) for _ in range(n))
    return (XDP if kind == "xdp" else SCHED_CLS), "\n".join(lines), frame


@pytest.mark.parametrize("seed", range(100))
def test_random_packet_programs(seed):
    import random
    rng = random.Random(seed)
    prog_type, text, frame = _random_case(rng)
    if prog_type == SCHED_CLS:
        text = "r2 = 0\n*(u64 *)(r10 - 16) = r2\n" + text
    pair = Pair(asm(text), prog_type)
    try:
        check(pair, frame)
        check(pair, frame, repeat=2)
        if prog_type == XDP:
            meta = rng.choice([0, 4, 8, 32])
            end = rng.choice([len(frame), min(len(frame), meta + 14), len(frame) // 2])
            check(pair, frame, ctx=struct.pack("<6I", meta, end, 0, 0, 0, 0), ctx_cap=24)
        else:
            check(pair, frame, ctx=_skb_ctx(mark=rng.getrandbits(32), priority=rng.getrandbits(32),
                                            **{"cb[1]": rng.getrandbits(32)}), ctx_cap=192)
    finally:
        pair.close()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(100, 1100))
def test_random_packet_programs_long(seed):
    test_random_packet_programs(seed)
