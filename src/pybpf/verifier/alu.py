"""ALU instructions: scalar range arithmetic and the pointer arithmetic Linux allows."""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn
from . import bounds as B
from . import tnum
from .regstate import (CONST_PTR_TO_MAP, OR_NULL_TYPES, PKT_TYPES, PTR_TO_CTX, PTR_TO_MAP_VALUE,
    PTR_TO_ARG_MEM, PTR_TO_MEM, PTR_TO_PACKET, PTR_TO_PACKET_META, PTR_TO_STACK, SCALAR, Reg, mark_precise,
    ADD_CONST, ADD_CONST32, ADD_CONST64)
from .state import State

from . import backtrack, sanitize
from .env import _ALU_STR, MAX_VAR_OFF, Env, push_branch


_CONST_OPS = {op.ADD: lambda a, b: a + b, op.SUB: lambda a, b: a - b, op.MUL: lambda a, b: a * b,
              op.AND: lambda a, b: a & b, op.OR: lambda a, b: a | b, op.XOR: lambda a, b: a ^ b,
              op.LSH: lambda a, b: a << b, op.RSH: lambda a, b: a >> b, op.ARSH: None}


_FAST_PTR_TYPES = (PTR_TO_STACK, PTR_TO_MAP_VALUE, PTR_TO_CTX, PTR_TO_PACKET, PTR_TO_PACKET_META,
                   PTR_TO_MEM, PTR_TO_ARG_MEM)


