"""Event sources: tracepoints the app fires, kprobes on Python functions, capture replay, trace CLI."""

from __future__ import annotations

import os
import struct
import subprocess

import pytest
from click.testing import CliRunner
from runtime_util import asm

from pybpf.events import kprobes, tracepoints
from pybpf.events.attach import EventError
from pybpf.events.pcap import PcapWriter, read_packets
from pybpf.map import Map
from pybpf.runtime import ExecProgram
from pybpf.verifier.context import PT_REGS

KPROBE, TRACEPOINT = 2, 5
REG = {f.name: f.off for f in PT_REGS}


@pytest.fixture(autouse=True)
def _private_trace_pipe(monkeypatch):
    """trace_printk lines of these tests stay in the process (not in the user's trace pipe)."""
    import pybpf.runtime.core
    monkeypatch.setattr(pybpf.runtime.core, "trace_pipe_enabled", False)


# -- tracepoints ---------------------------------------------------------------------------------

def test_tracepoint_layout_and_format():
    tp = tracepoints.declare("testapp", "layout", [("a", "u8"), ("b", "u64"), ("name", "char[5]"),
                                                   ("c", "s32")])
    assert [(f.name, f.offset, f.size) for f in tp.fields] == [("a", 8, 1), ("b", 16, 8), ("name", 24, 5),
                                                               ("c", 32, 4)]
    fmt = tp.format()
    assert "\tfield:u64 b;\toffset:16;\tsize:8;\tsigned:0;" in fmt
    assert "\tfield:char name[5];\toffset:24;\tsize:5;\tsigned:1;" in fmt
    rec = tp.record(a=1, b=2, name="xy", c=-1)
    assert rec[8] == 1 and struct.unpack_from("<Q", rec, 16)[0] == 2 and rec[24:29] == b"xy\0\0\0"
    assert struct.unpack_from("<i", rec, 32)[0] == -1
    assert tracepoints.declare("testapp", "layout", [("a", "u8"), ("b", "u64"), ("name", "char[5]"),
                                                     ("c", "s32")]) is tp
    with pytest.raises(EventError, match="other fields"):
        tracepoints.declare("testapp", "layout", [("a", "u16")])
    with pytest.raises(EventError, match="no field"):
        tp.record(zzz=1)
    with pytest.raises(EventError, match="unknown type"):
        tracepoints.declare("testapp", "bad", [("x", "float")])
    with pytest.raises(EventError, match="do not fit"):
        tp.record(name="toolong")
    assert tracepoints.get("testapp:layout") is tp
    with pytest.raises(EventError, match="no tracepoint"):
        tracepoints.get("nope:nope")


def test_tracepoint_fire_runs_programs_on_the_record():
    h = Map.create("hash", 4, 8, 16)
    tp = tracepoints.declare("testapp", "req", [("status", "u32"), ("bytes", "u64")])
    text = """
r6 = r1
r1 = *(u32 *)(r6 + 8)
*(u32 *)(r10 - 4) = r1
r1 = *(u64 *)(r6 + 16)
*(u64 *)(r10 - 16) = r1
r1 = map:h ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 0
call 2
r0 = *(u32 *)(r6 + 8)
exit"""
    p = ExecProgram.from_insns(asm(text, {"h": h}), TRACEPOINT, {h.fd: h.fd})
    assert tp.fire(status=1) == []                 # nothing attached
    tp.attach(p)
    assert tp.fire(status=200, bytes=512) == [200]
    assert tp.fire(status=404, bytes=7) == [404]
    assert {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in h.items()} == \
        {200: 512, 404: 7}
    tp.detach(p)
    assert tp.fire(status=500) == []
    with pytest.raises(EventError, match="TRACEPOINT programs"):
        tp.attach(ExecProgram.from_insns(asm("r0 = 0\nexit"), KPROBE))


