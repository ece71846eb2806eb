"""The Program API: loading from instructions, bytes or text, errors, lifetime, ids, privileges."""

from __future__ import annotations

import errno
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pybpf
from pybpf import kobj
from pybpf.isa import Insn, encode
from pybpf.isa import opcodes as op
from pybpf.map import Map
from pybpf.prog import Program, ProgLoadError, prog_tag, prog_type_number

MOV0 = Insn(0xB7, 0, 0, 0, 0)
EXIT = Insn(0x95, 0, 0, 0, 0)


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


@pytest.mark.parametrize("code", [[MOV0, EXIT], encode([MOV0, EXIT]), "r0 = 0\nexit\n",
                                  "mov %r0, 0\nexit\n"])
def test_load_forms(code):
    with Program.load(code, "socket_filter") as p:
        assert p.insns == [MOV0, EXIT] and p.xlated == [MOV0, EXIT]
        assert p.type == 1 and p.type_name == "socket_filter"


@pytest.mark.parametrize("name,num", [("xdp", 6), ("BPF_PROG_TYPE_XDP", 6), ("sched_cls", 3), ("tc", 3),
                                      ("kprobe", 2), ("socket", 1), (4, 4)])
def test_type_names(name, num):
    assert prog_type_number(name) == num


def test_unknown_type_name_is_clear():
    with pytest.raises(pybpf.errors.PybpfError, match="unknown program type 'xpd'"):
        Program.load([MOV0, EXIT], "xpd")


def test_error_carries_errno_log_and_index():
    code = [MOV0, Insn(0xB7, 1, 0, 0, 1), Insn(0x61, 0, 2, 0, 0), EXIT]     # r0 = *(u32 *)(r2 + 0)
    with pytest.raises(ProgLoadError) as ei:
        Program.load(code, "socket_filter")
    e = ei.value
    assert e.errno == errno.EACCES and e.index == 2 and "R2 !read_ok" in str(e)
    assert str(e).endswith("(insn 2)") and e.log == ""
    with pytest.raises(ProgLoadError) as ei:
        Program.load(code, "socket_filter", log_level=1)
    assert ei.value.log.splitlines()[-2] == "R2 !read_ok" and ei.value.index == 2


def test_error_is_an_oserror_too():
    with pytest.raises(OSError) as ei:
        Program.load([EXIT], 1)
    assert ei.value.errno == errno.EACCES


def test_log_size_enospc():
    with pytest.raises(ProgLoadError) as ei:
        Program.load([MOV0, EXIT], 1, log_level=2, log_size=16)
    assert ei.value.errno == errno.ENOSPC and ei.value.log_true_size > 16


def test_success_log_level1_is_stats_only():
    with Program.load([MOV0, EXIT], 1, log_level=1) as p:
        assert p.log.startswith("processed 2 insns")


def test_gpl_only_helper_needs_gpl():
    code = [Insn(0xBF, 1, 10, 0, 0), Insn(0x07, 1, 0, 0, -8), Insn(0xB7, 2, 0, 0, 8),
            Insn(0xB7, 3, 0, 0, 0), Insn(0x85, 0, 0, 0, 4), MOV0, EXIT]        # bpf_probe_read
    Program.load(code, "kprobe", license="GPL").close()
    with pytest.raises(ProgLoadError) as ei:
        Program.load(code, "kprobe", license="BSD")
    assert ei.value.errno == errno.EINVAL and "GPL-restricted" in str(ei.value)


def test_unprivileged():
    with pytest.raises(ProgLoadError) as ei:
        Program.load([MOV0, EXIT], "xdp", privileged=False)
    assert ei.value.errno == errno.EPERM
    Program.load([MOV0, EXIT], "socket_filter", privileged=False).close()
    with pytest.raises(ProgLoadError) as ei:
        Program.load([Insn(0xBF, 0, 10, 0, 0), EXIT], "socket_filter", privileged=False)
    assert ei.value.errno == errno.EACCES


