"""Calls: helper prototypes applied to registers, bpf-to-bpf frames, and exits."""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn
from . import bounds as B
from . import helpers as H
from . import tnum
from .regstate import (OR_NULL_TYPES, CONST_PTR_TO_MAP, CONST_PTR_TO_MAP_OR_NULL, PKT_TYPES, PTR_TO_CTX, PTR_TO_MAP_VALUE,
    PTR_TO_MAP_VALUE_OR_NULL, MEM_TYPES, PTR_TO_ARG_MEM, PTR_TO_MEM, PTR_TO_MEM_OR_NULL, PTR_TO_PACKET, PTR_TO_PACKET_END,
    PTR_TO_PACKET_META, PTR_TO_STACK, SCALAR, Reg, mark_precise, PTR_TO_FUNC, PTR_TO_MAP_KEY)
from .stack import INVALID, MISC, SLOT, SPILL, ZERO, Frame
from .cfg import slot_mask
from .state import IdMap, State, regsafe

from . import backtrack, funcinfo
from ..maps.spec import ncpus
from .env import MAX_VAR_OFF, Env, PathDone, VerifyError, push_branch
from .memory import _frame_of, _grow, _pkt_access_ok, check_mem_region, check_packet, stack_bounds


_MEM_TYPES_MSG = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_"


def helper_mem_access(env: Env, st: State, regno: int, size: int, write: bool, zero_ok: bool,
                      allow_null: bool = False, raw: bool | None = None) -> None:
    """``write``: the callee fills the memory; ``raw`` (by default ``write``): it may be
    uninitialized (Linux's raw mode, which is not a read of the stack)."""
    r = st.cur.regs[regno]
    t = r.type
    if t == SCALAR and allow_null and r.is_const and r.value == 0:
        return
    if t in PKT_TYPES:
        check_packet(env, regno, r, r.off, size, zero_ok)
    elif t == PTR_TO_MAP_VALUE:
        if write and r.map.flags & 0x80:
            env.fail(f"write into map forbidden, value_size={r.map.value_size} off={r.off} size={size}")
        check_mem_region(env, regno, r, r.off, size, r.map.value_size, "map", zero_ok)
    elif t in MEM_TYPES:
        check_mem_region(env, regno, r, r.off, size, r.mem_size, "mem", zero_ok)
    elif t == PTR_TO_MAP_KEY:
        if write:
            env.fail(f"write to change key R{regno} not allowed")
        check_mem_region(env, regno, r, r.off, size, r.map.key_size, "key", zero_ok)
    elif t == PTR_TO_STACK:
        if size == 0 and zero_ok:
            return
        frame = _frame_of(st, r)
        lo, hi = stack_bounds(env, regno, r, r.off, size, " write to" if write else " read from",
                              frame=frame)
        _grow(env, st, frame, lo)
        if env.stack_lv is not None and not (write if raw is None else raw):
            env.stack_lv.read(st, r.frameno, env.idx, slot_mask(lo, hi - lo))
        for a in range(lo, hi):
            spi, j = (-a - 1) // SLOT, (-a - 1) % SLOT
            slot = frame.slot(spi)
            if write:
                if slot.types[SLOT - 1] == SPILL:
                    slot.types = [x if x == INVALID else MISC for x in slot.types]
                    slot.spilled = None
                slot.types[j] = MISC
                env.scratched_slots.add(spi)    # Linux writes it byte by byte, as a store
                continue
            ty = slot.types[j]
            if ty in (MISC, "0"):
                continue
            if ty == SPILL:
                if slot.spilled.type == SCALAR or env.priv:
                    continue
            if ty == INVALID and env.priv:
                continue
            if r.is_const:
                env.fail(f"invalid read from stack R{regno} off {lo}+{a - lo} size {size}")
            env.fail(f"invalid read from stack R{regno} var_off {tnum.fmt(r.var)}+{a - lo} size {size}")
    else:
        env.fail(f"R{regno} type={t} expected={_MEM_TYPES_MSG}")