def test_tracepoint_faulting_program_does_not_break_the_app():
    tp = tracepoints.declare("testapp", "faulty", [("x", "u32")])
    bad = ExecProgram.from_insns(asm("r0 = *(u64 *)(r1 + 4096)\nexit"), TRACEPOINT, verify=False)
    tp.attach(bad)
    with pytest.warns(RuntimeWarning, match="stopped"):
        assert tp.fire(x=1) == [None]
    assert "out-of-bounds" in tp.errors[0]
    tp.detach(bad)


# -- kprobes ----------------------------------------------------------------------------------------

def target(a, b, name="x"):
    return a * b


class Service:
    def handle(self, n):
        return n + 1

    @staticmethod
    def stat(n):
        return n * 2


SUM_ARGS = """
r6 = r1
r1 = 0
*(u32 *)(r10 - 4) = r1
r1 = map:a ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto +5
r1 = *(u64 *)(r6 + {reg})
r2 = *(u64 *)(r6 + {reg2})
r1 += r2
r2 = *(u64 *)(r0 + 0)
*(u64 *)(r0 + 0) = r1
r0 = 0
exit"""


def _sum_prog(a, reg="di", reg2="si"):
    return ExecProgram.from_insns(asm(SUM_ARGS.format(reg=REG[reg], reg2=REG[reg2]), {"a": a}), KPROBE,
                                  {a.fd: a.fd})


@pytest.mark.parametrize("mode", ["wrap", "profile"])
def test_kprobe_on_function_entry(mode):
    a = Map.create("array", 4, 8, 1)
    probe = kprobes.attach_kprobe(target, _sum_prog(a), mode=mode)
    try:
        assert globals()["target"](3, 4) == 12 if mode == "wrap" else target(3, 4) == 12
        assert int.from_bytes(a[0], "little") == 7
        target(b=10, a=20)                  # keyword arguments land in argument order
        assert int.from_bytes(a[0], "little") == 30
    finally:
        probe.detach()
    assert target.__name__ == "target" and not hasattr(target, "__pybpf_kprobe__")
    target(100, 100)
    assert int.from_bytes(a[0], "little") == 30


def test_kretprobe_sees_return_value():
    a = Map.create("array", 4, 8, 1)
    probe = kprobes.attach_kretprobe(Service.handle, _sum_prog(a, "ax", "si"))
    try:
        assert Service().handle(41) == 42
        assert int.from_bytes(a[0], "little") == 42 + 41
    finally:
        probe.detach()
    probe = kprobes.attach_kprobe(f"{__name__}:Service.stat", _sum_prog(a, "di", "si"))
    try:
        assert Service.stat(5) == 10
        assert int.from_bytes(a[0], "little") == 5
    finally:
        probe.detach()


def test_kprobe_string_argument_readable():
    tp_lines = []
    from pybpf.runtime import trace_listeners
    trace_listeners.append(tp_lines.append)
    text = f"""
r6 = r1
r1 = r10
r1 += -32
r2 = 32
r3 = *(u64 *)(r6 + {REG['dx']})
call 114
r1 = 0x7325
*(u64 *)(r10 - 40) = r1
r1 = r10
r1 += -40
r2 = 3
r3 = r10
r3 += -32
call 6
r0 = 0
exit"""
    probe = kprobes.attach_kprobe(target, ExecProgram.from_insns(asm(text), KPROBE))
    try:
        target(1, 2, "bob")
        target(1, 2, name=b"alice\0")
    finally:
        probe.detach()
        trace_listeners.remove(tp_lines.append)
    assert [line.split("bpf_trace_printk: ")[1] for line in tp_lines] == ["bob", "alice"]


def test_kprobe_errors():
    with pytest.raises(EventError, match="cannot import"):
        kprobes.attach_kprobe("no_such_module_xyz:f", ExecProgram.from_insns(asm("r0 = 0\nexit"), KPROBE))
    with pytest.raises(EventError, match="KPROBE programs"):
        kprobes.attach_kprobe(target, ExecProgram.from_insns(asm("r0 = 2\nexit"), 6))

    def local():
        return 1
    with pytest.raises(EventError, match="mode='profile'"):
        kprobes.attach_kprobe(local, ExecProgram.from_insns(asm("r0 = 0\nexit"), KPROBE))
    p = kprobes.attach_kprobe(local, ExecProgram.from_insns(asm("r0 = 0\nexit"), KPROBE), mode="profile")
    assert local() == 1 and p.attached.hits == 1
    p.detach()


