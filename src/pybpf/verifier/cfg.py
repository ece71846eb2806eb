"""Structure checks done before any path is explored: subprograms, jump ranges,
reachability, back-edges; plus the static register liveness used for pruning."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..isa import opcodes as op
from ..isa.insn import Insn
from .helpers import PROTOS


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


def build(insns: list[Insn], privileged: bool, prog_type: int = 0) -> Cfg:
    n = len(insns)
    EINVAL = 22
    starts = {0}
    for i, ins in enumerate(insns):
        if ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL:
            t = i + ins.imm + 1
            if t < 0 or t >= n:
                raise CfgError(f"call to invalid destination", EINVAL)
            starts.add(t)
        elif ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC:
            t = i + ins.imm + 1
            if t < 0 or t >= n:
                raise CfgError(f"function pointer to invalid destination", EINVAL)
            starts.add(t)
    subs = sorted(starts)
    if len(subs) > 1 and not privileged:
        raise CfgError("function calls to other bpf functions are allowed for CAP_BPF and CAP_SYS_ADMIN",
                       EINVAL)
    bounds = subs + [n]
    for k in range(len(subs)):
        lo, hi = bounds[k], bounds[k + 1]
        for i in range(lo, hi):
            ins = insns[i]
            if _is_jump(ins):
                t = jump_target(insns, i)
                if t < lo or t >= hi:
                    raise CfgError(f"jump out of range from insn {i} to {t}", EINVAL)
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
    for s in subs:
        stack = [(s, iter(_succ(insns, s)))]
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
                stack.append((w, iter(_succ(insns, w))))
    for i in range(n):
        if not state[i] and i not in ldimm_second:
            raise CfgError(f"unreachable insn {i}", EINVAL)
    # Prune points as Linux places them: jump targets, conditional jumps themselves,
    # the instruction after a call, and bpf-to-bpf calls.
    for i, ins in enumerate(insns):
        if i in ldimm_second:
            continue
        if _is_jump(ins):
            prune.add(jump_target(insns, i))
            if ins.code & 0xF0 != op.JA:
                prune.add(i)
        elif ins.code == op.OP_CALL:
            prune.add(i + 1)
            if ins.src == op.PSEUDO_CALL:
                prune.add(i)
    cfg = Cfg(subs, prune, loop_headers=loops)
    cfg.live_in = _liveness(insns, n, prog_type)
    cfg.scc = _loops(insns, n, ldimm_second)
    return cfg


def _loops(insns, n, skip) -> dict[int, int]:
    """Number the loops (strongly connected components with a cycle) in the order Tarjan's
    algorithm completes them, as Linux numbers them in its liveness dump."""
    index = {}
    low = {}
    on = set()
    stack = []
    out = {}
    counter = 0
    scc_id = 0
    for root in range(n):
        if root in index or root in skip:
            continue
        work = [(root, iter(_succ(insns, root)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if not 0 <= w < n:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(_succ(insns, w))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1 or v in _succ(insns, v):
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
    bit = lambda r: 1 << r
    cls = ins.cls
    code = ins.code
    if cls in (op.ALU, op.ALU64):
        o = code & 0xF0
        if o == op.MOV:
            return ((bit(ins.src) if code & op.X else 0), bit(ins.dst))
        if o in (op.NEG, op.END):
            return (bit(ins.dst), bit(ins.dst))
        return (bit(ins.dst) | (bit(ins.src) if code & op.X else 0), bit(ins.dst))
    if cls == op.LDX:
        return (bit(ins.src), bit(ins.dst))
    if cls == op.ST:
        return (bit(ins.dst), 0)
    if cls == op.STX:
        u = bit(ins.dst) | bit(ins.src)
        d = 0
        if code & 0xE0 == op.ATOMIC:
            if ins.imm == op.CMPXCHG:
                u |= 1
                d = 1
            elif ins.imm & op.FETCH:
                d = bit(ins.src)
        return (u, d)
    if cls == op.LD:
        if code == op.LD_IMM64:
            return (0, bit(ins.dst))
        # Linux treats a legacy packet load as a possible exit: every register is live.
        return (0x3FF, 0x3F)
    if code == op.OP_EXIT:
        return (1, 0)
    if code == op.OP_CALL and ins.src == op.CALL_HELPER:
        p = PROTOS.get(ins.imm)
        nargs = len(p.args) if p is not None and prog_type in p.prog_types else _NARGS.get(ins.imm, 5)
        return (sum(1 << (i + 1) for i in range(nargs)), 0x3F)
    if code == op.OP_CALL or code == op.OP_CALLX:
        return (0x3E | (bit(ins.dst) if code == op.OP_CALLX else 0), 0x3F)
    if cls in (op.JMP, op.JMP32) and code & 0xF0 != op.JA:
        return (bit(ins.dst) | (bit(ins.src) if code & op.X else 0), 0)
    return (0, 0)


def _liveness(insns, n, prog_type) -> list[int]:
    ud = [_uses_defs(i, prog_type) for i in insns]
    succ = [(_succ(insns, i) if insns[i].code != 0 or i == 0 or insns[i - 1].code != op.LD_IMM64 else ())
            for i in range(n)]
    live = [0] * n
    changed = True
    while changed:
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
    return live
