"""The path-exploring abstract interpreter at the heart of the verifier.

Starting from the entry state, every instruction is applied to an abstract
state (types and value ranges of registers and stack slots).  A conditional
jump whose outcome is not known splits the path: the taken side is pushed on
a stack and explored later, depth first, as Linux does.  At prune points the
current state is compared with states already proved safe there; a state
they subsume is not explored again.  An in-progress state that reappears
unchanged at a loop header is an infinite loop.
"""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn, check_insn
from .log import format_insn
from .regstate import NOT_INIT, PTR_TO_STACK, SCALAR
from .stack import SLOT, SPILL
from .state import Checkpoint, State, inherit_precision, loop_key, states_equal
from . import backtrack, scc

from .env import MAX_BPF_STACK, Env, PathDone, VerifyError
from .alu import do_alu, scalar_alu
from .memory import do_atomic, do_ld, do_ldx, do_store
from .branches import do_jmp
from .calls import do_exit, do_helper_call, do_pseudo_call

__all__ = ["Env", "VerifyError", "PathDone", "explore", "step", "scalar_alu"]


def _live_masks(env: Env, st: State, idx: int) -> list[int]:
    frames = st.frames
    live = env.cfg.live_in
    if len(frames) == 1:
        return [live[idx] | (1 << 10)]
    # a caller's frame is compared on the registers live before its call instruction (Linux:
    # live_regs_before at frame_insn_idx()): what the call reads (its r1-r5 are not
    # initialised any more in both states) and what lives across it
    masks = [live[frames[k + 1].callsite] | (1 << 10) for k in range(len(frames) - 1)]
    masks.append(live[idx] | (1 << 10))
    return masks


def _bucket(env: Env, st: State, idx: int) -> int:
    """The hash bucket of Linux's stored-state table that holds ``st``'s states at ``idx``."""
    return ((idx ^ st.frames[-1].callsite) & 0xFFFFFFFF) % env.n


def _clean(env: Env, frames: list, idx: int, cp: Checkpoint) -> bool:
    """Fix which stack slots the done state ``cp`` at ``idx`` is compared on (done: True):
    those alive by the stack liveness known now.  Linux cleans a state once, when a path next
    reaches its instruction with the same call sites and the state's loop (if any) has no
    pending back-edges (clean_live_states(), before it compares any state there); reads
    found later do not bring a slot back."""
    old = cp.state.frames
    depth = len(frames)
    if len(old) != depth or depth > 1 and any(a.callsite != b.callsite
                                               for a, b in zip(old, frames)):
        return False
    if scc.incomplete(env, cp):
        return False
    cp.stack_alive = env.stack_lv.alive(cp.state, idx)
    return True


