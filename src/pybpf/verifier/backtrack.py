"""The precision backtracking trace of level-2 logs (Linux's ``mark_precise:`` lines).

pybpf decides precision with register origins (see regstate.mark_precise); Linux
finds the same registers by walking the path backwards from the instruction that
needs an exact value, through the instructions of the current state and then of
its stored parents, and it prints that walk at log level 2.  To print the same
lines, each path keeps (only when the walk is logged) the instructions it ran
since its last checkpoint, with the stack slot each spill/fill touched and the
registers a conditional jump linked; the walk below replays Linux's rules over
that history.  It only writes the log: the marks it sets on stored states to
print them are kept aside (Env.bt_marked), so verdicts never depend on the log level.
"""

from __future__ import annotations

from ..isa import opcodes as op
from .log import format_insn
from .regstate import PTR_TO_STACK, SCALAR, fmt_reg, mark_precise
from .stack import SLOT, SPILL, fmt_slots

ARGS = frozenset(range(1, 6))


class Unsupported(Exception):
    """An instruction the walk cannot see through: Linux forces every scalar precise."""


class _Bt:
    __slots__ = ("frame", "regs", "stack")

    def __init__(self, frame: int):
        self.frame = frame
        self.regs = [set() for _ in range(op.MAX_CALL_FRAMES + 1)]
        self.stack = [set() for _ in range(op.MAX_CALL_FRAMES + 1)]

    def empty(self) -> bool:
        if not self.frame:
            return not self.regs[0] and not self.stack[0]
        return not any(self.regs[: self.frame + 1]) and not any(self.stack[: self.frame + 1])


def _reg_mask(regs: set) -> str:
    if len(regs) < 2:
        return f"r{next(iter(regs))}" if regs else ""
    return ",".join(f"r{i}" for i in sorted(regs))


def _stack_mask(slots: set) -> str:
    if not slots:
        return ""
    return ",".join(f"{-(spi + 1) * SLOT}" for spi in sorted(slots))


def _frame_text(f, marked: dict, refs=()) -> str:
    shown = [r for r in list(f.regs) + [sl.spilled for sl in f.stack if sl.spilled is not None]
             if r is not None and not r.precise and id(r) in marked]
    for r in shown:
        r.precise = True
    try:
        return _frame_text_now(f, refs)
    finally:
        for r in shown:
            r.precise = False


def _frame_text_now(f, refs=()) -> str:
    parts = [f" frame{f.frameno}:"] if f.frameno else []
    for i, r in enumerate(f.regs):
        if r.type != "?":
            parts.append(f" R{i}={fmt_reg(r, f.frameno)}")
    parts.extend(" " + s for s in fmt_slots(f, None, lambda r: fmt_reg(r, f.frameno)))
    if refs:        # the state's references, shown with each frame
        parts.append(" refs=" + ",".join(str(rid) for rid, _ in refs))
    if f.in_callback:
        parts.append(" cb")
    return "".join(parts)


# ---- what each executed instruction leaves in the history -----------------------------------

def stack_access(st, ins) -> tuple | None:
    """The (frame, slot) a spill or fill at ``ins`` touches, as Linux flags it in its history."""
    cls = ins.code & 7
    mode = ins.code & 0xE0
    if mode not in (op.MEM, op.MEMSX) or ins.src > 10 or ins.dst > 10:
        return None     # not a spill or fill (a bad register is reported when the insn runs)
    regs = st.cur.regs
    base = regs[ins.src] if cls == op.LDX else regs[ins.dst]
    if base is None or base.type != PTR_TO_STACK or base.var[1] != 0:
        return None
    off = base.off + base.var[0] + ins.off
    if off >= 0:
        return None
    frame = st.frames[base.frameno] if base.frameno < len(st.frames) else None
    if frame is None:
        return None
    spi = (-off - 1) // SLOT
    if cls == op.LDX:
        if spi < len(frame.stack) and frame.stack[spi].types[SLOT - 1] == SPILL:
            return (base.frameno, spi)
        return None
    if off % SLOT:
        return None
    if cls == op.ST:
        return (base.frameno, spi)
    if cls == op.STX:
        src = regs[ins.src]
        size = {op.B: 1, op.H: 2, op.W: 4, op.DW: 8}[ins.code & 0x18]
        if src.type == SCALAR or (src.type != "?" and size == 8):
            return (base.frameno, spi)
    return None


