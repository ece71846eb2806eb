"""The verifier state of one path (its call frames and held references), the stored
checkpoints, and the equivalence test that lets a path be pruned."""

from __future__ import annotations

from .regstate import (ADD_CONST, NOT_INIT, PKT_TYPES, PTR_TO_STACK, SCALAR, Reg, mark_precise)
from .stack import INVALID, MISC, SLOT, SPILL, ZERO, Frame, Slot


class State:
    __slots__ = ("frames", "refs", "parent", "hist", "unroll", "jh")

    def __init__(self, frames: list[Frame], refs: tuple = (), parent=None, hist=None, unroll=0,
                 jh=0):
        self.frames = frames
        # entries of Linux's jump history since the last checkpoint (jmp_history_cnt): the
        # instructions run that are jump points, spills or fills, or links at a branch
        self.jh = jh
        # callbacks entered on this path: a state seen again in a later callback iteration is
        # the next iteration, not an infinite loop (Linux: callback_unroll_depth)
        self.unroll = unroll
        # level-2 logs only: (insn, stack slot, linked regs) run since the last checkpoint
        self.hist = hist
        self.refs = refs            # ((id, alloc_insn), ...) of acquired ringbuf records
        self.parent = parent        # the nearest Checkpoint on this path

    @property
    def cur(self) -> Frame:
        return self.frames[-1]

    def copy(self) -> "State":
        return State([f.copy() for f in self.frames], self.refs, self.parent,
                     None if self.hist is None else self.hist[:], self.unroll, self.jh)

    def all_regs(self):
        """Every register and spilled register of every frame (for id-wide updates)."""
        for f in self.frames:
            yield from f.regs
            for s in f.stack:
                if s.spilled is not None and s.types[SLOT - 1] == SPILL:
                    yield s.spilled


class Checkpoint:
    """A state stored at a prune point; ``branches`` counts paths below it still being explored."""
    __slots__ = ("state", "parent", "branches", "insn", "hit", "miss", "hist", "evicted", "_key",
                 "stack_alive")

    def __init__(self, state: State, parent, insn: int):
        self.state = state
        self.parent = parent
        self.branches = 1
        self.insn = insn
        self.hit = 0
        self.miss = 0
        self.hist = state.hist     # the instructions that led here from the previous checkpoint
        self.evicted = False       # dropped from the list but still counted (Linux: free list)
        self._key = None
        # per frame, the stack slots still compared once the state is done (None: all of them;
        # Linux's clean_verifier_state() marks the others invalid)
        self.stack_alive = None

    def loop_key(self) -> tuple:
        """:func:`loop_key` of the stored state, which keeps its registers' values."""
        if self._key is None:
            self._key = loop_key(self.state)
        return self._key


def loop_key(st: State) -> tuple:
    """The registers' types and values: two states equal exactly only if their keys are equal,
    and a loop's successive states nearly always differ here, so one tuple comparison rejects
    them (Linux's states_maybe_looping, for every frame)."""
    return tuple((r.type, r.var, r.off) if r.type != NOT_INIT else NOT_INIT
                 for f in st.frames for r in f.regs)


