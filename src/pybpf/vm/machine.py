"""The virtual machine: program, stacks, helpers and the two engines that run it.

``VM(insns).run(mem)`` runs a program with the conformance-suite calling
convention: r1 = address of the input memory, r2 = its length, r10 = top of
the 512-byte stack of frame 0.  Two engines share every definition:

* ``fast`` (default): the program translated once into Python source
  (:mod:`pybpf.vm.compiler`), cached per program;
* ``reference``: one instruction at a time (:mod:`pybpf.vm.reference`), the
  obviously-correct yardstick the fast engine is tested against; tracing
  always uses it, since a trace must show every instruction anyway.
"""

from __future__ import annotations

import ctypes
import weakref
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ..errors import PybpfError
from ..isa import Insn, decode, imm64
from ..isa import opcodes as op
from . import semantics as sem
from .memory import Memory, Region, VmError, _bytes
from .program import validate
from .text import insn_text

DEFAULT_MAX_INSNS = 1_000_000
# Above this many slots the automatic engine choice steps instead of compiling
# (translating 20k slots costs about a second on a small machine).
FAST_ENGINE_MAX_SLOTS = 20_000
STACK_SIZE = op.STACK_SIZE
MAX_FRAMES = op.MAX_CALL_FRAMES
# Unregistered bytes between frame stacks: a frame overrunning its stack
# faults instead of silently landing in its neighbour's.
_GUARD = 64

Helper = Callable[..., int]


class StopProgram(Exception):
    """Raised by a helper to end the program at once with ``r0`` (e.g. an unwind)."""

    def __init__(self, r0: int = 0):
        super().__init__(r0)
        self.r0 = r0 & sem.M64
        self.insns: int | None = None


@dataclass
class Result:
    r0: int
    insns_executed: int
    trace: list[str] = field(default_factory=list)
    mem: bytes | None = None          # the input memory after the run
    engine: str = "fast"

    @property
    def trace_lines(self) -> list[str]:
        return self.trace