def is_state_visited(env: Env, st: State, idx: int) -> bool:
    lst = env.explored.get(idx)
    calls_back = idx in env.cfg.callback_calls
    # Linux forces a checkpoint at a callback's call, and where the jump history since the
    # last one has grown long (more than 40 entries: a loop going round without one)
    force = calls_back or st.jh > 40
    add = force or (env.jmps - env.prev_jmps >= 2 and env.processed - env.prev_insns >= 8)
    masks = None
    key = _bucket(env, st, idx)
    seen = env.buckets.get(key, 0)
    if lst:
        masks = _live_masks(env, st, idx)
        keep = []
        hit = False
        site = st.frames[-1].callsite
        cur_key = None
        done = env.to_clean.get(idx)
        if done:
            env.to_clean[idx] = [cp for cp in done if not _clean(env, st.frames, idx, cp)]
        # Linux puts a new state at the head of its list: the newest is compared first, and a
        # hit ends the walk before older states count a miss
        for cp in reversed(lst):
            if hit or (cp.state.frames[-1].callsite != site and _bucket(env, cp.state, idx) != key):
                # (Linux keeps the states of another call site in another bucket: unseen)
                keep.append(cp)
                continue
            if cp.branches > 0 and calls_back:
                # A callback loop: a state whose every value is within an earlier one's
                # adds nothing new; no infinite-loop verdict (the helper bounds the calls).
                if states_equal(cp.state, st, masks, False, env.priv, within=True):
                    cp.hit += 1
                    hit = True
                    if st.hist is not None:
                        st.hist.append((idx, None, ()))
                        backtrack.log_propagation(env, cp.state, st)
                    inherit_precision(cp.state, st)
                    scc.add_backedge(env, cp, st)
                    keep.append(cp)
                    continue
            elif cp.branches > 0:
                if cur_key is None:
                    cur_key = loop_key(st)
                if cp.state.unroll == st.unroll and cp.loop_key() == cur_key \
                        and states_equal(cp.state, st, masks, True, env.priv):
                    if env.log.on:
                        env.log.write(f"infinite loop detected at insn {idx}\n")
                        env.log.write("cur state:" + env.reg_str(st, all_=True) + "\n")
                        env.log.write("old state:" + env.reg_str(cp.state, all_=True) + "\n")
                    raise VerifyError(f"infinite loop detected at insn {idx}", E.EINVAL, logged=True)
                if not force and env.jmps - env.prev_jmps < 20 and env.processed - env.prev_insns < 100:
                    add = False
            elif states_equal(cp.state, st, masks, False, env.priv,
                              within=(loop := scc.incomplete(env, cp)),
                              stack_masks=cp.stack_alive):
                # (a state of a loop whose later paths may still mark it: values within it only)
                cp.hit += 1
                hit = True
                if st.hist is not None:
                    st.hist.append((idx, None, ()))
                    backtrack.log_propagation(env, cp.state, st)
                inherit_precision(cp.state, st)
                if loop:
                    scc.add_backedge(env, cp, st)
                keep.append(cp)
                continue
            # Count a miss only when a state will be added, so that a loop does not evict
            # the states of its earlier iterations (the same heuristic as Linux).
            if add:
                cp.miss += 1
            n = 64 if calls_back and cp.branches > 0 else 3
            if cp.miss > cp.hit * n + n:
                # dropped; Linux frees it (and stops counting it) once no path needs it
                if cp.branches == 0 and not scc.incomplete(env, cp):
                    env.cur_states -= 1
                else:
                    cp.evicted = True
                env.buckets[_bucket(env, cp.state, idx)] -= 1
                continue
            keep.append(cp)
        keep.reverse()
        env.explored[idx] = keep
        if hit:
            return True
    # Linux counts the states it looked at in idx's hash bucket (when none matched)
    env.max_states_per_insn = max(env.max_states_per_insn, seen)
    if add and (env.priv or seen <= 64):      # (unprivileged: at most 64 states a bucket)
        cp = Checkpoint(st.copy(), st.parent, idx)
        for live_r, stored_r in zip(st.all_regs(), cp.state.all_regs()):
            if live_r.type == SCALAR:
                live_r.origin = frozenset((stored_r,))
        st.parent = cp
        st.jh = 0
        if st.hist is not None:
            st.hist = []
        env.explored.setdefault(idx, []).append(cp)
        env.total_states += 1
        env.cur_states += 1
        env.buckets[key] = env.buckets.get(key, 0) + 1
        env.peak_states = max(env.peak_states, env.cur_states + env.num_backedges)
        env.prev_jmps = env.jmps
        env.prev_insns = env.processed
        scc.maybe_enter(env, cp)
    return False


def _finish_path(env: Env, st: State) -> None:
    cp = st.parent
    while cp is not None:
        cp.branches -= 1
        if cp.branches:
            break
        # done: the next visit of its instruction fixes the stack slots it is compared on
        env.to_clean.setdefault(cp.insn, []).append(cp)
        scc.maybe_exit(env, cp)
        if cp.evicted and not scc.incomplete(env, cp):
            env.cur_states -= 1
            cp.evicted = False
        cp = cp.parent


def _check_insn(env: Env, ins: Insn, idx: int = -1) -> None:
    if ins.dst > 10:
        env.fail(f"R{ins.dst} is invalid", E.EINVAL)
    if ins.src > 10 and ins.code != op.LD_IMM64:
        env.fail(f"R{ins.src} is invalid", E.EINVAL)
    known = env.insn_errors
    reason = known[idx] if known is not None and idx >= 0 else check_insn(ins)
    if reason:
        env.fail(reason, E.EINVAL)


def _h_alu(env, st, idx, ins):
    do_alu(env, st, idx, ins)
    return idx + 1


def _h_ldx(env, st, idx, ins):
    do_ldx(env, st, idx, ins)
    return idx + 1


def _h_store(env, st, idx, ins):
    do_store(env, st, idx, ins)
    return idx + 1


def _h_atomic(env, st, idx, ins):
    do_atomic(env, st, idx, ins)
    return idx + 1


def _h_ld(env, st, idx, ins):
    return idx + do_ld(env, st, idx, ins)


def _h_exit(env, st, idx, ins):
    env.jmps += 1
    return do_exit(env, st, idx)


