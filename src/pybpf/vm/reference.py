"""The reference engine: one instruction at a time, straight from the semantics.

Deliberately simple — a register list, a program counter and a call stack —
so that it is easy to trust; the fast engine is tested against it, and
traces come from it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..isa import opcodes as op
from . import semantics as sem
from .program import jump_target
from .text import insn_text

if TYPE_CHECKING:
    from .machine import VM, Env

_ATOMIC_NAME = {op.ADD: "add", op.OR: "or", op.AND: "and", op.XOR: "xor"}


class Frame:
    __slots__ = ("regs", "depth", "return_pc", "caller")

    def __init__(self, regs, depth, return_pc=None, caller=None):
        self.regs = regs
        self.depth = depth
        self.return_pc = return_pc
        self.caller = caller


def check_frame_access(env: "Env", base_reg: int, off: int, size: int, addr: int, kind: str,
                       pc: int) -> None:
    """r10-relative accesses must stay inside the current frame (same rule as the fast engine)."""
    if base_reg == op.MAX_REG and not (-op.STACK_SIZE <= off and off + size <= 0):
        env.frame_fault(addr, size, kind, pc)


class Stepper:
    """Executes one instruction per :meth:`step`; ``done`` and ``r0`` once frame 0 exits.

    State is plain and inspectable: ``pc``, ``regs`` (the current frame's
    r0-r10), ``frame`` (with ``depth`` and ``caller``) and ``n``, the number of
    instructions executed so far.
    """

    def __init__(self, vm: "VM", env: "Env", r1: int, r2: int) -> None:
        self.vm = vm
        self.env = env
        self.regs = [0] * 11
        self.regs[1], self.regs[2] = r1, r2
        self.regs[10] = env.stack_bases[0] + op.STACK_SIZE
        self.frame = Frame(self.regs, 0)
        self.pc = 0
        self.n = 0
        self.done = False
        self.r0: int | None = None
        self.stored: tuple[int, int] | None = None   # (address, size) of the last store

    def step(self) -> bool:
        """Execute the instruction at ``pc``; True once the program has finished."""
        vm, env = self.vm, self.env
        insns = vm.insns
        regs, frame, pc = self.regs, self.frame, self.pc
        if self.done:
            return True
        self.stored = None
        if pc >= len(insns):
            env.fell(pc - 1)
        self.n += 1
        n = self.n
        if n > env.limit:
            env.budget(pc)
        ins = insns[pc]
        code = ins.code
        cls = code & 7
        nxt = pc + 1
        if cls in (op.ALU, op.ALU64):
            o = code & 0xF0
            if code & op.X and o != op.END:
                s = regs[ins.src]
            else:
                s = sem.imm_operand(cls, ins.imm)
            tmpl = sem.alu_template(cls, o, ins.off, ins.imm, code & op.X)
            regs[ins.dst] = sem.evaluator(tmpl)(regs[ins.dst], s)
        elif cls in (op.JMP, op.JMP32):
            o = code & 0xF0
            if o == op.EXIT:
                if frame.caller is None:
                    self.done = True
                    self.r0 = regs[0]
                    return True
                r0 = regs[0]
                nxt = frame.return_pc
                frame = frame.caller
                regs = frame.regs
                regs[0] = r0
            elif o == op.CALL:
                if ins.src == op.PSEUDO_CALL and not code & op.X:
                    if frame.depth + 1 >= op.MAX_CALL_FRAMES:
                        env.too_deep(pc)
                    depth = frame.depth + 1
                    # The callee gets r1-r5; the caller's own registers are kept
                    # in its frame, so r1-r9 come back as they were.
                    new = [0] * 11
                    new[1:6] = regs[1:6]
                    new[10] = env.stack_bases[depth] + op.STACK_SIZE
                    frame = Frame(new, depth, pc + 1, frame)
                    regs = new
                    nxt = jump_target(ins, pc)
                elif ins.src == op.PSEUDO_KFUNC_CALL:
                    regs[0] = env.kfunc(ins.imm, *regs[1:6], pc, n)
                else:
                    hid = regs[ins.dst] if code & op.X else ins.imm
                    regs[0] = env.helper(hid, *regs[1:6], pc, n)
            elif o == op.JA:
                nxt = jump_target(ins, pc)
            else:
                s = regs[ins.src] if code & op.X else sem.imm_operand(cls, ins.imm)
                if sem.evaluator(sem.cond_template(cls, o))(regs[ins.dst], s):
                    nxt = jump_target(ins, pc)
        elif cls == op.LDX:
            size = op.SIZE_BYTES[code & 0x18]
            signed = (code & 0xE0) == op.MEMSX
            addr = regs[ins.src] + ins.off
            check_frame_access(env, ins.src, ins.off, size, addr, "load", pc)
            regs[ins.dst] = env.load(addr, size, signed, pc)
        elif cls in (op.ST, op.STX) and (code & 0xE0) == op.MEM:
            size = op.SIZE_BYTES[code & 0x18]
            value = regs[ins.src] if cls == op.STX else ins.imm
            addr = regs[ins.dst] + ins.off
            check_frame_access(env, ins.dst, ins.off, size, addr, "store", pc)
            env.store(addr, size, sem.stored_value(value, size), pc)
            self.stored = (addr, size)
        elif cls == op.STX:  # atomic
            size = op.SIZE_BYTES[code & 0x18]
            addr = regs[ins.dst] + ins.off
            check_frame_access(env, ins.dst, ins.off, size, addr, "atomic access", pc)
            kind = ins.imm
            if kind == op.CMPXCHG:
                regs[0] = env.cmpxchg(addr, size, regs[0], regs[ins.src], pc)
            else:
                name = "xchg" if kind == op.XCHG else _ATOMIC_NAME[kind & ~op.FETCH]
                old = env.atomic(addr, size, name, regs[ins.src], pc)
                if kind & op.FETCH:
                    regs[ins.src] = old
            self.stored = (addr, size)
        elif code == op.LD_IMM64:
            value = vm.constants[pc]
            if value is None:
                env.unresolved(pc)
            regs[ins.dst] = value
            nxt = pc + 2
        else:  # LD_ABS / LD_IND
            size = op.SIZE_BYTES[code & 0x18]
            offset = ins.imm + (regs[ins.src] if (code & 0xE0) == op.IND else 0)
            regs[0] = env.ld_packet(offset, size, pc, n)
        self.regs, self.frame, self.pc = regs, frame, nxt
        return False


def run_reference(vm: "VM", env: "Env", r1: int, r2: int, trace: list[str] | None):
    st = Stepper(vm, env, r1, r2)
    if trace is None:
        while not st.step():
            pass
        return st.r0, st.n
    while True:
        pc, before, depth = st.pc, list(st.regs), st.frame.depth
        finished = st.step()
        if st.frame.depth > depth:
            note = f"-> frame {st.frame.depth}, r10={st.regs[10]:#x}"
        elif st.frame.depth < depth:
            note = f"<- frame {st.frame.depth}, r0={st.regs[0]:#x}"
        else:
            note = None
        if st.stored is not None:
            regs_changed = _changes(before, st.regs)
            note = " ".join(x for x in (regs_changed, _store_note(env, *st.stored)) if x)
        trace.append(_line(vm.insns, pc, before, st.regs, note))
        if finished:
            return st.r0, st.n


def _changes(before, after) -> str:
    return " ".join(f"r{i}={v:#x}" for i, (b, v) in enumerate(zip(before, after)) if b != v)


def _store_note(env: "Env", addr: int, size: int) -> str:
    region = env.memory.find(addr, size)
    where = f"{region.name}+{addr - region.base}" if region else f"{addr:#x}"
    return f"[{where}]={env.memory.load(addr, size):#x}" if region else f"[{where}]"


def _line(insns, pc, before, after, note: str | None = None) -> str:
    if note is None:
        note = _changes(before, after)
    text = insn_text(insns, pc)
    return f"{pc:5}: {text:<36} {note}".rstrip()