# -- pybpf run / pybpf trace ----------------------------------------------------------------------------

CLANG = "/usr/lib/llvm-19/bin/clang"
XDP_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, __u64); __uint(max_entries, 64); } by_len SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64); __uint(max_entries, 16); } len_hist SEC(".maps");
SEC("xdp")
int filter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    __u32 len = end - data, slot = 0, k = len;
    __u64 one = 1, *v = bpf_map_lookup_elem(&by_len, &k);
    if (v) __sync_fetch_and_add(v, 1); else bpf_map_update_elem(&by_len, &k, &one, BPF_ANY);
    for (__u32 x = len; x && slot < 15; x >>= 1) slot++;
    __u64 *h = bpf_map_lookup_elem(&len_hist, &slot);
    if (h) __sync_fetch_and_add(h, 1);
    if (data + 1 > end) return XDP_ABORTED;
    if (len > 100) return XDP_DROP;
    *(__u8 *)data = 0xee;
    return XDP_PASS;
}
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "in.pcap"
    with PcapWriter(path) as w:
        for i in range(30):
            w.write(bytes([i]) * (60 if i % 3 else 150), i * 1000)
    return path


def test_run_cli_with_elf(tmp_path, capture):
    if not os.path.exists(CLANG):
        pytest.skip("clang 19 not installed")
    src = tmp_path / "p.c"
    src.write_text(XDP_C)
    obj = tmp_path / "p.o"
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", str(src),
                    "-o", str(obj)], check=True)
    from pybpf.cli.runtime import run_cmd
    out = tmp_path / "out.pcap"
    res = CliRunner().invoke(run_cmd, [str(obj), "--pcap", str(capture), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "30 packets through filter (xdp)" in res.output
    assert "XDP_PASS  20" in res.output and "XDP_DROP  10" in res.output
    assert "20 packets written" in res.output
    assert "map by_len (hash, key 4, value 8, max 64): 2 entries" in res.output
    assert "   60  20" in res.output and "  150  10" in res.output
    assert "        32 -> 63         : 20       |****************************************|" in res.output
    assert "       128 -> 255        : 10       |********************                    |" in res.output
    pkts = list(read_packets(out))
    assert len(pkts) == 20 and all(p.data[0] == 0xEE and len(p.data) == 60 for p in pkts)
    res = CliRunner().invoke(run_cmd, [str(obj), "nosuch", "--pcap", str(capture)])
    assert res.exit_code != 0 and "no program 'nosuch' (has: filter)" in str(res.exception or res.output)


def test_run_cli_with_assembler(tmp_path, capture):
    from pybpf.cli.runtime import run_cmd
    s = tmp_path / "f.s"
    s.write_text("r0 = *(u32 *)(r1 + 0)\nif r0 > 100 goto +1\nexit\nr0 = 0\nexit\n")
    res = CliRunner().invoke(run_cmd, [str(s), "--pcap", str(capture), "--type", "socket_filter",
                                       "--out", str(tmp_path / "o.pcap")])
    assert res.exit_code == 0, res.output
    assert "accept  20" in res.output and "drop    10" in res.output
    res = CliRunner().invoke(run_cmd, [str(s), "--pcap", str(capture)])
    assert res.exit_code != 0
    # a socket filter's return value truncates what is passed on
    s.write_text("r0 = 20\nexit\n")
    out = tmp_path / "t.pcap"
    res = CliRunner().invoke(run_cmd, [str(s), "--pcap", str(capture), "--type", "socket_filter",
                                       "--out", str(out), "--progress"])
    assert res.exit_code == 0, res.output
    assert "accept 20 bytes  30" in res.output
    # by default the filter sees the packet from the network header (as test runs show it):
    # the capture keeps the Ethernet header and 20 bytes after it
    assert [len(p.data) for p in read_packets(out)] == [34] * 30
    assert all(p.orig_len in (60, 150) for p in read_packets(out))
    res = CliRunner().invoke(run_cmd, [str(s), "--pcap", str(capture), "--type", "socket_filter",
                                       "--out", str(out), "--socket", "raw"])
    assert res.exit_code == 0, res.output
    assert [len(p.data) for p in read_packets(out)] == [20] * 30


def test_kprobe_recursion_is_counted_not_nested():
    calls = []
    from pybpf.runtime import trace_listeners

    def listener(line):
        calls.append(line)
        target(0, 0)                # a probed function called while the program runs
    probe = kprobes.attach_kprobe(target, ExecProgram.from_insns(asm(
        "r1 = 0x41\n*(u64 *)(r10 - 8) = r1\nr1 = r10\nr1 += -8\nr2 = 2\ncall 6\nr0 = 0\nexit"), KPROBE))
    trace_listeners.append(listener)
    try:
        target(1, 1)
    finally:
        trace_listeners.remove(listener)
        probe.detach()
    assert len(calls) == 1 and probe.attached.hits == 1 and probe.attached.misses == 1


def test_trace_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_FS", str(tmp_path / "fs"))
    from pybpf.cli.runtime import trace_cmd
    from pybpf.helpers import trace as tp
    tp.append(tp.format_line("one", task="app", pid=42, cpu=1, ts_ns=1_500_000_000))
    tp.append(tp.format_line("two", task="app", pid=42, cpu=1, ts_ns=2_000_000_000))
    res = CliRunner().invoke(trace_cmd, ["--no-follow"])
    assert res.output.splitlines() == [
        "             app-42      [001] d....     1.500000: bpf_trace_printk: one",
        "             app-42      [001] d....     2.000000: bpf_trace_printk: two"]
    assert CliRunner().invoke(trace_cmd, ["--no-follow"]).output == ""


def test_trace_pipe_shared_between_processes(tmp_path):
    env = dict(os.environ, PYBPF_FS=str(tmp_path / "fs"))
    code = ("from pybpf.helpers import trace as tp\n"
            "for i in range(50): tp.append(tp.format_line(f'msg {i}'))\n")
    procs = [subprocess.Popen(["python", "-c", code], env=env) for _ in range(3)]
    for p in procs:
        assert p.wait(60) == 0
    got = subprocess.run(["python", "-c", "from pybpf.helpers import trace as tp\n"
                          "print(len(tp.read_lines()))"], env=env, capture_output=True, text=True)
    assert got.stdout.strip() == "150"


def test_tracepoint_with_a_loaded_program():
    """A TRACEPOINT program loaded (and verified) through BPF_PROG_LOAD, attached by its Program."""
    from pybpf.prog import Program
    tp = tracepoints.declare("testapp", "loaded", [("a", "u32"), ("b", "u64")])
    p = Program.load(asm("r0 = *(u32 *)(r1 + 8)\nr2 = *(u64 *)(r1 + 16)\nr0 += r2\nexit"), "tracepoint")
    try:
        tp.attach(p)
        assert tp.fire(a=5, b=7) == [12]
        tp.detach(p)
        assert tp.fire(a=5, b=7) == []
    finally:
        p.close()


def test_trace_pipe_drops_oldest_when_full(tmp_path, monkeypatch):
    monkeypatch.setenv("PYBPF_FS", str(tmp_path / "fs"))
    from pybpf.helpers import trace as tp
    monkeypatch.setattr(tp, "MAX_PIPE_BYTES", 4096)
    for i in range(500):
        tp.append(f"line {i:04d}")
    got = tp.read_lines()
    assert got and got[-1] == "line 0499"
    nums = [int(x.split()[1]) for x in got]
    assert nums == sorted(nums) and nums[0] > 0 and len(got) < 500     # oldest dropped, order kept
    assert os.path.getsize(tp.pipe_path()) <= 4096
    tp.append("after")
    assert tp.read_lines() == ["after"]
