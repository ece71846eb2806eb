"""pybpf.bpf(): the attr conventions of bpf(2) and the errno table of the map commands."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os

import pytest

import kernel_oracle as K
import pybpf.syscall as S
from pybpf.syscall import bpf
from pybpf.syscall import constants as C


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


def errno_of(cmd, attr, size=None):
    try:
        bpf(cmd, attr, size)
    except OSError as e:
        return e.errno
    return 0


def create(t=C.BPF_MAP_TYPE_HASH, ks=4, vs=8, me=16, flags=0, **kw):
    return bpf(C.BPF_MAP_CREATE, K.attr_map_create(t, ks, vs, me, flags, **kw))


def buf(data: bytes):
    b = ctypes.create_string_buffer(data, len(data) + 1)
    return b, ctypes.addressof(b)


def test_ctypes_structures_work_as_in_c():
    a = S.MapCreateAttr(map_type=C.BPF_MAP_TYPE_ARRAY, key_size=4, value_size=8, max_entries=4,
                        map_name=b"counters")
    fd = bpf(C.BPF_MAP_CREATE, a, ctypes.sizeof(a))
    try:
        key, val, out = ctypes.c_uint32(2), ctypes.c_uint64(0xDEADBEEF), ctypes.c_uint64()
        e = S.MapElemAttr(map_fd=fd, key=ctypes.addressof(key), value=ctypes.addressof(val))
        assert bpf(C.BPF_MAP_UPDATE_ELEM, e) == 0
        e.value = ctypes.addressof(out)
        assert bpf(C.BPF_MAP_LOOKUP_ELEM, e) == 0
        assert out.value == 0xDEADBEEF
        u = S.BpfAttr()
        u.elem.map_fd = fd
        u.elem.key = ctypes.addressof(key)
        u.elem.value = ctypes.addressof(out)
        out.value = 0
        assert bpf(C.BPF_MAP_LOOKUP_ELEM, u, ctypes.sizeof(u)) == 0 and out.value == 0xDEADBEEF
    finally:
        os.close(fd)


def test_bytes_and_bytearray_and_address_attrs():
    fd = bpf(C.BPF_MAP_CREATE, bytes(K.attr_map_create(2, 4, 8, 2)))
    try:
        kb, ka = buf((1).to_bytes(4, "little"))
        vb, va = buf((7).to_bytes(8, "little"))
        raw = K.attr_elem(fd, ka, va)
        assert bpf(C.BPF_MAP_UPDATE_ELEM, raw) == 0
        ob, oa = buf(bytes(8))
        c = (ctypes.c_char * 32).from_buffer_copy(K.attr_elem(fd, ka, oa))
        assert bpf(C.BPF_MAP_LOOKUP_ELEM, ctypes.addressof(c), 32) == 0    # a raw address
        assert ob.raw[:8] == (7).to_bytes(8, "little")
    finally:
        os.close(fd)


def test_returned_fd_is_a_real_cloexec_fd():
    fd = create()
    import fcntl
    assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert os.fstat(fd).st_nlink == 0     # an unnamed object until pinned
    os.close(fd)


@pytest.mark.parametrize("size,where,expect", [
    (168, None, 0), (4096, None, 0), (300, 200, errno.E2BIG), (169, 168, errno.E2BIG),
    (4097, None, errno.E2BIG), (100, 99, errno.EINVAL), (72, 71, errno.EINVAL), (40, None, 0),
])
def test_attr_size_and_tail(size, where, expect):
    a = K.attr_map_create(2, 4, 8, 1, size=size)
    if where is not None:
        a[where] = 1
    if expect == 0:
        fd = bpf(C.BPF_MAP_CREATE, a, size)
        os.close(fd)
    else:
        assert errno_of(C.BPF_MAP_CREATE, a, size) == expect


def test_short_attr_is_zero_extended():
    a = K.attr_map_create(2, 4, 8, 1)[:16]          # map_flags etc. missing: zero, as Linux
    os.close(bpf(C.BPF_MAP_CREATE, a))


def test_size_larger_than_buffer_is_efault():
    assert errno_of(C.BPF_MAP_CREATE, bytearray(16), 64) == errno.EFAULT


@pytest.mark.parametrize("cmd", [S.constants.NR_CMDS + 5, 999, C.BPF_PROG_ATTACH, C.BPF_LINK_CREATE])
def test_unknown_or_unsupported_command(cmd):
    assert errno_of(cmd, bytearray(168)) == errno.EINVAL


def test_register_new_command():
    seen = []

    def handler(a):
        seen.append(a.u32(0))
        a.write_back(4, (77).to_bytes(4, "little"))
        return 5
    S.register(200, handler, last_field_end=8)
    try:
        a = bytearray(168)
        a[0] = 9
        assert bpf(200, a) == 5 and seen == [9] and a[4] == 77
        a[8] = 1
        assert errno_of(200, a) == errno.EINVAL
    finally:
        from pybpf.syscall import dispatch
        dispatch._handlers.pop(200)


def test_errno_table_elements():
    fd = create(C.BPF_MAP_TYPE_HASH, 4, 8, 2)
    k1, a1 = buf((1).to_bytes(4, "little"))
    k2, a2 = buf((2).to_bytes(4, "little"))
    k3, a3 = buf((3).to_bytes(4, "little"))
    v, va = buf(bytes(8))
    up = lambda ka, fl=0: errno_of(C.BPF_MAP_UPDATE_ELEM, K.attr_elem(fd, ka, va, fl))
    assert up(a1, C.BPF_EXIST) == errno.ENOENT
    assert up(a1, C.BPF_NOEXIST) == 0
    assert up(a1, C.BPF_NOEXIST) == errno.EEXIST
    assert up(a1, C.BPF_EXIST) == 0
    assert up(a2) == 0
    assert up(a3) == errno.E2BIG                      # full
    assert up(a1, 3) == errno.EINVAL                 # bad flags
    assert up(0) == errno.EFAULT                     # NULL key
    assert errno_of(C.BPF_MAP_UPDATE_ELEM, K.attr_elem(fd, a1, 0)) == errno.EFAULT
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(fd, a3, va)) == errno.ENOENT
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(fd, a1, va, 1)) == errno.EINVAL
    assert errno_of(C.BPF_MAP_DELETE_ELEM, K.attr_elem(fd, a3, 0)) == errno.ENOENT
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(12345, a1, va)) == errno.EBADF
    with open("/dev/null") as f:
        assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(f.fileno(), a1, va)) == errno.EINVAL
    os.close(fd)
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(fd, a1, va)) == errno.EBADF


def test_efault_for_unmapped_pointers():
    fd = create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 2)
    m = mmap.mmap(-1, 4096)
    cbuf = ctypes.c_char.from_buffer(m)
    addr = ctypes.addressof(cbuf)
    del cbuf
    m.close()                       # addr is now unmapped: must be EFAULT, not a crash
    k, ka = buf(bytes(4))
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(fd, addr, addr)) == errno.EFAULT
    assert errno_of(C.BPF_MAP_LOOKUP_ELEM, K.attr_elem(fd, ka, addr)) == errno.EFAULT
    assert errno_of(C.BPF_OBJ_GET, K.attr_obj(addr)) == errno.EFAULT
    os.close(fd)


def test_get_next_key_null_and_missing_give_first():
    fd = create(C.BPF_MAP_TYPE_HASH, 4, 8, 8)
    v, va = buf(bytes(8))
    for i in (10, 20, 30):
        k, ka = buf(i.to_bytes(4, "little"))
        bpf(C.BPF_MAP_UPDATE_ELEM, K.attr_elem(fd, ka, va))
    out, oa = buf(bytes(4))
    bpf(C.BPF_MAP_GET_NEXT_KEY, K.attr_elem(fd, 0, oa))
    first = out.raw[:4]
    miss, ma = buf((999).to_bytes(4, "little"))
    bpf(C.BPF_MAP_GET_NEXT_KEY, K.attr_elem(fd, ma, oa))
    assert out.raw[:4] == first
    seen = [first]
    while True:
        cur, ca = buf(seen[-1])
        try:
            bpf(C.BPF_MAP_GET_NEXT_KEY, K.attr_elem(fd, ca, oa))
        except OSError as e:
            assert e.errno == errno.ENOENT
            break
        seen.append(out.raw[:4])
    assert sorted(int.from_bytes(s, "little") for s in seen) == [10, 20, 30]
    os.close(fd)


def test_map_name_rules():
    fd = create(name=b"ok_name.v2")
    os.close(fd)
    assert errno_of(C.BPF_MAP_CREATE, K.attr_map_create(1, 4, 8, 4, name=b"a-b")) == errno.EINVAL
    assert errno_of(C.BPF_MAP_CREATE, K.attr_map_create(1, 4, 8, 4, name=b"x" * 16)) == errno.EINVAL


def test_create_errnos():
    cases = [((1, 0, 8, 4), errno.EINVAL), ((2, 8, 8, 4), errno.EINVAL), ((2, 4, 8, 0), errno.EINVAL),
             ((1, 4, 8, 4, 1 << 25), errno.EINVAL), ((77, 4, 8, 4), errno.EINVAL)]
    for args, want in cases:
        assert errno_of(C.BPF_MAP_CREATE, K.attr_map_create(*args)) == want, args


def test_pin_and_get_through_bpf(bpffs):
    fd = create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 4)
    p, pa = buf(b"/sys/fs/bpf/pinned_map")
    assert bpf(C.BPF_OBJ_PIN, K.attr_obj(pa, fd)) == 0
    assert os.path.exists(os.path.join(bpffs, "pinned_map"))
    assert errno_of(C.BPF_OBJ_PIN, K.attr_obj(pa, fd)) == errno.EEXIST
    fd2 = bpf(C.BPF_OBJ_GET, K.attr_obj(pa))
    assert os.fstat(fd2).st_ino == os.fstat(fd).st_ino
    os.close(fd2)
    os.close(fd)


def test_get_fd_by_id_and_next_id():
    fd = create(C.BPF_MAP_TYPE_ARRAY, 4, 8, 4)
    from pybpf import kobj
    mid = kobj.obj_from_fd(fd).id
    a = S.GetIdAttr(start_id=mid)
    fd2 = bpf(C.BPF_MAP_GET_FD_BY_ID, a)
    assert os.fstat(fd2).st_ino == os.fstat(fd).st_ino
    a = S.GetIdAttr(start_id=0)
    bpf(C.BPF_MAP_GET_NEXT_ID, a)
    assert 0 < a.next_id <= mid
    assert errno_of(C.BPF_MAP_GET_FD_BY_ID, S.GetIdAttr(start_id=0x7ffffff0)) == errno.ENOENT
    os.close(fd)
    os.close(fd2)


def test_threads_share_the_command_interface():
    import threading
    fd = create(C.BPF_MAP_TYPE_HASH, 4, 8, 1024)
    errors = []

    def worker(base):
        try:
            for i in range(100):
                k = ctypes.c_uint32(base * 1000 + i)
                v = ctypes.c_uint64(i)
                bpf(C.BPF_MAP_UPDATE_ELEM, S.MapElemAttr(map_fd=fd, key=ctypes.addressof(k),
                                                         value=ctypes.addressof(v)))
                out = ctypes.c_uint64()
                bpf(C.BPF_MAP_LOOKUP_ELEM, S.MapElemAttr(map_fd=fd, key=ctypes.addressof(k),
                                                         value=ctypes.addressof(out)))
                assert out.value == i
        except BaseException as e:          # reported below, in the main thread
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    from pybpf.map import Map
    with Map.from_fd(fd) as m:
        assert len(m) == 400
    os.close(fd)


def test_bad_attr_types_are_clear():
    with pytest.raises(TypeError):
        bpf(C.BPF_MAP_CREATE, "not a buffer")
    assert errno_of("0", bytearray(168)) == errno.EINVAL
