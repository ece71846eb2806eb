"""BPF_MAP_FREEZE: errnos and effects, differential against the host kernel."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

import pybpf
from pybpf.map import Map
from pybpf.syscall import bpf
from pybpf.syscall import constants as C

import kernel_oracle as K
from kernel_oracle import attr_elem, attr_map_create

ARRAY, HASH, QUEUE = C.BPF_MAP_TYPE_ARRAY, C.BPF_MAP_TYPE_HASH, C.BPF_MAP_TYPE_QUEUE
F_RDONLY, F_RDONLY_PROG = 1 << 3, 1 << 7


def _pybpf(cmd, attr):
    try:
        return bpf(cmd, (ctypes.c_char * len(attr)).from_buffer(attr)), 0
    except OSError as e:
        return -1, e.errno


def _kernel(cmd, attr):
    return K.sys_bpf(cmd, attr)


def _script(fn, map_type, key_size, flags=0):
    """Run the same command sequence through fn; the list of errnos it gave."""
    key = ctypes.create_string_buffer(b"\0" * key_size, max(key_size, 1))
    val = ctypes.create_string_buffer(b"\7" + bytes(7), 8)
    out = ctypes.create_string_buffer(8)
    fd, err = fn(C.BPF_MAP_CREATE, attr_map_create(map_type, key_size, 8, 4, flags))
    assert err == 0, err
    kaddr = ctypes.addressof(key) if key_size else 0
    try:
        steps = [
            (C.BPF_MAP_UPDATE_ELEM, attr_elem(fd, kaddr, ctypes.addressof(val))),   # before: allowed
            (C.BPF_MAP_FREEZE, attr_elem(fd)),
            (C.BPF_MAP_FREEZE, attr_elem(fd)),                 # EPERM: no write permission any more
            (C.BPF_MAP_UPDATE_ELEM, attr_elem(fd, kaddr, ctypes.addressof(val))),   # EPERM
            (C.BPF_MAP_DELETE_ELEM, attr_elem(fd, kaddr)),
            (C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, attr_elem(fd, kaddr, ctypes.addressof(out))),
            (C.BPF_MAP_LOOKUP_ELEM, attr_elem(fd, kaddr, ctypes.addressof(out))),
        ]
        errs = []
        for cmd, attr in steps:
            r, e = fn(cmd, attr)
            errs.append(e)
        return errs
    finally:
        os.close(fd)


@pytest.mark.parametrize("map_type,key_size", [(ARRAY, 4), (HASH, 4), (QUEUE, 0)])
@pytest.mark.parametrize("flags", [0, F_RDONLY_PROG])
def test_freeze_sequence_matches_kernel(map_type, key_size, flags):
    K.require_kernel()
    assert _script(_pybpf, map_type, key_size, flags) == _script(_kernel, map_type, key_size, flags)


def test_freeze_fd_errors_match_kernel():
    K.require_kernel()
    for fn in (_kernel, _pybpf):
        got = []
        fd, _ = fn(C.BPF_MAP_CREATE, attr_map_create(ARRAY, 4, 8, 4, F_RDONLY))
        got.append(fn(C.BPF_MAP_FREEZE, attr_elem(fd))[1])          # read-only fd: EPERM
        os.close(fd)
        got.append(fn(C.BPF_MAP_FREEZE, attr_elem(9999))[1])        # closed fd: EBADF
        got.append(fn(C.BPF_MAP_FREEZE, attr_elem(0))[1])           # not a map: EINVAL
        fd, _ = fn(C.BPF_MAP_CREATE, attr_map_create(ARRAY, 4, 8, 4))
        a = attr_elem(fd)
        a[8] = 1                                                    # past map_fd: EINVAL
        got.append(fn(C.BPF_MAP_FREEZE, a)[1])
        os.close(fd)
        if fn is _kernel:
            want = got
        else:
            assert got == want == [errno.EPERM, errno.EBADF, errno.EINVAL, errno.EINVAL]


def test_map_api_freeze_is_seen_by_every_fd_and_process():
    m = Map.create("hash", 4, 8, 8)
    m[1] = 5
    other = Map.from_fd(m.fd)
    assert not other.frozen
    pid = os.fork()
    if pid == 0:            # another process freezes it
        try:
            Map.from_fd(m.fd).freeze()
            os._exit(0)
        except BaseException:
            os._exit(1)
    assert os.waitpid(pid, 0)[1] == 0
    assert m.frozen and other.frozen
    for op in (lambda: other.__setitem__(1, 6), lambda: other.__delitem__(1), lambda: other.pop(1),
               lambda: other.update({2: 3}), lambda: other.clear()):
        with pytest.raises(OSError) as e:
            op()
        assert e.value.errno == errno.EPERM and "frozen" in str(e.value)
    with pytest.raises(OSError) as e:
        m.freeze()
    assert e.value.errno == errno.EPERM
    assert m[1] == (5).to_bytes(8, "little")        # reads still work
    other.close()
    m.close()


def test_programs_still_write_a_frozen_map_without_rdonly_prog():
    from pybpf.prog import Program
    m = Map.create("array", 4, 8, 1)
    m.freeze()
    src = """
r1 = 0
*(u32 *)(r10 - 4) = r1
r2 = r10
r2 += -4
r1 = map_idx(0) ll
call 1
if r0 == 0 goto out
r1 = 42
*(u64 *)(r0 + 0) = r1
out:
r0 = 0
exit"""
    with Program.load(src, "socket_filter", maps=[m]) as p:
        p.run(bytes(64))
    assert int.from_bytes(m[0], "little") == 42
    m.close()


def test_pybpf_load_freezes_rodata(tmp_path):
    import subprocess
    clang = "/usr/lib/llvm-19/bin/clang"
    if not os.path.exists(clang):
        pytest.skip("clang 19 not installed")
    src = tmp_path / "ro.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'const volatile int limit = 7;\nint counter;\n'
                   'SEC("socket") int p(void *ctx) { counter += limit; return 0; }\n'
                   'char _license[] SEC("license") = "GPL";\n')
    obj = tmp_path / "ro.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", str(src),
                    "-o", str(obj)], check=True)
    with pybpf.object.load(obj) as o:
        ro = next(m for n, m in o.maps.items() if n.endswith(".rodata"))
        bss = next(m for n, m in o.maps.items() if n.endswith(".bss"))
        assert ro.frozen and not bss.frozen
        assert int.from_bytes(ro[0][:4], "little") == 7
        with pytest.raises(OSError) as e:
            ro[0] = bytes(ro.value_size)
        assert e.value.errno == errno.EPERM
