"""tracex: probe a Python function with a kprobe program and print the log2 histogram it builds.

    python examples/tracex/run.py [--object prog.o] [--calls N]

The program's section, SEC("kprobe/allocate"), names the function it wants:
`allocate` of this module.  While attached (pybpf.events.kprobes), each call
of `allocate(size)` first fires the program with the call's arguments in
the pt_regs registers (first argument in di), as a kprobe on a C function
sees them; the program files the size into the `sizes` histogram and adds
to its global counters (.bss).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from pybpf.events.kprobes import attach_kprobe  # noqa: E402
from pybpf.object import load  # noqa: E402


def allocate(size: int) -> bytearray:
    """The function being watched: stands for any allocator-like call."""
    return bytearray(min(size, 4096))


def workload(n: int, seed: int = 7) -> list[int]:
    """Sizes an allocator might see: mostly small, a tail of large buffers, a few zero."""
    rng = random.Random(seed)
    sizes = []
    for _ in range(n):
        r = rng.random()
        if r < 0.02:
            sizes.append(0)
        elif r < 0.70:
            sizes.append(rng.randint(1, 256))
        elif r < 0.95:
            sizes.append(rng.randint(257, 64 * 1024))
        else:
            sizes.append(rng.randint(64 * 1024, 16 << 20))
    return sizes


def print_log2_hist(hist: dict[int, int], unit: str = "size") -> None:
    used = [k for k, v in hist.items() if v]
    if not used:
        print("(empty)")
        return
    top = max(hist.values())
    print(f"{unit:>24} : count     distribution")
    for slot in range(0, max(used) + 1):
        lo, hi = (0, 0) if slot == 0 else (1 << (slot - 1), (1 << slot) - 1)
        n = hist.get(slot, 0)
        bar = "*" * (n * 40 // top)
        print(f"{lo:>11} -> {hi:<10} : {n:<8} |{bar:<40}|")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="tracex/run.py", description="log2 histogram of probed calls")
    ap.add_argument("--object", type=Path, default=Path(__file__).resolve().parent / "prog.o")
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args(argv)
    with load(args.object) as obj:
        target = obj.spec.programs["trace_allocate"].attach_to       # "allocate"
        sizes = workload(args.calls)
        with attach_kprobe(f"{__name__}:{target}", obj.programs["trace_allocate"]) as probe:
            for s in sizes:
                allocate(s)
        if probe.errors:
            raise SystemExit("\n".join(probe.errors))
        hist = {int.from_bytes(k, "little"): int.from_bytes(v, "little")
                for k, v in obj.maps["sizes"].items()}
        bss = obj.maps["prog.bss"][0]
        variables = obj.spec.maps["prog.bss"].variables
        glob = {n: int.from_bytes(bss[o:o + s], "little") for n, (o, s) in variables.items()}
    print_log2_hist(hist)
    print(f"\ncalls {glob['calls']}, total_bytes {glob['total_bytes']}")
    return {"hist": hist, "globals": glob, "sizes": sizes}


if __name__ == "__main__":
    common.guarded(main)
