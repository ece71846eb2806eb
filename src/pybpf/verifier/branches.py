"""Conditional jumps: deciding outcomes, refining both sides, NULL checks and packet ranges."""

from __future__ import annotations


from ..isa import opcodes as op
from ..isa.insn import Insn
from . import bounds as B
from . import tnum
from .cfg import jump_target
from .regstate import (MEM_TYPES, OR_NULL_TYPES, PKT_TYPES, PTR_TO_MAP_VALUE, PTR_TO_PACKET,
    PTR_TO_PACKET_END, PTR_TO_PACKET_META, SCALAR, Reg, mark_precise, ADD_CONST, ADD_CONST32)
from .state import State

from .alu import scalar_alu
from . import backtrack
from .env import _REV, _SWAP, MAX_PACKET_OFF, Env, push_branch


def _view(r: Reg, is32: bool):
    if is32:
        return r.s32min, r.s32max, r.u32min, r.u32max, tnum.subreg(r.var)
    return r.smin, r.smax, r.umin, r.umax, r.var


def branch_taken(d: Reg, s: Reg, o: int, is32: bool) -> int:
    """1 if the jump is always taken, 0 if never, -1 if unknown."""
    if d.is_pointer or s.is_pointer:
        # a pointer that cannot be NULL against a constant 0, on either side (Linux swaps
        # the operands of is_branch_taken() to put the constant second)
        if not d.is_pointer:
            d, s = s, d
        if not s.is_pointer and s.is_const and s.value == 0 and \
                (d.type == PTR_TO_MAP_VALUE or d.type in MEM_TYPES) and not is32:
            if o == op.JEQ:
                return 0
            if o == op.JNE:
                return 1
        return -1
    dsmin, dsmax, dumin, dumax, dv = _view(d, is32)
    ssmin, ssmax, sumin, sumax, sv = _view(s, is32)
    if o == op.JEQ or o == op.JNE:
        if dv[1] == 0 and sv[1] == 0:
            eq = dv[0] == sv[0]
            return int(eq) if o == op.JEQ else int(not eq)
        disjoint = (dumin > sumax or dumax < sumin or dsmin > ssmax or dsmax < ssmin
                    or (dv[0] ^ sv[0]) & ~(dv[1] | sv[1]))
        if not disjoint and not is32:
            # values whose low halves cannot be equal differ too (Linux asks the 32-bit
            # ranges when the 64-bit ones overlap)
            disjoint = (d.u32min > s.u32max or d.u32max < s.u32min or d.s32min > s.s32max
                        or d.s32max < s.s32min)
        if disjoint:
            return 0 if o == op.JEQ else 1
        return -1
    if o == op.JSET:
        if sv[1] == 0:
            if dv[0] & sv[0]:
                return 1
            if not ((dv[0] | dv[1]) & sv[0]):
                return 0
        elif dv[1] == 0:
            if dv[0] & sv[0]:
                return 1
            if not ((sv[0] | sv[1]) & dv[0]):
                return 0
        return -1
    if o == op.JGT:
        return 1 if dumin > sumax else 0 if dumax <= sumin else -1
    if o == op.JGE:
        return 1 if dumin >= sumax else 0 if dumax < sumin else -1
    if o == op.JLT:
        return 1 if dumax < sumin else 0 if dumin >= sumax else -1
    if o == op.JLE:
        return 1 if dumax <= sumin else 0 if dumin > sumax else -1
    if o == op.JSGT:
        return 1 if dsmin > ssmax else 0 if dsmax <= ssmin else -1
    if o == op.JSGE:
        return 1 if dsmin >= ssmax else 0 if dsmax < ssmin else -1
    if o == op.JSLT:
        return 1 if dsmax < ssmin else 0 if dsmin >= ssmax else -1
    if o == op.JSLE:
        return 1 if dsmax <= ssmin else 0 if dsmin > ssmax else -1
    return -1


