"""BPF_PROG_LOAD through pybpf.bpf(): attrs, errnos decided around the verifier, the log buffer,
map fds, holds, pins, and OBJ_GET_INFO_BY_FD for programs."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

import pybpf
import pybpf.prog  # noqa: F401  (registers BPF_PROG_LOAD)
from pybpf import kobj
from pybpf.isa import Insn, encode, ldimm64
from pybpf.isa import opcodes as op
from pybpf.map import Map
from pybpf.prog import Program, ProgLoadError, prog_tag, privileges, read_image

PROG_LOAD = 5
GET_INFO = 15
MOV0 = Insn(0xB7, 0, 0, 0, 0)
EXIT = Insn(0x95, 0, 0, 0, 0)
OK = encode([MOV0, EXIT])
BAD = encode([EXIT])                       # R0 !read_ok: EACCES


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


class Attempt:
    """One BPF_PROG_LOAD attr, with the buffers it points to; runs on pybpf or on the kernel."""

    def __init__(self, code: bytes = OK, prog_type: int = 1, license: bytes = b"GPL", log_level: int = 0,
                 log_size: int = 0, log_buf: bool = True, size: int = 168, name: bytes = b"",
                 insn_cnt: int | None = None, insns_ptr: int | None = None,
                 license_ptr: int | None = None, fields: dict | None = None,
                 fd_array: list[int] | None = None, fd_array_cnt: int = 0):
        self.insns = ctypes.create_string_buffer(bytes(code), max(len(code), 1))
        self.lic = ctypes.create_string_buffer(license + b"\0")
        self.logb = ctypes.create_string_buffer(max(log_size, 1))
        self.fds = (ctypes.c_int32 * max(len(fd_array or []), 1))(*(fd_array or []))
        self.size = size
        a = self.attr = bytearray(max(size, 168))
        struct.pack_into("<IIQQIIQ", a, 0, prog_type, len(code) // 8 if insn_cnt is None else insn_cnt,
                         ctypes.addressof(self.insns) if insns_ptr is None else insns_ptr,
                         ctypes.addressof(self.lic) if license_ptr is None else license_ptr,
                         log_level, log_size, ctypes.addressof(self.logb) if log_buf and log_size else 0)
        a[48:48 + len(name)] = name
        if fd_array is not None:
            struct.pack_into("<Q", a, 120, ctypes.addressof(self.fds))
            struct.pack_into("<I", a, 148, fd_array_cnt)
        for off, v in (fields or {}).items():
            a[off:off + len(v)] = v

    def pybpf(self) -> tuple[int, int]:
        try:
            return pybpf.bpf(PROG_LOAD, self.attr, self.size), 0
        except OSError as e:
            return -1, e.errno

    def kernel(self) -> tuple[int, int]:
        from kernel_oracle import sys_bpf
        return sys_bpf(PROG_LOAD, self.attr, self.size)

    @property
    def log(self) -> bytes:
        return self.logb.raw

    @property
    def log_true_size(self) -> int:
        return struct.unpack_from("<I", self.attr, 140)[0]


def load_errno(**kw) -> int:
    a = Attempt(**kw)
    fd, err = a.pybpf()
    if fd >= 0:
        os.close(fd)
    return err


# -- attrs and the errnos decided before the verifier ------------------------------------------

def test_simple_load_returns_real_fd():
    a = Attempt(name=b"simple")
    fd, err = a.pybpf()
    assert err == 0 and fd > 2
    st = os.fstat(fd)
    assert st.st_size >= kobj.HEADER_SIZE
    obj = kobj.obj_from_fd(fd)
    assert obj.kind == "prog" and obj.name == "simple"
    im = read_image(obj)
    assert im.insns == [MOV0, EXIT] and im.prog_type == 1 and im.license == "GPL" and im.gpl_compatible
    os.close(fd)


@pytest.mark.parametrize("kw,code", [
    ({"insn_cnt": 0}, errno.E2BIG),
    ({"insn_cnt": 1_000_001}, errno.E2BIG),
    ({"prog_type": 999}, errno.EINVAL),
    ({"prog_type": 0}, errno.EINVAL),
    ({"license_ptr": 0}, errno.EFAULT),
    ({"license_ptr": 8}, errno.EFAULT),
    ({"insns_ptr": 8}, errno.EFAULT),
    ({"log_level": 16, "log_size": 1000}, errno.EINVAL),
    ({"log_level": 0, "log_size": 1000}, errno.EINVAL),
    ({"log_level": 1, "log_size": 1 << 30}, errno.EINVAL),
    ({"log_level": 1, "log_size": 100, "log_buf": False}, errno.EINVAL),
    ({"name": b"a-b"}, errno.EINVAL),
    ({"name": b"a" * 16}, errno.EINVAL),
    ({"fields": {44: struct.pack("<I", 1 << 8)}}, errno.EINVAL),         # unknown prog_flags
    ({"fields": {44: struct.pack("<I", 1 << 4)}}, errno.EINVAL),         # sleepable socket filter
    ({"fields": {64: b"\x05"}}, errno.EINVAL),                           # prog_ifindex
    ({"fields": {108: b"\x05"}}, errno.EINVAL),                          # attach_btf_id
    ({"fields": {112: struct.pack("<I", 999)}}, errno.EINVAL),           # attach_prog_fd
    ({"fields": {88: b"\x01", 72: struct.pack("<I", 999)}}, errno.EBADF),  # func_info, bad btf fd
    ({"fields": {88: b"\x01"}}, errno.EINVAL),                           # func_info, fd 0 not BTF
    ({"fields": {148: b"\x05"}}, errno.EFAULT),                          # fd_array_cnt, NULL fd_array
    ({"fields": {44: struct.pack("<I", 1 << 16), 144: struct.pack("<i", 999)}}, errno.EBADF),
    ({"fields": {167: b"\x01"}, "size": 168}, 0),                        # keyring_id: ignored alone
    ({"fields": {40: b"\x05"}}, 0),                                      # kern_version: ignored
    ({"name": b"a.b_9"}, 0),
])
def test_attr_errnos(kw, code):
    assert load_errno(**kw) == code


def test_nonzero_past_last_field_and_past_union():
    a = Attempt(size=200, fields={170: b"\x01"})
    assert a.pybpf()[1] == errno.E2BIG


def test_insn_count_is_checked_before_the_program_is_read():
    # 0 instructions with a NULL insns pointer: E2BIG, not EFAULT (Linux's order)
    assert load_errno(insn_cnt=0, insns_ptr=0) == errno.E2BIG


def test_unprivileged_types_and_limits():
    with privileges(False):
        assert load_errno(prog_type=6) == errno.EPERM           # xdp needs CAP_BPF
        assert load_errno(prog_type=2) == errno.EPERM           # kprobe
        assert load_errno(insn_cnt=4097, code=encode([MOV0] * 4096 + [EXIT])) == errno.E2BIG
        assert load_errno(prog_type=1) == 0                     # socket filter is allowed
    assert load_errno(prog_type=6) == 0                         # privileged by default again


def test_unprivileged_pointer_leak_is_refused():
    leak = encode([Insn(0xBF, 0, 10, 0, 0), EXIT])             # r0 = r10; exit
    assert load_errno(code=leak) == 0
    with privileges(False):
        assert load_errno(code=leak) == errno.EACCES


def test_verifier_errno_and_message():
    a = Attempt(code=BAD, log_level=1, log_size=4096)
    assert a.pybpf()[1] == errno.EACCES
    text = a.log.split(b"\0")[0].decode()
    assert "R0 !read_ok" in text and text.endswith("mark_read 0\n")


def test_malformed_encoding_is_einval_with_message():
    a = Attempt(code=encode([Insn(0xFF, 0, 0, 0, 0), MOV0, EXIT]), log_level=1, log_size=4096)
    assert a.pybpf()[1] == errno.EINVAL
    assert b"unknown opcode ff" in a.log


def test_license_longer_than_127_bytes_is_cut():
    fd, err = Attempt(license=b"GPL" + b"x" * 300).pybpf()
    assert err == 0
    assert read_image(kobj.obj_from_fd(fd)).license == "GPL" + "x" * 124
    os.close(fd)


# -- the log buffer -------------------------------------------------------------------------------

def full_log(code=BAD, level=1) -> bytes:
    a = Attempt(code=code, log_level=level, log_size=1 << 16)
    a.pybpf()
    return a.log.split(b"\0")[0]


def test_log_true_size_is_log_plus_nul():
    a = Attempt(code=BAD, log_level=1, log_size=1 << 16)
    assert a.pybpf()[1] == errno.EACCES
    assert a.log_true_size == len(full_log()) + 1


def test_small_log_buffer_enospc_keeps_the_end():
    whole = full_log()
    a = Attempt(code=BAD, log_level=1, log_size=20)
    assert a.pybpf()[1] == errno.ENOSPC          # overrides EACCES
    assert a.log == whole[-19:] + b"\0"
    assert a.log_true_size == len(whole) + 1


def test_small_log_buffer_fixed_keeps_the_start():
    whole = full_log()
    a = Attempt(code=BAD, log_level=1 | 8, log_size=20)
    assert a.pybpf()[1] == errno.ENOSPC
    assert a.log == whole[:19] + b"\0"


def test_small_log_buffer_fails_a_good_program():
    a = Attempt(code=OK, log_level=2, log_size=30)
    fd, err = a.pybpf()
    assert fd < 0 and err == errno.ENOSPC
    assert a.log_true_size > 30 and a.log[-1:] == b"\0"


def test_exact_fit_is_not_enospc():
    n = len(full_log()) + 1
    assert Attempt(code=BAD, log_level=1, log_size=n).pybpf()[1] == errno.EACCES
    assert Attempt(code=BAD, log_level=1, log_size=n - 1).pybpf()[1] == errno.ENOSPC


def test_log_level_without_buffer_reports_true_size():
    a = Attempt(code=OK, log_level=1)
    fd, err = a.pybpf()
    assert err == 0 and a.log_true_size > 1
    os.close(fd)


def test_log_true_size_not_written_for_short_attr():
    a = Attempt(code=OK, log_level=1, log_size=1000, size=140)
    fd, err = a.pybpf()
    assert err == 0 and a.log_true_size == 0
    os.close(fd)


def test_bad_log_buf_pointer_is_efault():
    assert load_errno(code=BAD, log_level=1, log_size=100, fields={32: struct.pack("<Q", 8)}) == errno.EFAULT


# -- maps -------------------------------------------------------------------------------------------

def test_bad_map_fd_ebadf_and_non_map_fd_einval():
    r, w = os.pipe()
    os.close(r)
    prog = lambda fd: encode(list(ldimm64(1, fd, op.PSEUDO_MAP_FD)) + [MOV0, EXIT])  # noqa: E731
    assert load_errno(code=prog(r)) == errno.EBADF
    assert load_errno(code=prog(w)) == errno.EINVAL
    os.close(w)
    a = Attempt(code=prog(999), log_level=1, log_size=4096)
    a.pybpf()
    assert a.log.startswith(b"fd 999 is not pointing to valid bpf_map\n")


def test_map_value_reference_rules():
    arr = Map.create("array", 4, 8, 1)
    h = Map.create("hash", 4, 8, 4)
    val = lambda fd, off: encode([Insn(op.LD_IMM64, 1, op.PSEUDO_MAP_VALUE, 0, fd),  # noqa: E731
                                  Insn(0, 0, 0, 0, off), MOV0, EXIT])
    assert load_errno(code=val(arr.fd, 0)) == 0
    assert load_errno(code=val(arr.fd, 4)) == 0
    assert load_errno(code=val(arr.fd, 8)) == errno.EINVAL       # off must be < value_size
    assert load_errno(code=val(h.fd, 0)) == errno.EINVAL         # no direct value access for hash
    arr.close()
    h.close()


def test_fd_array_and_map_idx():
    m = Map.create("array", 4, 8, 1, name="idxmap")
    code = encode([Insn(op.LD_IMM64, 1, op.PSEUDO_MAP_IDX, 0, 1), Insn(0, 0, 0, 0, 0), MOV0, EXIT])
    a = Attempt(code=code, fd_array=[999, m.fd])
    fd, err = a.pybpf()
    assert err == 0
    im = read_image(kobj.obj_from_fd(fd))
    assert im.map_ids == [m.id]
    assert im.xlated[0].src == op.PSEUDO_MAP_FD and im.xlated[0].imm == m.id
    os.close(fd)
    code0 = encode([Insn(op.LD_IMM64, 1, op.PSEUDO_MAP_IDX, 0, 0), Insn(0, 0, 0, 0, 0), MOV0, EXIT])
    assert Attempt(code=code0, fd_array=[999, m.fd]).pybpf()[1] == errno.EBADF
    # fd_array_cnt binds every fd up front, even unused ones; a non-map among them is EINVAL
    a = Attempt(code=OK, fd_array=[m.fd], fd_array_cnt=1)
    fd, err = a.pybpf()
    assert err == 0 and read_image(kobj.obj_from_fd(fd)).map_ids == [m.id]
    os.close(fd)
    r, w = os.pipe()
    assert Attempt(code=OK, fd_array=[m.fd, r], fd_array_cnt=2).pybpf()[1] == errno.EINVAL
    os.close(r)
    assert Attempt(code=OK, fd_array=[m.fd, r], fd_array_cnt=2).pybpf()[1] == errno.EBADF
    os.close(w)
    m.close()


def test_program_holds_its_maps(bpffs):
    m = Map.create("array", 4, 8, 1, name="held")
    m[0] = (42).to_bytes(8, "little")
    mid = m.id
    m.pin("/sys/fs/bpf/m")
    p = Program.load([*ldimm64(1, m.fd, op.PSEUDO_MAP_FD), MOV0, EXIT], "socket_filter")
    m.close()
    os.unlink(os.path.join(bpffs, "m"))
    kobj.gc()
    maps = p.maps()
    assert list(maps) == [mid]
    with maps[mid] as again:
        assert again[0] == (42).to_bytes(8, "little")
    p.pin("/sys/fs/bpf/p")
    p.close()
    kobj.gc()
    with Program.from_pinned("/sys/fs/bpf/p") as q:
        assert q.map_ids == [mid]
        assert list(q.maps()) == [mid]
    os.unlink(os.path.join(bpffs, "p"))
    kobj.gc()
    assert all(h["id"] != mid for h in kobj.live_objects())     # the last reference went


def test_too_many_maps_is_e2big():
    maps = [Map.create("array", 4, 8, 1) for _ in range(65)]
    insns = []
    for m in maps:
        insns += ldimm64(1, m.fd, op.PSEUDO_MAP_FD)
    try:
        assert load_errno(code=encode(insns + [MOV0, EXIT])) == errno.E2BIG
        assert load_errno(code=encode(insns[2:] + [MOV0, EXIT])) == 0
    finally:
        for m in maps:
            m.close()


# -- tag and info ------------------------------------------------------------------------------------

def test_tag_ignores_map_fds():
    a = [*ldimm64(1, 3, op.PSEUDO_MAP_FD), MOV0, EXIT]
    b = [*ldimm64(1, 7, op.PSEUDO_MAP_FD), MOV0, EXIT]
    c = [*ldimm64(1, 7, 0), MOV0, EXIT]
    assert prog_tag(a) == prog_tag(b) != prog_tag(c)


def get_info(fd: int, size: int = 232, xlated_len: int = 0, nr_map_ids: int = 0):
    from pybpf.prog import ProgInfo
    xbuf = ctypes.create_string_buffer(max(xlated_len, 1))
    mbuf = (ctypes.c_uint32 * max(nr_map_ids, 1))()
    info = ProgInfo()
    info.xlated_prog_len = xlated_len
    info.xlated_prog_insns = ctypes.addressof(xbuf) if xlated_len else 0
    info.nr_map_ids = nr_map_ids
    info.map_ids = ctypes.addressof(mbuf) if nr_map_ids else 0
    buf = bytearray(bytes(info)[:size].ljust(size, b"\0"))
    cbuf = (ctypes.c_char * size).from_buffer(buf)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, fd, size, ctypes.addressof(cbuf))
    pybpf.bpf(GET_INFO, attr)
    out = ProgInfo.from_buffer_copy(bytes(buf[:232]).ljust(232, b"\0"))
    return out, struct.unpack_from("<I", attr, 4)[0], xbuf.raw[:xlated_len], list(mbuf)[:nr_map_ids]


def test_prog_info():
    m = Map.create("array", 4, 8, 1)
    insns = [*ldimm64(1, m.fd, op.PSEUDO_MAP_FD), MOV0, EXIT]
    p = Program.load(insns, "xdp", name="info_test", license="Dual MIT/GPL")
    info, n, xl, ids = get_info(p.fd, xlated_len=64, nr_map_ids=4)
    assert n == 232
    assert info.type == 6 and info.id == p.id and bytes(info.tag).hex() == p.tag
    assert info.name == b"info_test" and info.gpl_compatible == 1
    assert info.xlated_prog_len == 32 and info.nr_map_ids == 1 and ids[:1] == [m.id] and ids[1:] == [0, 0, 0]
    assert xl[:32] == encode(p.xlated) and info.verified_insns >= 3
    assert info.created_by_uid == os.getuid() and info.jited_prog_len == 0 and info.load_time > 0
    short, n, _, _ = get_info(p.fd, size=16)
    assert n == 16 and short.type == 6
    p.close()
    m.close()


def test_prog_info_rejects_nonzero_tail():
    p = Program.load([MOV0, EXIT], 1)
    buf = bytearray(240)
    buf[236] = 1
    cbuf = (ctypes.c_char * 240).from_buffer(buf)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, p.fd, 240, ctypes.addressof(cbuf))
    with pytest.raises(OSError) as ei:
        pybpf.bpf(GET_INFO, attr)
    assert ei.value.errno == errno.E2BIG
    p.close()


def test_map_info_still_works_through_the_wrapped_command():
    m = Map.create("array", 4, 8, 1)
    buf = bytearray(104)
    cbuf = (ctypes.c_char * 104).from_buffer(buf)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, m.fd, 104, ctypes.addressof(cbuf))
    pybpf.bpf(GET_INFO, attr)
    assert struct.unpack_from("<II", buf, 0) == (2, m.id)
    m.close()


def test_obj_get_of_a_pinned_program(bpffs):
    p = Program.load([MOV0, EXIT], "sched_cls", name="pinme")
    p.pin("/sys/fs/bpf/dir_p")
    path = ctypes.create_string_buffer(b"/sys/fs/bpf/dir_p")
    attr = bytearray(16)
    struct.pack_into("<Q", attr, 0, ctypes.addressof(path))
    fd = pybpf.bpf(7, attr)
    assert kobj.obj_from_fd(fd).id == p.id
    os.close(fd)
    p.close()


def test_ctypes_attr_struct():
    from pybpf.prog import ProgLoadAttr
    insns = ctypes.create_string_buffer(BAD)
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(4096)
    a = ProgLoadAttr(prog_type=1, insn_cnt=1, insns=ctypes.addressof(insns), license=ctypes.addressof(lic),
                     log_level=1, log_size=4096, log_buf=ctypes.addressof(log), prog_name=b"ct")
    with pytest.raises(ProgLoadError) as ei:
        pybpf.bpf(PROG_LOAD, a)
    assert ei.value.errno == errno.EACCES and "R0 !read_ok" in ei.value.log
    assert a.log_true_size == len(log.value) + 1 and b"R0 !read_ok" in log.value
    a2 = bytes(a)                                # a read-only attr cannot take log_true_size back
    with pytest.raises(OSError) as ei:
        pybpf.bpf(PROG_LOAD, a2)
    assert ei.value.errno == errno.EFAULT
