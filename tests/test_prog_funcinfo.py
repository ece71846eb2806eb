"""BPF_PROG_LOAD with prog_btf_fd + func_info / line_info, differential against the host kernel."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

import pytest

import pybpf
from pybpf import kobj
from pybpf.prog import Program, ProgLoadError
from pybpf.prog.attr import ProgInfo
from pybpf.syscall import bpf
from pybpf.syscall import constants as C
from pybpf.syscall.btf import btf_load

import kernel_oracle as K
from test_btf_blobs import (PROG, S_FILE, S_LINE, Buffers, blob, btf_attr, func_recs, line_recs,
                            prog_attr)

GOOD_FUNCS = func_recs((0, 3), (2, 4))
GOOD_LINES = line_recs((0, S_FILE, S_LINE, (7 << 10) | 2), (2, S_FILE, S_LINE, (9 << 10) | 5))


def _btf_fds(bufs) -> tuple[int, int]:
    """The same BTF blob loaded in the kernel and in pybpf."""
    attr, _ = btf_attr(bufs, blob())
    kfd, err = K.sys_bpf(C.BPF_BTF_LOAD, attr)
    assert err == 0
    pfd, _ = btf_load(blob())
    return kfd, pfd


def _both(**kw):
    """(kernel errno, kernel log, attr after) and the same for pybpf."""
    bufs = Buffers()
    kfd, pfd = _btf_fds(bufs)
    try:
        out = []
        for fn, bfd in ((K.sys_bpf, kfd), (None, pfd)):
            fd_override = kw.pop("btf_fd", None) if fn is None else kw.get("btf_fd")
            args = dict(kw)
            args.pop("btf_fd", None)
            btf_fd = bfd if fd_override is None else fd_override(bfd) if callable(fd_override) else fd_override
            attr, log = prog_attr(bufs, btf_fd=btf_fd, **args)
            if fn is not None:
                fd, err = fn(C.BPF_PROG_LOAD, attr)
            else:
                try:
                    fd, err = bpf(C.BPF_PROG_LOAD, (ctypes.c_char * len(attr)).from_buffer(attr)), 0
                except OSError as e:
                    fd, err = -1, e.errno
            if fd >= 0:
                os.close(fd)
            out.append((err, log.value.decode("utf-8", "replace") if log is not None else "", attr))
            if fn is not None and "btf_fd" in kw:
                kw = dict(kw)
        return out
    finally:
        os.close(kfd)
        os.close(pfd)


def _first_line(log: str) -> str:
    lines = [ln for ln in log.splitlines() if ln.strip() and not ln.startswith(("processed ", "func#"))]
    return lines[0] if lines else ""


CASES = {
    "good": dict(func_info=GOOD_FUNCS, line_info=GOOD_LINES),
    "good_func_only": dict(func_info=GOOD_FUNCS),
    "rec_size_12_zero_tail": dict(func_info=func_recs((0, 3), (2, 4), rec_size=12), func_rec=12),
    "rec_size_12_nonzero_tail": dict(func_info=func_recs((0, 3), (2, 4), rec_size=12, tail=b"\1\0\0\0"),
                                     func_rec=12),
    "rec_size_4": dict(func_info=GOOD_FUNCS, func_rec=4, func_cnt=2),
    "rec_size_10": dict(func_info=GOOD_FUNCS + bytes(8), func_rec=10, func_cnt=2),
    "rec_size_256": dict(func_info=bytes(512), func_rec=256, func_cnt=2),
    "first_off_nonzero": dict(func_info=func_recs((1, 3), (2, 4))),
    "offsets_not_increasing": dict(func_info=func_recs((0, 3), (0, 4))),
    "type_not_func": dict(func_info=func_recs((0, 3), (2, 1))),
    "type_out_of_range": dict(func_info=func_recs((0, 3), (2, 99))),
    "too_few_records": dict(func_info=func_recs((0, 3))),
    "wrong_subprog_offset": dict(func_info=func_recs((0, 3), (3, 4))),
    "func_info_null": dict(func_info=b"", func_cnt=2),
    "line_rec_size_8": dict(func_info=GOOD_FUNCS, line_info=GOOD_LINES, line_rec=8, line_cnt=2),
    "line_nonzero_tail": dict(func_info=GOOD_FUNCS, line_rec=20, line_cnt=2,
                              line_info=b"".join(r + b"\1\0\0\0" for r in (GOOD_LINES[:16], GOOD_LINES[16:]))),
    "line_missing_func1": dict(func_info=GOOD_FUNCS, line_info=GOOD_LINES[:16]),
    "line_first_not_zero": dict(func_info=GOOD_FUNCS, line_info=line_recs((1, S_FILE, S_LINE, 0))),
    "line_off_past_end": dict(func_info=GOOD_FUNCS, line_info=GOOD_LINES + line_recs((9, S_FILE, S_LINE, 0))),
    "line_bad_string": dict(func_info=GOOD_FUNCS, line_info=line_recs((0, S_FILE, 999, 0), (2, S_FILE, S_LINE, 0))),
    "bad_func_and_line_tail": dict(func_info=func_recs((1, 3), (2, 4)), line_rec=20, line_cnt=2,
                                   line_info=bytes([1]) * 40),
    "line_rec_size_8_bad_func": dict(func_info=func_recs((0, 3)), line_info=GOOD_LINES, line_rec=8,
                                     line_cnt=2),
    "btf_fd_closed": dict(func_info=GOOD_FUNCS, btf_fd=9999),
    "btf_fd_not_btf": dict(func_info=GOOD_FUNCS, btf_fd=0),
    "no_log": dict(func_info=func_recs((1, 3), (2, 4)), log_level=0, log_size=0),
    "small_log": dict(func_info=func_recs((1, 3), (2, 4)), log_size=12),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_prog_load_func_info_matches_kernel(name):
    K.require_kernel()
    (kerr, klog, kattr), (perr, plog, pattr) = _both(**CASES[name])
    assert perr == kerr, (name, kerr, perr, klog, plog)
    if kerr and klog:
        assert _first_line(plog) == _first_line(klog), (klog, plog)
    # rec sizes written back on E2BIG (func_info_rec_size at 76, line_info_rec_size at 92)
    assert pattr[76:80] == kattr[76:80] and pattr[92:96] == kattr[92:96]


def test_without_func_info_btf_fd_is_ignored():
    K.require_kernel()
    (kerr, _, _), (perr, _, _) = _both(btf_fd=9999)
    assert kerr == perr == 0


def test_prog_info_reports_btf_and_records():
    fd_btf, _ = btf_load(blob())
    try:
        p = Program.load(PROG, "socket_filter", btf=fd_btf, func_info=GOOD_FUNCS, line_info=GOOD_LINES)
    finally:
        os.close(fd_btf)
    with p:
        fbuf = ctypes.create_string_buffer(16)
        lbuf = ctypes.create_string_buffer(32)
        info = ProgInfo()
        info.nr_func_info, info.func_info_rec_size, info.func_info = 2, 8, ctypes.addressof(fbuf)
        info.nr_line_info, info.line_info_rec_size, info.line_info = 2, 16, ctypes.addressof(lbuf)
        attr = bytearray(16)
        struct.pack_into("<IIQ", attr, 0, p.fd, ctypes.sizeof(info), ctypes.addressof(info))
        bpf(C.BPF_OBJ_GET_INFO_BY_FD, (ctypes.c_char * 16).from_buffer(attr))
        btf_obj_id = info.btf_id
        assert btf_obj_id and kobj.find_by_id(btf_obj_id, "btf").kind == "btf"
        assert (info.nr_func_info, info.nr_line_info) == (2, 2)
        assert fbuf.raw == GOOD_FUNCS and lbuf.raw == GOOD_LINES
        # a rec size other than Linux's is EINVAL
        info.func_info_rec_size = 12
        struct.pack_into("<IIQ", attr, 0, p.fd, ctypes.sizeof(info), ctypes.addressof(info))
        with pytest.raises(OSError) as e:
            bpf(C.BPF_OBJ_GET_INFO_BY_FD, (ctypes.c_char * 16).from_buffer(attr))
        assert e.value.errno == errno.EINVAL
        # the program keeps the BTF object alive although our fd is closed
        assert p.image.btf_id == btf_obj_id
        from pybpf.prog.image import held_btf, source_lines
        assert held_btf(p._obj) == blob()
        assert source_lines(p.image, held_btf(p._obj))[2] == ("f.c", 9, 5, "return 0;")


def test_program_load_with_btf_bytes_and_pairs():
    with Program.load(PROG, "socket_filter", btf=blob(), func_info=[(0, 3), (2, 4)]) as p:
        assert p.image.func_info == GOOD_FUNCS
    with pytest.raises(ProgLoadError) as e:
        Program.load(PROG, "socket_filter", btf=blob(), func_info=[(0, 3), (3, 4)])
    assert e.value.errno == errno.EINVAL and "func_info" in str(e.value)
    with pytest.raises(ProgLoadError) as e:
        Program.load(PROG, "socket_filter", func_info=[(0, 3), (2, 4)])
    assert "BTF" in str(e.value)
    with pytest.raises(ProgLoadError) as e:
        Program.load(PROG, "socket_filter", btf=b"junk", func_info=[(0, 3), (2, 4)])
    assert e.value.errno == errno.EINVAL


def _compile(tmp_path, src, name):
    import subprocess
    clang = "/usr/lib/llvm-19/bin/clang"
    if not os.path.exists(clang):
        pytest.skip("clang 19 not installed")
    o = tmp_path / name
    subprocess.run([clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(o)], check=True)
    return o


def test_object_records_load_in_the_kernel(tmp_path):
    """The .BTF, func_info and line_info pybpf.load passes are what the kernel accepts for a C
    program with bpf_loop / for_each_map_elem callbacks (prog_btf_fd, rec sizes 8 and 16)."""
    from pathlib import Path
    from pybpf.isa.insn import encode
    from pybpf.loader import read_object, resolve
    K.require_kernel()
    o = _compile(tmp_path, Path(__file__).parent / "runtime_c" / "callbacks.c", "cb.o")
    spec = read_object(str(o))
    p = spec.programs["callbacks"]
    fds = {}
    bufs = Buffers()
    try:
        for n, m in spec.maps.items():
            fd, err = K.kernel_map_create(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
            assert err == 0
            fds[n] = fd
        battr, _ = btf_attr(bufs, spec.btf_for_kernel)
        bfd, err = K.sys_bpf(C.BPF_BTF_LOAD, battr)
        assert err == 0
        fds["<btf>"] = bfd
        code = encode(resolve(spec, fds, ["callbacks"])["callbacks"])
        for fi, li in ((p.func_info_bytes(), p.line_info_bytes()), (p.func_info_bytes(), b""), (b"", b"")):
            attr, log = prog_attr(bufs, btf_fd=bfd, func_info=fi, line_info=li, insns=code,
                                  prog_type=p.prog_type, log_size=1 << 20)
            fd, err = K.sys_bpf(C.BPF_PROG_LOAD, attr)
            if fd >= 0:
                os.close(fd)
            if fi:
                assert err == 0, log.value.decode()[-400:]
            else:       # without func_info Linux refuses callbacks, as pybpf's verifier must
                assert err == errno.EINVAL
    finally:
        for fd in fds.values():
            os.close(fd)


def test_cli_dump_xlated_prints_source_lines(tmp_path):
    from click.testing import CliRunner
    from pybpf.cli import main
    src = tmp_path / "lines.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'static __attribute__((noinline)) int twice(int x) { return x * 2; }\n'
                   'SEC("socket") int prog(struct __sk_buff *skb)\n{\n'
                   '    int n = skb->len;\n    return twice(n) + 1;\n}\n'
                   'char _license[] SEC("license") = "GPL";\n')
    o = _compile(tmp_path, src, "lines.o")
    pin = "/sys/fs/bpf/pybpf_test_funcinfo_lines"
    r = CliRunner().invoke(main, ["prog", "load", str(o), pin])
    assert r.exit_code == 0, r.output
    try:
        r = CliRunner().invoke(main, ["prog", "dump", "xlated", "pinned", pin])
        assert r.exit_code == 0, r.output
        lines = r.output.splitlines()
        assert lines[0] == "; return twice(n) + 1;" or lines[0].startswith("; int n")
        assert "; static __attribute__((noinline)) int twice(int x) { return x * 2; }" in lines
        r = CliRunner().invoke(main, ["prog", "dump", "xlated", "pinned", pin, "-j"])
        import json
        rows = json.loads(r.output)
        assert any(row.get("src", "").startswith("static") for row in rows)
        r = CliRunner().invoke(main, ["prog", "show", "pinned", pin, "-j"])
        assert r.exit_code == 0 and json.loads(r.output)["btf_id"] > 0
        r = CliRunner().invoke(main, ["prog", "show", "pinned", pin])
        assert "\tbtf_id " in r.output
    finally:
        os.unlink(kobj.translate(pin))


def test_pybpf_load_passes_btf_and_records(tmp_path):
    src = tmp_path / "sub.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'static __attribute__((noinline)) int twice(int x) { return x * 2; }\n'
                   'SEC("socket") int prog(struct __sk_buff *skb) { return twice(skb->len) + 1; }\n'
                   'char _license[] SEC("license") = "GPL";\n')
    o = _compile(tmp_path, src, "sub.o")
    with pybpf.object.load(o) as obj:
        assert obj.btf_fd >= 0 and not obj.btf_error
        p = obj.programs["prog"]
        assert p.info()["btf_id"] == kobj.obj_from_fd(obj.btf_fd).id
        assert len(p.image.func_info) == 16 and len(p.image.line_info) % 16 == 0 and p.image.line_info
        spec = obj.spec.programs["prog"]
        assert p.image.func_info == spec.func_info_bytes()
        r = p.run(bytes(64)).retval
        assert r % 2 == 1 and r > 1        # twice(len) + 1: the subprogram ran


from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_u32s = st.integers(0, 6) | st.sampled_from([0xFFFFFFFF, 1 << 31, 40])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(funcs=st.lists(st.tuples(st.integers(0, 4), _u32s), min_size=0, max_size=3),
       lines=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([0, S_FILE, S_LINE, 999]),
                                st.sampled_from([0, S_FILE, S_LINE, 999]), st.integers(0, 1 << 20)),
                      max_size=3))
def test_random_records_same_verdict_as_kernel(funcs, lines):
    """Any func_info / line_info records: pybpf accepts or refuses them as Linux does."""
    K.require_kernel()
    if not funcs and not lines:
        return
    (kerr, klog, _), (perr, plog, _) = _both(func_info=func_recs(*funcs), line_info=line_recs(*lines))
    assert perr == kerr, (klog, plog)
    # (verifier/funcinfo.py prints a type id >= 2**31 unsigned where Linux prints it signed)
    if kerr and klog and all(t < 1 << 31 for _, t in funcs):
        assert _first_line(plog) == _first_line(klog)
