"""BPF_BTF_LOAD and BTF objects, differential against the host kernel's bpf(2)."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

import pybpf
from pybpf import kobj
from pybpf.syscall import bpf
from pybpf.syscall.btf import BtfError, btf_load, check_btf

import kernel_oracle as K
from test_btf_blobs import STRS, TYPES, Buffers, blob, btf_attr, func, int_type, proto

T3 = int_type(1) + proto(1) + func(5, 2)

BAD = {
    "magic": blob(magic=0x1234),
    "big_endian": blob(magic=0x9FEB),
    "version": blob(version=2),
    "flags": blob(flags=1),
    "hdr_tail_nonzero": blob(hdr_len=32)[:24] + b"\1" + blob(hdr_len=32)[25:],
    "hdr_short": blob(hdr_len=16)[:16],
    "hdr_len_past_end": blob(hdr_len=200)[:74],
    "no_data": blob()[:24],
    "tiny": b"\x9f\xeb",
    "str_not_at_end": blob(str_off=0, type_off=12, strs=b"\0int\0main\0\0\0"),
    "str_first_not_nul": blob(strs=b"xint\0main\0sub\0f.c\0return 0;\0"),
    "str_last_not_nul": blob(strs=STRS[:-1] + b"x"),
    "type_off_unaligned": blob(type_off=2, gap=b"\0\0", str_off=2 + len(TYPES)),
    "no_types": blob(types=b""),
    "overlap": blob(str_off=len(TYPES) - 4),
    "gap": blob(str_off=len(TYPES) + 4),
    "total_too_long": blob(str_len=len(STRS) + 10),
    "truncated_type": blob(types=T3[:-4]),
    "unknown_kind": blob(types=struct.pack("<III", 0, 25 << 24, 0)),
    "func_not_proto": blob(types=T3[:16] + func(5, 1)),
    "func_bad_ref": blob(types=T3[:28] + func(5, 9)),
    "ptr_bad_ref": blob(types=T3 + struct.pack("<III", 0, 2 << 24, 77)),
    "name_off_past_strings": blob(types=int_type(100)),
    "int_too_wide": blob(types=struct.pack("<III", 1, 1 << 24, 4) + struct.pack("<I", 64)),
    "func_anonymous": blob(types=T3[:28] + func(0, 2)),
    "func_bad_linkage": blob(types=T3[:28] + func(5, 2, linkage=3)),
}
GOOD = {"plain": blob(), "hdr_tail_zero": blob(hdr_len=32), "three_types": blob(types=T3)}


def _pybpf(attr: bytearray) -> tuple[int, int]:
    try:
        return bpf(pybpf.syscall.constants.BPF_BTF_LOAD, (ctypes.c_char * len(attr)).from_buffer(attr)), 0
    except OSError as e:
        return -1, e.errno


def _kernel(attr: bytearray) -> tuple[int, int]:
    return K.sys_bpf(pybpf.syscall.constants.BPF_BTF_LOAD, attr)


def _run(fn, data, **kw):
    bufs = Buffers()
    attr, log = btf_attr(bufs, data, **kw)
    fd, err = fn(attr)
    if fd >= 0:
        os.close(fd)
    true_size = struct.unpack_from("<I", attr, 28)[0]
    return err, (log.value.decode("utf-8", "replace") if log is not None else ""), true_size


def _last(log: str) -> str:
    lines = log.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_blob_errno_and_message_match_kernel(name):
    K.require_kernel()
    kerr, klog, _ = _run(_kernel, BAD[name], log_level=1, log_size=65536)
    perr, plog, _ = _run(_pybpf, BAD[name], log_level=1, log_size=65536)
    assert kerr != 0 and perr == kerr, (name, kerr, perr, klog, plog)
    if name != "int_too_wide":
        assert _last(plog) == _last(klog)       # the same words as Linux
    else:
        assert _last(plog)                      # our own words, naming the type id
    # the header dump Linux writes before any type check is the same
    assert plog.split("\n[")[0].strip() == klog.split("\n[")[0].strip() or not klog.startswith("magic")


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_blob_loads_in_both(name):
    K.require_kernel()
    kerr, klog, ktrue = _run(_kernel, GOOD[name], log_level=1, log_size=65536)
    perr, plog, ptrue = _run(_pybpf, GOOD[name], log_level=1, log_size=65536)
    assert kerr == perr == 0
    assert plog == klog                 # header and one line per type, as Linux logs them
    assert ptrue == ktrue == len(plog) + 1


def test_attr_errors_match_kernel():
    K.require_kernel()
    good = blob()
    cases = [
        dict(log_level=1, log_size=0),                  # level without buffer: allowed
        dict(log_level=0, log_size=100),                # buffer without level
        dict(log_level=32, log_size=100),               # level outside the mask
        dict(log_level=1, log_size=8),                  # ENOSPC
        dict(size=17 * 1024 * 1024),                    # E2BIG before the copy
    ]
    for kw in cases:
        kerr, _, ktrue = _run(_kernel, good, **kw)
        perr, _, ptrue = _run(_pybpf, good, **kw)
        assert kerr == perr, (kw, kerr, perr)
        if kw.get("log_level") and kerr in (0, errno.ENOSPC):
            assert ktrue > 0 and ptrue > 0
    kerr, _, _ = _run(_kernel, None, size=64)
    perr, _, _ = _run(_pybpf, None, size=64)
    assert kerr == perr == errno.EFAULT
    for off, val in ((32, 1), (36, 5), (40, 1)):    # bad btf_flags; token fd without the flag; past the end
        got = []
        for fn in (_kernel, _pybpf):
            bufs = Buffers()
            attr, _ = btf_attr(bufs, good)
            attr.extend(bytes(8))
            struct.pack_into("<I", attr, off, val)
            res = fn(attr)
            if res[0] >= 0:
                os.close(res[0])
            got.append(res[1])
        assert got[0] == got[1], (off, val, got)


def test_small_log_is_truncated_like_the_kernel():
    K.require_kernel()
    data = BAD["func_bad_ref"]
    for size in (10, 50):
        kerr, klog, ktrue = _run(_kernel, data, log_level=1, log_size=size)
        perr, plog, ptrue = _run(_pybpf, data, log_level=1, log_size=size)
        assert kerr == perr == errno.ENOSPC or kerr == perr
        assert len(plog) == size - 1


def test_btf_object_info_pin_and_ids(tmp_path):
    data = blob()
    fd, log = btf_load(data)
    try:
        obj = kobj.obj_from_fd(fd)
        assert obj.kind == "btf"
        out = ctypes.create_string_buffer(len(data) + 16)
        name = ctypes.create_string_buffer(b"x" * 8)
        info = struct.pack("<QIIQII", ctypes.addressof(out), len(out), 0, ctypes.addressof(name), 8, 0)
        info_buf = ctypes.create_string_buffer(info, 32)
        attr = bytearray(16)
        struct.pack_into("<IIQ", attr, 0, fd, 32, ctypes.addressof(info_buf))
        bpf(pybpf.syscall.constants.BPF_OBJ_GET_INFO_BY_FD, (ctypes.c_char * 16).from_buffer(attr))
        _, size, bid, _, name_len, kernel_btf = struct.unpack("<QIIQII", info_buf.raw)
        assert (size, bid, name_len, kernel_btf) == (len(data), obj.id, 0, 0)
        assert out.raw[:len(data)] == data and name.raw[0] == 0
        # by id, and the id walk
        a = bytearray(16)
        struct.pack_into("<I", a, 0, obj.id)
        fd2 = bpf(pybpf.syscall.constants.BPF_BTF_GET_FD_BY_ID, (ctypes.c_char * 16).from_buffer(a))
        assert kobj.obj_from_fd(fd2).id == obj.id
        os.close(fd2)
        # pin and get back
        pin = "/sys/fs/bpf/pybpf_test_btf_pin"
        kobj.pin(fd, pin)
        try:
            fd3 = kobj.get(pin, 0)
            assert kobj.obj_from_fd(fd3).kind == "btf"
            os.close(fd3)
        finally:
            os.unlink(kobj.translate(pin))
    finally:
        os.close(fd)


def test_btf_fd_is_refused_where_a_map_is_expected():
    fd, _ = btf_load(blob())
    try:
        a = bytearray(32)
        struct.pack_into("<I", a, 0, fd)
        with pytest.raises(OSError) as e:
            bpf(pybpf.syscall.constants.BPF_MAP_LOOKUP_ELEM, (ctypes.c_char * 32).from_buffer(a))
        assert e.value.errno == errno.EINVAL
    finally:
        os.close(fd)


def test_python_api_errors_are_clear():
    with pytest.raises(BtfError) as e:
        btf_load(BAD["func_bad_ref"])
    assert e.value.errno == errno.EINVAL and "[3] FUNC main type_id=9 Invalid type_id" in str(e.value)
    btf, log = check_btf(blob(), log_level=1)
    assert btf.types[3].name == "main" and "hdr_len: 24" in log


def test_clang_object_btf_loads_in_both(tmp_path):
    """The .BTF of a clang object, fixed up by the reader (as libbpf does), passes both checkers."""
    import subprocess
    from pathlib import Path
    from pybpf.loader import read_object
    clang = "/usr/lib/llvm-19/bin/clang"
    if not os.path.exists(clang):
        pytest.skip("clang 19 not installed")
    K.require_kernel()
    src = Path(__file__).parent / "runtime_c" / "callbacks.c"
    o = tmp_path / "cb.o"
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(o)], check=True)
    data = read_object(str(o)).btf_for_kernel
    kerr, klog, _ = _run(_kernel, data, log_level=1, log_size=1 << 20)
    perr, plog, _ = _run(_pybpf, data, log_level=1, log_size=1 << 20)
    assert kerr == perr == 0, plog
    assert plog == klog


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, len(blob()) - 1), st.integers(0, 255)), min_size=1, max_size=3))
def test_mutated_blob_errno_matches_kernel(flips):
    """Any few bytes of a good blob changed: pybpf accepts or refuses it as Linux does."""
    K.require_kernel()
    data = bytearray(blob())
    for pos, val in flips:
        data[pos] = val
    kerr, klog, _ = _run(_kernel, bytes(data), log_level=1, log_size=65536)
    perr, plog, _ = _run(_pybpf, bytes(data), log_level=1, log_size=65536)
    assert perr == kerr, (bytes(data).hex(), klog, plog)


_REAL = {}


def _real_blob():
    """The .BTF of tests/runtime_c/callbacks.c (structs, arrays, pointers, vars, sections)."""
    if "b" not in _REAL:
        import subprocess
        import tempfile
        from pathlib import Path
        from pybpf.loader import read_object
        clang = "/usr/lib/llvm-19/bin/clang"
        if not os.path.exists(clang):
            pytest.skip("clang 19 not installed")
        with tempfile.TemporaryDirectory() as d:
            o = os.path.join(d, "cb.o")
            subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I/usr/include/x86_64-linux-gnu",
                            "-c", str(Path(__file__).parent / "runtime_c" / "callbacks.c"), "-o", o], check=True)
            _REAL["b"] = read_object(o).btf_for_kernel
    return _REAL["b"]


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_clang_btf_errno_matches_kernel(data):
    """Bytes of a real object's BTF changed: the same verdict (errno) as Linux's btf_parse."""
    K.require_kernel()
    base = _real_blob()
    d = bytearray(base)
    for _ in range(data.draw(st.integers(1, 2))):
        d[data.draw(st.integers(24, len(d) - 1))] = data.draw(st.sampled_from([0, 1, 2, 0xFF]) | st.integers(0, 255))
    kerr, klog, _ = _run(_kernel, bytes(d), log_level=1, log_size=1 << 20)
    perr, plog, _ = _run(_pybpf, bytes(d), log_level=1, log_size=1 << 20)
    assert perr == kerr, (klog.strip().splitlines()[-1:], plog.strip().splitlines()[-1:])
