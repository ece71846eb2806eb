"""Latency of map lookups and updates through the Map API and through pybpf.bpf().

ARRAY (4-byte keys: Linux allows no other) and HASH (8-byte keys), 8-byte
values, 100 000 entries, keys visited in a shuffled order.  Goals on this
machine: array lookup < 1.5 µs and hash lookup < 3 µs through the Map API.

    python benchmarks/bench_maps_api.py [--entries N] [--ops N]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import random
import shutil
import tempfile
import time

REPEAT = 5          # best of: the machine is shared, the minimum is the stable figure
GOALS = {("array", "api", "lookup"): 1.5, ("hash", "api", "lookup"): 3.0}


def per_op(fn, n: int) -> float:
    best = float("inf")
    for _ in range(REPEAT):
        t = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


def bench(kind: str, entries: int, ops: int) -> dict:
    from pybpf.map import Map
    from pybpf.syscall import MapElemAttr, bpf
    from pybpf.syscall import constants as C

    ks = 4 if kind == "array" else 8
    m = Map.create(kind, ks, 8, entries)
    keys = list(range(entries))
    for k in keys:
        m[k] = k
    rnd = random.Random(1)
    order = [rnd.choice(keys) for _ in range(ops)]
    kbytes = [k.to_bytes(ks, "little") for k in order]
    val = (7).to_bytes(8, "little")
    res = {}

    def api_lookup():
        for k in order:
            m[k]

    def api_lookup_bytes():
        for k in kbytes:
            m[k]

    def api_update():
        for k in order:
            m[k] = val

    kbuf = (ctypes.c_char * ks)()
    vbuf = ctypes.c_uint64()
    attr = MapElemAttr(map_fd=m.fd, key=ctypes.addressof(kbuf), value=ctypes.addressof(vbuf))
    mv = memoryview(kbuf).cast("B")

    def bpf_lookup():
        for k in kbytes:
            mv[:] = k
            bpf(C.BPF_MAP_LOOKUP_ELEM, attr)

    def bpf_update():
        for k in kbytes:
            mv[:] = k
            bpf(C.BPF_MAP_UPDATE_ELEM, attr)

    impl = m._obj.map_impl()

    def storage_lookup():
        lk = impl.lookup
        for k in kbytes:
            lk(k)

    res[("storage", "lookup (reference)")] = per_op(storage_lookup, ops)
    res[("api", "lookup")] = per_op(api_lookup, ops)
    res[("api", "lookup(bytes key)")] = per_op(api_lookup_bytes, ops)
    res[("api", "update")] = per_op(api_update, ops)
    res[("bpf()", "lookup")] = per_op(bpf_lookup, ops)
    res[("bpf()", "update")] = per_op(bpf_update, ops)
    m.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=100_000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="pybpf-bench-", dir="/dev/shm")
    os.environ["PYBPF_FS"] = root
    try:
        print(f"map API / bpf() latency, {args.entries} entries, 8-byte values, {args.ops} random ops "
              f"(best of {REPEAT})")
        print("storage = the engine's own lookup (pybpf.maps), the floor under the API figures;\n"
              "bpf() = ctypes attr with pointers, each pointer copy checked by process_vm_readv/writev")
        print(f"{'map':6} {'path':7} {'op':20} {'µs/op':>8} {'goal':>8} {'ratio':>7}")
        for kind in ("array", "hash"):
            for (path, op), us in bench(kind, args.entries, args.ops).items():
                goal = GOALS.get((kind, "api" if path == "api" else path, op))
                extra = f"{goal:8.2f} {us / goal:7.2f}" if goal else f"{'':8} {'':7}"
                print(f"{kind:6} {path:7} {op:20} {us:8.2f} {extra}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
