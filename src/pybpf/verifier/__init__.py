"""The eBPF verifier: proves a program safe before it may run, as Linux's verifier does.

``verify(insns, prog_type=..., maps=...)`` is a pure function of its inputs: it
never raises on a bad program but returns a :class:`VerifyResult` with
``ok=False``, Linux's errno and a log that ends with the error in Linux's words.

Modules: :mod:`.tnum` and :mod:`.bounds` (scalar knowledge), :mod:`.regstate`
(register values and their log text), :mod:`.stack` (frames and stack slots),
:mod:`.state` (path states, checkpoints, pruning equivalence), :mod:`.cfg`
(structure checks, prune points, liveness), :mod:`.helpers` and :mod:`.context`
(helper prototypes; context fields and the runtime context layout), :mod:`.alu`,
:mod:`.memory`, :mod:`.branches`, :mod:`.calls` (one instruction family each),
:mod:`.core` (the exploration), :mod:`.log` (the kernel's log format),
:mod:`.funcinfo` (BTF func_info: subprogram linkage, which callbacks need).

Callbacks (``bpf_loop``, ``bpf_for_each_map_elem``) are verified as Linux 6.7+ does: the
call queues the callback's entry state and carries on; the callback returns to the call,
which is explored again until its states repeat (imprecise scalars widened on the way).
"""

from __future__ import annotations

import errno as E
import time
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..isa import opcodes as op
from ..isa.insn import Insn, check_insn
from . import bounds, context, funcinfo, helpers, progtypes
from .cfg import CfgError, build, check_unprivileged_calls, find_subprogs
from .core import Env, VerifyError, explore
from .log import Log, format_insn
from .regstate import PTR_TO_ARG_MEM, PTR_TO_ARG_MEM_OR_NULL, PTR_TO_CTX, Reg
from .stack import Frame
from .state import State

__all__ = ["verify", "VerifyResult", "MapInfo", "is_gpl_compatible", "format_insn", "fit_log",
           "context", "helpers", "progtypes", "LOG_LEVEL1", "LOG_LEVEL2", "LOG_STATS", "LOG_FIXED"]

COMPLEXITY_LIMIT = 1_000_000
MAX_INSNS_UNPRIV = 4096
LOG_LEVEL1, LOG_LEVEL2, LOG_STATS, LOG_FIXED = 1, 2, 4, 8

_GPL = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"}


def is_gpl_compatible(license: str) -> bool:
    return license in _GPL


@dataclass(frozen=True)
class MapInfo:
    """What the verifier needs to know about a map an instruction refers to."""
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: "MapInfo | None" = None   # the inner map template of ARRAY_OF_MAPS / HASH_OF_MAPS

    @classmethod
    def from_spec(cls, spec) -> "MapInfo":
        """From a :class:`pybpf.maps.MapSpec` (or anything with its attributes)."""
        inner = getattr(spec, "inner_map_spec", None)
        return cls(spec.map_type, spec.key_size, spec.value_size, spec.max_entries, spec.map_flags,
                   cls.from_spec(inner) if inner is not None else None)


@dataclass
class VerifyResult:
    ok: bool
    errno: int
    log: str
    processed: int = 0
    insns_rewritten: list = field(default_factory=list)
    subprog_starts: list = field(default_factory=list)
    stack_depth: list = field(default_factory=list)
    max_states_per_insn: int = 0
    total_states: int = 0
    peak_states: int = 0
    verification_time_us: int = 0
    helpers_used: frozenset = frozenset()
    maps_used: frozenset = frozenset()
    ctx_accesses: dict = field(default_factory=dict)
    error: str = ""
    # characters of a level-2 log dropped from its start (``log`` is its end, as Linux's
    # rotating log buffer keeps it)
    log_dropped: int = 0

    def __bool__(self) -> bool:
        return self.ok


def _stats(env: Env | None, processed: int, log: Log, elapsed_us: int, depths) -> None:
    if not log.level:
        return
    if log.level & LOG_STATS:
        log.write(f"verification time {elapsed_us} usec\n")
        log.write("stack depth " + "+".join(str(d) for d in depths) + "\n")
    m = env.max_states_per_insn if env else 0
    t = env.total_states if env else 0
    p = env.peak_states if env else 0
    log.write(f"processed {processed} insns (limit {COMPLEXITY_LIMIT}) max_states_per_insn {m} "
              f"total_states {t} peak_states {p} mark_read 0\n")


def _rewrite(insns: Sequence[Insn], accesses) -> list[Insn]:
    out = list(insns)
    for idx, acc in accesses.items():
        ins = out[idx]
        code = (ins.code & ~0x18) | op.SIZE_OF_BYTES[acc.runtime_size]
        out[idx] = Insn(code, ins.dst, ins.src, acc.runtime_off, ins.imm)
    return out


