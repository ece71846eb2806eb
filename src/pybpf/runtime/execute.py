"""Running a program on a packet or an event: build the context, run, apply the verdict."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..vm.machine import FAST_ENGINE_MAX_SLOTS
from ..verifier.progtypes import KPROBE, SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP
from . import contexts as C
from . import verdicts
from .core import ExecProgram, RunState, Runtime, runtime
from .skb import SkBuff, XdpBuff
from .verdicts import TRACEPOINT


@dataclass
class RunResult:
    retval: int                     # r0 as the kernel reports it (u32 for test runs)
    r0: int                         # the full 64-bit r0
    verdict: str                    # Linux's name for it
    fate: str                       # pass / drop / tx / redirect
    data: bytes | None = None       # the packet after the run (skb: from the MAC header)
    meta: bytes = b""               # XDP metadata after the run
    skb: SkBuff | None = None
    xdp: XdpBuff | None = None
    redirect: tuple | None = None   # (ifindex, flags) of bpf_redirect
    clones: list = field(default_factory=list)
    duration_ns: int = 0            # mean per run
    insns: int = 0                  # instructions executed (all runs, tail calls included)


def _loop(rt: Runtime, state: RunState, repeat: int) -> tuple[int, int]:
    repeat = max(1, int(repeat))
    r0 = 0
    vm = rt.vm_for(state.prog)
    if len(vm.insns) <= FAST_ENGINE_MAX_SLOTS:
        vm._fast()          # translate before the clock starts: duration is the run alone
    t0 = time.perf_counter_ns()
    for _ in range(repeat):
        state.redirect = None
        state.tail_calls = 0
        r0 = rt.invoke(state)
    return r0, (time.perf_counter_ns() - t0) // repeat


def _run_on_packet(rt: Runtime, state: RunState, packet, sync, make_ctx, readback, repeat: int):
    """Run with ``packet`` registered and a context built on it; read the changes back; free both."""
    state.packet = packet
    state.sync_ctx = sync
    ctx = make_ctx(state)
    state.ctx = ctx.region
    try:
        r0, dur = _loop(rt, state, repeat)
        readback(state)
    finally:
        ctx.close()
        state.packet.close()
    return r0, dur


def run_skb(prog: ExecProgram, skb: SkBuff | bytes, *, repeat: int = 1, rt: Runtime | None = None) -> RunResult:
    """Run a socket filter / tc program on ``skb`` (changed in place: fields and data)."""
    if prog.prog_type not in C.SKB_TYPES:
        raise ValueError(f"program type {prog.prog_type} does not take an __sk_buff")
    if not isinstance(skb, SkBuff):
        skb = SkBuff(skb)
    rt = rt or runtime()
    state = RunState(rt, prog)
    state.skb = skb
    r0, dur = _run_on_packet(rt, state, C.skb_packet(rt.memory, skb), C.skb_sync,
                             lambda st: C.skb_ctx(st, skb), C.skb_readback, repeat)
    ret = r0 & 0xFFFFFFFF
    return RunResult(ret, r0, verdicts.name(prog.prog_type, ret, skb.len),
                     verdicts.fate(prog.prog_type, ret), skb.data, skb=skb, redirect=state.redirect,
                     clones=state.clones, duration_ns=dur, insns=state.insns)


def run_xdp(prog: ExecProgram, xdp: XdpBuff | bytes, *, repeat: int = 1, rt: Runtime | None = None) -> RunResult:
    if prog.prog_type != XDP:
        raise ValueError(f"program type {prog.prog_type} is not XDP")
    if not isinstance(xdp, XdpBuff):
        xdp = XdpBuff(xdp)
    rt = rt or runtime()
    state = RunState(rt, prog)
    state.xdp = xdp
    r0, dur = _run_on_packet(rt, state, C.xdp_packet(rt.memory, xdp), C.xdp_sync,
                             lambda st: C.xdp_ctx(st, xdp), C.xdp_readback, repeat)
    ret = r0 & 0xFFFFFFFF
    return RunResult(ret, r0, verdicts.name(XDP, ret), verdicts.fate(XDP, ret), xdp.data, xdp.meta,
                     xdp=xdp, redirect=state.redirect, duration_ns=dur, insns=state.insns)


def run_raw(prog: ExecProgram, ctx_bytes: bytes, *, repeat: int = 1, rt: Runtime | None = None,
            name: str = "ctx") -> RunResult:
    """Run a tracing program (kprobe: a pt_regs image; tracepoint: a record) on read-only ctx."""
    rt = rt or runtime()
    state = RunState(rt, prog)
    ctx = C.raw_ctx(state, ctx_bytes, name)
    state.ctx = ctx.region
    try:
        r0, dur = _loop(rt, state, repeat)
    finally:
        ctx.close()
    return RunResult(r0 & 0xFFFFFFFF, r0, verdicts.name(prog.prog_type, r0), verdicts.PASS,
                     duration_ns=dur, insns=state.insns)


def run_kprobe(prog: ExecProgram, *args: int, regs: dict | None = None, **kw) -> RunResult:
    if prog.prog_type != KPROBE:
        raise ValueError(f"program type {prog.prog_type} is not KPROBE")
    return run_raw(prog, C.pt_regs(regs, args), name="pt_regs", **kw)


def run(prog: ExecProgram, data=b"", **kw) -> RunResult:
    """Run any supported program type on ``data`` (a packet, a pt_regs image or a record)."""
    t = prog.prog_type
    if t in C.SKB_TYPES:
        return run_skb(prog, data, **kw)
    if t == XDP:
        return run_xdp(prog, data, **kw)
    if t in (KPROBE, TRACEPOINT):
        return run_raw(prog, bytes(data), name="pt_regs" if t == KPROBE else "record", **kw)
    raise ValueError(f"program type {t} cannot be run by pybpf")


__all__ = ["RunResult", "run", "run_skb", "run_xdp", "run_raw", "run_kprobe", "SOCKET_FILTER",
           "SCHED_CLS", "SCHED_ACT"]
