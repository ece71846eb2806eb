"""``bpf(BPF_PROG_LOAD, attr, size)``: the attr copied in as Linux does, then :func:`load.load`.

Privileges are not in the attr: bpf() loads as a privileged loader unless the
caller runs it inside ``pybpf.prog.privileges(False)``.
"""

from __future__ import annotations

import errno
import os
import struct

from ..isa.insn import decode
from ..syscall import constants as C
from ..syscall import register
from ..syscall.dispatch import Attr
from ..syscall.umem import read, read_cstr, write
from . import load as L
from .attr import LOG_TRUE_SIZE_OFFSET, PROG_LOAD_LAST_FIELD_END, PROG_NAME_OFFSET, ProgLoadAttr

LICENSE_MAX = 128


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {what}")


def _user_fd_array(addr: int):
    def get(idx: int) -> int:
        try:
            return struct.unpack("<i", read(addr + 4 * idx, 4, "fd_array"))[0]
        except OSError as e:
            raise L._EarlyError(e.errno, f"cannot read fd_array[{idx}]") from None
    return get


def prog_load(a: Attr) -> int:
    p = a.view(ProgLoadAttr)
    privileged = L.current_privileged()
    if p.prog_flags & ~L.PROG_FLAGS_MASK:
        raise _err(errno.EINVAL, f"unknown prog_flags {p.prog_flags & ~L.PROG_FLAGS_MASK:#x}")
    if p.prog_flags & L.F_TOKEN_FD:
        try:
            os.fstat(p.prog_token_fd)
        except OSError:
            raise _err(errno.EBADF, f"prog_token_fd {p.prog_token_fd}") from None
        raise _err(errno.EINVAL, f"prog_token_fd {p.prog_token_fd} is not a BPF token (tokens are not supported)")
    limit = L.COMPLEXITY_LIMIT_INSNS if privileged else L.BPF_MAXINSNS
    if p.insn_cnt == 0 or p.insn_cnt > limit:
        raise _err(errno.E2BIG, f"insn_cnt {p.insn_cnt} is not within 1..{limit}")
    req = L.LoadRequest(insns=[], prog_type=p.prog_type, log_level=p.log_level, log_size=p.log_size,
                        has_log_buf=bool(p.log_buf), expected_attach_type=p.expected_attach_type,
                        prog_flags=p.prog_flags, privileged=privileged, prog_ifindex=p.prog_ifindex,
                        attach_btf_id=p.attach_btf_id, attach_prog_fd=p.attach_prog_fd)
    req.insns = [None] * p.insn_cnt        # only the count matters to the first checks
    L.check_request(req)
    req.insns = decode(read(p.insns, p.insn_cnt * 8, "insns"), check=False)
    req.license = read_cstr(p.license, LICENSE_MAX - 1, "license").decode("latin-1") \
        if _cstr_ok(p.license) else _license_truncated(p.license)
    if p.signature:
        raise _err(errno.EOPNOTSUPP, "signed programs are not supported")
    L.check_type_and_name(req)
    req.name = L.name_check(a.raw[PROG_NAME_OFFSET:PROG_NAME_OFFSET + 16])
    if p.fd_array_cnt:
        raw = read(p.fd_array, 4 * p.fd_array_cnt, "fd_array")
        req.fd_array_fds = list(struct.unpack(f"<{p.fd_array_cnt}i", raw))
    if p.fd_array:
        req.fd_array = _user_fd_array(p.fd_array)
    if p.func_info_cnt or p.line_info_cnt:
        req.btf_fd = p.prog_btf_fd
    try:
        if p.func_info_cnt or p.line_info_cnt:
            _btf_records(a, p, req)
        done = L.load(req)
    except L.ProgLoadError as e:
        if e.logged:
            _report(a, p, e.log_bytes, e.log_true_size)
        raise
    try:
        _report(a, p, done.log_bytes, done.log_true_size)
    except BaseException:
        os.close(done.fd)
        raise
    return done.fd


MAX_REC_SIZE = 252      # MAX_FUNCINFO_REC_SIZE / MAX_LINEINFO_REC_SIZE