@pytest.mark.parametrize("bad", ["x-y", "a" * 16, "a b", "a\n"])
def test_bad_names(bad):
    with pytest.raises(ProgLoadError) as ei:
        Program.load([MOV0, EXIT], 1, name=bad)
    assert ei.value.errno == errno.EINVAL


def test_maps_by_index_list_and_dict():
    a, b = Map.create("array", 4, 8, 1), Map.create("hash", 4, 4, 8)
    text = "r1 = map_idx(1) ll\nr2 = map_idx(0) ll\nr0 = 0\nexit"
    with Program.load(text, "xdp", maps=[a, b]) as p:
        assert p.map_ids == [b.id, a.id]                     # order of first use
    with Program.load(text, "xdp", maps={0: a.fd, 1: b}) as p:
        assert p.map_ids == [b.id, a.id]
    with pytest.raises(ProgLoadError, match="without gaps"):
        Program.load(text, "xdp", maps={1: b})
    with pytest.raises(ProgLoadError) as ei:
        Program.load(text, "xdp", maps=[a])
    assert ei.value.errno == errno.EFAULT
    a.close()
    b.close()


def test_close_frees_unpinned_program():
    p = Program.load([MOV0, EXIT], 1)
    pid = p.id
    assert any(h["id"] == pid for h in kobj.live_objects())
    p.close()
    kobj.gc()
    assert all(h["id"] != pid for h in kobj.live_objects())
    with pytest.raises(ValueError):
        p.fd


def test_from_fd_dup_and_from_id():
    with Program.load([MOV0, EXIT], 1, name="dupme") as p:
        with Program.from_fd(p.fd) as q:
            assert q.id == p.id and q.fd != p.fd and q.name == "dupme"
        os.fstat(p.fd)                          # the caller's fd is still open
        with Program.from_id(p.id) as r:
            assert r.tag == p.tag


def test_next_id_and_fd_by_id_commands():
    import ctypes
    import struct
    with Program.load([MOV0, EXIT], 1) as p:
        attr = bytearray(16)
        ids = []
        start = 0
        while True:
            struct.pack_into("<I", attr, 0, start)
            try:
                pybpf.bpf(11, attr)              # BPF_PROG_GET_NEXT_ID
            except OSError as e:
                assert e.errno == errno.ENOENT
                break
            start = struct.unpack_from("<I", attr, 4)[0]
            ids.append(start)
        assert p.id in ids
        attr = bytearray(16)
        struct.pack_into("<I", attr, 0, p.id)
        fd = pybpf.bpf(13, attr)                 # BPF_PROG_GET_FD_BY_ID
        assert kobj.obj_from_fd(fd).id == p.id
        os.close(fd)
        del ctypes


def test_subprograms_keep_their_facts():
    text = """
        call sub
        exit
    sub:
        r1 = 5
        *(u64 *)(r10 - 8) = r1
        r0 = *(u64 *)(r10 - 8)
        exit
    """
    p = Program.load(text, "socket_filter")
    with p:
        assert p.image.subprog_starts == [0, 2] and p.image.stack_depth[1] == 8


# tags: a general rule -- map fds never change the tag, anything else does

@settings(max_examples=60, deadline=None)
@given(fd1=st.integers(0, 2**31 - 1), fd2=st.integers(0, 2**31 - 1), off=st.integers(0, 2**31 - 1),
       imm=st.integers(-2**31, 2**31 - 1))
def test_tag_rule(fd1, fd2, off, imm):
    def prog(fd, src=op.PSEUDO_MAP_VALUE):
        return [Insn(op.LD_IMM64, 1, src, 0, fd), Insn(0, 0, 0, 0, off), Insn(0xB7, 0, 0, 0, imm), EXIT]
    assert prog_tag(prog(fd1)) == prog_tag(prog(fd2))
    assert prog_tag(prog(fd1, op.PSEUDO_MAP_FD)) == prog_tag(prog(fd2, op.PSEUDO_MAP_FD))
    changed = [*prog(fd1)[:2], Insn(0xB7, 0, 0, 0, imm ^ 1), EXIT]
    assert prog_tag(changed) != prog_tag(prog(fd1))