class IdMap:
    """A consistent one-to-one renaming of ids between an old and a current state."""
    __slots__ = ("fwd", "back", "tmp")

    def __init__(self):
        self.fwd: dict[int, int] = {}
        self.back: dict[int, int] = {}
        self.tmp = 1 << 40

    def check(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True
        if not old or not cur:
            return False
        a = self.fwd.get(old)
        b = self.back.get(cur)
        if a is None and b is None:
            self.fwd[old] = cur
            self.back[cur] = old
            return True
        return a == cur and b == old

    def check_scalar(self, old: int, cur: int) -> bool:
        if not old and not cur:
            return True         # two fresh ids: always a consistent pair
        if not old:
            self.tmp += 1
            old = self.tmp
        if not cur:
            self.tmp += 1
            cur = self.tmp
        return self.check(old, cur)


def _range_within(o: Reg, c: Reg) -> bool:
    return (o.smin <= c.smin and o.smax >= c.smax and o.umin <= c.umin and o.umax >= c.umax
            and o.s32min <= c.s32min and o.s32max >= c.s32max and o.u32min <= c.u32min
            and o.u32max >= c.u32max)


def _tnum_in(a, b) -> bool:
    if b[1] & ~a[1]:
        return False
    return (b[0] & ~a[1]) == a[0]


def regsafe(o: Reg, c: Reg, idmap: IdMap, exact: bool, within: bool = False) -> bool:
    """Is ``c`` covered by ``o``?  ``exact``: identical; ``within``: every scalar's range
    included, precise or not (Linux's RANGE_WITHIN, used where callbacks loop)."""
    if exact:
        if o.type != c.type:
            return False
        if o.type == NOT_INIT:
            return True
        if (o.off, o.var, o.smin, o.smax, o.umin, o.umax, o.s32min, o.s32max, o.u32min, o.u32max,
                o.map, o.range, o.mem_size, o.frameno, o.subprog) != \
           (c.off, c.var, c.smin, c.smax, c.umin, c.umax, c.s32min, c.s32max, c.u32min, c.u32max,
                c.map, c.range, c.mem_size, c.frameno, c.subprog):
            return False
        return idmap.check_scalar(o.id, c.id) and idmap.check(o.ref_obj_id, c.ref_obj_id)
    if o.type == NOT_INIT:
        return True
    if o.type != c.type:
        return False
    if o.type == SCALAR:
        if not o.precise and not within:
            return True
        if (o.id ^ c.id) & ADD_CONST or o.off != c.off:     # same add-const flags
            return False
        return _range_within(o, c) and _tnum_in(o.var, c.var) and idmap.check_scalar(o.id, c.id)
    if o.off != c.off or o.map is not c.map and o.map != c.map:
        return False
    if not (_range_within(o, c) and _tnum_in(o.var, c.var)):
        return False
    if o.type in PKT_TYPES:
        if o.range < 0 or c.range < 0:
            if o.range != c.range:        # at/beyond pkt_end: only the same mark will do
                return False
        elif c.range < o.range:
            return False
    elif o.type == PTR_TO_STACK:
        if o.frameno != c.frameno:
            return False
    if o.mem_size != c.mem_size or o.subprog != c.subprog:
        return False
    return idmap.check(o.id, c.id) and idmap.check(o.ref_obj_id, c.ref_obj_id)


def stacksafe(o: Frame, c: Frame, idmap: IdMap, exact: bool, privileged: bool,
              within: bool = False, live: int = -1) -> bool:
    """Is ``c``'s stack covered by ``o``'s?  Only the old state's allocated slots are looked
    at; ``live``: bitmask of the slots a continuation may read (the others are as good as
    invalid).  ``exact`` wants the same slot types byte for byte, the old stack allocated in
    the current one too; ``within`` (a loop's comparison) lets invalid and misc bytes go as
    the plain comparison does (as the host's 6.18 kernel does)."""
    cstack = c.stack
    nc = len(cstack)
    if exact:
        if o.allocated > c.allocated:
            return False
        for spi in range(o.allocated):
            os_ = o.stack[spi] if spi < len(o.stack) else _EMPTY
            cs = cstack[spi] if spi < nc else _EMPTY
            ot = os_.types
            if ot != cs.types:
                return False
            if ot[SLOT - 1] == SPILL and not regsafe(os_.spilled, cs.spilled, idmap, True):
                return False
        return True
    for spi, os_ in enumerate(o.stack):
        ot = os_.types
        if not (live >> spi) & 1:
            continue
        # an invalid byte never matters to the old state, nor a misc one where uninitialised
        # stack may be read anyway: a slot of only such bytes is not looked at
        for t in ot:
            if t != INVALID and (t != MISC or not privileged):
                break
        else:
            continue
        if spi >= c.allocated:
            return False            # used by the old state, never allocated by this one
        cs = cstack[spi] if spi < nc else _EMPTY
        # A 64-bit scalar spill and a slot of misc bytes both read back as a scalar (the
        # latter as an unknown one): compared as registers, not by slot types.
        o_reg = _stack_scalar(os_, privileged)
        if o_reg is not None:
            c_reg = _stack_scalar(cs, privileged)
            if c_reg is not None:
                if not regsafe(o_reg, c_reg, idmap, False, within):
                    return False
                continue
        ct = cs.types
        for j in range(SLOT):
            t = ot[j]
            if t == INVALID or (privileged and t == MISC):
                continue
            u = ct[j]
            # what was safe with misc bytes is safe with zeroes
            if t != u and not (t == MISC and u == ZERO):
                return False
        if ot[SLOT - 1] == SPILL:
            if not regsafe(os_.spilled, cs.spilled, idmap, False, within):
                return False
    return True


# What a read of a slot of misc bytes gives (Linux's unbound_reg: never precise).
_UNBOUND = Reg.scalar()
# An allocated slot nothing was written to (read only).
_EMPTY = Slot()


def _stack_scalar(s: Slot, privileged: bool) -> Reg | None:
    """The scalar an 8-byte read of ``s`` gives when it is a spilled 64-bit scalar or only misc
    bytes (uninitialised ones too where allowed), else None (Linux's scalar_reg_for_stack)."""
    types = s.types
    if types[0] == SPILL:
        r = s.spilled
        return r if r is not None and r.type == SCALAR else None
    for t in types:
        if t != MISC and not (privileged and t == INVALID):
            return None
    return _UNBOUND


def states_equal(old: State, cur: State, live_masks: list[int], exact: bool, privileged: bool,
                 within: bool = False, stack_masks: list[int] | None = None) -> bool:
    if len(old.frames) != len(cur.frames):
        return False
    if not privileged:
        # Without CAP_BPF Linux makes every scalar precise (__mark_reg_unknown() and
        # __mark_reg_const_zero() set precise = !bpf_capable): each is compared by its range,
        # as a precise one is (only the unknown value of misc stack bytes is not)
        within = True
    idmap = IdMap()
    for k, (fo, fc, live) in enumerate(zip(old.frames, cur.frames, live_masks)):
        if fo.callsite != fc.callsite or fo.in_callback != fc.in_callback:
            return False
        if fo.callback_depth > fc.callback_depth:
            return False        # (an earlier callback iteration is not covered by a later one)
        ro, rc = fo.regs, fc.regs
        if exact:
            # (the caller has already compared every register's type and value: loop_key)
            for i in range(11):
                o, c = ro[i], rc[i]
                if o.type != c.type or o.type != NOT_INIT and not regsafe(o, c, idmap, True):
                    return False
        else:
            for i in range(11):
                if not (live >> i) & 1:
                    continue
                o = ro[i]
                t = o.type
                # the cheap verdicts first (this loop runs at every prune point)
                if t == NOT_INIT:
                    continue
                c = rc[i]
                if t != c.type:
                    return False
                if t == SCALAR and not o.precise and not within:
                    continue
                if not regsafe(o, c, idmap, False, within):
                    return False
        if not stacksafe(fo, fc, idmap, exact, privileged, within,
                         stack_masks[k] if stack_masks is not None else -1):
            return False
    if len(old.refs) != len(cur.refs):
        return False
    for (oi, _), (ci, _) in zip(old.refs, cur.refs):
        if not idmap.check(oi, ci):
            return False
    return True


def inherit_precision(old: "State", cur: "State") -> bool:
    """Mark in ``cur``'s stored ancestors what ``old`` holds precise; was anything new marked?"""
    changed = False
    for fo, fc in zip(old.frames, cur.frames):
        for ro, rc in zip(fo.regs, fc.regs):
            if ro is not None and ro.precise and rc.type == SCALAR:
                changed |= mark_precise(rc)
        for so, sc in zip(fo.stack, fc.stack):
            if so.spilled is not None and so.spilled.precise and sc.spilled is not None \
                    and sc.types[SLOT - 1] == SPILL:
                changed |= mark_precise(sc.spilled)
    return changed
