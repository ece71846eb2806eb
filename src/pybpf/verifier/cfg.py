"""Structure checks done before any path is explored: subprograms, jump ranges,
reachability, back-edges; plus the static register liveness used for pruning."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..isa import opcodes as op
from ..isa.insn import Insn
from .helpers import CALLBACK_HELPERS, PROTOS


class CfgError(Exception):
    def __init__(self, msg: str, errno_: int):
        super().__init__(msg)
        self.msg = msg
        self.errno = errno_


@dataclass
class Cfg:
    subprog_starts: list[int]
    prune_points: set[int] = field(default_factory=set)
    live_in: list[int] = field(default_factory=list)   # bitmask of live registers before each insn
    loop_headers: set[int] = field(default_factory=set)
    scc: dict[int, int] = field(default_factory=dict)  # insn -> id of the loop (SCC) it is in
    callback_calls: set[int] = field(default_factory=set)  # helper calls that call back
    # Linux's jump points: where a path may arrive other than from the previous instruction
    # (jump targets, returns from calls, callback entries and the calls that run them)
    jmp_points: set[int] = field(default_factory=set)
    succ: list = field(default_factory=list)    # successors of each instruction (a call: the next)
    back_jumps: set[int] = field(default_factory=set)  # subprograms with a jump backwards

    def subprog_of(self, idx: int) -> int:
        n = 0
        for i, s in enumerate(self.subprog_starts):
            if s <= idx:
                n = i
        return n


def _is_jump(ins: Insn) -> bool:
    return ins.cls in (op.JMP, op.JMP32) and ins.code & 0xF0 not in (op.CALL, op.EXIT)


def jump_target(insns, i) -> int:
    ins = insns[i]
    if ins.code == op.OP_JA32:
        return i + ins.imm + 1
    return i + ins.off + 1


def check_unprivileged_calls(insns: list[Insn]) -> None:
    """Without CAP_BPF, the first bpf-to-bpf call, function pointer or kfunc call is EPERM,
    before its target is looked at (Linux: add_subprog_and_kfunc)."""
    for ins in insns:
        if (ins.code == op.OP_CALL and ins.src in (op.PSEUDO_CALL, op.PSEUDO_KFUNC_CALL)) or \
                (ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC):
            raise CfgError("loading/calling other bpf or kernel functions are allowed for CAP_BPF and "
                           "CAP_SYS_ADMIN", 1)     # EPERM


def find_subprogs(insns: list[Insn]) -> list[int]:
    """The first instruction of each subprogram: 0 and every bpf-to-bpf call or function
    pointer target (Linux: add_subprog_and_kfunc; an unprivileged loader was refused any of
    them before, by check_unprivileged_calls)."""
    n = len(insns)
    EINVAL = 22
    starts = {0}
    for i, ins in enumerate(insns):
        if ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL:
            t = i + ins.imm + 1
            if t < 0 or t >= n:
                raise CfgError("call to invalid destination", EINVAL)
            starts.add(t)
        elif ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC:
            t = i + ins.imm + 1
            if t < 0 or t >= n:
                raise CfgError("function pointer to invalid destination", EINVAL)
            starts.add(t)
    return sorted(starts)


def build(insns: list[Insn], privileged: bool, prog_type: int, subs: list[int]) -> Cfg:
    n = len(insns)
    EINVAL = 22
    # Successors and jump flags once: the walks below all need them.
    jumps = [_is_jump(ins) for ins in insns]
    succ = [_succ(insns, i) for i in range(n)]
    for i in range(n - 1):
        if insns[i].code == op.LD_IMM64:
            succ[i + 1] = ()
    bounds = subs + [n]
    back_jumps = set()
    for k in range(len(subs)):
        lo, hi = bounds[k], bounds[k + 1]
        for i in range(lo, hi):
            ins = insns[i]
            if jumps[i]:
                t = jump_target(insns, i)
                if t < lo or t >= hi:
                    raise CfgError(f"jump out of range from insn {i} to {t}", EINVAL)
                if t <= i:
                    back_jumps.add(k)
        last = insns[hi - 1]
        if last.code != op.OP_EXIT and not (last.cls in (op.JMP, op.JMP32) and last.code & 0xF0 == op.JA):
            raise CfgError("last insn is not an exit or jmp", EINVAL)

    # Depth-first walk: every slot must be reachable; unprivileged loaders may not loop.
    ldimm_second = set()
    for i, ins in enumerate(insns):
        if ins.code == op.LD_IMM64:
            ldimm_second.add(i + 1)
    state = [0] * n            # 0 unseen, 1 on stack, 2 done
    prune = set()
    loops = set()
    callback_calls = set()
    for s in subs:
        stack = [(s, iter(succ[s]))]
        if state[s]:
            continue
        state[s] = 1
        while stack:
            t, it = stack[-1]
            w = next(it, None)
            if w is None:
                state[t] = 2
                stack.pop()
                continue
            if w < 0 or w >= n:
                raise CfgError(f"jump out of range from insn {t} to {w}", EINVAL)
            if w in ldimm_second:
                raise CfgError(f"jump into the middle of ldimm64 insn {w - 1}", EINVAL)
            if state[w] == 1:
                if not privileged:
                    raise CfgError(f"back-edge from insn {t} to {w}", EINVAL)
                loops.add(w)
            elif state[w] == 0:
                state[w] = 1
                stack.append((w, iter(succ[w])))
    for i in range(n):
        if not state[i] and i not in ldimm_second:
            raise CfgError(f"unreachable insn {i}", EINVAL)
    # Prune points as Linux places them: jump targets, conditional jumps themselves,
    # the instruction after a call, and bpf-to-bpf calls.
    jmp = set()
    for i, ins in enumerate(insns):
        if i in ldimm_second:
            continue
        if ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC:
            # a callback's address: Linux walks it as a call (itself, the next insn, the target)
            prune.update((i, i + 2, i + ins.imm + 1))
            jmp.update((i + 2, i + ins.imm + 1))
        elif jumps[i]:
            prune.add(jump_target(insns, i))
            jmp.add(jump_target(insns, i))
            if ins.code & 0xF0 != op.JA:
                prune.add(i)
        elif ins.code == op.OP_CALL:
            prune.add(i + 1)
            jmp.add(i + 1)
            if ins.src == op.PSEUDO_CALL:
                prune.add(i)
                prune.add(i + ins.imm + 1)      # the callee's entry, as a branch target
                jmp.add(i + ins.imm + 1)
            elif ins.src == op.CALL_HELPER and ins.imm in CALLBACK_HELPERS:
                prune.add(i)
                jmp.add(i)
                callback_calls.add(i)
    cfg = Cfg(subs, prune, loop_headers=loops)
    cfg.callback_calls = callback_calls
    cfg.jmp_points = jmp
    cfg.succ = succ
    cfg.back_jumps = back_jumps
    # with forward jumps only, every successor comes later: one backward pass is the fixed
    # point; and without a cycle (no back edge met above) nor a callback there is no loop
    cfg.live_in = _liveness(insns, n, prog_type, succ, one_pass=not back_jumps)
    cfg.scc = _loops(succ, n, ldimm_second, callback_calls) if loops or callback_calls else {}
    return cfg


def _loops(succ, n, skip, callback_calls=frozenset()) -> dict[int, int]:
    """Number the loops (strongly connected components with a cycle) in the order Tarjan's
    algorithm completes them, as Linux numbers them in its liveness dump.  A helper call that
    calls a callback repeatedly is a loop of its own, as Linux 6.18 counts it."""
    index = [-1] * n        # (lists, not dicts: this runs for every program with a loop)
    low = [0] * n
    on = [False] * n
    stack = []
    out = {}
    counter = 0
    scc_id = 0
    for root in range(n):
        if index[root] >= 0 or root in skip:
            continue
        work = [(root, iter(succ[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on[root] = True
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if not 0 <= w < n:
                    continue
                if index[w] < 0:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on[w] = True
                    work.append((w, iter(succ[w])))
                elif on[w] and index[w] < low[v]:
                    low[v] = index[w]
                continue
            work.pop()
            if work:
                u = work[-1][0]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on[x] = False
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1 or v in succ[v] or v in callback_calls:
                    scc_id += 1
                    for x in comp:
                        out[x] = scc_id
    return out


def _succ(insns, i):
    ins = insns[i]
    if ins.code == op.OP_EXIT:
        return ()
    if ins.code == op.LD_IMM64:
        return (i + 2,)
    if _is_jump(ins):
        t = jump_target(insns, i)
        if ins.code & 0xF0 == op.JA:
            return (t,)
        return (i + 1, t)
    return (i + 1,)


# --- static liveness --------------------------------------------------------------------

# Argument counts of helpers pybpf has no prototype for yet (they only shape liveness).
_NARGS = {181: 4}


def _uses_defs(ins: Insn, prog_type: int) -> tuple[int, int]:
    code = ins.code
    cls = code & 7
    if cls in (op.ALU, op.ALU64):
        o = code & 0xF0
        if o == op.MOV:
            return (((1 << ins.src) if code & op.X else 0), (1 << ins.dst))
        if o in (op.NEG, op.END):
            return ((1 << ins.dst), (1 << ins.dst))
        return ((1 << ins.dst) | ((1 << ins.src) if code & op.X else 0), (1 << ins.dst))
    if cls == op.LDX:
        return ((1 << ins.src), (1 << ins.dst))
    if cls == op.ST:
        return ((1 << ins.dst), 0)
    if cls == op.STX:
        u = (1 << ins.dst) | (1 << ins.src)
        d = 0
        if code & 0xE0 == op.ATOMIC:
            if ins.imm == op.CMPXCHG:
                u |= 1
                d = 1
            elif ins.imm & op.FETCH:
                d = (1 << ins.src)
        return (u, d)
    if cls == op.LD:
        if code == op.LD_IMM64:
            return (0, (1 << ins.dst))
        # Linux treats a legacy packet load as a possible exit: every register is live.
        return (0x3FF, 0x3F)
    if code == op.OP_EXIT:
        return (1, 0)
    if code == op.OP_CALL and ins.src == op.CALL_HELPER:
        p = PROTOS.get(ins.imm)
        nargs = len(p.args) if p is not None and prog_type in p.prog_types else _NARGS.get(ins.imm, 5)
        return (sum(1 << (i + 1) for i in range(nargs)), 0x3F)
    if code == op.OP_CALL or code == op.OP_CALLX:
        return (0x3E | ((1 << ins.dst) if code == op.OP_CALLX else 0), 0x3F)
    if cls in (op.JMP, op.JMP32) and code & 0xF0 != op.JA:
        return ((1 << ins.dst) | ((1 << ins.src) if code & op.X else 0), 0)
    return (0, 0)


def _liveness(insns, n, prog_type, succ, one_pass: bool = False) -> list[int]:
    ud = [_uses_defs(i, prog_type) for i in insns]
    live = [0] * n
    while True:
        changed = False
        for i in range(n - 1, -1, -1):
            out = 0
            for s in succ[i]:
                if 0 <= s < n:
                    out |= live[s]
            u, d = ud[i]
            v = (u | (out & ~d)) & 0x7FF
            if v != live[i]:
                live[i] = v
                changed = True
        if one_pass or not changed:
            return live


# --- stack slots ---------------------------------------------------------------------------

def slot_mask(off: int, size: int) -> int:
    """Bitmask of the 8-byte slots (spi = (-off - 1) // 8) that bytes [off, off + size) touch."""
    if off >= 0 or off + size > 0 or off < -512:
        return 0
    first, last = (-(off + size)) // 8, (-off - 1) // 8
    return ((1 << (last + 1)) - 1) & ~((1 << first) - 1)
