"""BPF helpers in pybpf's runtime: each family with Linux's semantics (errnos, buffers, side effects)."""

from __future__ import annotations

import errno
import os
import struct
import threading
import time

import pytest
from runtime_util import asm

from pybpf.map import Map
from pybpf.runtime import ExecProgram, SkBuff, run_kprobe, run_skb, run_xdp, trace_listeners

SOCKET_FILTER, KPROBE, SCHED_CLS, XDP = 1, 2, 3, 6
M64 = (1 << 64) - 1


@pytest.fixture(autouse=True)
def _private_trace_pipe(monkeypatch):
    """trace_printk lines of these tests stay in the process (not in the user's trace pipe)."""
    import pybpf.runtime.core
    monkeypatch.setattr(pybpf.runtime.core, "trace_pipe_enabled", False)


def neg(e):
    return -e & 0xFFFFFFFF


def prog(text, prog_type=KPROBE, maps=None, verify=True):
    maps = maps or {}
    insns = asm(text, maps)
    return ExecProgram.from_insns(insns, prog_type, {m.fd: m.fd for m in maps.values()}, verify=verify)


def kp(text, maps=None, **kw):
    """Run a KPROBE program; r0 (64 bits)."""
    return run_kprobe(prog(text, KPROBE, maps, **kw)).r0


@pytest.fixture
def traced():
    lines = []
    trace_listeners.append(lines.append)
    yield lines
    trace_listeners.remove(lines.append)


# -- maps ------------------------------------------------------------------------------------

def test_map_update_lookup_delete():
    h = Map.create("hash", 4, 8, 2)
    p = """
r1 = 5
*(u32 *)(r10 - 4) = r1
r1 = 0x1122334455 ll
*(u64 *)(r10 - 16) = r1
r1 = map:h ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = {flags}
call 2
r6 = r0
r1 = map:h ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto +3
r1 = *(u64 *)(r0 + 0)
r1 += 1
*(u64 *)(r0 + 0) = r1
r0 = r6
exit"""
    assert kp(p.format(flags=0), {"h": h}) == 0
    assert h[struct.pack("<I", 5)] == struct.pack("<Q", 0x1122334456)
    assert kp(p.format(flags=1), {"h": h}) & 0xFFFFFFFF == neg(errno.EEXIST)       # BPF_NOEXIST
    h[struct.pack("<I", 6)] = bytes(8)
    h.delete(struct.pack("<I", 5))
    h[struct.pack("<I", 7)] = bytes(8)
    assert kp(p.format(flags=0), {"h": h}) & 0xFFFFFFFF == neg(errno.E2BIG)       # full
    delete = """
r1 = 6
*(u32 *)(r10 - 4) = r1
r1 = map:h ll
r2 = r10
r2 += -4
call 3
exit"""
    assert kp(delete, {"h": h}) == 0
    assert kp(delete, {"h": h}) & 0xFFFFFFFF == neg(errno.ENOENT)


def test_percpu_lookup_uses_current_cpu():
    a = Map.create("percpu_array", 4, 8, 1)
    p = prog("""
r1 = 0
*(u32 *)(r10 - 4) = r1
r1 = map:a ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto +3
r1 = 1
*(u64 *)(r0 + 0) = r1
r0 = 0
exit""", KPROBE, {"a": a})
    r = run_kprobe(p)
    assert r.r0 == 0
    vals = a[b"\0\0\0\0"]
    assert sum(int.from_bytes(v, "little") for v in vals) == 1


def test_queue_push_pop_peek():
    q = Map.create("queue", 0, 8, 2)
    push = """
r1 = {v}
*(u64 *)(r10 - 8) = r1
r1 = map:q ll
r2 = r10
r2 += -8
r3 = {flags}
call 87
exit"""
    assert kp(push.format(v=11, flags=0), {"q": q}) == 0
    assert kp(push.format(v=12, flags=0), {"q": q}) == 0
    assert kp(push.format(v=13, flags=0), {"q": q}) & 0xFFFFFFFF == neg(errno.E2BIG)
    assert kp(push.format(v=13, flags=2), {"q": q}) == 0                    # BPF_EXIST: overwrite oldest
    take = """
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = map:q ll
r2 = r10
r2 += -8
call {helper}
if r0 != 0 goto +1
r0 = *(u64 *)(r10 - 8)
exit"""
    assert kp(take.format(helper=89), {"q": q}) == 12
    assert kp(take.format(helper=88), {"q": q}) == 12
    assert kp(take.format(helper=88), {"q": q}) == 13
    assert kp(take.format(helper=88), {"q": q}) & 0xFFFFFFFF == neg(errno.ENOENT)