def refine(d: Reg, s: Reg, o: int, is32: bool) -> None:
    """Narrow two scalars knowing ``d <o> s`` holds (kernel: regs_refine_cond_op, then
    reg_bounds_sync of both).  The facts may come out contradicting each other: Linux does
    not conclude that the branch is dead (see :func:`_violation`)."""
    reg1, reg2 = d, s
    if o in _SWAP and o not in (op.JEQ, op.JNE) and o in (op.JGT, op.JGE, op.JSGT, op.JSGE):
        d, s, o = s, d, _SWAP[o]
    if is32:
        names = ("s32min", "s32max", "u32min", "u32max")
    else:
        names = ("smin", "smax", "umin", "umax")
    smin_n, smax_n, umin_n, umax_n = names
    g = getattr
    if o == op.JEQ:
        lo_u = max(g(d, umin_n), g(s, umin_n)); hi_u = min(g(d, umax_n), g(s, umax_n))
        lo_s = max(g(d, smin_n), g(s, smin_n)); hi_s = min(g(d, smax_n), g(s, smax_n))
        for r in (d, s):
            setattr(r, umin_n, lo_u); setattr(r, umax_n, hi_u)
            setattr(r, smin_n, lo_s); setattr(r, smax_n, hi_s)
        if is32:
            t = tnum.intersect(tnum.subreg(d.var), tnum.subreg(s.var))
            d.var = tnum.with_subreg(d.var, t)
            s.var = tnum.with_subreg(s.var, t)
        else:
            t = tnum.intersect(d.var, s.var)
            d.var = s.var = t
    elif o == op.JNE:
        # constant in the compared width: for a 32-bit jump, a register whose low half is
        # known is the constant side even where its upper half is not
        cmask = B.U32 if is32 else B.U64
        if d.var[1] & cmask == 0 and s.var[1] & cmask:
            d, s = s, d
        if s.var[1] & cmask == 0:
            v = g(s, umin_n)
            sv = g(s, smin_n)
            # (the kernel's ++ and -- wrap, as they may on a register compared with itself)
            if g(d, umin_n) == v:
                setattr(d, umin_n, (v + 1) & cmask)
            if g(d, umax_n) == v:
                setattr(d, umax_n, (v - 1) & cmask)
            if g(d, smin_n) == sv:
                setattr(d, smin_n, _wrap_s(sv + 1, is32))
            if g(d, smax_n) == sv:
                setattr(d, smax_n, _wrap_s(sv - 1, is32))
    elif o == op.JSET or o == -op.JSET:
        cmask = B.U32 if is32 else B.U64
        if d.var[1] & cmask == 0 and s.var[1] & cmask:
            d, s = s, d
        sv = tnum.subreg(s.var) if is32 else s.var
        if sv[1] == 0:
            val = sv[0]
            sv_d = d.var
            if o == op.JSET:
                if val and val & (val - 1) == 0:
                    d.var = tnum.or_(d.var, (val, 0))
                    d.var = (d.var[0], d.var[1] & ~val)
            else:
                # (Linux 6.17+ forgets the ranges first: on a dead branch the narrowed tnum
                # could contradict them)
                B.mark_unknown(d)
                d.var = tnum.and_(sv_d, ((~val) & B.U64, 0))
    elif o in (op.JLE, op.JLT, op.JSLE, op.JSLT):
        strict = 1 if o in (op.JLT, op.JSLT) else 0
        if o in (op.JLE, op.JLT):
            mn, mx = umin_n, umax_n
            if strict:
                cmask = B.U32 if is32 else B.U64
                setattr(d, mx, min(g(d, mx), (g(s, mx) - 1) & cmask))
                setattr(s, mn, max(g(s, mn), (g(d, mn) + 1) & cmask))
            else:
                setattr(d, mx, min(g(d, mx), g(s, mx)))
                setattr(s, mn, max(g(s, mn), g(d, mn)))
        else:
            mn, mx = smin_n, smax_n
            if strict:
                setattr(d, mx, min(g(d, mx), _wrap_s(g(s, mx) - 1, is32)))
                setattr(s, mn, max(g(s, mn), _wrap_s(g(d, mn) + 1, is32)))
            else:
                setattr(d, mx, min(g(d, mx), g(s, mx)))
                setattr(s, mn, max(g(s, mn), g(d, mn)))
    B.sync(reg1)
    B.sync(reg2)