def _h_pseudo_call(env, st, idx, ins):
    env.jmps += 1
    return do_pseudo_call(env, st, idx, ins)


def _h_helper(env, st, idx, ins):
    env.jmps += 1
    nxt = do_helper_call(env, st, idx, ins)
    return idx + 1 if nxt is None else nxt


def _h_callx(env, st, idx, ins):
    env.jmps += 1
    env.fail("unknown opcode 8d", E.EINVAL)


def _h_jmp(env, st, idx, ins):
    env.jmps += 1
    return do_jmp(env, st, idx, ins)


# per opcode (see explore): 2 a load (its address in src), 4 a store or atomic (in dst), 8
# an 8-byte store (ST, STX: only those may write a stack slot whole)
_EXTRA = [((2 if c & 7 == op.LDX else 4) if c & 0xE0 in (op.MEM, op.MEMSX, op.ATOMIC) else 0)
          | (8 if c & 7 in (op.ST, op.STX) and c & 0x18 == op.DW else 0)
          if c & 7 in (op.LDX, op.ST, op.STX) else 0
          for c in range(256)]


def _stack_history(env: Env, st: State, ins: Insn) -> bool:
    """Does the load, store or atomic ``ins`` (its address register a stack pointer) spill a
    register to the stack or fill one from it, as Linux flags it in its jump history
    (check_stack_write/read_fixed_off())?"""
    cls = ins.code & 7
    mode = ins.code & 0xE0
    regs = st.frames[-1].regs
    base = regs[ins.src] if cls == op.LDX else regs[ins.dst]
    v, m = base.var
    if m:
        return False        # (a variable offset: not recorded)
    off = base.off + (v - (1 << 64) if v >> 63 else v) + ins.off
    if not -MAX_BPF_STACK <= off < 0 or base.frameno >= len(st.frames):
        return False        # (the access fails)
    spi = (-off - 1) // SLOT
    if cls == op.ST:
        return mode == op.MEM and env.priv and off % SLOT == 0
    if cls == op.STX and mode != op.ATOMIC:
        src = regs[ins.src]
        if src.type == SCALAR:
            return env.priv and off % SLOT == 0
        return src.type != NOT_INIT         # a pointer spill (of 8 bytes, or an error)
    stack = st.frames[base.frameno].stack
    if spi >= len(stack):
        return False
    slot = stack[spi]
    if slot.types[SLOT - 1] != SPILL:
        return False
    size = op.SIZE_BYTES[ins.code & 0x18]
    spill = slot.spill_size()
    if size == SLOT and spill == SLOT:
        return True                 # the whole register comes back (an atomic's read too)
    if cls == op.STX and not (ins.imm & op.FETCH):
        return False                # an atomic that loads nothing
    if size <= spill and off % SLOT == 0:
        return True                 # a narrow fill of the spilled register
    # otherwise only a zero spilled across every byte read still counts as a fill
    j0 = (-off - 1) % SLOT
    r = slot.spilled
    return all(slot.types[(j0 - i) % SLOT] == SPILL for i in range(size)) and \
        r.type == SCALAR and r.var == (0, 0)


def _handler(ins: Insn):
    cls = ins.code & 7
    if cls in (op.ALU, op.ALU64):
        return _h_alu
    if cls == op.LDX:
        return _h_ldx
    if cls == op.STX:
        return _h_atomic if (ins.code & 0xE0) == op.ATOMIC else _h_store
    if cls == op.ST:
        return _h_store
    if cls == op.LD:
        return _h_ld
    if ins.code == op.OP_EXIT:
        return _h_exit
    if ins.code == op.OP_CALL:
        return _h_pseudo_call if ins.src == op.PSEUDO_CALL else _h_helper
    if ins.code == op.OP_CALLX:
        return _h_callx
    return _h_jmp


def _first_visit(handlers):
    """The handler of an instruction not reached yet: check its encoding when the walk first
    gets there (as Linux reports it: in exploration order), then dispatch directly."""
    def run(env, st, idx, ins):
        _check_insn(env, ins, idx)
        h = handlers[idx] = _handler(ins)
        return h(env, st, idx, ins)
    return run


def step(env: Env, st: State, idx: int) -> int:
    """Apply instruction ``idx`` to ``st``; return the next instruction index."""
    return env.handlers[idx](env, st, idx, env.insns[idx])