def _constant_key(st: State, r: Reg, key_size: int) -> tuple[int, bool] | None:
    """(key, from a spill) where a stack pointer points at a known constant key, else None.
    As Linux: zeroed bytes from the key's first byte up to the slot's top that cover the
    key are key 0; else the slot must hold a spilled constant scalar whose spilled bytes
    from the key's first byte up number exactly the key's size, and the key is the whole
    spilled value (a value that is no index, negative or too large, finds no element)."""
    if r.type != PTR_TO_STACK or not r.is_const:
        return None
    off = r.off + B.s64(r.var[0])
    slot = _frame_of(st, r).peek((-off - 1) // SLOT)
    if slot is None:
        return None
    j0 = (-off - 1) % SLOT
    zeros = 0
    for j in range(j0, -1, -1):
        if slot.types[j] != ZERO:
            break
        zeros += 1
    if zeros >= key_size:
        return 0, False
    if slot.types[SLOT - 1] != SPILL or slot.spilled is None or slot.spilled.type != SCALAR:
        return None
    spilled = 0
    for j in range(j0, -1, -1):
        if slot.types[j] != SPILL:
            break
        spilled += 1
    if spilled != key_size or not slot.spilled.is_const:
        return None
    return B.s64(slot.spilled.var[0]), True


def _mark_key_precise(env: Env, st: State, r: Reg) -> None:
    """An array lookup relies on the constant key spilled where ``r`` points (not on zeroed
    bytes, which need no mark): Linux marks that stack slot precise."""
    off = r.off + B.s64(r.var[0])
    slot = _frame_of(st, r).peek((-off - 1) // SLOT)
    if slot is None or slot.types[SLOT - 1] != SPILL or slot.spilled is None:
        return
    if env.bt_log:
        backtrack.log_precision_slot(env, st, r.frameno, (-off - 1) // SLOT)
    mark_precise(slot.spilled)


def do_helper_call(env: Env, st: State, idx: int, ins: Insn) -> int | None:
    fid = ins.imm
    if fid < 0 or fid >= H.MAX_HELPER_ID:
        env.fail(f"invalid func {H.helper_name(fid)}#{fid}", E.EINVAL)
    proto = H.lookup(fid, env.prog_type, env.priv)
    if proto is None:
        env.fail(f"program of this type cannot use helper {H.helper_name(fid)}#{fid}", E.EINVAL)
    if proto.gpl_only and not env.gpl:
        env.fail("cannot call GPL-restricted function from non-GPL compatible program", E.EINVAL)
    env.helpers_used.add(fid)
    regs = st.cur.regs
    meta_map = None
    key_const = None
    mem_regno = None
    mem_write = False
    mem_null = False
    alloc_size = 0
    release_ref = 0
    cb_sub = None
    bad_map = False
    for i, kind in enumerate(proto.args):
        regno = i + 1
        r = env.read_reg(st, regno)
        if r.type in PKT_TYPES and not (fid in H.PKT_ACCESS and _pkt_access_ok(env.prog_type)):
            env.fail("helper access to the packet is not allowed")
        if kind == H.ANYTHING:
            if env.is_pointer_value(r):
                env.fail(f"R{regno} leaks addr into helper function")
        elif kind == H.CONST_MAP_PTR:
            if r.type != CONST_PTR_TO_MAP:
                env.fail(f"R{regno} type={r.type} expected=map_ptr")
            meta_map = r.map
            # for_each_map_elem's map is checked when its callback is set up (below); the
            # others once every argument is checked (and its precision marked), as Linux does
            bad_map = fid != H.FOR_EACH_MAP_ELEM and not H.map_compatible(proto, meta_map.map_type)
        elif kind in (H.MAP_KEY, H.MAP_VALUE, H.MAP_VALUE_UNINIT):
            if meta_map is None:
                env.fail(f"invalid map_ptr to access map->{'key' if kind == H.MAP_KEY else 'value'}")
            if r.type not in (PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_VALUE, PTR_TO_MEM,
                              PTR_TO_ARG_MEM, PTR_TO_MAP_KEY):
                env.fail(f"R{regno} type={r.type} expected={_MEM_TYPES_MSG}")
            size = meta_map.key_size if kind == H.MAP_KEY else meta_map.value_size
            helper_mem_access(env, st, regno, size, kind == H.MAP_VALUE_UNINIT, False)
            if kind == H.MAP_KEY and fid == 1 and meta_map.map_type in (H.MAP_ARRAY, H.MAP_PERCPU_ARRAY) \
                    and env.priv:       # Linux elides the NULL only for CAP_BPF loaders
                key = _constant_key(st, r, meta_map.key_size)
                if key is not None:
                    key_const, from_spill = key
                    if from_spill:
                        _mark_key_precise(env, st, r)
        elif kind in (H.MEM, H.MEM_OR_NULL, H.UNINIT_MEM, H.UNINIT_MEM_OR_NULL):
            null_ok = kind in (H.MEM_OR_NULL, H.UNINIT_MEM_OR_NULL)
            if not (null_ok and r.type == SCALAR and r.is_const and r.value == 0):
                if r.type not in (PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_VALUE,
                                  PTR_TO_MEM, PTR_TO_ARG_MEM, PTR_TO_MAP_KEY):
                    env.fail(f"R{regno} type={r.type} expected={_MEM_TYPES_MSG}")
            else:
                # a NULL where the helper allows one: Linux needs that zero exactly
                backtrack.mark_chain_precision(env, st, regno)
            mem_regno = regno
            mem_write = kind in (H.UNINIT_MEM, H.UNINIT_MEM_OR_NULL)
            mem_null = null_ok
        elif kind in (H.CONST_SIZE, H.CONST_SIZE_OR_ZERO):
            if r.type != SCALAR:
                env.fail(f"R{regno} type={r.type} expected=scalar")
            zero_ok = kind == H.CONST_SIZE_OR_ZERO
            mark_precise(r)
            if r.smin < 0:
                env.fail(f"R{regno} min value is negative, either use unsigned or 'var &= const'")
            if r.umin == 0 and not zero_ok:
                env.fail(f"R{regno} invalid zero-sized read: u64=[{r.umin},{r.umax}]")
            if r.umax >= MAX_VAR_OFF:
                env.fail(f"R{regno} unbounded memory access, use 'var &= const' or 'if (var < const)'")
            if mem_regno is not None:
                pr = regs[mem_regno]
                if not (mem_null and pr.type == SCALAR):
                    helper_mem_access(env, st, mem_regno, r.umax, mem_write, zero_ok or r.umin == 0)
            if env.bt_log:
                backtrack.log_precision(env, st, regno)
        elif kind == H.CONST_ALLOC_SIZE_OR_ZERO:
            mark_precise(r)
            if r.type != SCALAR or not r.is_const:
                env.fail(f"R{regno} is not a known constant'")
            if env.bt_log:
                backtrack.log_precision(env, st, regno)
            alloc_size = r.value
        elif kind == H.CTX:
            if r.type != PTR_TO_CTX:
                env.fail(f"R{regno} type={r.type} expected=ctx")
            if r.off:
                env.fail(f"dereference of modified ctx ptr R{regno} off={r.off} disallowed")
        elif kind == H.ALLOC_MEM:
            if r.type != PTR_TO_MEM or not r.ref_obj_id:
                env.fail(f"R{regno} type={r.type} expected=ringbuf_mem")
            if r.off or not r.is_const or r.var[0]:
                env.fail(f"R{regno} must have zero offset when passed to release func or trusted arg to kfunc",
                         E.EINVAL)
            release_ref = r.ref_obj_id
        elif kind == H.FUNC:
            if r.type != PTR_TO_FUNC:
                env.fail(f"R{regno} type={r.type} expected=func")
            cb_sub = r.subprog
        elif kind == H.STACK_OR_NULL:
            if r.type != PTR_TO_STACK and not (r.type == SCALAR and r.is_const and r.value == 0):
                env.fail(f"R{regno} type={r.type} expected=fp")
            if r.type == SCALAR:
                # a NULL callback context: Linux needs that zero exactly
                backtrack.mark_chain_precision(env, st, regno)
        elif kind == H.CONST_STR:
            if r.type != PTR_TO_MAP_VALUE or not (r.map.flags & 0x80):
                env.fail(f"R{regno} does not point to a readonly map'")
    if bad_map:
        if fid == 12:
            # Linux prints this one without a newline: the stats line follows on the same line.
            env.log.write("expected prog array map for tail call")
            raise VerifyError("expected prog array map for tail call", E.EINVAL, logged=True)
        env.fail(f"cannot pass map_type {meta_map.map_type} into func {proto.name}#{fid}", E.EINVAL)
    if release_ref:
        if not any(x[0] == release_ref for x in st.refs):
            env.fail(f"release reference to an unacquired id {release_ref}", E.EINVAL)
        st.refs = tuple(x for x in st.refs if x[0] != release_ref)
        for r in st.all_regs():
            if r.ref_obj_id == release_ref:
                if env.priv:
                    r.make_unknown()
                else:
                    r.make_not_init()
    if fid == 12:
        env.has_tail_call = True
        r3 = regs[3]
        if env.bt_log and meta_map is not None and r3.type == SCALAR and r3.is_const \
                and r3.value < meta_map.max_entries:
            # a constant index lets Linux call the program directly: it needs it exactly
            backtrack.log_precision(env, st, 3)
        if st.refs and len(st.frames) == 1:
            # the called program never returns here to release them (Linux checks the main
            # program's frame only)
            for rid, at in st.refs:
                env.log.write(f"Unreleased reference id={rid} alloc_insn={at}\n")
            env.fail("tail_call would lead to reference leak", E.EINVAL)
    if cb_sub is not None:
        _push_callback(env, st, idx, fid, cb_sub, meta_map)
    for i in range(1, 6):
        regs[i].make_not_init()
        env.scratched.add(i)
    r0 = regs[0]
    env.scratched.add(0)
    if proto.ret == H.RET_INTEGER:
        r0.make_unknown()
        if fid == H.GET_SMP_PROCESSOR_ID:
            # Linux 6.18 knows the CPU number is below nr_cpu_ids (the possible CPUs)
            r0.umax = r0.smax = r0.u32max = r0.s32max = ncpus() - 1
            B.sync(r0)
    elif proto.ret == H.RET_VOID:
        r0.make_not_init()
    elif proto.ret == H.RET_MAP_VALUE_OR_NULL:
        if meta_map.inner is not None:
            # a map-in-map lookup yields the inner map (described by its template) or NULL
            r0.assign(Reg.pointer(CONST_PTR_TO_MAP_OR_NULL, map=meta_map.inner, id=env.new_id()))
        elif key_const is not None and 0 <= key_const < meta_map.max_entries:
            # An array lookup with a constant in-bounds key cannot fail (Linux 6.13+).
            r0.assign(Reg.pointer(PTR_TO_MAP_VALUE, map=meta_map))
        else:
            r0.assign(Reg.pointer(PTR_TO_MAP_VALUE_OR_NULL, map=meta_map, id=env.new_id()))
    elif proto.ret == H.RET_ALLOC_MEM_OR_NULL:
        env.new_id()        # Linux numbers the maybe-NULL pointer, then the reference it acquires
        rid = env.new_id()
        r0.assign(Reg.pointer(PTR_TO_MEM_OR_NULL, id=rid, ref_obj_id=rid, mem_size=alloc_size))
        st.refs = st.refs + ((rid, idx),)
    if proto.changes_pkt_data:
        for r in st.all_regs():
            if r.type in PKT_TYPES or r.type == PTR_TO_PACKET_END:
                if env.priv:
                    r.make_unknown()
                else:
                    r.make_not_init()
    if fid == 12 and len(st.frames) > 1:
        # A tail call that succeeds leaves the subprogram as its return would (the called
        # program's result in R0); one that fails goes on after the call (Linux 6.18.y).
        return leave_subprog(env, st, idx, zero=False)
    return None


def leave_subprog(env: Env, st: State, idx: int, zero: bool, pkt_kept: bool = False) -> int:
    """Explore a way out of the current subprogram at ``idx`` (a tail call, or an LD_ABS/IND
    whose packet read fails) as a return to its caller: the path going on at ``idx + 1`` is
    pushed, and this one returns with any value (a failed LD_ABS: 0) in R0; after a tail call
    the packet pointers of every frame are invalid (the called program may have changed the
    packet), after LD_ABS Linux keeps them.
    Returns the instruction the caller resumes at."""
    env.scratched.add(0)
    push_branch(env, st.copy(), idx + 1, idx)
    for r in () if pkt_kept else st.all_regs():
        if r.type in PKT_TYPES or r.type == PTR_TO_PACKET_END:
            if env.priv:
                r.make_unknown()
            else:
                r.make_not_init()
    if zero:
        st.cur.regs[0].make_known(0)
    else:
        st.cur.regs[0].make_unknown()
    return do_exit(env, st, idx)


def _push_callback(env: Env, st: State, idx: int, fid: int, sub: int, m) -> None:
    """Queue the callback's entry state and let the current path go on past the call as if
    the callback were not called.  The callback returns to the call itself, which is thus
    a loop: it is explored until its states repeat (bpf_loop: or until the iteration count
    is reached), as Linux does since 6.7."""
    caller = st.cur
    regs = caller.regs
    if fid == H.LOOP:
        # Linux needs the flags (r4) and the count (r1) exactly, in that order
        backtrack.mark_chain_precision(env, st, 4)
        backtrack.mark_chain_precision(env, st, 1)
        if caller.callback_depth >= regs[1].umax:
            caller.callback_depth = 0
            if env.log.level & 2:
                env.log.write(f"frame{caller.frameno} bpf_loop iteration limit reached\n")
            return
    if len(st.frames) >= op.MAX_CALL_FRAMES:
        env.fail(f"the call stack of {len(st.frames) + 1} frames is too deep", E.E2BIG)
    if fid == H.FOR_EACH_MAP_ELEM and m.map_type not in H.FOR_EACH_MAPS:
        env.fail("callback function not allowed for map", H.ENOTSUPP)
    cb = st.copy()
    callee = Frame(frameno=len(cb.frames), callsite=idx, subprog=sub)
    callee.in_callback = True
    args = cb.cur.regs
    if fid == H.LOOP:
        callee.regs[1].make_unknown()                 # the u32 index
        callee.regs[2].assign(args[3])                # the callback's ctx
    else:
        callee.regs[1].assign(Reg.pointer(CONST_PTR_TO_MAP, map=m))
        callee.regs[2].assign(Reg.pointer(PTR_TO_MAP_KEY, map=m))
        # Linux 6.18 gives the value pointer an id of its own (for its spin-lock tracking)
        callee.regs[3].assign(Reg.pointer(PTR_TO_MAP_VALUE, map=m, id=env.new_id()))
        callee.regs[4].assign(args[3])
    cb.cur.callback_depth += 1
    cb.unroll += 1
    cb.frames.append(callee)
    caller.callback_depth = 0
    # Linux marks the whole state scratched when it sets up the callee: the caller's line
    # after the call shows all of it
    env.scratched.update(range(11))
    env.scratched_slots.update(range(len(caller.stack)))
    push_branch(env, cb, env.cfg.subprog_starts[sub], idx)


def _global_arg_ok(env: Env, st: State, regno: int, kind: str, size: int, nullable: bool,
                   argno: int) -> None:
    """btf_check_func_arg_match() for one argument: Linux's message, or nothing."""
    r = st.cur.regs[regno]
    if kind == funcinfo.ARG_SCALAR:
        if r.type != SCALAR:
            env.fail(f"R{regno} is not a scalar", E.EINVAL)
        return
    if kind == funcinfo.ARG_CTX:
        if r.type == PTR_TO_CTX:
            if r.off < 0:
                env.fail(f"negative offset ctx ptr R{regno} off={r.off} disallowed", E.EINVAL)
            if r.off:
                env.fail(f"dereference of modified ctx ptr R{regno} off={r.off} disallowed", E.EINVAL)
            if not r.is_const or r.var[0]:
                env.fail(f"variable ctx access var_off={tnum.fmt(r.var)} disallowed", E.EINVAL)
            return
        env.fail(f"arg#{argno} expects pointer to ctx", E.EINVAL)
    if r.type == SCALAR and r.is_const and r.value == 0:
        return                    # NULL always fits: the callee was verified with it
    saved = r
    if r.type in OR_NULL_TYPES:
        view = r.copy()
        view.type = OR_NULL_TYPES[r.type]
        st.cur.regs[regno] = view
    try:
        t = st.cur.regs[regno].type
        if t not in (PTR_TO_STACK, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_MAP_VALUE, PTR_TO_MAP_KEY) \
                and t not in MEM_TYPES:
            env.fail(f"R{regno} type={t} expected=fp", E.EINVAL)
        try:
            helper_mem_access(env, st, regno, size, False, True)
            helper_mem_access(env, st, regno, size, True, True, raw=False)
        except VerifyError as e:
            raise VerifyError(e.msg, E.EINVAL) from None
    finally:
        st.cur.regs[regno] = saved
    if not nullable and saved.type in OR_NULL_TYPES:
        env.fail(f"arg#{argno} is expected to be non-NULL", E.EINVAL)


def _call_global(env: Env, st: State, idx: int, sub: int) -> int:
    """A call of a global function: check the arguments against its BTF prototype; the result
    is any scalar (the function itself is verified on its own, after the main program)."""
    g = env.global_func(sub)
    try:
        if g.error:
            env.fail(g.error, E.EINVAL)
        for i, (kind, size, nullable) in enumerate(g.args):
            _global_arg_ok(env, st, i + 1, kind, size, nullable, i)
    except VerifyError as e:
        if env.log.on:
            env.log.write(e.msg + "\n")
        msg = f"Caller passes invalid args into func#{sub} ('{g.name}')"
        if env.log.on:
            env.log.write(msg + "\n")
        raise VerifyError(msg, e.errno, logged=True) from None
    if env.log.on:
        env.log.write(f"Func#{sub} ('{g.name}') is global and assumed valid.\n")
    env.globals_called.add(sub)
    regs = st.cur.regs
    if env.cfg_changes_pkt(sub):
        for r in st.all_regs():
            if r.type in PKT_TYPES or r.type == PTR_TO_PACKET_END:
                r.make_unknown() if env.priv else r.make_not_init()
    for i in range(1, 6):
        regs[i].make_not_init()
    regs[0].make_unknown()
    env.scratched.add(0)
    return idx + 1


def do_pseudo_call(env: Env, st: State, idx: int, ins: Insn) -> int:
    target = idx + ins.imm + 1
    sub = env.cfg.subprog_starts.index(target)
    if len(st.frames) >= op.MAX_CALL_FRAMES:
        env.fail(f"the call stack of {len(st.frames) + 1} frames is too deep", E.E2BIG)
    if env.func_linkage is not None and env.func_linkage[sub] == funcinfo.LINKAGE_GLOBAL:
        return _call_global(env, st, idx, sub)
    caller = st.cur
    callee = Frame(frameno=len(st.frames), callsite=idx, subprog=sub)
    for i in range(1, 6):
        callee.regs[i] = caller.regs[i].copy()
    for i in range(0, 6):
        caller.regs[i].make_not_init()
    if env.log.on:
        env.log.write("caller:\n" + env.reg_str(st, all_=True) + "\n")
    st.frames.append(callee)
    if env.stack_lv is not None:
        env.stack_lv.reset()
    if env.log.on:
        env.log.write("callee:\n" + env.reg_str(st, all_=True) + "\n")
    return target


def _widen_imprecise(env: Env, st: State, callsite: int) -> None:
    """Back at a callback's call: every scalar no check has needed exactly and that differs
    from the previous visit of the call becomes unknown, so that a counter the callback
    bumps does not make each iteration a new state (Linux: widen_imprecise_scalars)."""
    # the most recent state stored at the call that is still being explored (Linux: branches
    # left), with the same call sites: the nearest such ancestor of this path
    prev = None
    cp = st.parent
    while cp is not None:
        old = cp.state
        if cp.insn == callsite and len(old.frames) == len(st.frames) and \
                all(a.callsite == b.callsite for a, b in zip(old.frames, st.frames)):
            prev = old
            break
        cp = cp.parent
    if prev is None:
        return
    idmap = IdMap()

    def widen(o: Reg, c: Reg) -> None:
        if o.type != SCALAR or c.type != SCALAR or o.precise or c.precise:
            return
        if regsafe(o, c, idmap, True):
            return
        c.make_unknown()

    for fo, fc in zip(prev.frames, st.frames):
        for o, c in zip(fo.regs[:10], fc.regs[:10]):
            widen(o, c)
        for so, sc in zip(fo.stack, fc.stack):
            if so.is_spill and sc.is_spill:
                widen(so.spilled, sc.spilled)


def do_exit(env: Env, st: State, idx: int) -> int:
    r0 = st.cur.regs[0]
    if len(st.frames) > 1 and env.stack_lv is not None:
        env.stack_lv.update(st)     # the callee's stack liveness, before its frame goes
    if len(st.frames) > 1 and st.cur.in_callback:
        if r0.type == PTR_TO_STACK:     # any frame's, the caller's too
            env.fail("cannot return stack pointer to the caller", E.EINVAL)
        if r0.type != SCALAR:
            env.fail("R0 not a scalar value")
        backtrack.mark_chain_precision(env, st, 0)
        if r0.smin < 0 or r0.smax > 1:
            have = ""
            if r0.smin > B.S64_MIN:
                have += f" smin={r0.smin}"
            if r0.smax < B.S64_MAX:
                have += f" smax={r0.smax}"
            env.fail(f"At callback return the register R0 has{have or ' unknown scalar value'} "
                     "should have been in [0, 1]", E.EINVAL)
        if env.log.on:
            env.log.write("returning from callee:\n" + env.reg_str(st, all_=True) + "\n")
        callee = st.frames.pop()
        if env.log.on:
            env.log.write(f"to caller at {callee.callsite}:\n" + env.reg_str(st, all_=True) + "\n")
        # (Linux shows the caller before it widens it)
        _widen_imprecise(env, st, callee.callsite)
        return callee.callsite
    if len(st.frames) > 1:
        if r0.type == PTR_TO_STACK:     # any frame's, the caller's too
            env.fail("cannot return stack pointer to the caller", E.EINVAL)
        if env.log.on:
            env.log.write("returning from callee:\n" + env.reg_str(st, all_=True) + "\n")
        callee = st.frames.pop()
        st.cur.regs[0].assign(r0)
        if env.log.on:
            env.log.write(f"to caller at {callee.callsite + 1}:\n" + env.reg_str(st, all_=True) + "\n")
        return callee.callsite + 1
    if st.refs:
        for rid, at in st.refs:
            env.log.write(f"Unreleased reference id={rid} alloc_insn={at}\n")
        env.fail("BPF_EXIT instruction in main prog would lead to reference leak", E.EINVAL)
    env.read_reg(st, 0)
    if st.cur.subprog:
        # a global function verified on its own: callers were promised a scalar
        if r0.type != SCALAR:
            env.fail(f"At subprogram exit the register R0 is not a scalar value ({r0.type})", E.EINVAL)
        raise PathDone
    if env.is_pointer_value(r0):
        env.fail("R0 leaks addr as return value")
    raise PathDone


