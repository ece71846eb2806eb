"""Program runtime speed: packets per second through XDP / tc programs, and helper call cost.

Run: python benchmarks/bench_runtime.py [--packets N]
Prints, per workload, packets/s through the Python API (run_xdp / run_skb), through
BPF_PROG_TEST_RUN (pybpf.bpf(), repeat=N: the per-run duration Linux reports), the
cost of one map-update helper call, and, where bpf() is permitted, the host kernel's
duration for the same program as a ratio.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from runtime_util import asm  # noqa: E402

import pybpf.runtime  # noqa: E402,F401
from pybpf.isa import encode  # noqa: E402
from pybpf.map import Map  # noqa: E402
from pybpf.prog import Program  # noqa: E402
from pybpf.runtime import ExecProgram, run_skb, run_xdp  # noqa: E402
from pybpf.runtime.testrun import test_run  # noqa: E402

PARSE = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = r2
r4 += 34
if r4 > r3 goto drop
r5 = *(u16 *)(r2 + 12)
if r5 != 8 goto pass
r5 = *(u8 *)(r2 + 23)
if r5 == 17 goto drop
pass:
r0 = 2
exit
drop:
r0 = 1
exit"""

COUNT = """
r6 = r1
r1 = *(u32 *)(r6 + 16)
*(u32 *)(r10 - 4) = r1
r1 = 1
*(u64 *)(r10 - 16) = r1
r1 = map:h ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto new
r1 = 1
lock *(u64 *)(r0 + 0) += r1
r0 = 0
exit
new:
r1 = map:h ll
r2 = r10
r2 += -4
r3 = r10
r3 += -16
r4 = 0
call 2
r0 = 0
exit"""


def frame(n: int) -> bytes:
    return b"\0" * 12 + b"\x08\x00" + b"\x45" + bytes(8) + bytes([6 if n % 2 else 17]) + bytes(40)


def kernel_duration(insns, prog_type: int, data: bytes, repeat: int) -> int | None:
    try:
        from kernel_oracle import kernel_available, kernel_prog_load, sys_bpf
    except ImportError:
        return None
    if not kernel_available():
        return None
    fd, err, _ = kernel_prog_load(encode(insns), prog_type)
    if fd < 0:
        return None
    try:
        from pybpf.runtime.testrun import TestRunAttr
        din = ctypes.create_string_buffer(data, len(data))
        a = TestRunAttr(prog_fd=fd, data_size_in=len(data), data_in=ctypes.addressof(din), repeat=repeat)
        ret, err = sys_bpf(10, (ctypes.c_char * ctypes.sizeof(a)).from_buffer(a))
        return a.duration if ret == 0 else None
    finally:
        os.close(fd)


def bench(name, fn, n):
    fn(0)
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    dt = time.perf_counter() - t0
    print(f"{name:<44} {n / dt:>10,.0f} packets/s   {dt / n * 1e6:8.1f} us/packet")
    return dt / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=5000)
    n = ap.parse_args().packets
    frames = [frame(i) for i in range(16)]
    xdp = ExecProgram.from_insns(asm(PARSE), 6)
    bench("XDP parse (run_xdp)", lambda i: run_xdp(xdp, frames[i & 15]), n)
    tc = ExecProgram.from_insns(asm(PARSE.replace("r0 = 2", "r0 = 0").replace("r0 = 1", "r0 = 2")
                                    .replace("(r1 + 0)", "(r1 + 76)").replace("(r1 + 4)", "(r1 + 80)")), 3)
    bench("tc parse (run_skb)", lambda i: run_skb(tc, frames[i & 15]), n)
    h = Map.create("hash", 4, 8, 1024)
    cnt = ExecProgram.from_insns(asm(COUNT, {"h": h}), 6, {h.fd: h.fd})
    bench("XDP map count (lookup/update helpers)", lambda i: run_xdp(cnt, frames[i & 15]), n)
    prog = Program.load(asm(PARSE), "xdp")
    bench("XDP parse via bpf(BPF_PROG_TEST_RUN)", lambda i: test_run(prog, frames[i & 15]), n)
    r = test_run(prog, frames[0], repeat=n)
    k = kernel_duration(asm(PARSE), 6, frames[0], n)
    line = f"{'XDP parse, test-run duration (repeat)':<44} {r.duration:>10} ns/run"
    if k:
        line += f"   kernel {k} ns/run   ratio {r.duration / max(k, 1):,.0f}x"
    print(line)


if __name__ == "__main__":
    main()