class VM:
    """One loaded program plus everything it may touch.

    ``helpers`` maps helper ids to ``fn(vm, r1, r2, r3, r4, r5) -> int``;
    ``kfuncs`` maps BTF ids the same way.  ``memory`` may be shared with other
    layers (maps register their values there).  ``ldimm64`` resolves
    LD_IMM64 pseudo sources: ``fn(pc, src, imm64) -> int``.

    A VM runs one program invocation at a time (its stacks are reused); use
    one VM per thread to run the same program concurrently.
    """

    def __init__(self, insns: Sequence[Insn] | bytes, *, helpers: Mapping[int, Helper] | None = None,
                 kfuncs: Mapping[int, Helper] | None = None, memory: Memory | None = None,
                 max_insns: int = DEFAULT_MAX_INSNS,
                 ldimm64: Callable[[int, int, int], int] | None = None) -> None:
        if isinstance(insns, (bytes, bytearray, memoryview)):
            insns = decode(insns)
        self.insns = list(insns)
        self.starts = validate(self.insns)
        self.helpers: dict[int, Helper] = dict(helpers or {})
        self.kfuncs: dict[int, Helper] = dict(kfuncs or {})
        self.memory = memory if memory is not None else Memory()
        self.max_insns = int(max_insns)
        self.constants = self._resolve_ldimm64(ldimm64)
        self._stack_buf = (ctypes.c_char * (MAX_FRAMES * (STACK_SIZE + _GUARD) + _GUARD))()
        base = ctypes.addressof(self._stack_buf)
        self.stacks: list[Region] = []
        for depth in range(MAX_FRAMES):
            # Frame 0 highest, deeper frames below it, as a real stack grows.
            off = _GUARD + (MAX_FRAMES - 1 - depth) * (STACK_SIZE + _GUARD)
            self.stacks.append(self.memory.add_region(
                f"stack of frame {depth}", address=base + off, size=STACK_SIZE,
                keepalive=self._stack_buf))
        self.packet: Region | None = None
        self._compiled = None
        self._buffers: dict[str, ctypes.Array] = {}
        # A shared Memory must not keep the stacks of VMs nobody uses any more.
        self._finalizer = weakref.finalize(self, _drop_regions, self.memory, list(self.stacks))

    # -- setup ---------------------------------------------------------------

    def _resolve_ldimm64(self, resolver) -> dict[int, int | None]:
        """pc -> value of every LD_IMM64 (None: unresolved pseudo, an error if run)."""
        out: dict[int, int | None] = {}
        for pc, ins in enumerate(self.insns):
            if not (ins.is_ldimm64 and self.starts[pc]):
                continue
            value = imm64(self.insns, pc)
            if ins.src == op.PSEUDO_NONE:
                out[pc] = value
            elif resolver is not None:
                out[pc] = resolver(pc, ins.src, value) & sem.M64
            else:
                out[pc] = None
        return out

    def close(self) -> None:
        """Unregister this VM's stacks from its (possibly shared) Memory."""
        self._finalizer()
        self.stacks = []

    def __enter__(self) -> "VM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running -------------------------------------------------------------

    def run(self, mem: bytes | bytearray | memoryview | None = None, *, ctx=None,
            r1: int | None = None, r2: int | None = None, packet=None,
            trace: bool = False, engine: str | None = None) -> Result:
        """Run once.  ``mem`` is copied in (a bytearray gets the final contents back).

        ``ctx`` (a registered Region, or a writable buffer registered for the
        run) replaces the input memory in r1.  ``packet`` (bytes, or a Region)
        is what LD_ABS/LD_IND read.

        ``engine``: "fast", "reference", or None to choose: a trace needs the
        stepping engine, and so do very large programs, whose translation into
        Python would cost more (seconds, growing faster than their size) than
        stepping through a budget of instructions.
        """
        if trace:
            engine = "reference"
        elif engine is None:
            engine = "fast" if len(self.insns) <= FAST_ENGINE_MAX_SLOTS else "reference"
        if engine not in ("fast", "reference"):
            raise ValueError(f"unknown engine {engine!r}")
        ctypes.memset(ctypes.addressof(self._stack_buf), 0, ctypes.sizeof(self._stack_buf))
        added: list[Region] = []
        mem_region = ctx_region = None
        try:
            if mem is not None:
                data = bytes(mem)
                buf = self._scratch("input", data)
                mem_region = self.memory.add_region("input memory", address=ctypes.addressof(buf),
                                                    size=len(data), keepalive=buf)
                added.append(mem_region)
            if ctx is not None:
                if isinstance(ctx, Region):
                    ctx_region = ctx
                else:
                    ctx_region = self.memory.add_region("ctx", ctx)
                    added.append(ctx_region)
            if isinstance(packet, Region):
                self.packet = packet
            elif packet is not None:
                pdata = bytes(packet)
                pbuf = self._scratch("packet", pdata)
                self.packet = self.memory.add_region("packet", address=ctypes.addressof(pbuf),
                                                     size=len(pdata), keepalive=pbuf, writable=False)
                added.append(self.packet)
            hot = ctx_region or mem_region
            if r1 is None:
                r1 = hot.base if hot is not None and hot.size else 0
            if r2 is None:
                r2 = mem_region.size if mem_region is not None else 0
            env = Env(self, hot)
            trace_lines: list[str] = []
            try:
                if engine == "fast":
                    r0, n = self._fast()(env)(r1 & sem.M64, r2 & sem.M64, 0, 0, 0, 0, 0)
                else:
                    from .reference import run_reference
                    r0, n = run_reference(self, env, r1 & sem.M64, r2 & sem.M64,
                                          trace_lines if trace else None)
            except StopProgram as stop:
                r0, n = stop.r0, stop.insns or 0
            except VmError as e:
                e.trace = trace_lines     # what ran up to the fault, for the user
                raise
            out_mem = mem_region.read() if mem_region is not None else None
            if isinstance(mem, bytearray) and out_mem is not None:
                mem[:] = out_mem
            return Result(r0, n, trace_lines, out_mem, engine)
        finally:
            for r in added:
                self.memory.remove_region(r)
            self.packet = None

    def _scratch(self, kind: str, data: bytes):
        """A buffer holding ``data``, reused between runs of this VM.

        Reuse keeps the input's address the same from run to run, so a program
        whose behaviour depends on pointer values is reproducible (and both
        engines see the same addresses).
        """
        buf = self._buffers.get(kind)
        if buf is None or ctypes.sizeof(buf) < len(data):
            buf = (ctypes.c_char * max(len(data), 64))()
            self._buffers[kind] = buf
        ctypes.memmove(buf, data, len(data))
        return buf

    def _fast(self):
        if self._compiled is None:
            from .compiler import compile_program
            self._compiled = compile_program(self)
        return self._compiled

    # -- messages ------------------------------------------------------------

    def where(self, pc: int) -> str:
        return f"pc {pc} ({insn_text(self.insns, pc)})"

    def error(self, pc: int, message: str) -> VmError:
        return VmError(f"{self.where(pc)}: {message}", pc)


