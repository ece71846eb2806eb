"""Loads, stores and atomics: stack, map values, context, packet and ring buffer memory."""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn, imm64
from . import bounds as B
from . import context as ctxdesc
from . import backtrack, tnum
from .progtypes import SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP
from .regstate import (MEM_TYPES, CONST_PTR_TO_MAP, PKT_TYPES, PTR_TO_CTX, PTR_TO_MAP_VALUE, PTR_TO_FUNC, PTR_TO_MAP_KEY, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_STACK, SCALAR, Reg)
from .stack import INVALID, MISC, SLOT, SPILL, ZERO, Frame, read_fixed, write_fixed
from .cfg import slot_mask
from .state import State

from .env import MAX_BPF_STACK, MAX_VAR_OFF, Env


def _pkt_access_ok(prog_type: int) -> bool:
    return prog_type in (SCHED_CLS, SCHED_ACT, XDP)


def check_mem_region(env: Env, regno: int, r: Reg, off: int, size: int, mem_size: int,
                     kind: str, zero_ok: bool = False) -> None:
    """off is the fixed offset (insn off + reg off); the variable part comes from ``r``'s bounds."""
    def text(o):
        if kind == "map":
            return f"invalid access to map value, value_size={mem_size} off={o} size={size}"
        if kind == "key":
            return f"invalid access to map key, key_size={mem_size} off={o} size={size}"
        return f"invalid access to memory, mem_size={mem_size} off={o} size={size}"

    def ok(o):
        return o >= 0 and (size > 0 or (size == 0 and zero_ok)) and o + size <= mem_size

    if r.smin < 0 and (r.smin == B.S64_MIN or r.smin + off < 0):
        env.fail(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")
    if not ok(r.smin + off):
        env.log.write(text(r.smin + off) + "\n")
        env.fail(f"R{regno} min value is outside of the allowed memory range")
    if r.umax >= MAX_VAR_OFF:
        env.fail(f"R{regno} unbounded memory access, make sure to bounds check any such access")
    if not ok(r.umax + off):
        env.log.write(text(r.umax + off) + "\n")
        env.fail(f"R{regno} max value is outside of the allowed memory range")


def check_packet(env: Env, regno: int, r: Reg, off: int, size: int, zero_ok: bool = False) -> None:
    if r.smin < 0:
        env.fail(f"R{regno} min value is negative, either use unsigned index or do a if (index >=0) check.")
    if r.range < 0:      # at or beyond pkt_end: nothing is readable, and Linux says EINVAL
        env.fail(f"R{regno} offset is outside of the packet", E.EINVAL)
    if not (off >= 0 and (size > 0 or zero_ok) and off + size <= r.range):
        env.log.write(f"invalid access to packet, off={off} size={size}, R{regno}(id={r.id},off={off},r={r.range})\n")
        env.fail(f"R{regno} offset is outside of the packet")


def stack_bounds(env: Env, regno: int, r: Reg, off: int, size: int, what: str,
                 direct: bool = False, frame: Frame | None = None) -> tuple[int, int]:
    if r.is_const:
        lo = B.s64(r.var[0]) + off
        hi = lo + size
    else:
        if r.smax >= MAX_VAR_OFF or r.smin <= -MAX_VAR_OFF:
            env.fail(f"invalid unbounded variable-offset{what} stack R{regno}")
        lo = r.smin + off
        hi = r.smax + off + size
    err = None
    if lo < -MAX_BPF_STACK or lo >= 0:
        err = E.EACCES      # the first byte is off the stack: EACCES; only the last: EINVAL
    elif not env.priv and what == " read from" and frame is not None and lo < -frame.depth:
        # Without CAP_PERFMON a read must stay within the stack written so far (Linux's
        # allocated_stack): reading below it is out of bounds, not just uninitialised.
        err = E.EACCES
    elif hi > 0 or size < 0:
        err = E.EINVAL
    if err:
        if r.is_const:
            env.fail(f"invalid{what} stack R{regno} off={off} size={size}", err)
        env.fail(f"invalid variable-offset{what} stack R{regno} var_off={tnum.fmt(r.var)} off={off} size={size}",
                 err)
    return lo, hi


def _frame_of(st: State, r: Reg) -> Frame:
    return st.frames[r.frameno]


def stack_write(env: Env, st: State, regno: int, r: Reg, off: int, size: int,
                val_regno: int | None, imm: int | None) -> None:
    val = st.cur.regs[val_regno] if val_regno is not None else None
    lo, hi = stack_bounds(env, regno, r, off, size, " write to", True)
    frame = _frame_of(st, r)
    _grow(env, st, frame, lo)
    if r.is_const:
        if val is not None and val.type == SCALAR and env.priv and lo % SLOT == 0 and not val.id \
                and val.var[1] and (size == SLOT or val.umax < (1 << (size * 8))):
            # Linux links a spilled scalar with its register (one id), so that what a later
            # comparison learns about one holds for the other
            val.id = env.new_id()
        err = write_fixed(frame, lo, size, val, imm, env.priv, own_frame=frame is st.cur)
        if err:
            env.fail(err, E.EINVAL if err.startswith("cannot spill") else E.EACCES)
        if val is not None and env.priv and lo % SLOT and val.type == SCALAR and val.is_const \
                and val.value == 0:
            # a zero stored off a slot boundary is no spill: the slot's bytes say zero, and
            # Linux needs the register to have been exactly zero for that
            backtrack.mark_chain_precision(env, st, val_regno)
        env.scratched_slots.add((-lo - 1) // SLOT)
        if env.stack_lv is not None and lo % SLOT == 0 and size == SLOT:
            env.stack_lv.write(r.frameno, 1 << ((-lo - 1) // SLOT))   # only a whole slot counts
        return
    # Variable offset: every byte that may be written loses what it held.
    for a in range(lo, hi):
        slot = frame.slot((-a - 1) // SLOT)
        env.scratched_slots.add((-a - 1) // SLOT)
        j = (-a - 1) % SLOT
        if slot.types[SLOT - 1] == SPILL:
            slot.types = [t if t == INVALID else MISC for t in slot.types]
            slot.spilled = None
        zero = (val is not None and val.is_const and val.value == 0) or (val is None and imm == 0)
        if slot.types[j] == INVALID and not env.priv:
            env.fail(f"uninit stack in range of var-offset write prohibited for !root; insn {env.idx}, off: {a}",
                     E.EINVAL)
        slot.types[j] = "0" if zero and slot.types[j] == "0" else MISC


def _grow(env: Env, st: State, frame: Frame, lo: int) -> None:
    depth = -lo
    sp = frame.subprog
    if depth > env.stack_depth[sp]:
        env.stack_depth[sp] = depth
    # Any access, a read too, allocates the frame's stack down to it (Linux's
    # grow_stack_state()): pruning tells an allocated uninitialised slot from one beyond
    n = (depth + SLOT - 1) // SLOT
    if n > frame.allocated:
        frame.allocated = n


def stack_read(env: Env, st: State, regno: int, r: Reg, off: int, size: int) -> Reg:
    frame = _frame_of(st, r)
    lo, hi = stack_bounds(env, regno, r, off, size, " read from", True, frame)
    _grow(env, st, frame, lo)
    if r.is_const:
        if env.stack_lv is not None:
            env.stack_lv.read(st, r.frameno, env.idx, 1 << ((-lo - 1) // SLOT))
        res, err = read_fixed(frame, lo, size, env.priv)
        if err:
            env.fail(err)
        env.scratched_slots.add((-lo - 1) // SLOT)
        return res
    if env.stack_lv is not None:
        env.stack_lv.read(st, r.frameno, env.idx, slot_mask(lo, hi - lo))
    for a in range(lo, hi):
        slot = frame.peek((-a - 1) // SLOT)
        t = slot.types[(-a - 1) % SLOT] if slot else INVALID
        if t == INVALID and not env.priv:
            env.fail(f"invalid variable-offset read from stack R{regno} var_off={tnum.fmt(r.var)} "
                     f"off={off} size={size}")
        if t == SPILL and slot.spilled.type != SCALAR and not env.priv:
            env.fail(f"leaking pointer from stack off {a}")
    # Linux looks at the bytes from the lowest one up (showing their slots) while they are
    # zeroes: all of them zero make the loaded value 0
    for a in range(lo, hi):
        spi = (-a - 1) // SLOT
        env.scratched_slots.add(spi)
        slot = frame.peek(spi)
        if slot is None or slot.types[(-a - 1) % SLOT] != ZERO:
            return Reg.scalar()
    return Reg.scalar(0)


def check_mem_access(env: Env, st: State, idx: int, regno: int, off: int, size: int,
                     write: bool, value_regno: int | None, imm: int | None = None,
                     sign: bool = False, atomic: bool = False) -> Reg | None:
    """Check one load or store through register ``regno``; for loads, return the loaded value."""
    r = st.cur.regs[regno]
    t = r.type
    val = st.cur.regs[value_regno] if (write and value_regno is not None) else None
    res = None
    if t == PTR_TO_STACK:
        fixed = r.off + off
        if not tnum.is_aligned(tnum.add(r.var, tnum.const(fixed)), size):
            tn = str(B.s64(r.var[0])) if r.is_const else tnum.fmt(r.var)
            env.fail(f"misaligned stack access off {tn}+{r.off}+{off} size {size}")
        if write:
            stack_write(env, st, regno, r, fixed, size, value_regno, imm)
        else:
            res = stack_read(env, st, regno, r, fixed, size)
    elif t == PTR_TO_MAP_VALUE:
        m = r.map
        if write and val is not None and env.is_pointer_value(val):
            env.fail(f"R{value_regno} leaks addr into map")
        if write and m.flags & 0x80:       # BPF_F_RDONLY_PROG
            env.fail(f"write into map forbidden, value_size={m.value_size} off={r.off + off} size={size}")
        if not write and m.flags & 0x100:  # BPF_F_WRONLY_PROG
            env.fail(f"read from map forbidden, value_size={m.value_size} off={r.off + off} size={size}")
        check_mem_region(env, regno, r, r.off + off, size, m.value_size, "map")
        if not write:
            res = Reg.scalar()
    elif t == PTR_TO_MAP_KEY:
        if write:
            env.fail(f"write to change key R{regno} not allowed")
        check_mem_region(env, regno, r, r.off + off, size, r.map.key_size, "key")
        res = Reg.scalar()
    elif t in MEM_TYPES:
        if write and val is not None and env.is_pointer_value(val):
            env.fail(f"R{value_regno} leaks addr into mem")
        check_mem_region(env, regno, r, r.off + off, size, r.mem_size, "mem")
        if not write:
            res = Reg.scalar()
    elif t == PTR_TO_CTX:
        if r.off < 0:
            env.fail(f"negative offset ctx ptr R{regno} off={r.off} disallowed")
        if r.off:
            env.fail(f"dereference of modified ctx ptr R{regno} off={r.off} disallowed")
        if not r.is_const or r.var[0]:
            env.fail(f"variable ctx access var_off={tnum.fmt(r.var)} disallowed")
        if write and val is not None and env.is_pointer_value(val):
            env.fail(f"R{value_regno} leaks addr into ctx")
        acc = ctxdesc.check_access(env.prog_type, off, size, write, env.eat)
        if acc is None or atomic:
            env.fail(f"invalid bpf_context access off={off} size={size}")
        prev = env.ctx_rewrites.get(idx)
        if prev is not None and prev != acc:
            env.fail("same insn cannot be used with different pointers", E.EINVAL)
        env.ctx_rewrites[idx] = acc
        if not write:
            if acc.reg_type == SCALAR:
                res = Reg.scalar()
            else:
                res = Reg.pointer(acc.reg_type)
    elif t in PKT_TYPES:
        if write and not _pkt_access_ok(env.prog_type):
            env.fail("cannot write into packet")
        if write and val is not None and env.is_pointer_value(val):
            env.fail(f"R{value_regno} leaks addr into packet")
        check_packet(env, regno, r, r.off + off, size)
        if not write:
            res = Reg.scalar()
    else:
        env.fail(f"R{regno} invalid mem access '{t}'")
    if res is not None and res.type == SCALAR and size < 8:
        if sign:
            B.sign_extend(res, size)
        else:
            res.id = 0 if res.umax >= (1 << (size * 8)) else res.id
            B.truncate(res, size)
    return res


def do_ldx(env: Env, st: State, idx: int, ins: Insn) -> None:
    env.read_reg(st, ins.src)
    env.check_write(ins.dst)
    size = op.SIZE_BYTES[ins.code & 0x18]
    sign = (ins.code & 0xE0) == op.MEMSX
    res = check_mem_access(env, st, idx, ins.src, ins.off, size, False, ins.dst, sign=sign)
    st.cur.regs[ins.dst].assign(res)


def do_store(env: Env, st: State, idx: int, ins: Insn) -> None:
    size = op.SIZE_BYTES[ins.code & 0x18]
    if ins.cls == op.STX:
        env.read_reg(st, ins.src)
        env.read_reg(st, ins.dst)
        check_mem_access(env, st, idx, ins.dst, ins.off, size, True, ins.src)
    else:
        env.read_reg(st, ins.dst)
        check_mem_access(env, st, idx, ins.dst, ins.off, size, True, None, imm=ins.imm)


def do_atomic(env: Env, st: State, idx: int, ins: Insn) -> None:
    size = op.SIZE_BYTES[ins.code & 0x18]
    env.read_reg(st, ins.src)
    dst = env.read_reg(st, ins.dst)
    if ins.imm == op.CMPXCHG:
        env.read_reg(st, 0)
        if env.is_pointer_value(st.cur.regs[0]):
            env.fail("R0 leaks addr into mem")
    if env.is_pointer_value(st.cur.regs[ins.src]):
        env.fail(f"R{ins.src} leaks addr into mem")
    if dst.type in (PTR_TO_CTX, PTR_TO_PACKET, PTR_TO_PACKET_META):
        env.fail(f"BPF_ATOMIC stores into R{ins.dst} {dst.type} is not allowed")
    load_reg = 0 if ins.imm == op.CMPXCHG else (ins.src if ins.imm & op.FETCH else None)
    old = check_mem_access(env, st, idx, ins.dst, ins.off, size, False, load_reg, atomic=True)
    if old is not None and old.is_pointer and not env.priv:
        # only a stack slot can hold a pointer: using it as a number would leak it
        env.fail(f"leaking pointer from stack off {B.s64(dst.var[0]) + dst.off + ins.off}")
    check_mem_access(env, st, idx, ins.dst, ins.off, size, True, None, atomic=True)
    if load_reg is not None:
        env.check_write(load_reg)
        if old is not None:
            r = old         # what the slot held, as a load would fill it (a spill, zeroes)
        else:
            r = Reg.scalar()
            if size < 8:
                B.truncate(r, size)
        st.cur.regs[load_reg].assign(r)


def do_ld(env: Env, st: State, idx: int, ins: Insn) -> int:
    """LD_IMM64 and legacy packet loads; returns the number of slots used."""
    if ins.code == op.LD_IMM64:
        env.check_write(ins.dst)
        dst = st.cur.regs[ins.dst]
        src = ins.src
        if src == op.PSEUDO_NONE:
            dst.make_known(imm64(env.insns, idx))
            return 2
        if src in (op.PSEUDO_MAP_FD, op.PSEUDO_MAP_VALUE):
            fd = ins.imm
            m = env.maps.get(fd)
            if m is None:
                env.fail(f"fd {fd} is not pointing to valid bpf_map", E.EBADF)
            env.maps_used.add(fd)
            ref = env.map_refs.setdefault(fd, m)
            if src == op.PSEUDO_MAP_FD:
                dst.assign(Reg.pointer(CONST_PTR_TO_MAP, map=ref))
            else:
                off = env.insns[idx + 1].imm & B.U32     # checked before exploring
                dst.assign(Reg.pointer(PTR_TO_MAP_VALUE, off, map=ref))
            return 2
        if src == op.PSEUDO_FUNC:
            # A callback's address: Linux wants the program's BTF func_info to know the
            # function, and only a static function may be called back.
            if env.func_linkage is None:
                env.fail("missing btf func_info", E.EINVAL)
            sub = env.cfg.subprog_starts.index(idx + ins.imm + 1)
            if env.func_linkage[sub] != 0:
                env.fail("callback function not static", E.EINVAL)
            dst.assign(Reg.pointer(PTR_TO_FUNC, subprog=sub))
            return 2
        env.fail("unsupported bpf_ld_imm64 pseudo source " + str(src), E.EINVAL)
    # LD_ABS / LD_IND
    if env.prog_type not in (SOCKET_FILTER, SCHED_CLS, SCHED_ACT):
        env.fail("BPF_LD_[ABS|IND] instructions not allowed for this program type", E.EINVAL)
    r6 = env.read_reg(st, 6)
    if (ins.code & 0xE0) == op.IND:
        env.read_reg(st, ins.src)
    if r6.type != PTR_TO_CTX:
        env.fail("at the time of BPF_LD_ABS|IND R6 != pointer to skb", E.EINVAL)
    regs = st.cur.regs
    for i in range(1, 6):
        regs[i].make_not_init()
        env.scratched.add(i)
    regs[0].make_unknown()
    env.scratched.add(0)
    if len(st.frames) > 1:
        # a packet read that fails ends the program with 0: in a subprogram, Linux explores
        # that as a return from it (Linux 6.18.y)
        from .calls import leave_subprog
        return leave_subprog(env, st, idx, zero=True, pkt_kept=True) - idx
    return 1