def scalar_alu(dst: Reg, src: Reg, o: int, is64: bool) -> None:
    """dst = dst <o> src for two scalars, as ranges (both 64- and 32-bit views)."""
    if o in (op.DIV, op.MOD) or (o in (op.LSH, op.RSH, op.ARSH) and
                                 (not src.is_const or src.value >= (64 if is64 else 32))):
        # Linux gives up on the whole register here, 32-bit operation or not (no zero
        # extension is assumed): an unknown 64-bit scalar.  Its exact value still depends on
        # both operands (Linux's backtracking keeps dst and src precise through any such op).
        origin = dst.origin | src.origin
        dst.make_unknown()
        dst.origin = origin
        return
    dst.id = 0
    dst.off = 0
    if src.origin:
        dst.origin = dst.origin | src.origin
    if dst.var[1] == 0 and src.var[1] == 0 and o in _CONST_OPS:
        # Both known: compute the value itself (the common case of loop counters).
        bits = 64 if is64 else 32
        m = (1 << bits) - 1
        a, b = dst.var[0] & m, src.var[0] & m
        if o == op.ARSH:
            v = ((a - (1 << bits)) if a >> (bits - 1) else a) >> b
        else:
            v = _CONST_OPS[o](a, b)
        B.mark_known(dst, v & m)
        return
    a64 = (dst.smin, dst.smax, dst.umin, dst.umax)
    b64 = (src.smin, src.smax, src.umin, src.umax)
    a32 = (dst.s32min, dst.s32max, dst.u32min, dst.u32max)
    b32 = (src.s32min, src.s32max, src.u32min, src.u32max)
    full32 = (B.S32_MIN, B.S32_MAX, 0, B.U32)
    if is64:
        tf = {op.ADD: tnum.add, op.SUB: tnum.sub, op.MUL: tnum.mul, op.AND: tnum.and_,
              op.OR: tnum.or_, op.XOR: tnum.xor}.get(o)
        if tf is not None:
            var = tf(dst.var, src.var)
            if o == op.ADD:
                r64, r32 = B.add_range(a64, b64, 64), B.add_range(a32, b32, 32)
            elif o == op.SUB:
                r64, r32 = B.sub_range(a64, b64, 64), B.sub_range(a32, b32, 32)
            elif o == op.MUL:
                r64, r32 = B.mul_range(a64, b64, 64), B.mul_range(a32, b32, 32)
            else:
                name = {op.AND: "and", op.OR: "or", op.XOR: "xor"}[o]
                r64 = B.bitwise_range(name, a64, b64, var, 64)
                r32 = B.bitwise_range(name, a32, b32, tnum.subreg(var), 32)
        else:
            k = src.value
            r32 = full32
            if o == op.LSH:
                # Linux (scalar_min_max_lsh) gives up on a range whose top bit might move,
                # even where no set bit would be shifted out; it knows the signed range only
                # of a shift by 32 (the s32 one, moved up).  The low halves are shifted too.
                var = tnum.lshift(dst.var, k)
                if dst.umax > (1 << (63 - k)):
                    umin, umax = 0, B.U64
                else:
                    umin, umax = dst.umin << k, dst.umax << k
                if k == 32:
                    r64 = (dst.s32min << 32, dst.s32max << 32, umin, umax)
                else:
                    r64 = (B.S64_MIN, B.S64_MAX, umin, umax)
                if k > 31 or dst.u32max > (1 << (31 - k)):
                    r32 = full32
                else:
                    r32 = (B.S32_MIN, B.S32_MAX, dst.u32min << k, dst.u32max << k)
            elif o == op.RSH:
                var = tnum.rshift(dst.var, k)
                r64 = (B.S64_MIN, B.S64_MAX, dst.umin >> k, dst.umax >> k)
            else:
                var = tnum.arshift(dst.var, k, 64)
                r64 = (dst.smin >> k, dst.smax >> k, 0, B.U64)
        dst.var = var
        dst.smin, dst.smax, dst.umin, dst.umax = r64
        dst.s32min, dst.s32max, dst.u32min, dst.u32max = r32
        B.sync(dst)
        return
    # 32-bit ALU: work on the low halves, then zero-extend.
    dv, sv = tnum.subreg(dst.var), tnum.subreg(src.var)
    if o in (op.ADD, op.SUB, op.MUL, op.AND, op.OR, op.XOR):
        tf = {op.ADD: tnum.add, op.SUB: tnum.sub, op.MUL: tnum.mul, op.AND: tnum.and_,
              op.OR: tnum.or_, op.XOR: tnum.xor}[o]
        var = tnum.subreg(tf(dv, sv))
        if o == op.ADD:
            r32 = B.add_range(a32, b32, 32)
        elif o == op.SUB:
            r32 = B.sub_range(a32, b32, 32)
        elif o == op.MUL:
            r32 = B.mul_range(a32, b32, 32)
        else:
            name = {op.AND: "and", op.OR: "or", op.XOR: "xor"}[o]
            r32 = B.bitwise_range(name, a32, b32, var, 32)
    else:
        k = src.value
        if o == op.LSH:
            # (as for 64 bits: a top bit that might move loses the range; __scalar32_min_max_lsh)
            var = tnum.subreg(tnum.lshift(dv, k))
            r32 = full32 if dst.u32max > (1 << (31 - k)) else (B.S32_MIN, B.S32_MAX, dst.u32min << k, dst.u32max << k)
        elif o == op.RSH:
            var = tnum.rshift(dv, k)
            r32 = (B.S32_MIN, B.S32_MAX, dst.u32min >> k, dst.u32max >> k)
        else:
            var = tnum.arshift(dv, k, 32)
            r32 = (dst.s32min >> k, dst.s32max >> k, 0, B.U32)
    dst.var = var
    dst.s32min, dst.s32max, dst.u32min, dst.u32max = r32
    if o in (op.LSH, op.RSH, op.ARSH):
        B.update_bounds32(dst)      # (Linux's shifts do, before the zero extension)
    B.zext32(dst)
    B.sync(dst)


def _sane_offset(env: Env, r: Reg, ptype: str) -> None:
    known = r.is_const
    val = B.s64(r.var[0])
    if known and (val >= MAX_VAR_OFF or val <= -MAX_VAR_OFF):
        env.fail(f"math between {ptype} pointer and {val} is not allowed", E.EINVAL)
    if r.off >= MAX_VAR_OFF or r.off <= -MAX_VAR_OFF:
        env.fail(f"{ptype} pointer offset {r.off} is not allowed", E.EINVAL)
    if r.smin == B.S64_MIN:
        env.fail(f"math between {ptype} pointer and register with unbounded min value is not allowed",
                 E.EINVAL)
    if r.smin >= MAX_VAR_OFF or r.smin <= -MAX_VAR_OFF:
        env.fail(f"value {r.smin} makes {ptype} pointer be out of bounds", E.EINVAL)