def _copy_records(a: Attr, addr: int, cnt: int, rec_size: int, size: int, what: str,
                  size_field: int) -> bytes:
    """cnt records of rec_size bytes from the caller, cut to Linux's size (its tail must be zero)."""
    out = []
    for i in range(cnt):
        raw = read(addr + i * rec_size, rec_size, what)
        if raw[size:].strip(b"\0"):
            e = L._EarlyError(errno.E2BIG, f"nonzero tailing record in {what}")
            e.newline = False       # Linux's message has none
            # Linux tells the caller the record size it knows, when it reports this fault
            e.report = lambda: a.write_back(size_field, size.to_bytes(4, "little"))
            raise e
        out.append(raw[:size])
    return b"".join(out)


def _btf_records(a: Attr, p: ProgLoadAttr, req: L.LoadRequest) -> None:
    """check_btf_func_early / check_btf_line's copy-in: record sizes, tails, EFAULT."""
    if L.logbuf.check_attrs(req.log_level, req.log_size, req.has_log_buf):
        return      # load() reports the bad log attributes first, as Linux's bpf_check does
    try:
        L._btf_object(req)
        if p.func_info_cnt:
            rs = p.func_info_rec_size
            if rs < L.FUNC_INFO_SIZE or rs > MAX_REC_SIZE or rs % 4:
                raise L._EarlyError(errno.EINVAL, f"invalid func info rec size {rs}")
            req.func_info = _copy_records(a, p.func_info, p.func_info_cnt, rs, L.FUNC_INFO_SIZE,
                                          "func info", ProgLoadAttr.func_info_rec_size.offset)
    except L._EarlyError as e:
        _raise_early(req, e)
    except OSError as e:
        raise L.ProgLoadError(e.errno, f"cannot read the BTF records: {e.strerror}") from None
    if p.line_info_cnt:
        # Linux copies line_info only once func_info matched the subprograms: a fault here
        # is reported by load() at that point
        try:
            rs = p.line_info_rec_size
            if rs < L.LINE_INFO_SIZE or rs > MAX_REC_SIZE or rs % 4:
                raise L._EarlyError(errno.EINVAL, f"invalid line info rec size {rs}", in_log=False)
            req.line_info = _copy_records(a, p.line_info, p.line_info_cnt, rs, L.LINE_INFO_SIZE,
                                          "line_info", ProgLoadAttr.line_info_rec_size.offset)
        except L._EarlyError as e:
            req.line_info_error = e
        except OSError as e:
            req.line_info_error = L._EarlyError(e.errno, f"cannot read line_info: {e.strerror}", in_log=False)


def _raise_early(req: L.LoadRequest, e) -> None:
    """A fault found before the verifier ran, with the log Linux writes for it."""
    getattr(e, "report", lambda: None)()
    level = req.log_level
    nl = "\n" if getattr(e, "newline", True) else ""
    text = ((e.msg + nl) if e.in_log else "") + L._stats_line(level) if level else ""
    data, true_size, over = L.logbuf.finalize(text, level, req.log_size)
    raise L.ProgLoadError(over or e.code, e.msg, text, None, true_size, data, logged=True)


def _cstr_ok(addr: int) -> bool:
    try:
        read_cstr(addr, LICENSE_MAX - 1, "license")
        return True
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return False
        raise


def _license_truncated(addr: int) -> str:
    """strncpy_from_user of 127 bytes with no NUL among them: Linux cuts the license there."""
    return read(addr, LICENSE_MAX - 1, "license").decode("latin-1")


def _report(a: Attr, p: ProgLoadAttr, data: bytes, true_size: int) -> None:
    if data:
        write(p.log_buf, data, "log_buf")
    if a.size >= LOG_TRUE_SIZE_OFFSET + 4:
        a.write_back(LOG_TRUE_SIZE_OFFSET, true_size.to_bytes(4, "little"))


register(C.BPF_PROG_LOAD, prog_load, PROG_LOAD_LAST_FIELD_END)