def _sync_linked(bt: _Bt, linked) -> None:
    if not linked:
        return
    if any((spi in bt.stack[fr]) if is_slot else (spi in bt.regs[fr]) for fr, spi, is_slot in linked):
        for fr, spi, is_slot in linked:
            (bt.stack if is_slot else bt.regs)[fr].add(spi)


# ---- the walk ------------------------------------------------------------------------------

def _backtrack_insn(env, idx: int, subseq: int, ent, bt: _Bt) -> None:
    ins = env.insns[idx]
    if ins.code == 0:
        return
    texts = env.insn_texts
    text = texts.get(idx)
    if text is None:
        text = texts[idx] = f" before {idx}: {format_insn(env.insns, idx)}\n"
    env.log.write(f"mark_precise: frame{bt.frame}: regs={_reg_mask(bt.regs[bt.frame])} "
                  f"stack={_stack_mask(bt.stack[bt.frame])}{text}")
    flags, linked = ent[1], ent[2]
    _sync_linked(bt, linked)
    regs = bt.regs[bt.frame]
    cls = ins.code & 7
    o = ins.code & 0xF0
    d, s = ins.dst, ins.src
    if cls in (op.ALU, op.ALU64):
        if d not in regs:
            return
        if o in (op.END, op.NEG):
            pass
        elif o == op.MOV:
            regs.discard(d)
            if ins.code & op.X and s != 10:
                regs.add(s)
        elif ins.code & op.X and s != 10:
            regs.add(s)
    elif cls == op.LDX:
        if d not in regs:
            return
        regs.discard(d)
        if flags is None:
            return
        bt.stack[flags[0]].add(flags[1])
    elif cls in (op.STX, op.ST):
        if d in regs:
            raise Unsupported
        if flags is None or flags[1] not in bt.stack[flags[0]]:
            return
        bt.stack[flags[0]].discard(flags[1])
        if cls == op.STX:
            regs.add(s)
    elif cls in (op.JMP, op.JMP32):
        if ins.code == op.OP_CALL and s == op.PSEUDO_CALL:
            target = idx + ins.imm + 1
            linkage = env.func_linkage
            sub = env.cfg.subprog_starts.index(target) if target in env.cfg.subprog_starts else -1
            if linkage is not None and 0 <= sub < len(linkage) and linkage[sub] == 1:
                regs.discard(0)
                return
            if bt.frame == 0:
                raise Unsupported
            for i in range(1, 6):
                if i in regs:
                    regs.discard(i)
                    bt.regs[bt.frame - 1].add(i)
            bt.frame -= 1
            return
        if ins.code == op.OP_CALL and idx in env.cfg.callback_calls and idx != subseq - 1:
            regs.difference_update(ARGS)
            if bt.frame == 0:
                raise Unsupported
            bt.frame -= 1
            return
        if ins.code == op.OP_CALL:
            if s == op.PSEUDO_KFUNC_CALL and ins.imm == 0:
                raise Unsupported
            regs.discard(0)
            if s == op.CALL_HELPER and ins.imm == 12 and subseq != idx + 1:
                bt.frame += 1       # a tail call that left its subprogram: back into the callee
            return
        if ins.code == op.OP_EXIT:
            # (Linux 6.18 clears r1-r5 here when returning to a callback-calling helper,
            # but its logs show the caller's marks surviving the callback's exit)
            prev = env.insns[subseq - 1] if subseq - 1 >= 0 else None
            r0 = prev is not None and prev.code == op.OP_CALL and prev.src == op.PSEUDO_CALL and 0 in regs
            regs.discard(0)
            bt.frame += 1
            if r0:
                bt.regs[bt.frame].add(0)
            return
        if ins.code & op.X and o not in (op.JA, op.CALL, op.EXIT):
            if d not in regs and s not in regs:
                return
            regs.add(s)
            regs.add(d)
    elif cls == op.LD:
        if d not in regs:
            return
        regs.discard(d)
        if (ins.code & 0xE0) in (op.ABS, op.IND):
            raise Unsupported
    _sync_linked(bt, linked)


