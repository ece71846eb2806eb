"""Kprobe-like events on Python functions: a KPROBE program runs on entry (or return) of a function.

    probe = attach_kprobe("mypkg.server:handle", prog)      # or the function object
    ...                                                      # calls of handle() run prog
    probe.detach()

The program's ``struct pt_regs`` holds the arguments in di, si, dx, cx, r8, r9
(x86-64 calling convention); a return probe also gets the return value in ax.
Integers (and bools) are passed as they are; bytes, bytearray and str as the
address of a read-only copy (str UTF-8 and NUL-terminated) the program can
``bpf_probe_read_user(_str)`` for the duration of the event; None as 0; floats
as their IEEE bits; anything else as its id().

Two ways to hook (``mode``): ``"wrap"`` (default) replaces the function where
it is defined (module attribute or class attribute) with a thin wrapper —
cheap, but references taken before attaching keep calling the original;
``"profile"`` uses sys.setprofile/threading.setprofile and sees every call of
the code object however it is reached, at the cost of slowing the whole
process while attached.
"""

from __future__ import annotations

import ctypes
import functools
import importlib
import inspect
import struct
import sys
import threading

from ..runtime.contexts import pt_regs
from ..runtime.core import runtime
from ..runtime.execute import run_raw
from ..verifier.progtypes import KPROBE
from .attach import Attachments, EventError, as_exec

M64 = 0xFFFFFFFFFFFFFFFF


def _resolve(target):
    """(owner, attribute name, function) for a function object or "module:qualname" string."""
    if isinstance(target, str):
        mod_name, _, qual = target.partition(":")
        if not qual:
            mod_name, _, qual = target.rpartition(".")
        try:
            owner = importlib.import_module(mod_name)
        except ImportError as e:
            raise EventError(f"kprobe target {target!r}: cannot import {mod_name!r}: {e}") from None
        parts = qual.split(".")
        for p in parts[:-1]:
            owner = getattr(owner, p, None)
            if owner is None:
                raise EventError(f"kprobe target {target!r}: no {p!r}")
        fn = getattr(owner, parts[-1], None)
        if fn is None:
            raise EventError(f"kprobe target {target!r}: no {parts[-1]!r} in {mod_name}")
        return owner, parts[-1], fn
    fn = target
    if not callable(fn):
        raise EventError(f"kprobe target {fn!r} is not callable")
    raw = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    mod = sys.modules.get(getattr(raw, "__module__", None) or "")
    owner, name = mod, getattr(raw, "__name__", None)
    qual = getattr(raw, "__qualname__", "") or ""
    if mod is not None and "." in qual and "<locals>" not in qual:
        owner = mod
        for p in qual.split(".")[:-1]:
            owner = getattr(owner, p, None)
            if owner is None:
                break
    return owner, name, fn


class _ArgMemory:
    """Registered copies of bytes/str arguments, alive for one event."""

    def __init__(self) -> None:
        self.memory = runtime().memory
        self.regions = []

    def value(self, v) -> int:
        if isinstance(v, bool):
            return int(v)
        if isinstance(v, int):
            return v & M64
        if v is None:
            return 0
        if isinstance(v, float):
            return struct.unpack("<Q", struct.pack("<d", v))[0]
        if isinstance(v, str):
            v = v.encode("utf-8", "surrogateescape") + b"\0"
        if isinstance(v, (bytes, bytearray, memoryview)):
            data = bytes(v)
            buf = (ctypes.c_char * max(1, len(data))).from_buffer_copy(data.ljust(1, b"\0"))
            r = self.memory.add_region(f"kprobe argument ({len(data)} bytes)", address=ctypes.addressof(buf),
                                       size=len(data), keepalive=buf, writable=False)
            self.regions.append(r)
            return r.base if len(data) else 0
        return id(v) & M64

    def close(self) -> None:
        for r in self.regions:
            try:
                self.memory.remove_region(r)
            except KeyError:
                pass


