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
        req.btf_info = (p.prog_btf_fd, p.func_info_cnt, p.line_info_cnt)
    try:
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