def _wrap_s(v: int, is32: bool) -> int:
    return B.s32(v) if is32 else B.s64(v)


def _violation(r: Reg) -> str:
    """What about ``r``'s facts contradicts itself ("" where nothing does), in Linux's
    words (reg_bounds_sanity_check)."""
    if r.umin > r.umax or r.smin > r.smax or r.u32min > r.u32max or r.s32min > r.s32max:
        return "range bounds violation"
    v, m = r.var
    if not m:
        if r.umin != v or r.umax != v or r.smin != B.s64(v) or r.smax != B.s64(v):
            return "const tnum out of sync with range bounds"
    if not m & B.U32:
        v &= B.U32
        if r.u32min != v or r.u32max != v or r.s32min != B.s32(v) or r.s32max != B.s32(v):
            return "const subreg tnum out of sync with range bounds"
    return ""


def _report_violation(env: Env, r: Reg, name: str, what: str) -> None:
    """Linux logs a contradiction as a verifier bug and forgets the register's ranges (its
    tnum stays), then goes on verifying the branch."""
    env.log.write(
        f"verifier bug: REG INVARIANTS VIOLATION ({name}): {what} "
        f"u64=[{r.umin:#x}, {r.umax:#x}] s64=[{r.smin & B.U64:#x}, {r.smax & B.U64:#x}] "
        f"u32=[{r.u32min:#x}, {r.u32max:#x}] s32=[{r.s32min & B.U32:#x}, {r.s32max & B.U32:#x}] "
        f"var_off=({r.var[0]:#x}, {r.var[1]:#x})\n")
    r.smin, r.smax, r.umin, r.umax = B.S64_MIN, B.S64_MAX, 0, B.U64
    r.s32min, r.s32max, r.u32min, r.u32max = B.S32_MIN, B.S32_MAX, 0, B.U32


def _mark_null(env: Env, st: State, rid: int, is_null: bool) -> None:
    for r in st.all_regs():
        if r.id == rid and r.type in OR_NULL_TYPES:
            if is_null:
                r.make_known(0)
            else:
                r.type = OR_NULL_TYPES[r.type]
                r.id = 0        # (Linux keeps it only for spin locks, which pybpf lacks)
    if is_null:
        st.refs = tuple(x for x in st.refs if x[0] != rid)


def _good_pkt_pointers(st: State, dst: Reg, open_right: bool) -> None:
    if dst.off < 0 or (dst.off == 0 and open_right):
        return
    if dst.umax > MAX_PACKET_OFF or dst.umax + dst.off > MAX_PACKET_OFF:
        return
    new_range = dst.off + (1 if open_right else 0)
    t, i = dst.type, dst.id
    for r in st.all_regs():
        if r.type == t and r.id == i:
            r.range = max(r.range, new_range)


AT_PKT_END, BEYOND_PKT_END = -1, -2


def _mark_pkt_end(r: Reg, beyond: bool) -> None:
    """``r`` is known to be at (>=) or beyond (>) pkt_end: a later comparison of it with
    pkt_end is decided (Linux: mark_pkt_end; only for packet, not meta, pointers)."""
    if r.type == PTR_TO_PACKET:
        r.range = BEYOND_PKT_END if beyond else AT_PKT_END


def _pkt_branch_taken(d: Reg, s: Reg, o: int) -> int:
    if s.type == PTR_TO_PACKET_END:
        pkt = d
    elif d.type == PTR_TO_PACKET_END:
        pkt = s
        o = _SWAP.get(o, o)
    else:
        return -1
    if pkt.range >= 0:
        return -1
    if o in (op.JLE, op.JGT) and pkt.range == BEYOND_PKT_END:
        return int(o == op.JGT)
    if o in (op.JLT, op.JGE):
        return int(o == op.JGE)
    return -1


