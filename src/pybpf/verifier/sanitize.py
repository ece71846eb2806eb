"""Spectre v1 rules for unprivileged loaders (Linux: sanitize_ptr_alu, sanitize_val_alu,
sanitize_check_bounds).

Linux masks the offset of every register-based pointer ADD/SUB so that, even speculatively,
the pointer cannot leave its object.  A Python interpreter does not speculate, so pybpf emits
no masking; what it must reproduce is every program the masking cannot protect and Linux
therefore rejects:

- an offset whose sign is unknown (the mask direction would be unknown);
- arithmetic on a pointer type without a known object size (only stack and map values have
  one);
- a pointer already outside its object (no mask can be computed);
- one instruction that needs different masks on different paths, or that is pointer
  arithmetic on one path and scalar arithmetic on another (one instruction, one patch);
- a result outside its object (stack, map value), checked for immediate operands too.
"""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn
from . import bounds as B
from . import tnum
from .env import MAX_BPF_STACK, Env, VerifyError
from .memory import check_mem_region
from .regstate import PTR_TO_MAP_VALUE, PTR_TO_STACK, Reg

_WHY = "pointer arithmetic with it prohibited for !root"
U32 = 0xFFFFFFFF
NON_POINTER = "scalar"      # what scalar ADD/SUB records for its instruction


class Window:
    """What the first look at ``ptr <op>= off`` found, for the check after the operation."""
    __slots__ = ("state", "limit", "mask_to_left")

    def __init__(self, state, limit: int, mask_to_left: bool):
        self.state, self.limit, self.mask_to_left = state, limit, mask_to_left


def _op_name(ins: Insn) -> str:
    return "add" if ins.code & 0xF0 == op.ADD else "sub"


def _ptr_limit(ptr: Reg, mask_to_left: bool) -> tuple[int, int] | None:
    """(how far the pointer may move (u32), the bound that distance must stay below), or None
    where the type has no known object size."""
    if ptr.type == PTR_TO_STACK:
        return -(B.s64(ptr.var[0]) + ptr.off) & U32, MAX_BPF_STACK + int(mask_to_left)
    if ptr.type == PTR_TO_MAP_VALUE:
        return ((ptr.smin if mask_to_left else ptr.umax) + ptr.off) & U32, ptr.map.value_size
    return None


def _record(env: Env, ins: Insn, state, limit: int) -> None:
    """One instruction gets one patch: every path must agree on what it is."""
    aux = env.alu_aux.get(env.idx)
    if aux is not None and aux != (state, limit):
        env.fail(f"R{ins.dst} tried to {_op_name(ins)} from different maps, paths or scalars, {_WHY}")
    env.alu_aux[env.idx] = (state, limit)


def ptr_alu_first(env: Env, ins: Insn, dst: Reg, ptr: Reg, off: Reg) -> Window:
    """Before ``dst = ptr <op> off`` (register source, ADD or SUB)."""
    o = ins.code & 0xF0
    # Linux 6.18 names the source register for the offset's bounds and the destination for the
    # pointer type, whichever of the two holds the pointer (checked against the host kernel).
    if not off.is_const and (off.smin < 0) != (off.smax < 0):
        env.fail(f"R{ins.src} has unknown scalar with mixed signed bounds, {_WHY}")
    neg = off.smin < 0
    mask_to_left = (o == op.ADD and neg) or (o == op.SUB and not neg)
    got = _ptr_limit(ptr, mask_to_left)
    if got is None:
        env.fail(f"R{ins.dst} has pointer with unsupported alu operation, {_WHY}")
    limit, most = got
    if limit >= most:
        env.fail(f"R{ins.dst} tried to {_op_name(ins)} beyond pointer bounds, {_WHY}")
    return Window((neg, off.is_const, ptr is dst), limit, mask_to_left)


def ptr_alu_commit(env: Env, ins: Insn, res: Reg, w: Window) -> None:
    """After the operation: the mask is how far the pointer really moved."""
    limit, most = _ptr_limit(res, w.mask_to_left)
    if limit >= most:
        env.fail(f"R{ins.dst} tried to {_op_name(ins)} beyond pointer bounds, {_WHY}")
    d = (w.limit - limit) & U32
    _record(env, ins, w.state, abs(d - (1 << 32) if d >> 31 else d))


def val_alu(env: Env, ins: Insn) -> None:
    """Scalar ADD/SUB with a register source: the instruction must not be pointer arithmetic
    on another path."""
    _record(env, ins, NON_POINTER, 0)


def check_bounds(env: Env, regno: int, res: Reg) -> None:
    """The result of pointer arithmetic must stay inside its stack frame or map value."""
    if res.type == PTR_TO_STACK:
        off = res.off + B.s64(res.var[0])
        if not res.is_const:
            env.fail(f"R{regno} variable stack access prohibited for !root, var_off={tnum.fmt(res.var)} "
                     f"off={off}")
        if off >= 0 or off < -MAX_BPF_STACK:
            env.fail(f"R{regno} stack pointer arithmetic goes out of range, prohibited for !root; off={off}")
    elif res.type == PTR_TO_MAP_VALUE:
        try:
            check_mem_region(env, regno, res, res.off, 1, res.map.value_size, "map")
        except VerifyError as e:
            # Linux logs why the one-byte access would fail, then the verdict
            env.log.write(e.msg + "\n")
            env.fail(f"R{regno} pointer arithmetic of map value goes out of range, prohibited for !root",
                     E.EACCES)
