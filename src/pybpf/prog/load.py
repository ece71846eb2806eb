"""BPF_PROG_LOAD: from a request to a program object, deciding errnos as Linux 6.18 does.

The checks run in the order of kernel/bpf/syscall.c:bpf_prog_load() and then
bpf_check(), so that a request with several faults fails with the errno
Linux reports first (each order was checked against the host kernel).  The
verifier (:func:`pybpf.verifier.verify`) proves the program; everything
decided around it (attrs, privileges, the log buffer, map fds, the object and
its holds) is here.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from .. import kobj, verifier
from ..errors import InsnError, PybpfError
from ..isa import opcodes as op
from ..isa.insn import Insn, check_program
from . import logbuf
from .image import ProgImage
from .tag import prog_tag
from .types import UNPRIVILEGED_TYPES

BPF_MAXINSNS = 4096
COMPLEXITY_LIMIT_INSNS = 1_000_000
MAX_USED_MAPS = 64
# verifying again with a log, only to name the failing instruction, is worth it for small runs only
RERUN_FOR_INDEX_MAX = 100_000

# prog_flags Linux 6.18 accepts (the others fail with EINVAL)
F_STRICT_ALIGNMENT = 1 << 0
F_ANY_ALIGNMENT = 1 << 1
F_TEST_RND_HI32 = 1 << 2
F_TEST_STATE_FREQ = 1 << 3
F_SLEEPABLE = 1 << 4
F_XDP_HAS_FRAGS = 1 << 5
F_XDP_DEV_BOUND_ONLY = 1 << 6
F_TEST_REG_INVARIANTS = 1 << 7
F_TOKEN_FD = 1 << 16
PROG_FLAGS_MASK = (F_STRICT_ALIGNMENT | F_ANY_ALIGNMENT | F_TEST_RND_HI32 | F_TEST_STATE_FREQ
                   | F_SLEEPABLE | F_XDP_HAS_FRAGS | F_XDP_DEV_BOUND_ONLY | F_TEST_REG_INVARIANTS
                   | F_TOKEN_FD)
BPF_TRACE_UPROBE_MULTI = 48

# Whether bpf() calls in this context load as a privileged loader (see privileges()).
_privileged: contextvars.ContextVar[bool] = contextvars.ContextVar("pybpf_prog_privileged", default=True)


@contextlib.contextmanager
def privileges(privileged: bool):
    """Within the block, ``bpf(BPF_PROG_LOAD, ...)`` loads as a (un)privileged loader would."""
    token = _privileged.set(bool(privileged))
    try:
        yield
    finally:
        _privileged.reset(token)


def current_privileged() -> bool:
    return _privileged.get()


class ProgLoadError(PybpfError, OSError):
    """A refused BPF_PROG_LOAD: ``errno``, the verifier ``log`` and the failing ``index`` (or None).

    Also an OSError, so ``pybpf.bpf()`` raises it as the syscall would fail.
    """

    def __init__(self, code: int, message: str, log: str = "", index: int | None = None,
                 log_true_size: int = 0, log_bytes: bytes = b"", logged: bool = False):
        where = f" (insn {index})" if index is not None else ""
        OSError.__init__(self, code, f"{os.strerror(code)}: {message}{where}")
        self.message = message
        self.log = log
        self.index = index
        self.log_true_size = log_true_size
        self.log_bytes = log_bytes       # what goes to the caller's buffer
        self.logged = logged             # bpf_check was reached: log_true_size is reported

    def __str__(self) -> str:
        return self.strerror


@dataclass
class LoadRequest:
    """Everything BPF_PROG_LOAD takes, already copied in from the caller's memory."""
    insns: list[Insn]
    prog_type: int
    license: str = "GPL"
    log_level: int = 0
    log_size: int = 0
    has_log_buf: bool = False
    name: str = ""
    expected_attach_type: int = 0
    prog_flags: int = 0
    privileged: bool = True
    fd_array: Callable[[int], int] | None = None   # index -> fd, for map_idx references
    fd_array_fds: list[int] = field(default_factory=list)   # the fd_array_cnt fds, bound up front
    # BTF: prog_btf_fd (set when func_info_cnt or line_info_cnt is), and the records already
    # copied in at Linux's record sizes (bpf_func_info: 8 bytes, bpf_line_info: 16 bytes)
    btf_fd: int | None = None
    func_info: bytes = b""
    line_info: bytes = b""
    line_info_error: object = None      # a fault copying line_info in, reported in Linux's order
    prog_ifindex: int = 0
    attach_btf_id: int = 0
    attach_prog_fd: int = 0


