"""Verification time: pybpf's verifier against the host kernel's, on the same programs.

Programs: a 1500-byte checksum loop over XDP packet data (750 16-bit words, each load
proved in bounds by a comparison with data_end), the corpus program that costs the
most processed instructions (cases marked @slow excluded), and a loop that runs into the
limit of 1 000 000 processed instructions (rejected with E2BIG by both: the worst case of
state comparison, as every iteration is compared with the stored states of the loop).  The kernel's figure is the
``verification time`` it reports with log_level 4 (BPF_LOG_STATS).  Every program of
tests/verifier_cases/c is measured too; those with callbacks are loaded with their BTF
and func_info, in pybpf as in the kernel.  The last line gives the largest and the median
ratio (the host is shared: kernel and pybpf figures both vary by some 10-20% between runs).

Usage: python benchmarks/bench_verifier.py [--repeat N]
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pybpf.asm import assemble  # noqa: E402
from pybpf.isa import opcodes as op  # noqa: E402
from pybpf.isa.insn import Insn, encode  # noqa: E402
from pybpf.verifier import progtypes, verify  # noqa: E402

CHECKSUM = """
  r2 = *(u32 *)(r1 + 0)
  r3 = *(u32 *)(r1 + 4)
  r0 = 0
  r5 = 0
loop:
  r4 = r2
  r4 += 2
  if r4 > r3 goto done
  r6 = *(u16 *)(r2 + 0)
  r0 += r6
  r2 += 2
  r5 += 1
  if r5 < 750 goto loop
done:
  r1 = r0
  r1 >>= 16
  r0 &= 0xffff
  r0 += r1
  r0 &= 0xffff
  if r0 == 0xffff goto drop
  r0 = 2
  exit
drop:
  r0 = 1
  exit
"""


# every iteration has a new constant in r9: no state is ever equal to a stored one
TO_THE_LIMIT = """
  r9 = 0
loop:
  r9 -= 1
  if w9 > 0 goto loop
  r0 = 0
  exit
"""


def pybpf_time(insns, prog_type, maps, repeat, btf=None, expect_errno=0):
    times = []
    res = None
    kw = {"func_info": btf[0], "btf": btf[1]} if btf else {}
    for _ in range(repeat):
        t = time.perf_counter()
        res = verify(insns, prog_type=prog_type, maps=maps, license="GPL", **kw)
        times.append(time.perf_counter() - t)
    assert (res.errno == expect_errno) if expect_errno else res.ok, res.log
    return statistics.median(times) * 1e6, res.processed


def kernel_time(insns, prog_type, maps, repeat, btf=None, expect_errno=0):
    try:
        from kernel_oracle import kernel_available, kernel_map_create, kernel_prog_load
    except Exception:
        return None
    if not kernel_available():
        return None
    fds = {}
    try:
        for fd, mi in maps.items():
            kfd, err = kernel_map_create(mi.map_type, mi.key_size, mi.value_size, mi.max_entries, mi.flags)
            if kfd < 0:
                return None
            fds[fd] = kfd
        patched = [Insn(i.code, i.dst, i.src, i.off, fds[i.imm])
                   if i.code == op.LD_IMM64 and i.src in (1, 2) and i.imm in fds else i for i in insns]
        times = []
        for _ in range(repeat):
            if btf:
                from verifier_cases.btfblob import kernel_load
                pfd, err, log = kernel_load(encode(patched), prog_type, btf[2], btf[0], log_level=4)
            else:
                pfd, err, log = kernel_prog_load(encode(patched), prog_type, log_level=4)
            if pfd < 0 and err != expect_errno:
                return None
            if pfd >= 0:
                os.close(pfd)
            m = re.search(r"verification time (\d+) usec", log)
            times.append(int(m.group(1)))
        return statistics.median(times)
    finally:
        for kfd in fds.values():
            os.close(kfd)


def largest_corpus_case():
    from verifier_cases.corpus import assemble_case, load_all
    best = None
    for c in load_all():
        if c.slow or c.expect != "accept" or not c.privileged:
            continue
        insns = assemble_case(c)
        r = verify(insns, prog_type=c.prog_type, maps=c.maps, license=c.license)
        if r.ok and (best is None or r.processed > best[0]):
            best = (r.processed, c, insns)
    return best


def clang_programs():
    """Every program of tests/verifier_cases/c compiled for -mcpu=v3 (empty without clang 19)."""
    import subprocess
    import tempfile
    from pybpf.loader import read_object, resolve
    from pybpf.verifier import MapInfo
    clang = "/usr/lib/llvm-19/bin/clang"
    if not os.path.exists(clang):
        return []
    out = []
    tmp = tempfile.mkdtemp()
    for src in sorted((ROOT / "tests" / "verifier_cases" / "c").glob("*.c")):
        obj = os.path.join(tmp, src.stem + ".o")
        subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I/usr/include/x86_64-linux-gnu",
                        "-c", str(src), "-o", obj], check=True)
        spec = read_object(obj)
        fds = {name: 3 + i for i, name in enumerate(spec.maps)}
        maps = {fds[n]: MapInfo(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
                for n, m in spec.maps.items()}
        for name, insns in resolve(spec, fds).items():
            prog = spec.programs[name]
            btf = None
            if prog.func_info and spec.btf_for_kernel is not None:
                btf = ([(f.insn, f.type_id) for f in prog.func_info], spec.btf, spec.btf_for_kernel)
            out.append((f"clang {src.stem}:{name}", insns, prog.prog_type, maps, btf))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = [("checksum loop, 1500 bytes (xdp)", assemble(CHECKSUM), progtypes.XDP, {}, None, 0)]
    rows += [row + (0,) for row in clang_programs()]
    best = largest_corpus_case()
    if best:
        _, case, insns = best
        rows.append((f"largest corpus program ({case.id})", insns, case.prog_type, case.maps, None, 0))
    rows.append(("loop to the 1M-insn limit (E2BIG)", assemble(TO_THE_LIMIT), progtypes.XDP, {}, None,
                 errno.E2BIG))
    print(f"{'program':48} {'insns':>6} {'processed':>9} {'pybpf us':>10} {'kernel us':>10} {'ratio':>7}")
    ratios = []
    for name, insns, pt, maps, btf, expect in rows:
        repeat = 1 if expect else args.repeat      # (seconds per run)
        ours, processed = pybpf_time(insns, pt, maps, repeat, btf, expect)
        k = kernel_time(insns, pt, maps, repeat, btf, expect)
        if k:
            ratios.append(ours / k)
        ratio = f"{ours / k:7.1f}" if k else "    n/a"
        ks = f"{k:10.0f}" if k else "       n/a"
        print(f"{name:48} {len(insns):6d} {processed:9d} {ours:10.0f} {ks} {ratio}")
    if ratios:
        print(f"ratio pybpf/kernel: max {max(ratios):.1f}, median {statistics.median(ratios):.1f}")


if __name__ == "__main__":
    main()