def pointer_alu(env: Env, ins: Insn, dst: Reg, ptr: Reg, off: Reg, o: int, is64: bool) -> None:
    """dst = ptr <o> off where ``off`` is a scalar (kernel: adjust_ptr_min_max_vals)."""
    dreg = ins.dst
    if not is64:
        if o == op.SUB and env.priv:
            origin = off.origin         # (still computed from the scalar operand)
            dst.make_unknown()          # a meaningless scalar, all 64 bits unknown (as Linux)
            dst.origin = origin
            return
        env.fail(f"R{dreg} 32-bit pointer arithmetic prohibited")
    if ptr.type in OR_NULL_TYPES:
        env.fail(f"R{dreg} pointer arithmetic on {ptr.type} prohibited, null-check it first")
    if ptr.type == CONST_PTR_TO_MAP:
        if not (off.is_const and off.value == 0 and o == op.ADD):
            env.fail(f"R{dreg} pointer arithmetic on {ptr.type} prohibited")
    elif ptr.type not in (PTR_TO_CTX, PTR_TO_MAP_VALUE, PTR_TO_STACK, PTR_TO_PACKET,
                          PTR_TO_PACKET_META, PTR_TO_MEM, PTR_TO_ARG_MEM):
        env.fail(f"R{dreg} pointer arithmetic on {ptr.type} prohibited")
    mark_precise(off)
    _sane_offset(env, off, ptr.type)        # before the operator: EINVAL wins over EACCES
    _sane_offset(env, ptr, ptr.type)
    if o not in (op.ADD, op.SUB):
        if o in (op.AND, op.OR, op.XOR):
            env.fail(f"R{dreg} bitwise operator {_ALU_STR[o]} on pointer prohibited")
        env.fail(f"R{dreg} pointer arithmetic with {_ALU_STR[o]} operator prohibited")
    window = None
    if not env.priv and ins.code & op.X:
        window = sanitize.ptr_alu_first(env, ins, dst, ptr, off)
    if o == op.SUB and dst is off:
        env.fail(f"R{dreg} tried to subtract pointer from scalar")
    res = ptr.copy()
    known = off.is_const
    sval = B.s64(off.var[0])
    if o == op.ADD:
        if known and -(1 << 31) <= ptr.off + sval < (1 << 31):
            res.off = ptr.off + sval
        else:
            res.var = tnum.add(ptr.var, off.var)
            res.smin, res.smax, res.umin, res.umax = B.add_range(
                (ptr.smin, ptr.smax, ptr.umin, ptr.umax), (off.smin, off.smax, off.umin, off.umax), 64,
                wrap=False)
            res.s32min, res.s32max, res.u32min, res.u32max = B.S32_MIN, B.S32_MAX, 0, B.U32
            if res.type in PKT_TYPES:
                res.id = env.new_id()
                res.range = 0
    else:
        if ptr.type == PTR_TO_STACK:
            env.fail(f"R{dreg} subtraction from stack pointer prohibited")
        if known and -(1 << 31) <= ptr.off - sval < (1 << 31):
            res.off = ptr.off - sval
        else:
            res.var = tnum.sub(ptr.var, off.var)
            res.smin, res.smax, res.umin, res.umax = B.sub_range(
                (ptr.smin, ptr.smax, ptr.umin, ptr.umax), (off.smin, off.smax, off.umin, off.umax), 64,
                wrap=False)
            res.s32min, res.s32max, res.u32min, res.u32max = B.S32_MIN, B.S32_MAX, 0, B.U32
            if res.type in PKT_TYPES:
                res.id = env.new_id()
                res.range = 0
    B.sync(res)
    _sane_offset(env, res, ptr.type)
    if not env.priv:
        sanitize.check_bounds(env, dreg, res)
        if window is not None:
            sanitize.ptr_alu_commit(env, ins, res, window)
    dst.assign(res)


