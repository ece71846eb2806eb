"""Map storage benchmarks: lookup/update latency and cross-process counter throughput.

Run: python benchmarks/bench_maps_storage.py [--entries 100000] [--seconds 2]

Figures printed:
* storage-level lookup / update latency for ARRAY (4-byte keys) and HASH
  (8-byte keys), 100 000 entries, random keys; the budget left for the Python
  Map API on top (targets: array lookup < 1.5 us, hash lookup < 3 us);
* throughput of 2 processes incrementing shared counters, with atomic adds on
  the value's real address (pybpf.native.atomics) and with lookup + update
  (no BPF_F_LOCK: increments are lost, as in Linux; the loss is reported).
"""

from __future__ import annotations

import argparse
import os
import random
import struct
import sys
import time

from pybpf.maps import MapSpec, spec as S
from pybpf.maps.standalone import StandaloneMap
from pybpf.native import atomics


def per_op(fn, items, repeat=1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for it in items:
            fn(it)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e6


def latency(entries: int) -> None:
    rng = random.Random(0)
    print(f"== storage latency, {entries} entries, random keys (best of 3, microseconds/op)")
    with StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, entries)) as a:
        keys = [rng.randrange(entries).to_bytes(4, "little") for _ in range(100000)]
        val = (12345).to_bytes(8, "little")
        lk = per_op(a.lookup, keys, 3)
        up = per_op(lambda k: a.update(k, val), keys[:30000], 3)
        addr = per_op(a.value_address, keys, 3)
        print(f"array  lookup {lk:6.3f}   update {up:6.3f}   value_address {addr:6.3f}"
              f"   (API target 1.5 -> storage uses {lk / 1.5:.0%})")
    with StandaloneMap.create(MapSpec(S.HASH, 8, 8, entries)) as h:
        t = time.perf_counter()
        for i in range(entries):
            h.update(i.to_bytes(8, "little"), val, S.NOEXIST)
        ins = (time.perf_counter() - t) / entries * 1e6
        keys = [rng.randrange(entries).to_bytes(8, "little") for _ in range(100000)]
        lk = per_op(h.lookup, keys, 3)
        up = per_op(lambda k: h.update(k, val), keys[:30000], 3)
        miss = [(entries + i).to_bytes(8, "little") for i in range(20000)]

        def lookup_miss(k):
            try:
                h.lookup(k)
            except OSError:
                pass
        ms = per_op(lookup_miss, miss, 3)
        t = time.perf_counter()
        n = sum(1 for _ in h.keys())
        it = (time.perf_counter() - t) / n * 1e6
        print(f"hash   lookup {lk:6.3f}   update {up:6.3f}   insert {ins:6.3f}   miss {ms:6.3f}"
              f"   get_next_key {it:6.3f}   (API target 3.0 -> storage uses {lk / 3.0:.0%})")


def _counter_worker(path: str, mode: str, seconds: float, wfd: int, slot: int) -> None:
    sm = StandaloneMap.open(path)
    m = sm.impl
    key = slot.to_bytes(4, "little")
    n = 0
    deadline = time.perf_counter() + seconds
    if mode.startswith("atomic"):
        addr = m.value_address(key)
        fa = atomics.fetch_add
        while True:
            for _ in range(1000):
                fa(addr, 1)
            n += 1000
            if time.perf_counter() > deadline:
                break
    else:
        while True:
            for _ in range(200):
                v = int.from_bytes(m.lookup(key), "little")
                m.update(key, (v + 1).to_bytes(8, "little"))
            n += 200
            if time.perf_counter() > deadline:
                break
    os.write(wfd, struct.pack("<Q", n))
    sm.close()


def counters(seconds: float, procs: int) -> None:
    print(f"== {procs} processes incrementing shared counters for {seconds:.1f}s "
          "(one counter; 'own' = a counter per process in the same map)")
    for mode in ("atomic", "atomic own", "lookup+update"):
        results = {}
        for nproc in (1, procs):
            path = f"/dev/shm/pybpf-bench-{os.getpid()}"
            sm = StandaloneMap.create(MapSpec(S.ARRAY, 4, 8, 64), path=path)
            r, w = os.pipe()
            pids = []
            for p in range(nproc):
                pid = os.fork()
                if pid == 0:
                    try:
                        # 'own' counters sit 64 bytes apart: no cache line shared
                        _counter_worker(path, mode, seconds, w, 8 * p if mode == "atomic own" else 0)
                    finally:
                        os._exit(0)
                pids.append(pid)
            for pid in pids:
                os.waitpid(pid, 0)
            done = sum(struct.unpack("<Q", os.read(r, 8))[0] for _ in pids)
            os.close(r)
            os.close(w)
            final = sum(int.from_bytes(sm.impl.lookup((8 * p).to_bytes(4, "little")), "little")
                        for p in range(nproc)) if mode == "atomic own" else \
                int.from_bytes(sm.impl.lookup((0).to_bytes(4, "little")), "little")
            sm.close()
            os.unlink(path)
            results[nproc] = done / seconds
            lost = done - final
            print(f"{mode:14s} {nproc} proc: {done / seconds / 1e6:7.3f} M incr/s total"
                  f"   ({done / seconds / nproc / 1e6:.3f} M/s per process)   lost {lost} of {done}"
                  f" ({lost / done:.1%})")
        print(f"{mode:14s} scaling {procs} vs 1 process: x{results[procs] / results[1]:.2f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=100000)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    latency(args.entries)
    counters(args.seconds, args.procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
