"""The runtime gives back what closed programs used: VMs, map registrations, map mappings."""

from __future__ import annotations

import gc
import struct

import pytest
from runtime_util import asm

from pybpf import kobj
from pybpf.map import Map
from pybpf.prog import Program
from pybpf.runtime import ExecProgram, run_kprobe, runtime

KPROBE, SCHED_CLS = 2, 3

COUNT = """
r1 = 0
*(u32 *)(r10 - 4) = r1
r1 = map:m ll
r2 = r10
r2 += -4
call 1
if r0 == 0 goto out
r1 = 1
lock *(u64 *)(r0 + 0) += r1
out:
r0 = 0
exit"""


def mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def _load_run_close(i: int, via_bpf: bool) -> None:
    m = Map.create("array", 4, 8, 1024)      # 8 KiB of storage + header: its own mapping
    if via_bpf:
        p = Program.load(asm(COUNT, {"m": m}), SCHED_CLS, maps=[m])
        assert p.run(bytes(64)).retval == 0
        p.close()
    else:
        p = ExecProgram.from_insns(asm(COUNT, {"m": m}), KPROBE, [m])
        assert run_kprobe(p).retval == 0
        del p
    assert m[struct.pack("<I", 0)] == struct.pack("<Q", 1)
    m.close()


@pytest.mark.parametrize("via_bpf", [True, False], ids=["Program.load", "ExecProgram"])
def test_load_close_many_programs_stays_bounded(bpffs, via_bpf):
    rt = runtime()
    for i in range(20):                         # warm up caches (JIT, helpers, verifier tables)
        _load_run_close(i, via_bpf)
    gc.collect()
    rt.release_unused()
    base_maps, base_regions = mappings(), len(rt.memory.regions)
    for i in range(200):
        _load_run_close(i, via_bpf)
    gc.collect()
    rt.release_unused()
    kobj.sweep()
    # without the release every round would leave one mapping (and one region) behind
    assert mappings() - base_maps < 20
    assert len(rt.memory.regions) - base_regions < 5
    assert len(rt.maps_by_key) < 5


def test_shared_map_stays_while_another_program_uses_it(bpffs):
    m = Map.create("array", 4, 8, 1)
    a = Program.load(asm(COUNT, {"m": m}), SCHED_CLS, maps=[m])
    b = Program.load(asm(COUNT, {"m": m}), SCHED_CLS, maps=[m])
    rt = runtime()
    assert a.run(bytes(64)).retval == 0 and b.run(bytes(64)).retval == 0
    key = (m._obj.key, m.id)
    assert key in rt.maps_by_key
    a.close()
    rt.release_unused()
    assert key in rt.maps_by_key                # b still refers to it
    assert b.run(bytes(64)).retval == 0
    b.close()
    rt.release_unused()
    assert key not in rt.maps_by_key
    assert m[struct.pack("<I", 0)] == struct.pack("<Q", 3)     # the map itself lives on (our fd)
    m.close()


def test_closed_program_still_pinned_runs_again(bpffs, tmp_path):
    m = Map.create("array", 4, 8, 1)
    p = Program.load(asm(COUNT, {"m": m}), SCHED_CLS, maps=[m])
    pin = "/sys/fs/bpf/counter"
    p.pin(pin)
    assert p.run(bytes(64)).retval == 0
    p.close()
    rt = runtime()
    rt.release_unused()
    assert (m._obj.key, m.id) not in rt.maps_by_key
    q = Program.from_pinned(pin)               # a new handle of the same program: VM rebuilt
    assert q.run(bytes(64)).retval == 0
    assert m[struct.pack("<I", 0)] == struct.pack("<Q", 2)
    q.close()
    m.close()


def test_release_never_drops_a_running_program(bpffs):
    """A tail call made while the caller's Program is already closed reaps nothing mid-run."""
    m = Map.create("array", 4, 8, 1)
    pa = Map.create("prog_array", 4, 4, 1)
    callee = Program.load(asm(COUNT, {"m": m}), SCHED_CLS, maps=[m])
    pa[struct.pack("<I", 0)] = struct.pack("<I", callee.fd)
    caller_text = """
r6 = r1
r1 = map:m ll
r2 = r10
r2 += -4
r3 = 0
*(u32 *)(r10 - 4) = r3
call 1
if r0 == 0 goto call
r1 = 100
lock *(u64 *)(r0 + 0) += r1
call:
r1 = r6
r2 = map:pa ll
r3 = 0
call 12
r0 = 7
exit"""
    caller = Program.load(asm(caller_text, {"m": m, "pa": pa}), SCHED_CLS, maps=[m, pa])
    ep = ExecProgram.of(caller)
    caller.close()                              # its handle goes at the next sweep
    callee.close()
    kobj.sweep()
    from pybpf.runtime import run_skb
    assert run_skb(ep, bytes(64)).retval == 0   # the tail call ran the counter (r0 = 0)
    assert m[struct.pack("<I", 0)] == struct.pack("<Q", 101)
    del ep
    gc.collect()
    runtime().release_unused()
    assert (m._obj.key, m.id) not in runtime().maps_by_key
    pa.close()
    m.close()
