"""Call-chain sensitive stack liveness, as Linux 6.18 computes and logs it (``liveness.c``).

While paths are explored, every stack access is recorded against the pair
(call chain, instruction): which 8-byte slots an instruction *may read* (a
union over all visits) and which it *must write* (an intersection over all
visits; only whole, aligned 8-byte stores count).  Whenever a path ends (an
exit, a pruned state) and whenever a subprogram returns, the instances of the
current call chain that gained marks are brought to a fixed point by a
backward data-flow pass over the subprogram's instructions in post-order:

    live_before(i) = (U live_before(succ) - must_write(i)) | may_read(i)
    written(i)     = (^ written(succ)) | must_write(i)

and what a callee's entry shows about its callers' frames is handed to the
call instruction of the caller's instance.  At log level 2 Linux prints each
change of these sets and the number of passes each fixed point took.  Pruning
uses the sets as Linux does: a stored state, once every path below it is done,
is compared only on the slots alive at that time (:meth:`StackLiveness.alive`,
Linux's clean_verifier_state()), so the analysis always runs.

A call chain is the tuple of call instructions leading to a frame, closed by
the start of the frame's subprogram: ``(0)`` for the main program, ``(5,10)``
for a function at 10 called from instruction 5.
"""

from __future__ import annotations

from ..isa import opcodes as op

ALL = (1 << 64) - 1
MAX_FRAMES = op.MAX_CALL_FRAMES


def fmt_stack_mask(mask: int) -> str:
    """``-8,-24``: the frame offsets of the slots in ``mask`` (bit k is the slot at -8*(k+1))."""
    out = []
    k = 0
    while mask:
        if mask & 1:
            out.append(str(-(k + 1) * 8))
        mask >>= 1
        k += 1
    return ",".join(out)


def _transfer(live, written, must_write, may_read, r: int, ss) -> bool:
    """Recompute instruction ``r``'s live-before and written-after masks from its successors
    ``ss`` (the one data-flow equation both solvers use); did they change?"""
    after = 0
    acc = ALL
    for t in ss:
        after |= live[t]
        acc &= written[t]
    mw = must_write[r]
    acc |= mw
    before = (after & ~mw) | may_read[r]
    if before != live[r] or acc != written[r]:
        live[r] = before
        written[r] = acc
        return True
    return False


class _Masks:
    """One frame's sets, per instruction of the instance's subprogram (relative index)."""

    __slots__ = ("may_read", "must_write", "written", "live", "pending")

    def __init__(self, n: int):
        self.may_read = [0] * n
        self.must_write = [0] * n
        self.written = [0] * n     # slots every path from here writes (within the subprogram)
        self.live = [0] * n        # slots some path from here may read first
        self.pending: set[int] = set()     # instructions whose marks changed since the update


class _Instance:
    """The marks of one subprogram reached through one call chain."""

    __slots__ = ("cc", "starts", "depth", "start", "sub", "n", "frames", "mw_seen", "updated",
                 "dropped", "name")

    def __init__(self, cc: tuple, starts: tuple, sub: int, n: int):
        self.cc = cc
        self.starts = starts               # subprogram start of each frame of the chain
        self.depth = len(cc) - 1
        self.start = cc[-1]
        self.sub = sub
        self.n = n
        self.frames: list[_Masks | None] = [None] * (self.depth + 1)
        self.mw_seen = [False] * n         # must_write known for the instruction already
        self.updated = False
        self.dropped = False
        self.name = "(" + ",".join(str(c) for c in cc) + ")"

    def masks(self, frame: int) -> _Masks:
        m = self.frames[frame]
        if m is None:
            m = self.frames[frame] = _Masks(self.n)
        return m