@dataclass
class Loaded:
    fd: int
    log: str
    log_bytes: bytes
    log_true_size: int
    image: ProgImage
    result: object


def _fail(code: int, msg: str) -> ProgLoadError:
    return ProgLoadError(code, msg)


def name_check(raw: bytes) -> str:
    """bpf_obj_name_cpy: NUL within 16 bytes, only letters, digits, '_' and '.'."""
    nul = raw.find(b"\0")
    if nul < 0:
        raise _fail(errno.EINVAL, "prog_name is not NUL-terminated within 16 bytes")
    name = raw[:nul]
    from ..syscall.commands import _name_char
    if any(not _name_char(c) for c in name):
        raise _fail(errno.EINVAL, f"prog_name {name!r} has characters other than letters, digits, _ and .")
    return name.decode("latin-1")


def is_gpl_compatible(license: str) -> bool:
    """license_is_gpl_compatible(): one list, the verifier's, decides GPL-only helpers too."""
    return verifier.is_gpl_compatible(license)


# -- before the verifier: bpf_prog_load() -------------------------------------------

def check_request(req: LoadRequest) -> None:
    """The checks of bpf_prog_load() that come before bpf_check(), in Linux's order."""
    if req.prog_flags & ~PROG_FLAGS_MASK:
        raise _fail(errno.EINVAL, f"unknown prog_flags {req.prog_flags & ~PROG_FLAGS_MASK:#x}")
    n = len(req.insns)
    limit = COMPLEXITY_LIMIT_INSNS if req.privileged else BPF_MAXINSNS
    if n == 0 or n > limit:
        raise _fail(errno.E2BIG, f"insn_cnt {n} is not within 1..{limit}")
    if not req.privileged and req.prog_type not in UNPRIVILEGED_TYPES:
        raise _fail(errno.EPERM, f"program type {req.prog_type} needs CAP_BPF "
                    "(unprivileged loaders may load socket_filter and cgroup_skb only)")
    if req.attach_prog_fd:
        raise _fail(errno.EINVAL, "attach_prog_fd: program extension and tracing attach are not supported")
    if req.attach_btf_id:
        raise _fail(errno.EINVAL, "attach_btf_id needs kernel BTF, which pybpf does not have")


def check_type_and_name(req: LoadRequest) -> None:
    """After the insns and license are copied in: device binding, program type."""
    if req.prog_ifindex:
        raise _fail(errno.EINVAL, "prog_ifindex: device-bound (offloaded) programs are not supported")
    if req.prog_type not in verifier.progtypes.SUPPORTED:
        from .types import prog_type_name
        raise _fail(errno.EINVAL, f"program type {req.prog_type} ({prog_type_name(req.prog_type)}) "
                    "is not supported")


# -- bpf_check(): fds, the verifier, the log -----------------------------------------

def _stats_line(level: int) -> str:
    return (f"processed 0 insns (limit {COMPLEXITY_LIMIT_INSNS}) max_states_per_insn 0 "
            "total_states 0 peak_states 0 mark_read 0\n") if level else ""


class _EarlyError(Exception):
    def __init__(self, code: int, msg: str, in_log: bool = True):
        self.code, self.msg, self.in_log = code, msg, in_log


def _map_object(fd: int):
    """(handle, None) for a map fd, (None, errno) otherwise: EBADF if closed, EINVAL if not a map."""
    try:
        obj = kobj.obj_from_fd(fd)
    except OSError as e:
        return None, (errno.EBADF if e.errno == errno.EBADF else errno.EINVAL)
    if obj.kind != "map":
        return None, errno.EINVAL
    return obj, None


def _map_info(obj) -> verifier.MapInfo:
    from ..syscall.mapops import spec_of
    s = spec_of(obj)
    return verifier.MapInfo.from_spec(s)


