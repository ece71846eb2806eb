"""The execution core: a program, the maps it uses, one invocation's state, tail calls.

``ExecProgram`` is all the runtime needs of a loaded program: its translated
instructions (context accesses already rewritten to the runtime layout, map
references by map id or fd), its type and its maps.  A ``Runtime`` owns the
memory programs run in (map storage registered once, contexts and packets
per run) and caches one VM per program; use one per thread (``runtime()``).

A map stays registered (mapped, its handle held) while a cached VM of some
program refers to it.  A program is gone when its ExecProgram is garbage, or,
for a loaded program, when this process no longer has its object (the last
fd was closed: ``Program.close()``); its VMs are then dropped and the maps no
remaining program uses are unregistered, so loading and closing programs
for ever does not grow the process.  This happens at the runtime's next
safe point (a new program or VM, ``release_unused()``), never mid-run.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from .. import kobj
from ..errors import PybpfError
from ..isa import Insn
from ..isa import opcodes as op
from ..vm import VM, Memory, Region
from ..vm.machine import DEFAULT_MAX_INSNS

MAX_TAIL_CALL_CNT = 33
MAX_CALLBACK_DEPTH = 8
_anon = __import__('itertools').count(1)
# LD_IMM64 of a subprogram (PSEUDO_FUNC) yields this tag + its instruction index: a value
# bpf_loop recognises and no registered memory can have (non-canonical address).
FUNC_TAG = 0xDEAD_0000_0000_0000
FUNC_MASK = 0xFFFF_0000_0000_0000


class RunError(PybpfError):
    """A program cannot be prepared or run (rejected by the verifier, unknown map...)."""


_libc = ctypes.CDLL(None, use_errno=True)
_sched_getcpu = getattr(_libc, "sched_getcpu", None)


def current_cpu() -> int:
    """The CPU this thread runs on (what bpf_get_smp_processor_id reports)."""
    if _sched_getcpu is not None:
        c = _sched_getcpu()
        if c >= 0:
            return c
    return 0


@dataclass
class MapRef:
    """A map as programs see it: handle, storage, and the pointer value that stands for it."""
    obj: Any
    impl: Any
    ptr: int
    map_type: int
    region: Region | None = None


@dataclass
class ExecProgram:
    insns: list[Insn]
    prog_type: int
    maps: dict = field(default_factory=dict)      # LD_IMM64 imm (map id or fd) -> kobj handle
    name: str = ""
    expected_attach_type: int = 0
    gpl: bool = True
    key: Any = None                               # identity for caches (object key)
    prog_id: int = 0

    @classmethod
    def from_object(cls, obj) -> "ExecProgram":
        """The program behind a prog object (what PROG_LOAD stored)."""
        from ..prog.image import held_maps, read_image
        image = read_image(obj)
        return cls(image.xlated, image.prog_type, held_maps(obj, image), image.name,
                   image.expected_attach_type, image.gpl_compatible, key=(obj.key, obj.id), prog_id=obj.id)

    @classmethod
    def of(cls, prog, prog_type: int | None = None) -> "ExecProgram":
        """An ExecProgram from a Program, a prog fd, an ExecProgram, or instructions (+ prog_type)."""
        if isinstance(prog, ExecProgram):
            return prog
        obj = getattr(prog, "_obj", None)
        if obj is not None and getattr(obj, "kind", None) == "prog":
            return runtime().program_of(obj)
        if isinstance(prog, int):
            return runtime().program_of(kobj.obj_from_fd(prog))
        if prog_type is None:
            raise RunError("instructions need a program type")
        from ..verifier import progtypes
        return cls.from_insns(prog, prog_type, verify=prog_type in progtypes.SUPPORTED)

    @classmethod
    def from_insns(cls, insns, prog_type: int, map_fds: dict | None = None, *, verify: bool = True,
                   license: str = "GPL", expected_attach_type: int = 0, name: str = "") -> "ExecProgram":
        """A program not loaded through bpf(): verified here (and its ctx accesses rewritten).

        ``map_fds``: the maps the LD_IMM64s name by fd: a list of Maps (or fds), or fd -> Map/fd.
        """
        from ..isa import decode
        if isinstance(insns, (bytes, bytearray, memoryview)):
            insns = decode(bytes(insns))
        insns = list(insns)
        maps = {}
        if map_fds is not None and not isinstance(map_fds, dict):
            map_fds = {(m if isinstance(m, int) else m.fd): m for m in map_fds}
        for fd, m in (map_fds or {}).items():
            real = m.fd if hasattr(m, "fd") and not isinstance(m, int) else m
            maps[int(fd)] = kobj.obj_from_fd(int(real))
        if verify:
            from ..verifier import MapInfo
            from ..verifier import verify as run_verifier
            from ..syscall.mapops import spec_of
            infos = {}
            for fd, o in maps.items():
                infos[fd] = MapInfo.from_spec(spec_of(o))
            res = run_verifier(insns, prog_type=prog_type, maps=infos, license=license, log_level=1,
                               expected_attach_type=expected_attach_type)
            if not res.ok:
                last = res.error or res.log.strip().splitlines()[-1:] or ["rejected"]
                raise RunError(f"verifier rejected the program ({os.strerror(res.errno)}): "
                                    f"{last if isinstance(last, str) else last[0]}")
            insns = res.insns_rewritten
        from ..verifier import is_gpl_compatible
        return cls(insns, prog_type, maps, name, expected_attach_type, is_gpl_compatible(license),
                   key=("insns", next(_anon)))


class RunState:
    """One invocation (and its tail calls): what helpers read and change."""

    def __init__(self, runtime: "Runtime", prog: ExecProgram) -> None:
        self.runtime = runtime
        self.prog = prog
        self.prog_type = prog.prog_type
        self.ctx: Region | None = None
        self.ctx_buf = None
        self.skb = None
        self.xdp = None
        self.packet = None          # PacketBuffer
        self.redirect: tuple[int, int] | None = None       # (ifindex, flags) of bpf_redirect
        self.clones: list[tuple[int, int, bytes]] = []     # bpf_clone_redirect: ifindex, flags, frame
        self.tail_calls = 0
        self.pending_tail: ExecProgram | None = None
        self.cpu = current_cpu()
        self.insns = 0
        self.sync_ctx = None        # callable: refresh the context after a packet change
        self.loop_depth = 0
        self.rng = runtime.rng
        self.vm: VM | None = None

    def packet_changed(self) -> None:
        if self.sync_ctx is not None:
            self.sync_ctx(self)
        if self.vm is not None and self.packet is not None:
            self.vm.packet = self.packet.data_region


class Runtime:
    def __init__(self) -> None:
        import random
        self.memory = Memory()
        self.maps_by_key: dict[Any, MapRef] = {}
        self.maps_by_ptr: dict[int, MapRef] = {}
        self._vms: dict[Any, VM] = {}
        self._programs: dict[Any, ExecProgram] = {}
        self._prog_objs: dict[Any, Any] = {}           # program key -> its kobj handle (loaded programs)
        self._map_users: dict[Any, set] = {}           # map key -> program keys whose VMs refer to it
        self._dead: list = []                          # program keys whose ExecProgram was collected
        self._watched: set = set()                     # ids of ExecPrograms with a finalizer
        self._running: Any = None                      # key of the program being run (inner maps)
        self.rng = random.Random(int.from_bytes(os.urandom(8), "little"))
        self.max_insns = DEFAULT_MAX_INSNS
        self.trace_to_pipe = True
        self._keys: dict[int, Region] = {}
        # argument blocks of callbacks (bpf_loop, bpf_for_each_map_elem), one per nesting level
        self._cb_args = (ctypes.c_uint64 * (5 * MAX_CALLBACK_DEPTH))()
        self.cb_args = self.memory.add_region("callback arguments", address=ctypes.addressof(self._cb_args),
                                              size=ctypes.sizeof(self._cb_args), keepalive=self._cb_args,
                                              writable=False)

    def key_scratch(self, size: int) -> Region:
        """A read-only region of ``size`` bytes holding the key a callback is given."""
        r = self._keys.get(size)
        if r is None:
            buf = (ctypes.c_char * max(size, 1))()
            r = self._keys[size] = self.memory.add_region(f"map key ({size} bytes)", address=ctypes.addressof(buf),
                                                          size=size, keepalive=buf, writable=False)
        return r

    def call_callback(self, state: "RunState", entry: int, *args: int) -> tuple[int, int]:
        """Run subprogram ``entry`` of state.prog with up to five arguments: (r0, insns)."""
        depth = state.loop_depth
        if depth >= MAX_CALLBACK_DEPTH:
            raise RunError(f"callbacks nested more than {MAX_CALLBACK_DEPTH} deep")
        vm = self.vm_for(state.prog, entry=(entry, depth))
        base = 5 * depth
        for i in range(5):
            self._cb_args[base + i] = (args[i] if i < len(args) else 0) & 0xFFFFFFFFFFFFFFFF
        prev = getattr(vm, "state", None)
        vm.state = state
        state.loop_depth += 1
        try:
            res = vm.run(r1=self.cb_args.base + 8 * base, packet=state.vm.packet if state.vm else None)
        finally:
            state.loop_depth -= 1
            vm.state = prev
        state.insns += res.insns_executed
        return res.r0, res.insns_executed

    # maps -------------------------------------------------------------------
    _PINNED = ("runtime",)       # user of maps registered outside any program: kept until close()

    def map_ref(self, obj, user: Any = None) -> MapRef:
        """The runtime's registration of a map, used by program ``user`` (default: the running one)."""
        mk = (obj.key, obj.id)
        if user is None:
            user = self._running if self._running is not None else self._PINNED
        self._map_users.setdefault(mk, set()).add(user)
        ref = self.maps_by_key.get(mk)
        if ref is not None and ref.obj.mm is not None:
            return ref
        if ref is not None:     # a stale registration (its handle was released under us)
            self._unregister(mk)
            self._map_users.setdefault(mk, set()).add(user)
        kobj.acquire(obj)
        impl = obj.map_impl()
        size = obj.size - kobj.HEADER_SIZE
        region = self.memory.add_region(f"map id {obj.id} ({obj.name or 'unnamed'})",
                                        address=obj.payload_addr, size=size, keepalive=obj)
        ref = MapRef(obj, impl, obj.payload_addr, impl.spec.map_type, region)
        self.maps_by_key[(obj.key, obj.id)] = ref
        self.maps_by_ptr[ref.ptr] = ref
        return ref

    def _unregister(self, mk) -> None:
        ref = self.maps_by_key.pop(mk, None)
        self._map_users.pop(mk, None)
        if ref is None:
            return
        if self.maps_by_ptr.get(ref.ptr) is ref:
            del self.maps_by_ptr[ref.ptr]
        try:
            self.memory.remove_region(ref.region)
        except KeyError:
            pass
        for fn in list(map_release_listeners):
            try:
                fn(ref.obj)
            except Exception:
                pass
        kobj.release(ref.obj)

    # releasing what closed programs used -------------------------------------------
    def _watch(self, prog: ExecProgram, key) -> None:
        """Learn when prog is garbage (its VMs and maps can go)."""
        if id(prog) in self._watched:
            return
        self._watched.add(id(prog))
        weakref.finalize(prog, _program_collected, self._dead, self._watched, id(prog), key)

    def release_unused(self) -> int:
        """Drop the VMs of programs that are gone and unregister the maps nothing uses any more.

        Returns how many maps were unregistered.  Called at every new program or VM, except
        while a program runs (a tail call or callback must not drop the VMs on the stack)."""
        if self._running is not None:
            return 0
        if self._prog_objs:
            kobj.sweep()                # handles of programs no fd refers to any more go now
        dead = set()
        while self._dead:
            dead.add(self._dead.pop())
        for key, obj in list(self._prog_objs.items()):
            if obj.mm is None:          # released: no fd of this process refers to the program
                dead.add(key)
        if not dead:
            return 0
        for key in dead:
            self._prog_objs.pop(key, None)
            self._programs.pop(key, None)
        for vk in [vk for vk in self._vms if vk[0] in dead]:
            self._vms.pop(vk).close()
        return self._release_maps()

    def _release_maps(self) -> int:
        live = {vk[0] for vk in self._vms}
        live.add(self._PINNED)
        if self._running is not None:
            live.add(self._running)
        n = 0
        for mk in list(self.maps_by_key):
            users = self._map_users.get(mk)
            if users is not None:
                users &= live
            if not users:
                self._unregister(mk)
                n += 1
        return n

    def map_at(self, ptr: int) -> MapRef:
        ref = self.maps_by_ptr.get(ptr)
        if ref is None:
            raise RunError(f"{ptr:#x} is not a map pointer")
        return ref

    # programs ---------------------------------------------------------------
    def program_of(self, obj) -> ExecProgram:
        key = (obj.key, obj.id)
        prog = self._programs.get(key)
        if prog is None or self._prog_objs.get(key) is not obj:
            self.release_unused()
            if len(self._programs) > 256:
                self._programs.clear()
            prog = self._programs[key] = ExecProgram.from_object(obj)
            self._prog_objs[key] = obj
        return prog

    def vm_for(self, prog: ExecProgram, entry: tuple | None = None) -> VM:
        """The VM of prog (cached); ``entry`` (pc, depth): a VM that starts by calling subprogram pc."""
        key = (prog.key if prog.key is not None else id(prog), entry)
        vm = self._vms.get(key)
        if vm is not None:
            return vm
        self.release_unused()
        self._watch(prog, key[0])
        from ..helpers import HELPERS
        pkey = key[0]
        prog_maps = prog.maps       # not prog: the VM must not keep the ExecProgram alive
        insns = prog.insns
        shift = 0
        if entry is not None:
            # A trampoline, then the program unchanged (jumps are relative): r1 points to the
            # callback's five arguments; load them and call the subprogram.
            ldx = op.LDX | op.MEM | op.DW
            tramp = [Insn(ldx, r, 1, 8 * (r - 1), 0) for r in (5, 4, 3, 2, 1)]
            shift = len(tramp) + 2
            tramp.append(Insn(op.JMP | op.CALL, 0, op.PSEUDO_CALL, 0, shift + entry[0] - len(tramp) - 1))
            tramp.append(Insn(op.OP_EXIT, 0, 0, 0, 0))
            insns = tramp + list(insns)

        def resolve(pc: int, src: int, value: int) -> int:
            lo = value & 0xFFFFFFFF
            if src == op.PSEUDO_FUNC:
                return FUNC_TAG | (pc - shift + lo + 1)
            if src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE):
                obj = prog_maps.get(lo)
                if obj is None:
                    raise RunError(f"program refers to map {lo}, which it does not hold")
                ref = self.map_ref(obj, pkey)
                if src == op.PSEUDO_MAP_FD:
                    return ref.ptr
                addr = ref.impl.value_address(b"\0\0\0\0")
                if addr is None:
                    raise RunError(f"map {lo} has no direct value access")
                return addr + (value >> 32)
            raise RunError(f"LD_IMM64 pseudo source {src} is not supported by the runtime")

        vm = VM(insns, helpers=HELPERS, memory=self.memory, max_insns=self.max_insns, ldimm64=resolve)
        self._vms[key] = vm
        if len(self._vms) > 256:
            for k in list(self._vms)[:64]:
                self._vms.pop(k).close()
            if self._running is None:
                self._release_maps()
        return vm

    # trace pipe -------------------------------------------------------------
    def trace(self, line: str) -> None:
        """A bpf_trace_printk line: to the shared trace pipe and to this process's listeners."""
        from ..helpers import trace as tp
        for fn in list(trace_listeners):
            fn(line)
        if self.trace_to_pipe and trace_pipe_enabled:
            tp.append(line)

    # running ----------------------------------------------------------------
    def invoke(self, state: RunState, r1: int | None = None) -> int:
        """Run state.prog on state.ctx (and any tail calls it makes); the final r0."""
        prog = state.prog
        while True:
            vm = self.vm_for(prog)
            prev_state = getattr(vm, "state", None)
            vm.state = state
            state.vm = vm
            state.pending_tail = None
            pkt = state.packet.data_region if state.packet is not None else None
            prev_running, self._running = self._running, (prog.key if prog.key is not None else id(prog))
            try:
                res = vm.run(ctx=state.ctx, packet=pkt, r1=r1)
            finally:
                vm.state = prev_state
                self._running = prev_running
            state.insns += res.insns_executed
            nxt = state.pending_tail
            if nxt is None:
                return res.r0
            prog = nxt

    def close(self) -> None:
        for vm in self._vms.values():
            vm.close()
        self._vms.clear()
        for mk in list(self.maps_by_key):
            self._unregister(mk)
        self.maps_by_key.clear()
        self.maps_by_ptr.clear()
        self._map_users.clear()
        self._programs.clear()
        self._prog_objs.clear()


def _program_collected(dead: list, watched: set, ident: int, key) -> None:
    # may run in any thread: only record it; the runtime's own thread does the work
    watched.discard(ident)
    dead.append(key)


# Callables given each map handle the runtime unregisters (helpers drop their caches of it).
map_release_listeners: list = []
# Callables given every trace_printk line of this process (tests, `pybpf run`).
trace_listeners: list = []
# False: trace_printk lines go to the listeners only, not to the shared trace pipe.
trace_pipe_enabled = True

_local = threading.local()


def runtime() -> Runtime:
    """This thread's runtime."""
    rt = getattr(_local, "rt", None)
    if rt is None:
        rt = _local.rt = Runtime()
    return rt