def _check_abnormal_return(insns, starts, have_btf: bool, returns_int) -> None:
    """LD_ABS and tail calls can leave a subprogram without its exit; Linux allows them only
    in subprograms whose BTF says they return an int (never without BTF)."""
    bounds = list(starts) + [len(insns)]
    for k in range(1, len(starts)):
        body = insns[bounds[k]:bounds[k + 1]]
        ld_abs = any(i.code & 7 == op.LD and i.code & 0xE0 in (op.ABS, op.IND) for i in body)
        tail = any(i.code == op.OP_CALL and i.src == op.CALL_HELPER and i.imm == 12 for i in body)
        if not have_btf:
            if ld_abs:
                raise VerifyError("LD_ABS is not allowed in subprogs without BTF", E.EINVAL)
            if tail:
                raise VerifyError("tail_call is not allowed in subprogs without BTF", E.EINVAL)
        elif not returns_int[k]:
            if ld_abs:
                raise VerifyError("LD_ABS is only allowed in functions that return 'int'.", E.EINVAL)
            if tail:
                raise VerifyError("tail_call is only allowed in functions that return 'int'.", E.EINVAL)


def _max_stack(insns, starts, depths) -> str | None:
    """Linux's complaint about the first call chain whose stack is over a limit, or None."""
    bounds = starts + [len(insns)]
    calls = {k: [] for k in range(len(starts))}
    for k in range(len(starts)):
        for i in range(bounds[k], bounds[k + 1]):
            ins = insns[i]
            if ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL:
                calls[k].append(starts.index(i + ins.imm + 1))
    tail = [any(insns[i].code == op.OP_CALL and insns[i].src == op.CALL_HELPER and insns[i].imm == 12
                for i in range(bounds[k], bounds[k + 1])) for k in range(len(starts))]
    worst = None

    def walk(k, total, frames, seen):
        nonlocal worst
        # A tail call unwinds only its own frame: the callers' stack stays, so Linux caps it
        # at 256 bytes where a subprogram may tail call (32 tail calls then fit in 8 KiB)
        if k and tail[k] and total >= 256 and worst is None:
            worst = (f"tail_calls are not allowed when call stack of previous frames is {total} bytes. "
                     "Too large")
        total += -(-depths[k] // 16) * 16
        if total > 512 and worst is None:
            worst = f"combined stack size of {frames} calls is {total}. Too large"
        for c in calls[k]:
            if c not in seen:
                walk(c, total, frames + 1, seen | {c})
    walk(0, 0, 1, {0})
    return worst


def verify(insns: Sequence[Insn], *, prog_type: int, maps: Mapping[int, MapInfo] | None = None,
           license: str = "", log_level: int = 0, privileged: bool = True,
           expected_attach_type: int = 0, max_insns: int = COMPLEXITY_LIMIT,
           func_info=None, btf=None) -> VerifyResult:
    """Verify ``insns`` (one :class:`Insn` per 8-byte slot) as Linux would for ``prog_type``.

    ``maps`` maps the fds used by LD_IMM64 (pseudo map fd / map value) to :class:`MapInfo`.
    ``func_info`` (``struct bpf_func_info`` records as bytes, or ``(insn_off, type_id)``
    pairs) and ``btf`` (the program's ``.BTF`` bytes or a parsed
    :class:`pybpf.loader.btf.Btf`) describe the subprograms, as BPF_PROG_LOAD's
    ``func_info``/``prog_btf_fd`` do; callbacks need them.
    """
    t0 = time.perf_counter()
    bounds.new_verification()
    insns = list(insns)
    maps = dict(maps or {})
    log = Log(log_level)
    n = len(insns)
    if n == 0:
        return VerifyResult(False, E.EINVAL, "", error="empty program")
    if n > (COMPLEXITY_LIMIT if privileged else MAX_INSNS_UNPRIV):
        return VerifyResult(False, E.E2BIG, "", error="program too large")
    if prog_type not in progtypes.SUPPORTED:
        return VerifyResult(False, E.EINVAL, "", error=f"unsupported program type {prog_type}")
    if not privileged and prog_type != progtypes.SOCKET_FILTER:
        return VerifyResult(False, E.EPERM, "", error="program type needs privileges")
    env = None
    err = None
    errno_ = 0
    try:
        try:
            fi_recs = funcinfo.check_early(func_info, btf) if func_info is not None else []
        except funcinfo.FuncInfoError as e:
            log.write(e.msg + ("\n" if e.newline else ""))
            raise VerifyError(e.msg, e.errno, logged=True) from None
        if not privileged:
            check_unprivileged_calls(insns)
        _precheck(insns)
        subs = find_subprogs(insns)
        if log.level & 2:
            # Linux lists the subprograms as soon as it has found them, before any other check
            for k, s in enumerate(subs):
                log.write(f"func#{k} @{s}\n")
        insn_errors = _resolve_ldimm64(insns, maps)
        cfg = build(insns, privileged, prog_type, subs)
        linkage = None
        if fi_recs:
            try:
                linkage = funcinfo.match_subprogs(fi_recs, cfg.subprog_starts)
            except funcinfo.FuncInfoError as e:
                raise VerifyError(e.msg, e.errno) from None
        _check_abnormal_return(insns, cfg.subprog_starts, linkage is not None,
                               funcinfo.returns_int(fi_recs, btf) if linkage is not None else None)
        if log.level & 2:
            _live_regs_dump(log, insns, cfg)
        env = Env(insns, cfg, prog_type=prog_type, maps=maps, license_gpl=is_gpl_compatible(license),
                  privileged=privileged, expected_attach_type=expected_attach_type, log=log,
                  max_insns=max_insns)
        env.func_linkage = linkage
        if linkage is not None:
            env.func_types = [tid for _, tid, _ in fi_recs]
            env.btf = funcinfo._parse_btf(btf)
        env.insn_errors = insn_errors
        frame = Frame(0, -1, 0)
        frame.regs[1] = Reg.pointer(PTR_TO_CTX)
        explore(env, State([frame]))
        if not (log.level & 2):
            log.reset(0)      # Linux keeps no level-1 log of a walk that succeeded
        _verify_globals(env)
        worst = _max_stack(insns, cfg.subprog_starts, env.stack_depth) if len(cfg.subprog_starts) > 1 else None
        if worst:
            if not (log.level & 2):
                log.reset(0)      # Linux checks this after a successful walk, whose level-1 log it dropped
            raise VerifyError(worst, E.EACCES)
    except (VerifyError, CfgError) as e:
        err = e.msg
        errno_ = e.errno
        if not getattr(e, "logged", False) and log.level:
            log.write(err + "\n")
    elapsed = int((time.perf_counter() - t0) * 1e6)
    processed = env.processed if env else 0
    depths = env.stack_depth if env else [0]
    _stats(env, processed, log, elapsed, depths)
    ok = errno_ == 0
    return VerifyResult(
        ok=ok, errno=errno_, log=log.text(), log_dropped=log.dropped, processed=processed,
        insns_rewritten=_rewrite(insns, env.ctx_rewrites) if ok else [],
        subprog_starts=list(env.cfg.subprog_starts) if env else [0],
        stack_depth=list(depths),
        max_states_per_insn=env.max_states_per_insn if env else 0,
        total_states=env.total_states if env else 0, peak_states=env.peak_states if env else 0,
        verification_time_us=elapsed,
        helpers_used=frozenset(env.helpers_used) if env else frozenset(),
        maps_used=frozenset(env.maps_used) if env else frozenset(),
        ctx_accesses=dict(env.ctx_rewrites) if env else {},
        error=err or "")


def _verify_globals(env: Env) -> None:
    """Each global function a verified walk called is verified on its own, from the state its
    BTF prototype describes, until no new one is called (Linux: do_check_subprogs)."""
    log = env.log
    done: set[int] = set()
    while True:
        todo = [k for k in sorted(env.globals_called) if k not in done]
        if not todo:
            return
        for k in todo:
            g = env.global_func(k)
            if log.on:
                log.write(f"Validating {g.name}() func#{k}...\n")
            frame = Frame(0, -1, k)
            for i, (kind, size, nullable) in enumerate(g.args):
                r = frame.regs[i + 1]
                if kind == funcinfo.ARG_SCALAR:
                    r.make_unknown()
                elif kind == funcinfo.ARG_CTX:
                    r.assign(Reg.pointer(PTR_TO_CTX))
                elif nullable:
                    r.assign(Reg.pointer(PTR_TO_ARG_MEM_OR_NULL, id=env.new_id(), mem_size=size))
                else:
                    r.assign(Reg.pointer(PTR_TO_ARG_MEM, mem_size=size))
            env.explored = {}
            env.pending = []
            env.cur_states = 0
            env.buckets = {}
            env.scc_visits = {}
            env.num_backedges = 0
            explore(env, State([frame]), env.cfg.subprog_starts[k])
            if not (log.level & 2):
                log.reset(0)
            if log.on:
                log.write(f"Func#{k} ('{g.name}') is safe for any args that match its prototype\n")
            done.add(k)


def fit_log(log: str, log_size: int, log_level: int) -> tuple[bytes, bool]:
    """What BPF_PROG_LOAD copies into a ``log_size``-byte user buffer, and whether it did not fit.

    As Linux 6.x: the buffer always ends in NUL; a log that does not fit keeps its last
    ``log_size - 1`` bytes (or its first ones with BPF_LOG_FIXED) and the load fails with
    ENOSPC even when the program was proved safe.
    """
    data = log.encode()
    if log_size <= 0:
        return b"", bool(data)
    if len(data) + 1 <= log_size:
        return data + b"\0", False
    keep = log_size - 1
    part = data[:keep] if log_level & LOG_FIXED else data[len(data) - keep:]
    return part + b"\0", True


def _live_regs_dump(log: Log, insns: list[Insn], cfg) -> None:
    """Level 2 opens with the registers live before each instruction, as Linux 6.18 prints it."""
    log.write("Live regs before insn:\n")
    skip = False
    for i, ins in enumerate(insns):
        if skip:
            skip = False
            continue
        skip = ins.code == op.LD_IMM64
        live = "".join(str(r) if cfg.live_in[i] >> r & 1 else "." for r in range(10))
        scc = cfg.scc.get(i, "")
        log.write(f"{scc:>3}{i:>4}: {live} {format_insn(insns, i)}\n")


def _precheck(insns: list[Insn]) -> None:
    """Calls Linux rejects before exploring: kernel functions need BTF, which pybpf lacks."""
    for ins in insns:
        if ins.code == op.OP_CALL and ins.src == op.PSEUDO_KFUNC_CALL:
            raise VerifyError(f"kernel btf_id {ins.imm} is not a function", E.EINVAL)


def _check_direct_value(m: MapInfo, off: int) -> None:
    """A map value address in LD_IMM64: only single-entry arrays have one, as in Linux."""
    if off >= 1 << 29:
        raise VerifyError(f"direct value offset of {off} is not allowed", E.EINVAL)
    if m.map_type != helpers.MAP_ARRAY:
        raise VerifyError("no direct value access support for this map type", E.EINVAL)
    if m.max_entries != 1 or off >= m.value_size:
        raise VerifyError(f"invalid access to map value pointer, value_size={m.value_size} off={off}",
                          helpers.ENOTSUPP if m.max_entries != 1 else E.EINVAL)


def _resolve_ldimm64(insns: list[Insn], maps) -> list:
    """Linux resolves LD_IMM64 pseudo sources before anything else (so even unreachable ones).
    Returns check_insn()'s verdict on every slot, for the walk to report when it gets there."""
    i, n = 0, len(insns)
    errors = [None] * n
    while i < n:
        ins = insns[i]
        # Linux checks opcodes (and LDX's reserved fields) in this same early pass
        bad = errors[i] = check_insn(ins)
        if ins.code == op.LD_IMM64:
            bad = None
        if bad and (bad.startswith("unknown opcode") or bad == "BPF_LDX uses reserved fields"):
            raise VerifyError(bad, E.EINVAL)
        if ins.code == op.LD_IMM64:
            if i + 1 >= n:
                raise VerifyError("invalid bpf_ld_imm64 insn", E.EINVAL)
            nxt = insns[i + 1]
            if nxt.code or nxt.dst or nxt.src or nxt.off or ins.off:
                raise VerifyError("invalid bpf_ld_imm64 insn", E.EINVAL)
            if ins.src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE):
                if ins.imm not in maps:
                    raise VerifyError(f"fd {ins.imm} is not pointing to valid bpf_map", E.EBADF)
                if ins.src == op.PSEUDO_MAP_VALUE:
                    _check_direct_value(maps[ins.imm], nxt.imm & 0xFFFFFFFF)
            elif ins.src == op.PSEUDO_BTF_ID:
                # pybpf has no kernel BTF: no id names a kernel variable or function.
                raise VerifyError(f"pseudo btf_id {ins.imm} in ldimm64 isn't KIND_VAR or KIND_FUNC",
                                  E.EINVAL)
            elif ins.src in (op.PSEUDO_MAP_IDX, op.PSEUDO_MAP_IDX_VALUE):
                raise VerifyError("fd_idx without fd_array is invalid", E.EPROTO)
            elif ins.src not in (op.PSEUDO_NONE, op.PSEUDO_FUNC):
                raise VerifyError("unrecognized bpf_ld_imm64 insn", E.EINVAL)
            i += 2
            continue
        i += 1
    return errors