@dataclass
class _Resolved:
    insns: list[Insn]                   # idx references turned into fd references, for the verifier
    maps: dict[int, verifier.MapInfo]   # fd -> info, every fd that is a map
    objects: dict[int, object]          # fd -> map handle
    not_maps: set[int]                  # fds that are open but not maps (EINVAL, not EBADF)
    order: list[int]                    # map fds in order of first use (used_maps)


def resolve_maps(req: LoadRequest) -> _Resolved:
    insns = list(req.insns)
    res = _Resolved(insns, {}, {}, set(), [])

    def use(fd: int) -> bool:
        obj, err = _map_object(fd)
        if obj is None:
            if err == errno.EINVAL:
                res.not_maps.add(fd)
            return False
        res.objects[fd] = obj
        res.maps[fd] = _map_info(obj)
        if all(res.objects[f] is not obj for f in res.order):
            res.order.append(fd)
        return True

    for fd in req.fd_array_fds:          # process_fd_array: every fd binds to the program
        obj, err = _map_object(fd)
        if obj is None:
            raise _EarlyError(err, f"fd {fd} is not pointing to valid bpf_map or btf")
        use(fd)
    i, n = 0, len(insns)
    while i < n:
        ins = insns[i]
        if ins.code == op.LD_IMM64 and i + 1 < n:
            if ins.src in (op.PSEUDO_MAP_IDX, op.PSEUDO_MAP_IDX_VALUE) and req.fd_array is not None:
                fd = req.fd_array(ins.imm & 0xFFFFFFFF)
                src = op.PSEUDO_MAP_FD if ins.src == op.PSEUDO_MAP_IDX else op.PSEUDO_MAP_VALUE
                insns[i] = ins = Insn(ins.code, ins.dst, src, ins.off, fd)
            if ins.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE):
                use(ins.imm)
            i += 2
            continue
        i += 1
    if len(res.order) > MAX_USED_MAPS:
        raise _EarlyError(errno.E2BIG, f"The total number of maps per program has reached the limit "
                          f"of {MAX_USED_MAPS}")
    return res


BTF_HOLD_TAG = "btf"
FUNC_INFO_SIZE = 8          # struct bpf_func_info
LINE_INFO_SIZE = 16         # struct bpf_line_info


def _btf_object(req: LoadRequest):
    """btf_get_by_fd() of prog_btf_fd when func_info or line_info is given (EBADF / EINVAL)."""
    if req.btf_fd is None:
        return None
    from ..syscall.btf import btf_object
    try:
        return btf_object(req.btf_fd)
    except OSError as e:
        # Linux fails in btf_get_by_fd() without a word in the log
        raise _EarlyError(e.errno, f"prog_btf_fd {req.btf_fd} is not a BTF object", in_log=False) from None


def subprog_starts(insns: Sequence[Insn]) -> list[int]:
    """First instruction of each subprogram: 0 and every bpf-to-bpf call or callback target."""
    starts = {0}
    for i, ins in enumerate(insns):
        if ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL or \
                ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC:
            t = i + ins.imm + 1
            if 0 <= t < len(insns):
                starts.add(t)
    return sorted(starts)


def check_line_info(req: LoadRequest, btf: bytes):
    """check_btf_line(): (errno, message, in log?, newline?) of the first fault of line_info, or None.

    Run once func_info matches the subprograms (else the verifier reports that first).
    """
    if not req.line_info and req.line_info_error is None:
        return None
    from ..verifier import funcinfo
    from ..loader.btf import Btf
    starts = subprog_starts(req.insns)
    try:
        if req.func_info:
            funcinfo.match_subprogs(funcinfo.check_early(req.func_info, btf), starts)
        strings = Btf(btf).strings
    except Exception:
        return None         # the verifier reports the func_info fault, in Linux's order
    e = req.line_info_error
    if e is not None:
        getattr(e, "report", lambda: None)()
        return e.code, e.msg, e.in_log, getattr(e, "newline", True)
    bad = _line_fault(req, starts, strings)
    return (errno.EINVAL, bad, True, True) if bad else None