def explore(env: Env, st: State, start: int = 0) -> None:
    """Explore every path from ``st`` at instruction ``start``; raises VerifyError on the first
    unsafe one."""
    log = env.log
    idx, prev = start, -1
    print_state = True
    popped = deferred = False
    prune_points = env.cfg.prune_points
    insns = env.insns
    handlers = env.handlers = [None] * env.n
    first = _first_visit(handlers)
    for i in range(env.n):
        handlers[i] = first
    lv = env.stack_lv
    texts: list[str | None] = [None] * env.n      # each instruction's log text, made once
    # per instruction, what else to do when it runs: 1 a jump point (a jump history entry), 2
    # a load, 4 a store or atomic (an entry when it spills or fills on the stack), 8 collect
    # the stack slots it writes whole (the stack liveness's must-write marks)
    kinds = _EXTRA
    ex = [kinds[ins.code] if ins.src <= 10 and ins.dst <= 10 else kinds[ins.code] & 8
          for ins in insns]
    for i in env.cfg.callback_calls:
        ex[i] |= 8      # (a callback's entry hands back what it writes to the call)
    for i in env.cfg.jmp_points:
        if 0 <= i < env.n:
            ex[i] |= 1
    if env.bt_log:
        st.hist = []
    while True:
        try:
            while True:
                env.processed += 1
                if env.processed > env.max_insns:
                    env.fail(f"BPF program is too large. Processed {env.processed} insn", E.E2BIG)
                if idx in prune_points and is_state_visited(env, st, idx):
                    # a state left unprinted by the last instruction is never printed: Linux
                    # prints it lazily, after this check, and a pruned path skips that
                    if log.on:
                        if print_state and prev >= 0 and log.level & 2:
                            log.write(f"\nfrom {prev} to {idx}: safe\n")
                        else:
                            log.write(f"{idx}: safe\n")
                    raise PathDone
                env.idx = idx
                e = ex[idx]
                if e & 1:
                    st.jh += 1
                elif e & 6:
                    ins = insns[idx]
                    if st.frames[-1].regs[ins.src if e & 2 else ins.dst].type == PTR_TO_STACK \
                            and _stack_history(env, st, ins):
                        st.jh += 1
                if st.hist is not None:
                    ins = insns[idx]
                    st.hist.append((idx, backtrack.stack_access(st, ins)
                                    if ins.code & 7 in (op.LDX, op.ST, op.STX) else None, ()))
                if log.on:
                    if deferred and (env.scratched or env.scratched_slots):
                        # on a line of its own it is numbered with this instruction
                        log.state_after_insn(idx, env.reg_str(st))
                    if print_state:
                        if prev >= 0 and log.level & 2:
                            log.write(f"\nfrom {prev} to {idx}:{env.reg_str(st, all_=True)}\n")
                            if popped:
                                # Linux marks the whole state scratched when it pops a branch, and
                                # the "from" line does not clear the marks: the state shows twice
                                log.write(f"{idx}:{env.reg_str(st, all_=True)}\n")
                        else:
                            log.write(f"{idx}:{env.reg_str(st, all_=True)}\n")
                    text = texts[idx]
                    if text is None:
                        text = texts[idx] = format_insn(insns, idx)
                    log.insn(idx, text)
                    env.scratched.clear()
                    env.scratched_slots.clear()
                print_state = popped = deferred = False
                if not e & 8:
                    nxt = handlers[idx](env, st, idx, insns[idx])
                else:
                    # the stack slots a store writes whole: Linux's must-write marks
                    lv.begin(st, idx)
                    nxt = handlers[idx](env, st, idx, insns[idx])
                    lv.commit()
                if log.on:
                    ins = env.insns[idx]
                    if ins.code == op.OP_EXIT or (ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL
                                                  and nxt != idx + 1):
                        # at level 2 Linux shows where a callee returned to as a jump
                        print_state = ins.code != op.OP_EXIT or bool(log.level & 2)
                        prev = idx if ins.code == op.OP_EXIT else -1
                    elif ins.code & 7 in (op.JMP, op.JMP32) and ins.code != op.OP_CALL:
                        # a conditional jump prints the state itself, numbered with the jump
                        if env.scratched or env.scratched_slots:
                            log.state_after_insn(idx, env.reg_str(st))
                    else:
                        deferred = True
                idx = nxt
        except PathDone:
            _finish_path(env, st)
            lv.update(st)
            if not env.pending:
                return
            st, idx, prev, pos = env.pending.pop()
            if not (log.level & 2):
                log.reset(pos)
            print_state = popped = True
            deferred = False

