"""The same BPF_PROG_LOAD attempts against pybpf.bpf() and the host kernel's bpf(2): same errnos,
same log buffer behaviour (ENOSPC, truncation, log_true_size), same tag."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

from kernel_oracle import kernel_available, kernel_map_create, sys_bpf
from pybpf.isa import Insn, encode, ldimm64
from pybpf.isa import opcodes as op
from pybpf.map import Map
from pybpf.prog import Program
from test_prog_load import BAD, EXIT, MOV0, OK, Attempt, get_info

pytestmark = [pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available"),
              pytest.mark.usefixtures("bpffs")]   # a fresh BPF fs root per test (conftest)

E = errno.errorcode.get


def both(**kw) -> tuple[tuple[int, int], tuple[int, int], Attempt, Attempt]:
    p, k = Attempt(**kw), Attempt(**kw)
    rp, rk = p.pybpf(), k.kernel()
    for fd in (rp[0], rk[0]):
        if fd >= 0:
            os.close(fd)
    return rp, rk, p, k


CASES = {
    "ok": {},
    "insn_cnt 0": {"insn_cnt": 0},
    "insn_cnt 0 and NULL insns": {"insn_cnt": 0, "insns_ptr": 0},
    "insn_cnt over 1M": {"insn_cnt": 1_000_001},
    "unknown type": {"prog_type": 999},
    "type 0": {"prog_type": 0},
    "NULL license": {"license_ptr": 0},
    "bad license pointer": {"license_ptr": 8},
    "bad insns pointer": {"insns_ptr": 8},
    "log_level past mask": {"log_level": 16, "log_size": 1000},
    "buffer without level": {"log_level": 0, "log_size": 1000},
    "log_size too large": {"log_level": 1, "log_size": 1 << 30},
    "log_size without buffer": {"log_level": 1, "log_size": 100, "log_buf": False},
    "level without buffer": {"log_level": 1},
    "bad log_buf pointer": {"code": BAD, "log_level": 1, "log_size": 100, "fields": {32: struct.pack("<Q", 8)}},
    "name with dash": {"name": b"a-b"},
    "name without NUL": {"name": b"a" * 16},
    "name ok": {"name": b"a.b_9"},
    "unknown prog_flags": {"fields": {44: struct.pack("<I", 1 << 8)}},
    "sleepable socket filter": {"fields": {44: struct.pack("<I", 1 << 4)}},
    "prog_ifindex": {"fields": {64: b"\x05"}},
    "attach_btf_id": {"fields": {108: b"\x05"}},
    "attach_prog_fd bad": {"fields": {112: struct.pack("<I", 999)}},
    "func_info with closed btf fd": {"fields": {88: b"\x01", 72: struct.pack("<I", 999)}},
    "func_info with fd 0": {"fields": {88: b"\x01"}},
    "fd_array_cnt with NULL array": {"fields": {148: b"\x05"}},
    "token flag, closed fd": {"fields": {44: struct.pack("<I", 1 << 16), 144: struct.pack("<i", 999)}},
    "kern_version": {"fields": {40: b"\x05"}},
    "byte past union": {"size": 200, "fields": {170: b"\x01"}},
    "unsafe program": {"code": BAD},
    "unknown opcode": {"code": encode([Insn(0xFF, 0, 0, 0, 0), MOV0, EXIT])},
    "no exit": {"code": encode([MOV0])},
    "unknown helper": {"code": encode([Insn(0x85, 0, 0, 0, 9999), MOV0, EXIT])},
    "bad map fd": {"code": encode([*ldimm64(1, 999, 1), MOV0, EXIT])},
    "fd 0 is not a map": {"code": encode([*ldimm64(1, 0, 1), MOV0, EXIT])},
    "map_idx without fd_array": {"code": encode([*ldimm64(1, 0, op.PSEUDO_MAP_IDX), MOV0, EXIT])},
}


@pytest.mark.parametrize("name", list(CASES))
def test_same_errno(name):
    rp, rk, _, _ = both(**CASES[name])
    assert E(rp[1]) == E(rk[1]), name


LOG_CASES = {
    "full log of a failure": {"code": BAD, "log_level": 1, "log_size": 4096},
    "rotating truncation": {"code": BAD, "log_level": 1, "log_size": 20},
    "fixed truncation": {"code": BAD, "log_level": 9, "log_size": 20},
    "one byte too small": {"code": BAD, "log_level": 1, "log_size": 143 - 1},
    "exact fit": {"code": BAD, "log_level": 1, "log_size": 143},
    "tiny buffer": {"code": BAD, "log_level": 1, "log_size": 1},
    "success, level 1": {"code": OK, "log_level": 1, "log_size": 4096},
    "success, level 1, small": {"code": OK, "log_level": 1, "log_size": 10},
    "bad map fd log": {"code": encode([*ldimm64(1, 999, 1), MOV0, EXIT]), "log_level": 1, "log_size": 4096},
    "no exit log": {"code": encode([MOV0]), "log_level": 1, "log_size": 4096},
}


@pytest.mark.parametrize("name", list(LOG_CASES))
def test_same_log_buffer(name):
    rp, rk, p, k = both(**LOG_CASES[name])
    assert E(rp[1]) == E(rk[1])
    assert p.log == k.log
    assert p.log_true_size == k.log_true_size


def test_log_true_size_without_buffer():
    rp, rk, p, k = both(code=BAD, log_level=1)
    assert rp[1] == rk[1] == errno.EACCES
    assert p.log_true_size == k.log_true_size > 0


@pytest.mark.parametrize("kind", ["closed", "pipe"])
def test_bad_map_fds(kind):
    r, w = os.pipe()
    if kind == "closed":
        os.close(r)
    fd = r if kind == "closed" else w
    code = encode([*ldimm64(1, fd, 1), MOV0, EXIT])
    rp, rk, p, k = both(code=code)
    assert E(rp[1]) == E(rk[1]) == ("EBADF" if kind == "closed" else "EINVAL")
    os.close(w)
    if kind != "closed":
        os.close(r)


def _pair_maps(map_type, key, value, entries):
    kfd, err = kernel_map_create(map_type, key, value, entries)
    assert err == 0
    return Map.create(map_type, key, value, entries), kfd


@pytest.mark.parametrize("map_type,off", [(2, 0), (2, 7), (2, 8), (2, 100), (1, 0)])
def test_map_value_references(map_type, off):
    m, kfd = _pair_maps(map_type, 4, 8, 1 if map_type == 2 else 4)
    try:
        def code(fd):
            return encode([Insn(op.LD_IMM64, 1, op.PSEUDO_MAP_VALUE, 0, fd), Insn(0, 0, 0, 0, off),
                           MOV0, EXIT])
        rp = Attempt(code=code(m.fd)).pybpf()
        rk = Attempt(code=code(kfd)).kernel()
        for fd in (rp[0], rk[0]):
            if fd >= 0:
                os.close(fd)
        assert E(rp[1]) == E(rk[1])
    finally:
        m.close()
        os.close(kfd)


def test_fd_array_cases():
    m, kfd = _pair_maps(2, 4, 8, 1)
    r, w = os.pipe()
    try:
        for mk in (lambda fd: {"fd_array": [fd], "fd_array_cnt": 1},
                   lambda fd: {"fd_array": [fd, r], "fd_array_cnt": 2},
                   lambda fd: {"fd_array": [fd, 999], "fd_array_cnt": 2},
                   lambda fd: {"code": encode([*ldimm64(1, 1, op.PSEUDO_MAP_IDX), MOV0, EXIT]),
                               "fd_array": [999, fd]},
                   lambda fd: {"code": encode([*ldimm64(1, 0, op.PSEUDO_MAP_IDX), MOV0, EXIT]),
                               "fd_array": [999, fd]}):
            rp = Attempt(**mk(m.fd)).pybpf()
            rk = Attempt(**mk(kfd)).kernel()
            for fd in (rp[0], rk[0]):
                if fd >= 0:
                    os.close(fd)
            assert E(rp[1]) == E(rk[1]), mk(0)
    finally:
        m.close()
        os.close(kfd)
        os.close(r)
        os.close(w)


GPL_ONLY = {
    "trace_printk": [Insn(0xB7, 1, 0, 0, 0), Insn(0xB7, 2, 0, 0, 0), Insn(0x85, 0, 0, 0, 6), MOV0, EXIT],
    "probe_read": [Insn(0xBF, 1, 10, 0, 0), Insn(0x07, 1, 0, 0, -8), Insn(0xB7, 2, 0, 0, 8),
                   Insn(0xB7, 3, 0, 0, 0), Insn(0x85, 0, 0, 0, 4), MOV0, EXIT],
}


@pytest.mark.parametrize("helper", list(GPL_ONLY))
@pytest.mark.parametrize("license", [b"GPL", b"Dual BSD/GPL", b"MIT", b"Proprietary", b"gpl"])
def test_gpl_only_helpers(helper, license):
    rp, rk, p, k = both(code=encode(GPL_ONLY[helper]), prog_type=2, license=license,
                        log_level=1, log_size=4096)
    assert E(rp[1]) == E(rk[1])
    if rk[1]:
        assert p.log.split(b"\n")[-3:] == k.log.split(b"\n")[-3:]


def test_insn_count_limit_boundary():
    big = encode([MOV0] * 999_999 + [EXIT])
    rp, rk, _, _ = both(code=big, insn_cnt=1_000_001 - 1 + 1)
    assert E(rp[1]) == E(rk[1]) == "E2BIG"


def _kernel_tag(code: bytes, prog_type: int = 1) -> tuple[bytes, int, int]:
    a = Attempt(code=code, prog_type=prog_type)
    fd, err = a.kernel()
    assert err == 0
    info = bytearray(232)
    cb = (ctypes.c_char * 232).from_buffer(info)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, fd, 232, ctypes.addressof(cb))
    assert sys_bpf(15, attr)[0] == 0
    os.close(fd)
    xlated_len, = struct.unpack_from("<I", info, 20)
    nr_maps, = struct.unpack_from("<I", info, 52)
    return bytes(info[8:16]), xlated_len, nr_maps


@pytest.mark.parametrize("prog", ["plain", "map fd", "map value", "imm64"])
def test_tag_and_info_match_kernel(prog):
    m, kfd = _pair_maps(2, 4, 8, 1)
    try:
        def code(fd):
            if prog == "plain":
                return [Insn(0xB7, 0, 0, 0, 3), Insn(0x07, 0, 0, 0, 4), EXIT]
            if prog == "map fd":
                return [*ldimm64(1, fd, op.PSEUDO_MAP_FD), MOV0, EXIT]
            if prog == "map value":
                return [Insn(op.LD_IMM64, 1, op.PSEUDO_MAP_VALUE, 0, fd), Insn(0, 0, 0, 0, 4), MOV0, EXIT]
            return [*ldimm64(0, 0x1122334455667788, 0), Insn(0xB7, 0, 0, 0, 1), EXIT]
        ktag, kxl, knr = _kernel_tag(encode(code(kfd)))
        p = Program.load(code(m.fd), "socket_filter")
        info, _, _, _ = get_info(p.fd)
        assert bytes(info.tag) == ktag
        assert info.xlated_prog_len == kxl and info.nr_map_ids == knr
        p.close()
    finally:
        m.close()
        os.close(kfd)


# the log buffer rules, for any buffer size: a general rule checked against the kernel

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=80, deadline=None)
@given(size=st.integers(1, 400), fixed=st.booleans(), good=st.booleans(),
       attr_size=st.sampled_from([140, 144, 168]))
def test_log_buffer_rule(size, fixed, good, attr_size):
    rp, rk, p, k = both(code=OK if good else BAD, log_level=1 | (8 if fixed else 0), log_size=size,
                        size=attr_size)
    assert E(rp[1]) == E(rk[1])
    assert p.log == k.log
    assert p.log_true_size == k.log_true_size


def test_early_failures_log_like_the_kernel():
    """Failures bpf_check() reports before verifying: fd_array, sleepable, BTF info, too many maps."""
    m, kfd = _pair_maps(2, 4, 8, 1)
    r, w = os.pipe()
    many_k = [kernel_map_create(2, 4, 8, 1)[0] for _ in range(65)]
    many_p = [Map.create(2, 4, 8, 1) for _ in range(65)]

    def many(fds):
        insns = []
        for f in fds:
            insns += ldimm64(1, f, op.PSEUDO_MAP_FD)
        return encode(insns + [MOV0, EXIT])
    log = {"log_level": 1, "log_size": 8192}
    cases = [
        (lambda fd: {"fd_array": [fd, r], "fd_array_cnt": 2}, None),
        (lambda fd: {"fd_array": [fd, 999], "fd_array_cnt": 2}, None),
        (lambda fd: {"fields": {44: struct.pack("<I", 1 << 4)}}, None),
        (lambda fd: {"fields": {88: b"\x01"}}, None),
        (lambda fd: {"code": many([x.fd for x in many_p])}, lambda fd: {"code": many(many_k)}),
    ]
    try:
        for mk_p, mk_k in cases:
            p, k = Attempt(**mk_p(m.fd), **log), Attempt(**(mk_k or mk_p)(kfd), **log)
            rp, rk = p.pybpf(), k.kernel()
            for fd in (rp[0], rk[0]):
                if fd >= 0:
                    os.close(fd)
            assert E(rp[1]) == E(rk[1])
            assert p.log == k.log and p.log_true_size == k.log_true_size
    finally:
        for x in many_p:
            x.close()
        for f in many_k + [kfd, r, w]:
            os.close(f)
        m.close()


@pytest.mark.slow
def test_processed_insn_limit_is_e2big():
    """1 000 000 processed instructions: E2BIG with the kernel's message, from both."""
    from pybpf.asm import assemble
    code = encode(assemble("r1 = 0\nloop:\nr1 += 1\nif r1 < 600000 goto loop\nr0 = 0\nexit\n"))
    rp, rk, p, k = both(code=code, log_level=4, log_size=1 << 16)
    assert E(rp[1]) == E(rk[1]) == "E2BIG"
    assert b"BPF program is too large. Processed 1000001 insn" in p.log
