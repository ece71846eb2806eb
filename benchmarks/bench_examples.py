"""Examples under pybpf vs the host kernel: object load time and per-packet run time.

    python benchmarks/bench_examples.py [--repeat N]

For each example: how long pybpf.load() takes (maps + verification of every
program), and the mean time of one BPF_PROG_TEST_RUN per frame of the
bundled capture, in pybpf and (where bpf() is permitted) in the kernel,
with the ratio.  Runs in its own BPF fs under /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CASES = [("sockex1", "count_bytes"), ("sockex2", "flow_dissector"), ("sockex3", "dissect"),
         ("xdp_filter", "xdp_filter"), ("tc_classifier", "classify")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="passes over the capture")
    args = ap.parse_args()
    fs = tempfile.mkdtemp(prefix="pybpf-bench-", dir="/dev/shm")
    os.environ["PYBPF_FS"] = fs
    try:
        run(args.repeat)
    finally:
        shutil.rmtree(fs, ignore_errors=True)


def run(repeat: int) -> None:
    from kernel_oracle import kernel_available
    from pybpf.events.pcap import read_packets
    from pybpf.object import load
    from pybpf.runtime.testrun import test_run

    frames = [p.data for p in read_packets(ROOT / "examples" / "data" / "sample.pcap")]
    kernel = kernel_available()
    print(f"{len(frames)} frames x {repeat} passes; kernel: {'yes' if kernel else 'no'}")
    print(f"{'example':<15}{'load ms':>10}{'pybpf us/pkt':>15}{'kernel us/pkt':>15}{'ratio':>9}")
    for name, prog in CASES:
        path = ROOT / "examples" / name / "prog.o"
        t0 = time.perf_counter()
        obj = load(path)
        load_ms = (time.perf_counter() - t0) * 1e3
        p = obj.programs[prog]
        try:
            t0 = time.perf_counter()
            for _ in range(repeat):
                for f in frames:
                    test_run(p, f)
            ours = (time.perf_counter() - t0) / (repeat * len(frames)) * 1e6
        except Exception as e:          # e.g. a runtime limitation: report it, go on
            print(f"{name:<15}{load_ms:>10.1f}  pybpf run failed: {e}")
            obj.close()
            continue
        obj.close()
        ktext, ratio = "-", "-"
        if kernel:
            from kernel_objects import KernelObject
            with KernelObject(str(path)) as k:
                t0 = time.perf_counter()
                for _ in range(repeat):
                    for f in frames:
                        k.run(prog, f)
                kus = (time.perf_counter() - t0) / (repeat * len(frames)) * 1e6
            ktext, ratio = f"{kus:.2f}", f"{ours / kus:.0f}x"
        print(f"{name:<15}{load_ms:>10.1f}{ours:>15.1f}{ktext:>15}{ratio:>9}")


if __name__ == "__main__":
    main()
