"""Loop (SCC) visits: the precision a loop's later paths need, given back to its earlier ones.

A state pruned inside a loop by an earlier state of the same loop (a back-edge of the
state graph) inherits that state's precision marks at once; but paths of the loop still
to be explored may later mark more of the earlier state precise, and the pruned path
must get those marks too.  Like Linux 6.17+, each checkpoint inside a loop belongs to a
*visit* of that loop, named by its call chain (the call sites of the frames above the
loop's frame, then the loop's number, ``cfg.scc``); a helper call that calls a callback
is a loop of its own.  The first checkpoint of a visit is its entry; a prune inside the
visit records the pruned state as a back-edge; when every path from the entry is done,
the back-edges' precision is propagated again until nothing changes.  At level 2 the
log shows ``SCC enter/backedge/exit (callsites,scc)`` and the propagation walks.
"""

from __future__ import annotations

from . import backtrack
from .regstate import SCALAR
from .state import inherit_precision

# a visit's back-edges are propagated at most this many rounds (then: all scalars precise)
MAX_ROUNDS = 64


class Visit:
    __slots__ = ("entry", "backedges")

    def __init__(self):
        self.entry = None       # the Checkpoint that entered the loop on the current path
        self.backedges = []     # (state copy at the prune, the checkpoint that pruned it)


def callchain(env, frames, idx: int):
    """((call sites of the frames above), loop number) for the outermost frame whose current
    instruction lies in a loop; None when no frame is in a loop."""
    scc = env.cfg.scc
    last = len(frames) - 1
    sites = []
    for i in range(last + 1):
        at = idx if i == last else frames[i + 1].callsite
        n = scc.get(at)
        if n:
            return tuple(sites), n
        if i == last:
            return None
        sites.append(at)
    return None


def _fmt(chain) -> str:
    sites, n = chain
    text = ""
    for s in sites:
        if not s:
            break       # Linux ends the list at a zero call site
        text += f"{s},"
    return f"({text}{n})"


def _visit(env, cp, create: bool = False):
    chain = callchain(env, cp.state.frames, cp.insn)
    if chain is None:
        return None, None
    v = env.scc_visits.get(chain)
    if v is None and create:
        v = env.scc_visits[chain] = Visit()
    return chain, v


def maybe_enter(env, cp) -> None:
    """A checkpoint was stored: it is the entry of its loop visit if the visit has none."""
    chain, v = _visit(env, cp, True)
    if v is None or v.entry is not None:
        return
    v.entry = cp
    if env.log.level & 2:
        env.log.write(f"SCC enter {_fmt(chain)}\n")


def incomplete(env, cp) -> bool:
    """Are ``cp``'s precision marks still incomplete (its loop visit has pending back-edges)?"""
    if not env.num_backedges:
        return False        # (no visit has any)
    _, v = _visit(env, cp)
    return v is not None and bool(v.backedges)


def add_backedge(env, cp, st) -> None:
    """``st`` was pruned by ``cp`` inside a loop: remember it until the visit ends."""
    chain, v = _visit(env, cp)
    if v is None:
        return
    if env.log.level & 2:
        env.log.write(f"SCC backedge {_fmt(chain)}\n")
    v.backedges.append((st.copy(), cp))
    env.num_backedges += 1
    env.peak_states = max(env.peak_states, env.cur_states + env.num_backedges)


def maybe_exit(env, cp) -> None:
    """Every path below ``cp`` is done: if it entered its loop visit, close the visit."""
    if not env.scc_visits:
        return
    chain, v = _visit(env, cp)
    if v is None or v.entry is not cp:
        return
    if env.log.level & 2:
        env.log.write(f"SCC exit {_fmt(chain)}\n")
    v.entry = None
    env.num_backedges -= len(v.backedges)
    _propagate(env, v)


def _force_all(st) -> None:
    cp = st.parent
    while cp is not None:
        for r in cp.state.all_regs():
            if r.type == SCALAR:
                r.precise = True
        cp = cp.parent


def _propagate(env, v) -> None:
    rounds = 0
    while True:
        if rounds > MAX_ROUNDS:
            if env.log.level & 2:
                env.log.write("propagate_backedges: too many iterations\n")
            for st, _ in reversed(v.backedges):
                _force_all(st)
            break
        rounds += 1
        changed = False
        for st, cp in reversed(v.backedges):     # the latest first, as Linux keeps them
            if env.bt_log:
                backtrack.log_propagation(env, cp.state, st)
            changed |= inherit_precision(cp.state, st)
        if not changed:
            break
    v.backedges = []