def _line_fault(req: LoadRequest, starts: list[int], strings: bytes) -> str | None:
    import struct
    n = len(req.insns)
    prev = 0
    s = 0
    count = len(req.line_info) // LINE_INFO_SIZE
    for i in range(count):
        off, file_off, line_off, _ = struct.unpack_from("<IIII", req.line_info, i * LINE_INFO_SIZE)
        if i and off <= prev or off >= n:
            return f"Invalid line_info[{i}].insn_off:{off} (prev_offset:{prev} prog->len:{n})"
        if not req.insns[off].code:
            return f"Invalid insn code at line_info[{i}].insn_off"
        if line_off >= len(strings) or file_off >= len(strings):
            return f"Invalid line_info[{i}].line_off or .file_name_off"
        if s != len(starts):
            if off == starts[s]:
                s += 1
            elif starts[s] < off:
                return f"missing bpf_line_info for func#{s}"
        prev = off
    if s != len(starts):
        return f"missing bpf_line_info for {len(starts) - s} funcs starting from func#{s}"
    return None


_INSN_LINE = re.compile(r"^(\d+): \(")


def error_index(log: str) -> int | None:
    """The index of the instruction the verifier was at when it failed (from a level-1 log)."""
    idx = None
    for line in log.splitlines():
        m = _INSN_LINE.match(line)
        if m:
            idx = int(m.group(1))
    return idx


def _verify(req: LoadRequest, res: _Resolved, level: int, btf: bytes | None = None):
    try:
        return verifier.verify(res.insns, prog_type=req.prog_type, maps=res.maps, license=req.license,
                               log_level=level, privileged=req.privileged,
                               expected_attach_type=req.expected_attach_type,
                               func_info=req.func_info if btf is not None and req.func_info else None,
                               btf=btf)
    except RecursionError:
        return verifier.VerifyResult(False, errno.E2BIG, "", error="program too complex for the verifier")
    except Exception as e:      # a verifier bug must not take the caller down: Linux says EFAULT
        msg = f"verifier bug: {type(e).__name__}: {e}"
        return verifier.VerifyResult(False, errno.EFAULT, msg + "\n" if level else "", error=msg)


def load(req: LoadRequest, *, want_index: bool = False) -> Loaded:
    """Load a program; raises :class:`ProgLoadError` as BPF_PROG_LOAD fails.

    ``want_index``: if the load fails without a log, verify again with one to
    find the failing instruction (the Python API's error messages name it).
    """
    check_request(req)
    check_type_and_name(req)
    bad = logbuf.check_attrs(req.log_level, req.log_size, req.has_log_buf)
    if bad:
        raise _fail(errno.EINVAL, bad)
    level = req.log_level

    def finish_error(code: int, msg: str, text: str, index=None, dropped: int = 0) -> ProgLoadError:
        data, true_size, over = logbuf.finalize(text, level, req.log_size, dropped)
        if over:
            code, msg = over, f"log buffer of {req.log_size} bytes too small, {true_size} needed; {msg}"
        return ProgLoadError(code, msg, text, index, true_size, data, logged=True)

    try:
        res = resolve_maps(req)
        btf_obj = _btf_object(req)
        if req.prog_flags & F_SLEEPABLE and not (
                req.prog_type == 2 and req.expected_attach_type == BPF_TRACE_UPROBE_MULTI):
            raise _EarlyError(errno.EINVAL, "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and "
                              "struct_ops programs can be sleepable")
    except _EarlyError as e:
        text = ((e.msg + "\n") if e.in_log else "") + _stats_line(level) if level else ""
        raise finish_error(e.code, e.msg, text) from None

    btf = None
    if btf_obj is not None:
        from ..syscall.btf import btf_bytes
        btf = btf_bytes(btf_obj)
        bad_line = check_line_info(req, btf)
        if bad_line:
            code, msg, in_log, nl = bad_line
            text = ((msg + ("\n" if nl else "")) if in_log else "") + _stats_line(level) if level else ""
            raise finish_error(code, msg, text)
    r = _verify(req, res, level, btf)
    code, msg = r.errno, r.error
    if r.ok:
        try:
            check_program(res.insns)
        except InsnError as e:      # an encoding the verifier let through: no engine could run it
            code, msg = errno.EINVAL, e.reason
    if code:
        m = re.fullmatch(r"fd (-?\d+) is not pointing to valid bpf_map", msg or "")
        if code == errno.EBADF and m and int(m.group(1)) in res.not_maps:
            code = errno.EINVAL         # an open fd that is not a map: Linux's __bpf_map_get says EINVAL
        text = r.log if r.ok is False else r.log + (msg + "\n" if level else "")
        index = error_index(text)
        if index is None and want_index and not (level & 3) and r.processed <= RERUN_FOR_INDEX_MAX:
            index = error_index(_verify(req, res, 1, btf).log)
        raise finish_error(code, msg or os.strerror(code), text, index, r.log_dropped)

    data, true_size, over = logbuf.finalize(r.log, level, req.log_size, r.log_dropped)
    if over:
        raise ProgLoadError(over, f"log buffer of {req.log_size} bytes too small, {true_size} needed",
                            r.log, None, true_size, data, logged=True)
    image = _image(req, res, r)
    if btf_obj is not None:
        image.btf_id = btf_obj.id
        image.func_info = req.func_info
        image.line_info = req.line_info
    fd = _create(image, req.name, res, btf_obj)
    return Loaded(fd, r.log, data, true_size, image, r)