class StackLiveness:
    def __init__(self, env):
        self.log = env.log
        insns = env.insns
        n = env.n
        self.starts = list(env.cfg.subprog_starts)
        self.sub_of_start = {s: k for k, s in enumerate(self.starts)}
        self.ends = self.starts[1:] + [n]
        self.prune = None
        if self.log.level & 2:
            # Linux's prune points, whose sets are logged even when they do not change: a
            # function pointer load is one too, as is the instruction after it
            prune = set(env.cfg.prune_points)
            for i, ins in enumerate(insns):
                if ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC:
                    prune.update((i, i + 2))
            self.prune = prune
        # (fall-through first, then the jump target: Linux's bpf_insn_successors())
        self.succ = env.cfg.succ
        self._order: dict[int, list] = {}
        self._graphs: dict[int, tuple] = {}
        # (Only stores write a slot whole; any other instruction's must-write set is empty on
        # every visit, so its visits need no tracking, except at a helper call that calls back:
        # there the set seen at the call (empty) limits what the callback's entry hands back.
        # The explorer calls begin() and commit() around those, see core.explore.)
        self.back_jumps = env.cfg.back_jumps
        self._postorder: dict[int, list[int]] = {}
        self.instances: dict[tuple, _Instance] = {}
        self.cur: _Instance | None = None
        self.acc = [0] * MAX_FRAMES
        self.dirty: set[_Instance] = set()     # the instances with marks not propagated yet
        self.widx = 0

    # ---- instances ---------------------------------------------------------------------------
    def _get(self, cc: tuple, starts: tuple) -> _Instance:
        inst = self.instances.get(cc)
        if inst is None:
            sub = self.sub_of_start[starts[-1]]
            inst = _Instance(cc, starts, sub, self.ends[sub] - self.starts[sub])
            self.instances[cc] = inst
        return inst

    def lookup(self, st, frameno: int) -> _Instance:
        frames = st.frames
        frame = frames[frameno]
        inst = frame.lv         # (a frame's call chain is fixed from its call on)
        if inst is None:
            starts = tuple(self.starts[frames[i].subprog] for i in range(frameno + 1))
            cc = tuple(frames[i + 1].callsite for i in range(frameno)) + (starts[-1],)
            inst = frame.lv = self._get(cc, starts)
        return inst

    def _ensure(self, st) -> _Instance:
        inst = self.cur
        if inst is None:
            inst = self.cur = self.lookup(st, len(st.frames) - 1)
        return inst

    def reset(self) -> None:
        """The current path's frames changed (a call): find its instance again when needed."""
        self.cur = None

    # ---- marks ---------------------------------------------------------------------------------
    def _mark_read(self, inst: _Instance, frame: int, idx: int, mask: int) -> None:
        m = inst.frames[frame] or inst.masks(frame)
        r = idx - inst.start
        may_read = m.may_read
        old = may_read[r]
        if old | mask == old:
            return
        new = old | mask
        if (new | m.live[r]) != m.live[r]:
            inst.updated = True
            self.dirty.add(inst)
            m.pending.add(r)
        may_read[r] = new

    def read(self, st, frame: int, idx: int, mask: int) -> None:
        """Instruction ``idx`` of the current path may read ``mask`` of frame ``frame``."""
        self._mark_read(self.cur or self._ensure(st), frame, idx, mask)

    def begin(self, st, idx: int) -> None:
        """Instruction ``idx`` is about to run: collect the slots it writes whole."""
        inst = self.cur or self._ensure(st)
        self.widx = idx
        acc = self.acc
        if not inst.depth:
            acc[0] = 0
            return
        for f in range(inst.depth + 1):
            acc[f] = 0

    def write(self, frame: int, mask: int) -> None:
        self.acc[frame] |= mask

    def _commit(self, inst: _Instance) -> None:
        r = self.widx - inst.start
        seen = inst.mw_seen[r]
        acc = self.acc
        for f in range(inst.depth + 1):
            mask = acc[f]
            if not mask and not seen:
                continue
            m = inst.frames[f] or inst.masks(f)
            old = m.must_write[r]
            if seen:
                mask &= old
            if old != mask:
                m.must_write[r] = mask
                inst.updated = True
                self.dirty.add(inst)
                m.pending.add(r)
            if old & ~mask:
                inst.dropped = True
        inst.mw_seen[r] = True
        self.widx = 0

    def commit(self) -> None:
        """The instruction ran: what it wrote is what it must write (intersected with earlier
        visits).  Nothing is recorded for a call or a return (the path's frames changed)."""
        if self.cur is not None:
            self._commit(self.cur)

    # ---- propagation ------------------------------------------------------------------------
    def postorder(self, sub: int) -> list[int]:
        po = self._postorder.get(sub)
        if po is None:
            po = self._postorder[sub] = _postorder(self.succ, self.starts[sub])
        return po

    def order(self, sub: int) -> tuple:
        """The subprogram's instructions that have successors (an exit changes nothing), last
        first, as (index, successors' indexes) relative to its start, and whether its jumps
        all go forward.  The fixed point does not depend on the order; Linux's post-order only
        shows in the logged pass counts."""
        out = self._order.get(sub)
        if out is None:
            start = self.starts[sub]
            succ = self.succ
            if start:
                order = [(i - start, tuple(t - start for t in succ[i]))
                         for i in range(self.ends[sub] - 1, start - 1, -1) if succ[i]]
            else:
                order = [(i, succ[i]) for i in range(self.ends[sub] - 1, -1, -1) if succ[i]]
            # with forward jumps only, last first is an order with every successor before the
            # instruction: one pass reaches the fixed point
            out = self._order[sub] = (order, sub not in self.back_jumps)
        return out

    def _graph(self, sub: int) -> tuple:
        """(successors, predecessors) of each instruction of the subprogram, relative to its
        start."""
        g = self._graphs.get(sub)
        if g is None:
            start, end = self.starts[sub], self.ends[sub]
            if start:
                succ = [tuple(t - start for t in self.succ[i]) for i in range(start, end)]
            else:
                succ = self.succ[:end]
            preds: list = [()] * (end - start)
            for r, ss in enumerate(succ):
                for t in ss:
                    preds[t] += (r,)
            g = self._graphs[sub] = (succ, preds)
        return g

    def _propagate(self, m: _Masks, sub: int) -> None:
        succ, preds = self._graph(sub)
        live, written, must_write, may_read = m.live, m.written, m.must_write, m.may_read
        work = list(m.pending)
        queued = set(work)
        while work:
            r = work.pop()
            queued.discard(r)
            ss = succ[r]
            if ss and _transfer(live, written, must_write, may_read, r, ss):
                for p in preds[r]:
                    if p not in queued:
                        queued.add(p)
                        work.append(p)

    def _fixed_point(self, m: _Masks, order: list, one_pass: bool) -> None:
        live, written, must_write, may_read = m.live, m.written, m.must_write, m.may_read
        changed = True
        while changed:
            changed = False
            for r, ss in order:
                if _transfer(live, written, must_write, may_read, r, ss):
                    changed = True
            if one_pass:
                break

    def _update_insn(self, inst: _Instance, frame: int, m: _Masks, idx: int, log2: bool) -> bool:
        succ = self.succ[idx]
        if not succ:
            return False
        start = inst.start
        live, written = m.live, m.written
        after = 0
        acc = ALL
        for s in succ:
            after |= live[s - start]
            acc &= written[s - start]
        r = idx - start
        mw = m.must_write[r]
        mr = m.may_read[r]
        acc |= mw
        before = (after & ~mw) | mr
        old_live, old_written = live[r], written[r]
        if log2 and (mr or mw or idx == start or idx in self.prune):
            _log_change(self.log, inst.name, "live", frame, idx, old_live, before)
            _log_change(self.log, inst.name, "written", frame, idx, old_written, acc)
        live[r] = before
        written[r] = acc
        return before != old_live or acc != old_written

    def _update_instance(self, inst: _Instance) -> None:
        if inst.dropped:
            for m in inst.frames:
                if m is not None:
                    m.written = [0] * inst.n
        log = self.log
        log2 = bool(log.level & 2)
        if not log2:
            # Each frame's sets come to their own fixed point, with nothing to count or print:
            # from the instructions whose marks changed, back through their predecessors
            # (the same least fixed point above the sets so far as whole passes reach)
            if inst.dropped:
                order, one_pass = self.order(inst.sub)
            for m in inst.frames:
                if m is None:
                    continue
                if inst.dropped:
                    self._fixed_point(m, order, one_pass)
                elif m.pending:
                    self._propagate(m, inst.sub)
                m.pending.clear()
            if inst.depth:
                self._to_caller(inst)
            return
        for m in inst.frames:
            if m is not None:
                m.pending.clear()
        po = self.postorder(inst.sub)
        cnt = 0
        while True:
            cnt += 1
            changed = False
            for f, m in enumerate(inst.frames):
                if m is None:
                    continue
                for idx in po:
                    if self._update_insn(inst, f, m, idx, log2):
                        changed = True
            if not changed:
                break
        if log2:
            log.write(f"{inst.name} live stack update done in {cnt} iterations\n")
        if inst.depth:
            self._to_caller(inst)

    def _to_caller(self, inst: _Instance) -> None:
        """Hand the callee entry's sets for the callers' frames to the call instruction."""
        d = inst.depth
        starts = inst.starts[:d]
        outer = self._get(inst.cc[:d - 1] + (starts[-1],), starts)
        callsite = inst.cc[d - 1]
        self.widx = callsite
        acc = self.acc
        for f in range(outer.depth + 1):
            acc[f] = 0
        for f in range(d):
            m = inst.frames[f]
            if m is None:
                continue
            acc[f] |= m.written[0]
            self._mark_read(outer, f, callsite, m.live[0])
        self._commit(outer)

    def alive(self, st, idx: int) -> list[int]:
        """Per frame of ``st`` (a state at ``idx``), the slots some continuation may still read,
        as far as the paths explored so far show (Linux's bpf_stack_slot_alive())."""
        frames = st.frames
        last = len(frames) - 1
        if not last:
            inst = self.lookup(st, 0)
            m = inst.frames[0]
            return [m.live[idx - inst.start] if m is not None else 0]
        insts = [self.lookup(st, f) for f in range(last + 1)]
        cur = insts[last]
        out = []
        for f in range(last + 1):
            m = cur.frames[f]
            mask = m.live[idx - cur.start] if m is not None else 0
            for i in range(f, last):
                inner = frames[i + 1]
                # a callback returns to the helper call, which may call it again
                at = inner.callsite if inner.in_callback else inner.callsite + 1
                inst = insts[i]
                m = inst.frames[f]
                if m is not None:
                    mask |= m.live[at - inst.start]
            out.append(mask)
        return out

    def update(self, st) -> None:
        """A path ended or a subprogram returns: bring the instances of ``st``'s call chain to
        their fixed point, innermost first (Linux's bpf_update_live_stack)."""
        self.cur = None
        if not self.dirty:
            return          # (most paths end without a new mark)
        for f in range(len(st.frames) - 1, -1, -1):
            inst = self.lookup(st, f)
            if inst.updated:
                self._update_instance(inst)
                inst.updated = False
                inst.dropped = False
                self.dirty.discard(inst)


def _log_change(log, name: str, what: str, frame: int, idx: int, old: int, new: int) -> None:
    changed = old ^ new
    if not changed:
        return
    text = f"{name} frame {frame} insn {idx} "
    ones = new & changed
    zeros = ~new & changed
    if ones:
        text += f"+{what} {fmt_stack_mask(ones)} "
    if zeros:
        text += f"-{what} {fmt_stack_mask(zeros)}"
    log.write(text + "\n")


def _postorder(succ, start: int) -> list[int]:
    """The subprogram's instructions in Linux's post-order (compute_postorder()): an explicit
    stack onto which all undiscovered successors are pushed at once."""
    state: dict[int, int] = {}
    stack = [start]
    out = []
    while stack:
        top = stack[-1]
        s = state.get(top, 0)
        if s & 2:
            out.append(top)
            stack.pop()
            continue
        for w in succ[top]:
            if w not in state:
                stack.append(w)
                state[w] = 1
        state[top] = 3
    return out