def test_map_in_map_lookup():
    inner = Map.create("array", 4, 8, 1)
    inner[0] = struct.pack("<Q", 99)
    outer = Map.create("array_of_maps", 4, 4, 2, inner_map=inner)
    outer[1] = inner.fd
    p = prog("""
r1 = {k}
*(u32 *)(r10 - 4) = r1
r1 = map:o ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto +7
r1 = r0
r2 = 0
*(u32 *)(r10 - 8) = r2
r2 = r10
r2 += -8
call 1
if r0 == 0 goto +1
r0 = *(u64 *)(r0 + 0)
exit""".replace("{k}", "1"), KPROBE, {"o": outer}, verify=False)  # pybpf's verifier: inner map pointers not yet
    assert run_kprobe(p).r0 == 99


# -- time, task, random --------------------------------------------------------------------------

def test_time_and_task_helpers():
    t0 = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    t = kp("call 5\nexit")
    assert t0 <= t <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    b0 = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert b0 <= kp("call 125\nexit") <= time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert kp("call 14\nexit") == (os.getpid() << 32) | threading.get_native_id()
    assert kp("call 15\nexit") == (os.getgid() << 32) | os.getuid()
    assert 0 <= kp("call 8\nexit") < os.cpu_count()
    vals = {kp("call 7\nexit") for _ in range(20)}
    assert len(vals) > 15 and all(v < 1 << 32 for v in vals)


def test_get_current_comm():
    p = prog("""
r1 = r10
r1 += -16
r2 = 16
call 16
r0 = *(u64 *)(r10 - 16)
r1 = *(u64 *)(r10 - 8)
r0 ^= r1
exit""")
    with open(f"/proc/self/task/{threading.get_native_id()}/comm", "rb") as f:
        comm = f.read().strip()[:15]
    raw = comm.ljust(16, b"\0")
    a, b = struct.unpack("<QQ", raw)
    assert run_kprobe(p).r0 == a ^ b


# -- probe_read ---------------------------------------------------------------------------------

def test_probe_read_faults_zero_the_buffer():
    p = """
r1 = -1
*(u64 *)(r10 - 8) = r1
r1 = r10
r1 += -8
r2 = 8
r3 = {src} ll
call {helper}
r6 = r0
r0 = *(u64 *)(r10 - 8)
r0 <<= 8
r6 &= 0xff
r0 |= r6
exit"""
    # a wild address: -EFAULT and a zeroed buffer
    for helper in (4, 112, 113):
        assert kp(p.format(src=0xDEAD0000, helper=helper)) == (neg(errno.EFAULT) & 0xFF)
    for helper in (45, 114, 115):
        assert kp(p.format(src=0xDEAD0000, helper=helper)) == (neg(errno.EFAULT) & 0xFF)


def test_probe_read_from_registered_memory_and_str():
    # kprobe: read the first argument's string through pt_regs->di
    text = """
r6 = r1
r1 = r10
r1 += -16
r2 = {size}
r3 = *(u64 *)(r6 + 112)
call {helper}
r6 = r0
r0 = *(u64 *)(r10 - 16)
r1 = *(u64 *)(r10 - 8)
r0 ^= r1
r0 <<= 8
r0 |= r6
exit"""
    from pybpf.events.kprobes import _ArgMemory
    mem = _ArgMemory()
    try:
        addr = mem.value("hello, world")
        p = prog(text.format(size=16, helper=114))
        r = run_kprobe(p, addr).r0
        assert r & 0xFF == 13                   # length with the NUL
        raw = b"hello, world\0".ljust(16, b"\xff")   # stack beyond the copy is untouched (uninit: 0)
        p8 = prog(text.format(size=6, helper=114))
        r = run_kprobe(p8, addr).r0
        assert r & 0xFF == 6                    # truncated: 5 chars + NUL
        p_raw = prog(text.format(size=16, helper=112))
        r = run_kprobe(p_raw, addr).r0          # 16 bytes would run past the 13-byte argument
        assert r & 0xFF == neg(errno.EFAULT) & 0xFF
        del raw
    finally:
        mem.close()


# -- trace_printk / snprintf ---------------------------------------------------------------------