def _drop_regions(memory: Memory, regions: list[Region]) -> None:
    for r in regions:
        try:
            memory.remove_region(r)
        except KeyError:
            pass


class Env:
    """Per-run services both engines call: checked memory, calls, faults."""

    def __init__(self, vm: VM, hot: Region | None) -> None:
        self.vm = vm
        self.memory = vm.memory
        self.limit = vm.max_insns
        self.hot = hot
        self.stack_views = [r.view for r in vm.stacks]
        self.stack_bases = [r.base for r in vm.stacks]

    # memory ---------------------------------------------------------------
    def load(self, addr: int, size: int, signed: bool, pc: int) -> int:
        try:
            v = self.memory.load(addr, size, signed)
        except VmError as e:
            raise self.vm.error(pc, str(e)) from None
        return v & sem.M64

    def store(self, addr: int, size: int, value: int, pc: int) -> None:
        try:
            self.memory.store(addr, size, value)
        except VmError as e:
            raise self.vm.error(pc, str(e)) from None

    def frame_fault(self, addr: int, size: int, kind: str, pc: int) -> None:
        """An r10-relative access outside the current frame's 512 bytes."""
        raise self.vm.error(pc, f"out-of-bounds {kind} of {_bytes(size)} at "
                                f"{self.memory.where(addr)}")

    def atomic(self, addr: int, size: int, name: str, value: int, pc: int) -> int:
        try:
            return self.memory.atomic_fetch(name, addr, value, size)
        except VmError as e:
            raise self.vm.error(pc, str(e)) from None

    def cmpxchg(self, addr: int, size: int, expected: int, new: int, pc: int) -> int:
        try:
            return self.memory.atomic_cmpxchg(addr, expected, new, size)
        except VmError as e:
            raise self.vm.error(pc, str(e)) from None

    # calls ----------------------------------------------------------------
    def _call(self, table, what: str, fid: int, args, pc: int, n: int) -> int:
        fn = table.get(fid)
        if fn is None:
            raise self.vm.error(pc, f"unknown {what} {fid} (none registered with that id)")
        try:
            r = fn(self.vm, *args)
        except StopProgram as stop:
            stop.insns = n
            raise
        except VmError as e:
            raise self.vm.error(pc, f"{what} {fid}: {e}") from None
        except PybpfError as e:
            raise self.vm.error(pc, f"{what} {fid} failed: {e}") from None
        if r is None:
            return 0
        if not isinstance(r, int):
            raise self.vm.error(pc, f"{what} {fid} returned {type(r).__name__}, not an integer")
        return r & sem.M64

    def helper(self, hid: int, r1: int, r2: int, r3: int, r4: int, r5: int, pc: int, n: int) -> int:
        return self._call(self.vm.helpers, "helper", hid, (r1, r2, r3, r4, r5), pc, n)

    def kfunc(self, kid: int, r1: int, r2: int, r3: int, r4: int, r5: int, pc: int, n: int) -> int:
        return self._call(self.vm.kfuncs, "kfunc", kid, (r1, r2, r3, r4, r5), pc, n)

    def ld_packet(self, offset: int, size: int, pc: int, n: int) -> int:
        pkt = self.vm.packet
        if pkt is None:
            raise self.vm.error(pc, "LD_ABS/LD_IND needs a packet (none given to this run)")
        v = sem.packet_load(pkt.view, sem.s32(offset), size)
        if v is None:
            # Linux: an out-of-range classic load ends the program with 0.
            stop = StopProgram(0)
            stop.insns = n
            raise stop
        return v

    # faults ---------------------------------------------------------------
    def budget(self, pc: int) -> None:
        raise self.vm.error(pc, f"instruction budget of {self.limit} exceeded "
                                f"(runaway loop? raise it with max_insns)")

    def fell(self, pc: int) -> None:
        raise self.vm.error(pc, "execution fell off the end of the program "
                                "(last instruction is not exit or a jump)")

    def too_deep(self, pc: int) -> None:
        raise self.vm.error(pc, f"call stack overflow: more than {MAX_FRAMES} frames")

    def unresolved(self, pc: int) -> None:
        src = self.vm.insns[pc].src
        raise self.vm.error(pc, f"ld_imm64 with pseudo source {src} was not resolved "
                                f"(no map/BTF resolver given to the VM)")