class Kprobe:
    def __init__(self, target, *, retprobe: bool = False, mode: str = "wrap") -> None:
        if mode not in ("wrap", "profile"):
            raise EventError(f"kprobe mode must be 'wrap' or 'profile', not {mode!r}")
        self.owner, self.attr, self.func = _resolve(target)
        self.retprobe = retprobe
        self.mode = mode
        self.name = getattr(self.func, "__qualname__", repr(self.func))
        self.attached = Attachments(f"{'kretprobe' if retprobe else 'kprobe'} {self.name}")
        self.active = False
        self._code = getattr(inspect.unwrap(self.func), "__code__", None)
        self._sig = None
        try:
            self._sig = inspect.signature(self.func)
        except (TypeError, ValueError):
            pass

    # -- firing ----------------------------------------------------------------
    def _fire(self, args, ret=None) -> None:
        if not self.attached.progs:
            return
        mem = _ArgMemory()
        try:
            vals = [mem.value(a) for a in args[:6]]
            regs = {"ip": id(self._code or self.func) & M64}
            if self.retprobe:
                regs["ax"] = mem.value(ret)
            image = pt_regs(regs, vals)
            self.attached.run(lambda p: run_raw(p, image, name="pt_regs"))
        finally:
            mem.close()

    def _bound(self, args, kwargs):
        if not kwargs or self._sig is None:
            return list(args)
        try:
            b = self._sig.bind(*args, **kwargs)
        except TypeError:
            return list(args)
        return list(b.args) + [v for k, v in b.kwargs.items()]

    # -- hooking ---------------------------------------------------------------
    def _install(self) -> None:
        if self.mode == "wrap":
            if self.owner is None or self.attr is None or getattr(self.owner, self.attr, None) is not self.func:
                raise EventError(f"cannot hook {self.name}: it is not reachable as an attribute of its "
                                 f"module or class (use mode='profile')")
            probe = self
            orig = self.func

            @functools.wraps(orig)
            def wrapper(*args, **kwargs):
                if not probe.retprobe:
                    probe._fire(probe._bound(args, kwargs))
                    return orig(*args, **kwargs)
                ret = orig(*args, **kwargs)
                probe._fire(probe._bound(args, kwargs), ret)
                return ret
            wrapper.__pybpf_kprobe__ = self
            self._wrapper = wrapper
            raw = inspect.getattr_static(self.owner, self.attr)
            if isinstance(raw, staticmethod):
                wrapper = staticmethod(wrapper)
            elif isinstance(raw, classmethod):
                raise EventError(f"cannot wrap classmethod {self.name}; use mode='profile'")
            self._raw = raw
            setattr(self.owner, self.attr, wrapper)
        else:
            if self._code is None:
                raise EventError(f"{self.name} has no Python code to profile")
            _Profiler.add(self)
        self.active = True

    def _uninstall(self) -> None:
        if not self.active:
            return
        if self.mode == "wrap":
            setattr(self.owner, self.attr, self._raw)
        else:
            _Profiler.remove(self)
        self.active = False

    def attach(self, prog):
        ep = as_exec(prog, KPROBE)
        if ep.prog_type != KPROBE:
            raise EventError(f"kprobes take KPROBE programs (type 2), not type {ep.prog_type}")
        self.attached.add(ep)
        if not self.active:
            self._install()
        return ep

    def detach(self, prog=None) -> None:
        """Detach one program, or all of them (and unhook) when prog is None."""
        if prog is None:
            self.attached.progs = []
        else:
            self.attached.remove(prog)
        if not self.attached.progs:
            self._uninstall()

    @property
    def errors(self) -> list[str]:
        return self.attached.errors

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()


class _Profiler:
    """One process-wide profile hook serving every probe in "profile" mode."""
    probes: dict = {}
    lock = threading.Lock()
    prev = None

    @classmethod
    def add(cls, probe: Kprobe) -> None:
        with cls.lock:
            first = not cls.probes
            cls.probes.setdefault(probe._code, []).append(probe)
            if first:
                cls.prev = sys.getprofile()
                sys.setprofile(cls.hook)
                threading.setprofile(cls.hook)

    @classmethod
    def remove(cls, probe: Kprobe) -> None:
        with cls.lock:
            lst = cls.probes.get(probe._code, [])
            if probe in lst:
                lst.remove(probe)
            if not lst:
                cls.probes.pop(probe._code, None)
            if not cls.probes:
                sys.setprofile(cls.prev)
                threading.setprofile(cls.prev)

    @staticmethod
    def hook(frame, event, arg):
        if event not in ("call", "return"):
            return
        probes = _Profiler.probes.get(frame.f_code)
        if not probes:
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        args = [frame.f_locals.get(n) for n in names]
        for p in list(probes):
            if (event == "call") != p.retprobe:
                p._fire(args, arg if event == "return" else None)


def attach_kprobe(target, prog, *, mode: str = "wrap") -> Kprobe:
    """Run ``prog`` (a KPROBE program) on entry of ``target``."""
    k = Kprobe(target, mode=mode)
    k.attach(prog)
    return k


def attach_kretprobe(target, prog, *, mode: str = "wrap") -> Kprobe:
    """Run ``prog`` on return from ``target`` (pt_regs ax = the return value)."""
    k = Kprobe(target, retprobe=True, mode=mode)
    k.attach(prog)
    return k