def _pkt_compare(env, taken: State, fall: State, ins: Insn, d: Reg, s: Reg, o: int) -> bool:
    def pkt(r):
        return r.type == PTR_TO_PACKET
    def init_pkt(r):
        return r.type == PTR_TO_PACKET and r.off == 0 and r.is_const and r.var[0] == 0
    fwd = (pkt(d) and s.type == PTR_TO_PACKET_END) or (d.type == PTR_TO_PACKET_META and init_pkt(s))
    rev = (d.type == PTR_TO_PACKET_END and pkt(s)) or (init_pkt(d) and s.type == PTR_TO_PACKET_META)
    if not (fwd or rev):
        return False
    dn, sn = ins.dst, ins.src
    T = lambda state, regno: state.cur.regs[regno]
    # (state where the pointer is in bounds, its register, open range; state where it
    # is at or beyond pkt_end, its register, beyond) per comparison and operand order
    if o == op.JGT:
        plan = (fall, dn, False, taken, dn, True) if fwd else (taken, sn, True, fall, sn, False)
    elif o == op.JLT:
        plan = (taken, dn, True, fall, dn, False) if fwd else (fall, sn, False, taken, sn, True)
    elif o == op.JGE:
        plan = (fall, dn, True, taken, dn, False) if fwd else (taken, sn, False, fall, sn, True)
    elif o == op.JLE:
        plan = (taken, dn, False, fall, dn, True) if fwd else (fall, sn, True, taken, sn, False)
    else:
        return False
    good_st, good_r, open_right, end_st, end_r, beyond = plan
    _good_pkt_pointers(good_st, T(good_st, good_r), open_right)
    _mark_pkt_end(T(end_st, end_r), beyond)
    return True


MAX_LINKED_REGS = 6


def _collect_linked(env: Env, st: State, idx: int, ids: set) -> list:
    """Where the scalars linked by one of ``ids`` are, as Linux collects them at a conditional
    jump: frames from the current one down, in each the registers live there (before ``idx``,
    in a caller before its call) then the spilled slots; six at most, and one found beyond
    those loses its id."""
    out = []
    frames = st.frames
    cur = len(frames) - 1
    live_in = env.cfg.live_in
    for fr in range(cur, -1, -1):
        f = frames[fr]
        live = live_in[idx if fr == cur else frames[fr + 1].callsite]
        found = [(j, False, f.regs[j]) for j in range(10) if live >> j & 1]
        found += [(spi, True, sl.spilled) for spi, sl in enumerate(f.stack)
                  if sl.is_spill and sl.spilled is not None]
        for where, is_slot, r in found:
            if r.type != SCALAR or not r.id or (r.id & ~ADD_CONST) not in ids:
                continue
            if len(out) < MAX_LINKED_REGS:
                out.append((fr, where, is_slot))
            else:
                r.id = 0
    return out


def _share_origin(st: State, linked: list) -> None:
    """The registers linked at an undecided branch need precision together from here on
    (Linux's backtracking marks them all where the branch's history entry lists them,
    bt_sync_linked_regs()): each is computed from what any of them was."""
    frames = st.frames
    regs = [frames[fr].stack[where].spilled if is_slot else frames[fr].regs[where]
            for fr, where, is_slot in linked]
    origin = frozenset()
    for r in regs:
        origin = origin | r.origin
    for r in regs:
        r.origin = origin


def _sync_linked(st: State, r: Reg, linked: list) -> None:
    """Give every register linked to ``r`` (same base id) the bounds ``r`` just learned."""
    if r.type != SCALAR or not r.id:
        return
    base = r.id & ~ADD_CONST
    frames = st.frames
    for fr, where, is_slot in linked:
        o = frames[fr].stack[where].spilled if is_slot else frames[fr].regs[where]
        if o is r or o.type != SCALAR or (o.id & ~ADD_CONST) != base:
            continue
        if (o.id ^ r.id) & ADD_CONST == ADD_CONST:
            continue        # one linked by a 32-bit add, the other by a 64-bit one
        new = r.copy()
        delta = o.off - r.off
        if delta:
            scalar_alu(new, Reg.scalar(delta), op.ADD, True)
            if (o.id | r.id) & ADD_CONST32:
                B.zext32(new)
                B.sync(new)
        new.id, new.off = o.id, o.off
        o.assign(new)