def _image(req: LoadRequest, res: _Resolved, r) -> ProgImage:
    ids = {fd: obj.id for fd, obj in res.objects.items()}
    xl = list(r.insns_rewritten or res.insns)
    i = 0
    while i < len(xl):
        ins = xl[i]
        if ins.code == op.LD_IMM64 and i + 1 < len(xl):
            if ins.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE) and ins.imm in ids:
                xl[i] = Insn(ins.code, ins.dst, ins.src, ins.off, ids[ins.imm])
            i += 2
            continue
        i += 1
    return ProgImage(prog_type=req.prog_type, expected_attach_type=req.expected_attach_type,
                     prog_flags=req.prog_flags, license=req.license,
                     gpl_compatible=is_gpl_compatible(req.license), tag=prog_tag(list(req.insns)),
                     insns=list(req.insns), xlated=xl, map_ids=[res.objects[fd].id for fd in res.order],
                     load_time_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME),
                     verified_insns=r.processed, subprog_starts=list(r.subprog_starts or [0]),
                     stack_depth=list(r.stack_depth or [0]), helpers_used=sorted(r.helpers_used or ()),
                     name=req.name)


def _create(image: ProgImage, name: str, res: _Resolved, btf_obj=None) -> int:
    payload = image.payload()
    fd = kobj.create_object("prog", image.header_fields(), len(payload), name=name)
    try:
        obj = kobj.obj_from_fd(fd)
        obj.payload[:len(payload)] = payload
        for mfd in res.order:
            kobj.add_hold(obj, res.objects[mfd])
        if btf_obj is not None:
            kobj.add_hold(obj, btf_obj, BTF_HOLD_TAG)
    except BaseException:
        os.close(fd)
        raise
    return fd


def as_insns(code) -> list[Insn]:
    """Instructions from a list of Insn, raw bytes, or assembler text."""
    from ..isa.insn import decode
    if isinstance(code, (bytes, bytearray, memoryview)):
        if len(code) % 8:
            raise ProgLoadError(errno.EINVAL, f"program of {len(code)} bytes is not a whole number "
                                "of 8-byte instructions")
        return decode(bytes(code), check=False)
    if isinstance(code, str):
        from ..asm import assemble
        return assemble(code, source="<program>")
    insns = list(code)
    if not all(isinstance(i, Insn) for i in insns):
        raise TypeError("a program is a list of Insn, bytes, or assembler text")
    return insns


def seq_fd_array(fds: Sequence[int]) -> Callable[[int], int]:
    def get(idx: int) -> int:
        if idx >= len(fds):
            # the kernel reads past the caller's array; we know its end
            raise _EarlyError(errno.EFAULT, f"map index {idx} is past the end of fd_array "
                              f"({len(fds)} entries)")
        return fds[idx]
    return get