def do_alu(env: Env, st: State, idx: int, ins: Insn) -> None:
    cls = ins.cls
    is64 = cls == op.ALU64
    o = ins.code & 0xF0
    x = ins.code & op.X
    regs = st.cur.regs
    if o == op.MOV:
        if x:
            src = env.read_reg(st, ins.src)
        env.check_write(ins.dst)
        dst = regs[ins.dst]
        if not x:
            dst.make_known(ins.imm if is64 else ins.imm & B.U32)
            return
        if is64:
            if ins.off:
                if src.is_pointer:
                    if not env.priv:
                        env.fail(f"R{ins.src} sign-extension part of pointer")
                    dst.make_unknown()      # a privileged loader gets an unknown scalar
                    return
                no_sext = src.umax < (1 << (ins.off - 1))
                if no_sext:
                    _id_before_mov(env, src)        # the value is unchanged: still linked
                res = src.copy()
                if not no_sext:
                    res.id = 0
                B.sign_extend(res, ins.off // 8)
                dst.assign(res)
                return
            _id_before_mov(env, src)
            dst.assign(src.copy())
            return
        if src.is_pointer:
            if not env.priv:
                env.fail(f"R{ins.src} partial copy of pointer")
            dst.make_unknown()
            B.zext32(dst)
            B.sync(dst)
            return
        if ins.off:
            no_sext = src.umax < (1 << (ins.off - 1))
            if no_sext:
                _id_before_mov(env, src)
            res = src.copy()
            if not no_sext:
                res.id = 0
            B.sign_extend32(res, ins.off // 8)
            B.zext32(res)
            B.sync(res)
            dst.assign(res)
            return
        no_sext = src.umax < (1 << 32)
        if no_sext:
            _id_before_mov(env, src)
        res = src.copy()
        if not no_sext:
            res.id = 0
        B.zext32(res)
        B.sync(res)
        dst.assign(res)
        return
    if o in (op.NEG, op.END):
        dst = env.read_reg(st, ins.dst)
        env.check_write(ins.dst)
        if dst.is_pointer:
            if not env.priv:
                env.fail(f"R{ins.dst} pointer arithmetic prohibited")
            dst.make_unknown()
            return
        if o == op.NEG:
            zero = Reg.scalar(0)
            scalar_alu(zero, dst, op.SUB, is64)
            dst.assign(zero)
            return
        size = ins.imm // 8
        if not is64 and not x:       # to little endian on a little-endian machine: truncation
            if size < 8:            # (le64 changes nothing, a link to other registers included)
                dst.id = 0
                B.truncate(dst, size)
            return
        # a byte swap: each known bit moves with its byte (Linux tracks it in the tnum)
        mask = (1 << ins.imm) - 1
        v, m = dst.var
        swap = lambda n: int.from_bytes((n & mask).to_bytes(size, "little"), "big")
        var = (swap(v), swap(m))
        origin = dst.origin     # (the swapped value is exact only if the value was)
        dst.make_unknown()
        dst.var = var
        dst.origin = origin
        B.sync(dst)
        return
    # Binary operations.
    if not x and o in _CONST_OPS and o != op.ARSH:
        dst = regs[ins.dst]
        if dst.type == SCALAR and dst.var[1] == 0 and ins.dst != 10 and \
                (o not in (op.LSH, op.RSH) or 0 <= ins.imm < (64 if is64 else 32)):
            # Known value and immediate: the result is known too (fast path of scalar_alu).
            env.scratched.add(ins.dst)
            m = B.U64 if is64 else B.U32
            link = _link(env, dst, o, is64, ins.imm if is64 else ins.imm & m, dst.umax) \
                if o in (op.ADD, op.SUB) and dst.id else (0, 0)
            dst.id, dst.off = link
            B.mark_known(dst, _CONST_OPS[o](dst.var[0] & m, ins.imm & m) & m)
            return
        if o in (op.ADD, op.SUB) and is64 and ins.dst != 10 and dst.type in _FAST_PTR_TYPES and env.priv:
            # Pointer plus a small immediate: only the fixed offset moves.  (Unprivileged
            # loaders take the full path, whose result must stay inside its object.)
            off = dst.off + (ins.imm if o == op.ADD else -ins.imm)
            if (-MAX_VAR_OFF < ins.imm < MAX_VAR_OFF and -MAX_VAR_OFF < off < MAX_VAR_OFF
                    and dst.smin != B.S64_MIN and -MAX_VAR_OFF < dst.smin < MAX_VAR_OFF
                    and not (o == op.SUB and dst.type == PTR_TO_STACK)):
                env.scratched.add(ins.dst)
                dst.off = off
                return
    if x:
        src = env.read_reg(st, ins.src)
    else:
        if o in (op.LSH, op.RSH, op.ARSH) and not (0 <= ins.imm < (64 if is64 else 32)):
            env.fail(f"invalid shift {ins.imm}", E.EINVAL)
        if o in (op.DIV, op.MOD) and ins.imm == 0:
            env.fail("div by zero", E.EINVAL)
        src = Reg.scalar(ins.imm if is64 else ins.imm & B.U32)
    dst = env.read_reg(st, ins.dst)
    env.check_write(ins.dst)
    if dst.is_pointer or src.is_pointer:
        if dst.is_pointer and src.is_pointer:
            if o == op.SUB and env.priv:
                dst.make_unknown()
                return
            env.fail(f"R{ins.dst} pointer {_ALU_STR[o]} pointer prohibited")
        if env.bt_log and x:
            backtrack.log_precision(env, st, ins.src if dst.is_pointer else ins.dst)
        if dst.is_pointer:
            pointer_alu(env, ins, dst, dst, src, o, is64)
        else:
            pointer_alu(env, ins, dst, src, dst, o, is64)
        return
    if o in (op.LSH, op.RSH, op.ARSH) and x and src.is_const and src.value >= (64 if is64 else 32):
        origin = dst.origin | src.origin
        dst.make_unknown()
        dst.origin = origin
        return
    if not env.priv and x and o in (op.ADD, op.SUB):
        sanitize.val_alu(env, ins)
    if o in (op.AND, op.OR) and src.var[1] == 0:
        _maybe_fork(env, st, idx, ins, dst)
    link = None
    if o in (op.ADD, op.SUB) and dst.id and (src.var[1] if is64 else src.var[1] & B.U32) == 0:
        link = _link(env, dst, o, is64, src.var[0] if is64 else src.var[0] & B.U32, dst.umax)
    scalar_alu(dst, src, o, is64)
    if link:
        dst.id, dst.off = link


def _maybe_fork(env: Env, st: State, idx: int, ins: Insn, dst: Reg) -> None:
    """A scalar that is 0 or -1 (as ``x s>> 63`` makes), and-ed or or-ed with a constant:
    Linux (maybe_fork_scalars) verifies the instruction again with it 0 on a branch it
    pushes, and goes on with it -1, so that both results stay exact.  Which half is meant
    depends on the register's ranges, not on the instruction's width."""
    if dst.smin == -1 and dst.smax == 0:
        alu32 = False
    elif dst.s32min == -1 and dst.s32max == 0:
        alu32 = True
    else:
        return
    other = st.copy()
    if other.hist and other.hist[-1][0] == idx and idx not in env.cfg.jmp_points:
        # (Linux's jump history holds the instruction once more only where it is a jump point)
        other.hist.pop()
    od = other.cur.regs[ins.dst]
    if alu32:
        B.mark_known32(od, 0)
        B.mark_known32(dst, B.U32)
    else:
        od.id = od.off = 0
        B.mark_known(od, 0)
        dst.id = dst.off = 0
        B.mark_known(dst, B.U64)
    push_branch(env, other, idx, idx)


def _id_before_mov(env: Env, src: Reg) -> None:
    """rX = rY links the two scalars by one id; a source linked at a distance (id=1+4) is
    unlinked first (one distance only), a source without an id gets a fresh one."""
    if src.type != SCALAR:
        return
    if src.id & ADD_CONST:
        src.id = src.off = 0
    if not src.id and not src.is_const:
        src.id = env.new_id()


def _link(env: Env, dst: Reg, o: int, is64: bool, val: int, umax_before: int) -> tuple[int, int]:
    """(id, off) of ``dst`` after ``dst += val`` / ``dst -= val`` (a constant): it stays linked
    to the registers it was copied from, at a known distance, so that bounds learned on one
    carry over (Linux: "id=1+4", "id=1-17"; 32-bit ones zero-extend); (0, 0) drops the link."""
    if not env.priv:
        return (0, 0)
    if is64:
        val = B.s64(val)
        if not B.S32_MIN <= val <= B.S32_MAX:
            return (0, 0)
    elif umax_before > B.U32:
        return (0, 0)
    off = B.s32(val & B.U32)
    if o == op.SUB:
        if off == B.S32_MIN:
            return (0, 0)
        off = -off
    if dst.id & ADD_CONST:
        return (0, 0)       # rX += a; rX += b: one distance only
    return (dst.id | (ADD_CONST64 if is64 else ADD_CONST32), off)