def _walk(env, st, bt: _Bt) -> None:
    log = env.log
    hist = st.hist
    first_idx = hist[0][0] if hist else -1
    last_idx = hist[-1][0] if hist else -1
    subseq = -1
    skip_first = True
    state_frames = None
    cur_hist = hist
    cp = st.parent
    # Linux keeps the marks it sets on stored states; pybpf's own marks come from origins, so the
    # walk remembers its marks aside (they only stop later walks, as Linux's do)
    marked = env.bt_marked
    try:
        while True:
            log.write(f"mark_precise: frame{bt.frame}: last_idx {last_idx} first_idx {first_idx} "
                      f"subseq_idx {subseq} \n")
            for k in range(len(cur_hist) - 1, -1, -1):
                ent = cur_hist[k]
                if skip_first:
                    skip_first = False
                else:
                    _backtrack_insn(env, ent[0], subseq, ent, bt)
                if bt.empty():
                    return
                subseq = ent[0]
            if cp is None:
                break
            state_frames = cp.state.frames
            for fr in range(bt.frame, -1, -1):
                if fr >= len(state_frames):
                    continue
                f = state_frames[fr]
                for i in sorted(bt.regs[fr]):
                    r = f.regs[i]
                    if r.type != SCALAR or r.precise or id(r) in marked:
                        bt.regs[fr].discard(i)
                    else:
                        marked[id(r)] = r
                for spi in sorted(bt.stack[fr]):
                    sl = f.stack[spi] if spi < len(f.stack) else None
                    if sl is None or sl.types[SLOT - 1] != SPILL or sl.spilled is None \
                            or sl.spilled.type != SCALAR or sl.spilled.precise or id(sl.spilled) in marked:
                        bt.stack[fr].discard(spi)
                    else:
                        marked[id(sl.spilled)] = sl.spilled
                log.write(f"mark_precise: frame{fr}: parent state regs={_reg_mask(bt.regs[fr])} "
                          f"stack={_stack_mask(bt.stack[fr])}: {_frame_text(f, marked, cp.state.refs)}\n")
            if bt.empty():
                return
            cur_hist = cp.hist or []
            subseq = first_idx
            last_idx = cur_hist[-1][0] if cur_hist else -1
            first_idx = cur_hist[0][0] if cur_hist else -1
            cp = cp.parent
        if not bt.empty():
            raise Unsupported
    except Unsupported:
        log.write(f"mark_precise: frame{len(st.frames) - 1}: falling back to forcing all scalars precise\n")


def log_precision(env, st, regno: int) -> None:
    """Log Linux's backtracking for ``regno`` of the current frame needing an exact value."""
    bt = _Bt(len(st.frames) - 1)
    bt.regs[bt.frame].add(regno)
    _walk(env, st, bt)


def mark_chain_precision(env, st, regno: int) -> None:
    """``regno`` of the current frame must hold its exact value (Linux: mark_chain_precision):
    the stored registers it came from are marked precise, and at level 2 the walk is logged."""
    if env.bt_log:
        log_precision(env, st, regno)
    mark_precise(st.cur.regs[regno])


def log_precision_slot(env, st, frameno: int, spi: int) -> None:
    """Log Linux's backtracking for stack slot ``spi`` of frame ``frameno`` needing an exact value."""
    bt = _Bt(len(st.frames) - 1)
    bt.stack[frameno].add(spi)
    _walk(env, st, bt)


def log_propagation(env, old, st) -> None:
    """Log the precision a pruned path inherits from the stored state ``old`` that covered it."""
    bt = _Bt(len(st.frames) - 1)
    log = env.log
    for fr in range(len(old.frames) - 1, -1, -1):
        f = old.frames[fr]
        names = []
        for i in range(10):
            r = f.regs[i]
            if r.type == SCALAR and r.precise:
                names.append(f"r{i}")
                bt.regs[fr].add(i)
        for spi, sl in enumerate(f.stack):
            if sl.types[SLOT - 1] == SPILL and sl.spilled is not None and sl.spilled.type == SCALAR \
                    and sl.spilled.precise:
                names.append(f"fp{-(spi + 1) * SLOT}")
                bt.stack[fr].add(spi)
        if names:
            log.write(f"frame {fr}: propagating {','.join(names)}\n")
    if bt.empty():
        return
    _walk(env, st, bt)
