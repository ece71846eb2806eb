"""Running one program through BPF_PROG_TEST_RUN in the host kernel and in pybpf."""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from kernel_oracle import kernel_prog_load, sys_bpf

import pybpf.runtime  # noqa: F401  (registers PROG_TEST_RUN)
from pybpf.isa import encode
from pybpf.prog import Program
from pybpf.runtime.testrun import TestRunAttr
from pybpf.syscall import bpf


@dataclass
class Outcome:
    err: int
    retval: int
    data: bytes
    ctx: bytes | None
    data_size_out: int
    ctx_size_out: int

    def same(self, other: "Outcome") -> bool:
        return (self.err, self.retval, self.data, self.ctx, self.data_size_out, self.ctx_size_out) == \
            (other.err, other.retval, other.data, other.ctx, other.data_size_out, other.ctx_size_out)


def _attr(fd, data, ctx, data_cap, ctx_cap, repeat, flags):
    keep = []

    def buf(b, n=None):
        c = (ctypes.c_char * max(1, n if n is not None else len(b)))()
        if b:
            ctypes.memmove(c, b, len(b))
        keep.append(c)
        return ctypes.addressof(c)
    a = TestRunAttr(prog_fd=fd, repeat=repeat, flags=flags)
    if data is not None:
        a.data_in, a.data_size_in = (buf(data) if data else 0), len(data)
    if data_cap is not None:
        a.data_out, a.data_size_out = buf(b"", data_cap), data_cap
    if ctx is not None:
        a.ctx_in, a.ctx_size_in = buf(ctx), len(ctx)
    if ctx_cap is not None:
        a.ctx_out, a.ctx_size_out = buf(b"", ctx_cap), ctx_cap
    return a, keep


def _outcome(a, keep, err, data_cap, ctx_cap) -> Outcome:
    data = b""
    if data_cap is not None:
        data = ctypes.string_at(a.data_out, min(a.data_size_out, data_cap))
    ctx = None
    if ctx_cap is not None and not err:
        ctx = ctypes.string_at(a.ctx_out, min(a.ctx_size_out or ctx_cap, ctx_cap))
    return Outcome(err, a.retval, data, ctx, a.data_size_out, a.ctx_size_out)


def kernel_run(fd, data, ctx=None, data_cap=4096, ctx_cap=None, repeat=1, flags=0) -> Outcome:
    a, keep = _attr(fd, data, ctx, data_cap, ctx_cap, repeat, flags)
    raw = (ctypes.c_char * ctypes.sizeof(a)).from_buffer(a)
    ret, err = sys_bpf(10, raw)
    return _outcome(a, keep, err, data_cap, ctx_cap)


def pybpf_run(fd, data, ctx=None, data_cap=4096, ctx_cap=None, repeat=1, flags=0) -> Outcome:
    a, keep = _attr(fd, data, ctx, data_cap, ctx_cap, repeat, flags)
    try:
        bpf(10, a)
        err = 0
    except OSError as e:
        err = e.errno
    return _outcome(a, keep, err, data_cap, ctx_cap)


class Pair:
    """One program loaded in the kernel and in pybpf."""

    def __init__(self, insns, prog_type: int, expected_attach_type: int = 0, *, kernel_insns=None,
                 maps=None):
        code = encode(kernel_insns if kernel_insns is not None else insns)
        fd, err, log = kernel_prog_load(code, prog_type, log_level=1,
                                        expected_attach_type=expected_attach_type)
        assert fd >= 0, f"kernel rejected the program: {os.strerror(err)}\n{log}"
        self.kfd = fd
        self.prog = Program.load(insns, prog_type, expected_attach_type=expected_attach_type,
                                 maps=maps)

    def run(self, data, **kw) -> tuple[Outcome, Outcome]:
        return kernel_run(self.kfd, data, **kw), pybpf_run(self.prog.fd, data, **kw)

    def close(self):
        os.close(self.kfd)
        self.prog.close()