def do_jmp(env: Env, st: State, idx: int, ins: Insn) -> int:
    o = ins.code & 0xF0
    is32 = ins.cls == op.JMP32
    target = jump_target(env.insns, idx)
    if o == op.JA:
        return target
    d = env.read_reg(st, ins.dst)
    if ins.code & op.X:
        s = env.read_reg(st, ins.src)
        if env.is_pointer_value(s) and not (s.type in PKT_TYPES or s.type == PTR_TO_PACKET_END):
            env.fail(f"R{ins.src} pointer comparison prohibited")
    else:
        s = Reg.scalar(ins.imm & B.U32 if is32 else ins.imm)
    if not is32 and (d.type in PKT_TYPES or d.type == PTR_TO_PACKET_END) and \
            (s.type in PKT_TYPES or s.type == PTR_TO_PACKET_END):
        taken = _pkt_branch_taken(d, s, o)
    else:
        taken = branch_taken(d, s, o, is32)
    if taken >= 0:
        if env.bt_log:
            if d.type == SCALAR:
                backtrack.log_precision(env, st, ins.dst)
            if ins.code & op.X and s.type == SCALAR:
                backtrack.log_precision(env, st, ins.src)
        # (the scalar side of a pointer compared with 0 is needed exactly too)
        if d.type == SCALAR:
            mark_precise(d)
        if s.type == SCALAR:
            mark_precise(s)
        return target if taken else idx + 1
    if env.is_pointer_value(d) and not (
            o in (op.JEQ, op.JNE) and s.type == SCALAR and s.is_const and s.value == 0
            and d.type in OR_NULL_TYPES) and d.type not in PKT_TYPES and d.type != PTR_TO_PACKET_END:
        env.fail(f"R{ins.dst} pointer comparison prohibited")
    xs = bool(ins.code & op.X)
    # the scalars linked to either side: one set serves the precision history and the sync
    ids = set()
    if d.type == SCALAR and d.id:
        ids.add(d.id & ~ADD_CONST)
    if xs and s.type == SCALAR and s.id:
        ids.add(s.id & ~ADD_CONST)
    linked = _collect_linked(env, st, idx, ids) if ids else []
    if len(linked) > 1:
        # Linux records them in its jump history (one entry per instruction: a jump point's
        # holds them), before the state is copied for the other side
        if idx not in env.cfg.jmp_points:
            st.jh += 1
        if env.bt_log:
            e = st.hist[-1]
            st.hist[-1] = (e[0], e[1], tuple(linked))
        _share_origin(st, linked)
    if xs and d.type == SCALAR and s.type == SCALAR and d.origin != s.origin:
        # Each side's bounds will be learned from the other's value.
        d.origin = s.origin = d.origin | s.origin
    other = st.copy()
    if d.type == SCALAR and s.type == SCALAR:
        od = other.cur.regs[ins.dst]
        os_ = other.cur.regs[ins.src] if xs else s.copy()
        fs = s if xs else s.copy()
        refine(od, os_, o, is32)
        refine(d, fs, _REV[o], is32)
        # (a register compared with itself is checked under both names, as in Linux)
        for r, name in ((od, "true_reg1"), (os_, "true_reg2"), (d, "false_reg1"), (fs, "false_reg2")):
            what = _violation(r)
            if what:
                _report_violation(env, r, name, what)
        # Source first, then destination, as Linux: where the two are linked to each other,
        # the destination is rewritten from the source, then the source from that.
        if xs:
            _sync_linked(other, os_, linked)
        _sync_linked(other, od, linked)
        if xs:
            _sync_linked(st, s, linked)
        _sync_linked(st, d, linked)
    elif (o in (op.JEQ, op.JNE) and not is32 and d.type in OR_NULL_TYPES and s.type == SCALAR
          and s.is_const and s.value == 0):
        rid = d.id
        _mark_null(env, other, rid, o == op.JEQ)
        _mark_null(env, st, rid, o != op.JEQ)
    elif not is32 and xs and d.is_pointer and s.is_pointer:
        _pkt_compare(env, other, st, ins, d, s, o)
    push_branch(env, other, target, idx)
    return idx + 1