def _printk(fmt: bytes, *args, nul=True):
    data = fmt + (b"\0" if nul else b"")
    data = data.ljust((len(data) + 7) // 8 * 8, b"\0")
    lines = []
    for i in range(0, len(data), 8):
        lines.append(f"r1 = {int.from_bytes(data[i:i + 8], 'little')} ll")
        lines.append(f"*(u64 *)(r10 - {len(data) - i}) = r1")
    lines += ["r1 = r10", f"r1 += -{len(data)}", f"r2 = {len(fmt) + (1 if nul else 0)}"]
    for reg, a in zip(("r3", "r4", "r5"), args):
        lines.append(f"{reg} = {a & M64} ll")
    lines += ["call 6", "exit"]
    return "\n".join(lines)


@pytest.mark.parametrize("fmt,args,expect", [
    (b"hello", (), "hello"), (b"n=%d", (-5 & M64,), "n=-5"), (b"%u", (-1 & M64,), "4294967295"),
    (b"%x %X", (255, 255), "ff FF"), (b"%lld", (-(1 << 40) & M64,), str(-(1 << 40))),
    (b"%llu|%lx", (M64, 1 << 40), f"{M64}|{1 << 40:x}"), (b"%5d|%-5d|%05d", (42, 42, 42), "   42|42   |00042"),
    (b"%c%c", (0x41, 0x42), "AB"), (b"100%%", (), "100%"), (b"%d %d %d", (1, 2, 3), "1 2 3"),
    (b"line\n", (), "line"), (b"%pK", (0x1234,), "0000000000001234")])
def test_trace_printk_format(traced, fmt, args, expect):
    r = kp(_printk(fmt, *args))
    assert traced[-1].endswith(": bpf_trace_printk: " + expect)
    assert r == len(expect) + (1 if fmt.endswith(b"\n") else 0)


@pytest.mark.parametrize("fmt,args", [(b"%d %d %d %d", (1, 2, 3)), (b"%f", (1,)), (b"%n", (1,)),
                                      (b"%hd", (1,)), (b"\x01", ())])
def test_trace_printk_rejects(traced, fmt, args):
    assert kp(_printk(fmt, *args)) & 0xFFFFFFFF == neg(errno.EINVAL)
    assert not traced


def test_trace_printk_needs_nul(traced):
    assert kp(_printk(b"abcdefgh", nul=False)) & 0xFFFFFFFF == neg(errno.EINVAL)


def test_trace_line_format_and_pipe(tmp_path, monkeypatch, traced):
    import pybpf.runtime.core
    monkeypatch.setenv("PYBPF_FS", str(tmp_path / "fs"))
    monkeypatch.setattr(pybpf.runtime.core, "trace_pipe_enabled", True)
    from pybpf.helpers import trace as tp
    kp(_printk(b"x=%d", 7))
    line = traced[-1]
    task, pid, cpu, flags, ts, msg = tp.trace_fields(line)
    assert (pid, msg, flags) == (threading.get_native_id(), "x=7", "d....")
    assert abs(ts - time.clock_gettime_ns(time.CLOCK_MONOTONIC) / 1e9) < 60
    assert line[16] == "-" and line.index("[") == 25
    assert tp.read_lines() == [line]
    assert tp.read_lines() == []                  # consumed, as trace_pipe
    kp(_printk(b"a"))
    kp(_printk(b"b"))
    assert [tp.trace_fields(x)[5] for x in tp.read_lines()] == ["a", "b"]


def test_snprintf():
    def snp(size, fmt: bytes, *args):
        f = fmt + b"\0"
        f = f.ljust((len(f) + 7) // 8 * 8, b"\0")
        lines = []
        for i in range(0, len(f), 8):
            lines += [f"r1 = {int.from_bytes(f[i:i + 8], 'little')} ll", f"*(u64 *)(r10 - {64 + len(f) - i}) = r1"]
        for j, a in enumerate(args):
            lines += [f"r1 = {a} ll", f"*(u64 *)(r10 - {128 - 8 * j}) = r1"]
        lines += ["r1 = r10", "r1 += -32", f"r2 = {size}", "r3 = r10", f"r3 += -{64 + len(f)}",
                  "r4 = r10", "r4 += -128", f"r5 = {8 * len(args)}", "call 165", "r6 = r0",
                  "r0 = *(u64 *)(r10 - 32)", "r0 <<= 8", "r0 |= r6", "exit"]
        r = kp("\n".join(lines), verify=False)
        return r & 0xFF, (r >> 8).to_bytes(7, "little")
    n, out = snp(32, b"%d-%d", 12, 34)
    assert n == 6 and out[:6] == b"12-34\0"
    n, out = snp(3, b"%d-%d", 12, 34)
    assert n == 6 and out[:3] == b"12\0"
    n, _ = snp(32, b"%d %d", 1)
    assert n == neg(errno.EINVAL) & 0xFF


# -- checksums ----------------------------------------------------------------------------------

def test_csum_math_keeps_checksums_valid():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from pybpf.helpers import csum as C

    def ones_sum(data: bytes) -> int:
        s = sum(int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return s

    @settings(max_examples=300, deadline=None)
    @given(st.binary(min_size=20, max_size=20), st.integers(0, 3), st.binary(min_size=4, max_size=4))
    def check(hdr, word, new):
        hdr = bytearray(hdr)
        hdr[10:12] = b"\0\0"
        hdr[10:12] = (~ones_sum(bytes(hdr)) & 0xFFFF).to_bytes(2, "little")
        off = [0, 4, 12, 16][word]          # any 32-bit word but the one holding the checksum
        old = int.from_bytes(hdr[off:off + 4], "little")
        s = int.from_bytes(hdr[10:12], "little")
        hdr[off:off + 4] = new
        s = C.csum_replace4(s, old, int.from_bytes(new, "little"))
        hdr[10:12] = s.to_bytes(2, "little")
        assert ones_sum(bytes(hdr)) in (0xFFFF, 0)
    check()


# -- skb helpers ----------------------------------------------------------------------------------

FRAME = bytes(range(64))


def test_redirect_and_clone_redirect_verdicts():
    p = prog("r1 = 1\nr2 = 0\ncall 23\nexit", SCHED_CLS)
    r = run_skb(p, FRAME)
    assert (r.retval, r.verdict, r.fate, r.redirect) == (7, "TC_ACT_REDIRECT", "redirect", (1, 0))
    r = run_skb(prog("r1 = 1\nr2 = 2\ncall 23\nexit", SCHED_CLS), FRAME)
    assert r.verdict == "TC_ACT_SHOT"
    r = run_xdp(prog("r1 = 3\nr2 = 0\ncall 23\nexit", XDP), FRAME)
    assert (r.verdict, r.redirect) == ("XDP_REDIRECT", (3, 0))
    r = run_xdp(prog("r1 = 3\nr2 = 1\ncall 23\nexit", XDP), FRAME)
    assert r.verdict == "XDP_ABORTED"
    r = run_skb(prog("r2 = 1\nr3 = 1\ncall 13\nexit", SCHED_CLS), FRAME)
    assert r.retval == 0 and r.clones == [(1, 1, FRAME)]
    r = run_skb(prog("r2 = 1\nr3 = 2\ncall 13\nexit", SCHED_CLS), FRAME)
    assert r.retval == neg(errno.EINVAL) and not r.clones
    r = run_skb(prog("r2 = 999999\nr3 = 0\ncall 13\nexit", SCHED_CLS), FRAME)
    assert r.retval == neg(errno.EINVAL)


def test_classid_and_realm():
    p = prog("r6 = r1\ncall 17\nr7 = r0\nr1 = r6\ncall 24\nr0 <<= 16\nr0 |= r7\nexit", SCHED_CLS)
    assert run_skb(p, SkBuff(FRAME, cgroup_classid=0x10, route_realm=3)).retval == (3 << 16) | 0x10


def test_tunnel_key_set_get():
    p = prog("""
r6 = r1
r1 = 0
*(u64 *)(r10 - 48) = r1
*(u64 *)(r10 - 40) = r1
*(u64 *)(r10 - 32) = r1
*(u64 *)(r10 - 24) = r1
*(u64 *)(r10 - 16) = r1
*(u64 *)(r10 - 8) = r1
r1 = 42
*(u32 *)(r10 - 48) = r1
r1 = 0x0a000002
*(u32 *)(r10 - 44) = r1
r1 = 64
*(u8 *)(r10 - 27) = r1
r1 = 0x0a000001
*(u32 *)(r10 - 20) = r1
r1 = r6
r2 = r10
r2 += -48
r3 = 44
r4 = 0
call 21
if r0 != 0 goto +12
r1 = r6
r2 = r10
r2 += -96
r3 = 44
r4 = 0
call 20
if r0 != 0 goto +5
r0 = *(u32 *)(r10 - 96)
r1 = *(u32 *)(r10 - 92)
r0 <<= 32
r0 |= r1
exit
exit""", SCHED_CLS)
    r = run_skb(p, FRAME)
    # get returns the source as remote: set's local (10.0.0.1) -- Linux's ip_tunnel_info convention
    assert r.r0 == (42 << 32) | 0x0A000001
    assert r.skb.tunnel.dst == bytes([10, 0, 0, 2]) and r.skb.tunnel.ttl == 64
    r = run_skb(prog("r2 = r10\nr2 += -48\nr3 = 44\nr4 = 0\ncall 20\nexit", SCHED_CLS), FRAME)
    assert r.retval == neg(errno.EINVAL)


# -- tail calls, bpf_loop ----------------------------------------------------------------------------

def test_tail_call_chain_limit():
    from pybpf.prog import Program
    pa = Map.create("prog_array", 4, 4, 2)
    text = """
r6 = r1
r2 = *(u32 *)(r6 + {cb0})
r2 += 1
*(u32 *)(r6 + {cb0}) = r2
r1 = r6
r2 = map:pa ll
r3 = {slot}
call 12
r0 = *(u32 *)(r6 + {cb0})
exit"""
    from pybpf.verifier.context import SK_BUFF
    cb0 = {f.name: f.off for f in SK_BUFF}["cb[0]"]
    p = Program.load(asm(text.format(cb0=cb0, slot=0), {"pa": pa}), SCHED_CLS, maps=[pa])
    pa[0] = p.fd
    from pybpf.runtime.testrun import test_run
    assert test_run(p, FRAME).retval == 34          # 1 + 33 tail calls
    q = Program.load(asm(text.format(cb0=cb0, slot=1), {"pa": pa}), SCHED_CLS, maps=[pa])
    assert test_run(q, FRAME).retval == 1           # empty slot: falls through
    x = Program.load(asm("r0 = 5\nexit"), XDP)
    with pytest.raises(OSError):
        pa[1] = x.fd if False else -1
    p.close(), q.close(), x.close()


def test_bpf_loop():
    p = prog("""
r1 = 0
*(u64 *)(r10 - 8) = r1
r1 = 10
r2 = cb ll
r3 = r10
r3 += -8
r4 = 0
call 181
r1 = *(u64 *)(r10 - 8)
r0 <<= 32
r0 |= r1
exit
cb:
r3 = *(u64 *)(r2 + 0)
r3 += r1
*(u64 *)(r2 + 0) = r3
r0 = 0
if r1 != 6 goto +1
r0 = 1
exit""".replace("r2 = cb ll", "r2 = 0 ll"), KPROBE, verify=False)
    # point the LD_IMM64 at the callback as a PSEUDO_FUNC
    import dataclasses

    from pybpf.isa import opcodes as op
    insns = list(p.insns)
    insns[3] = dataclasses.replace(insns[3], src=op.PSEUDO_FUNC, imm=13 - 3 - 1)
    p = ExecProgram(insns, KPROBE, key=("loop-test",))
    r = run_kprobe(p)
    assert r.r0 == (7 << 32) | (0 + 1 + 2 + 3 + 4 + 5 + 6)


# -- ringbuf / perf -------------------------------------------------------------------------------

def test_ringbuf_reserve_submit_discard_output():
    rb = Map.create("ringbuf", 0, 0, 4096)
    p = prog("""
r1 = map:rb ll
r2 = 16
r3 = 0
call 131
if r0 == 0 goto skip1
r1 = 0x1111 ll
*(u64 *)(r0 + 0) = r1
*(u64 *)(r0 + 8) = r1
r1 = r0
r2 = 0
call 132
skip1:
r1 = map:rb ll
r2 = 8
r3 = 0
call 131
if r0 == 0 goto skip2
r1 = r0
r2 = 0
call 133
skip2:
r1 = 0x2222
*(u64 *)(r10 - 8) = r1
r1 = map:rb ll
r2 = r10
r2 += -8
r3 = 8
r4 = 0
call 130
r6 = r0
r1 = map:rb ll
r2 = 0
call 134
r0 <<= 8
r0 |= r6
exit""", KPROBE, {"rb": rb})
    r = run_kprobe(p)
    assert r.r0 & 0xFF == 0 and r.r0 >> 8 > 0
    recs = rb.consume()
    assert [bytes(x) for x in recs] == [struct.pack("<QQ", 0x1111, 0x1111), struct.pack("<Q", 0x2222)]


def test_perf_event_output_and_read():
    from pybpf.helpers import attach_counter, detach_counter, open_perf_buffer
    pe = Map.create("perf_event_array", 4, 4, os.cpu_count())
    p = prog("""
r6 = r1
r1 = 0x61626364
*(u64 *)(r10 - 8) = r1
r1 = r6
r2 = map:pe ll
r3 = 0xffffffff ll
r4 = r10
r4 += -8
r5 = 5
call 25
exit""", KPROBE, {"pe": pe})
    assert run_kprobe(p).retval == neg(errno.ENOENT)         # no buffer open: empty slot
    got, lost = [], []
    buf = open_perf_buffer(pe, lambda cpu, data, size: got.append((data, size)), lambda n: lost.append(n),
                           page_cnt=1)
    try:
        assert run_kprobe(p).retval == 0
        assert buf.poll(100) == 1
        assert got == [(b"dcba\0\0\0\0\0\0\0\0", 12)]
        results = [run_kprobe(p).retval for _ in range(400)]
        assert neg(errno.ENOSPC) in results                 # one page fills up
        buf.poll(0)
        assert lost and sum(lost) == results.count(neg(errno.ENOSPC))
    finally:
        buf.close()
    rd = prog("r1 = map:pe ll\nr2 = 0xffffffff ll\ncall 22\nexit", KPROBE, {"pe": pe})
    assert run_kprobe(rd).retval == neg(errno.ENOENT)
    for i in range(os.cpu_count()):
        attach_counter(pe, i, lambda: 12345)
    assert run_kprobe(rd).r0 == 12345
    for i in range(os.cpu_count()):
        detach_counter(pe, i)
    big = prog("r1 = map:pe ll\nr2 = 100000\ncall 22\nexit", KPROBE, {"pe": pe})
    assert run_kprobe(big).retval == neg(errno.E2BIG)


def test_skb_perf_output_appends_packet():
    from pybpf.helpers import open_perf_buffer
    pe = Map.create("perf_event_array", 4, 4, os.cpu_count())
    p = prog("""
r2 = 7
*(u64 *)(r10 - 8) = r2
r2 = map:pe ll
r3 = 0x00000004ffffffff ll
r4 = r10
r4 += -8
r5 = 4
call 25
exit""", SCHED_CLS, {"pe": pe})
    got = []
    with open_perf_buffer(pe, lambda cpu, data, size: got.append(data)) as buf:
        assert run_skb(p, FRAME).retval == 0
        buf.poll(0)
    assert got == [b"\x07\0\0\0" + FRAME[:4] + bytes(4)]      # raw samples: padded to 8 with their size


def test_c_callbacks(tmp_path):
    """bpf_loop and bpf_for_each_map_elem from clang-built C, through the loader and the verifier.

    (The kernel needs BTF func_info to load callbacks, which the raw-bpf() kernel harness
    does not pass, so the expected values are worked out here; tests/test_prog_funcinfo.py
    loads the same object in the kernel.)"""
    import subprocess
    from pathlib import Path

    import pybpf.object
    from pybpf.runtime.testrun import test_run
    clang = "/usr/lib/llvm-19/bin/clang"
    if not os.path.exists(clang):
        pytest.skip("clang 19 not installed")
    src = Path(__file__).parent / "runtime_c" / "callbacks.c"
    obj = tmp_path / "callbacks.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(obj)], check=True)
    loaded = pybpf.object.load(obj)
    with loaded as p:
        prog = p.programs["callbacks"]
        # stop at i == 20: loop sum 3*(0..20), 21 iterations; array keys 0..5 visited (stop at 5)
        # with values k+1; the hash holds key 4 -> 1 + 5
        assert test_run(prog, bytes([20]) + bytes(59)).retval == 657 + 21 * 1000 + 6 * 100000 + 1000000
        # stop at 3: the array values doubled, the hash has keys 3 (-> 5) and 4 (-> 11)
        assert test_run(prog, bytes([3]) + bytes(59)).retval == 18 + 42 + 16 + 4000 + 600000 + 2000000
        assert [int.from_bytes(v, "little") for v in p.maps["arr"].values()] == [2, 4, 6, 8, 10, 12, 0, 0]
        # a stop past the loop: all 100 iterations
        assert test_run(prog, bytes([200]) + bytes(59)).retval == \
            3 * sum(range(100)) + 63 + 27 + 100 * 1000 + 6 * 100000 + 3 * 1000000
