"""A corpus case's maps created in the host kernel, for the differential verifier tests."""

from __future__ import annotations

import os
from contextlib import contextmanager

import pytest

from kernel_oracle import kernel_map_create
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn


@contextmanager
def kernel_maps(case, insns):
    """Create the case's maps (inner map templates too) in the kernel and yield ``insns`` with
    their map references patched to the kernel's fds; every fd is closed afterwards.  A map the
    kernel cannot create skips the test."""
    fds = {}
    try:
        for fd, mi in case.maps.items():
            inner_fd = 0
            if mi.inner is not None:
                i = mi.inner
                inner_fd, err = kernel_map_create(i.map_type, i.key_size, i.value_size, i.max_entries, i.flags)
                if inner_fd < 0:
                    pytest.skip(f"kernel cannot create inner map {i}: errno {err}")
                fds[-fd] = inner_fd     # closed with the others; only the outer map is referenced
            kfd, err = kernel_map_create(mi.map_type, mi.key_size, mi.value_size, mi.max_entries, mi.flags,
                                         inner_fd)
            if kfd < 0:
                pytest.skip(f"kernel cannot create map {mi}: errno {err}")
            fds[fd] = kfd
        yield [Insn(i.code, i.dst, i.src, i.off, fds[i.imm])
               if i.code == op.LD_IMM64 and i.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE) and i.imm in fds
               else i for i in insns]
    finally:
        for kfd in fds.values():
            os.close(kfd)
