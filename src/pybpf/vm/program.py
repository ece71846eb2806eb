"""Checks a program must pass before it runs, and its control-flow structure.

Both engines rely on this analysis: the reference stepper for the checks, the
compiler also for subprograms and basic blocks.  These are *runtime* rules
(the verifier, a separate layer, proves much more): jumps land on
instructions, the frame pointer is never written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..isa import Insn, check_program
from ..isa import opcodes as op
from .memory import VmError


def jump_target(ins: Insn, pc: int) -> int:
    """Target of a JA/conditional jump/local call at ``pc``."""
    if ins.code == op.OP_JA32:
        return pc + 1 + ins.imm
    if ins.code == op.OP_CALL:
        return pc + 1 + ins.imm
    return pc + 1 + ins.off


def is_cond_jump(ins: Insn) -> bool:
    cls = ins.code & 7
    return cls in (op.JMP, op.JMP32) and (ins.code & 0xF0) in op.COND_JUMPS


def is_local_call(ins: Insn) -> bool:
    return ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL


def is_call(ins: Insn) -> bool:
    return ins.code in (op.OP_CALL, op.OP_CALLX)


def is_ja(ins: Insn) -> bool:
    return ins.code in (op.OP_JA, op.OP_JA32)


def writes_r10(ins: Insn) -> bool:
    code, cls = ins.code, ins.code & 7
    if cls in (op.ALU, op.ALU64, op.LDX) or code == op.LD_IMM64:
        return ins.dst == op.MAX_REG
    if cls == op.STX and (code & 0xE0) == op.ATOMIC:
        fetches = ins.imm & op.FETCH and ins.imm != op.CMPXCHG
        return bool(fetches) and ins.src == op.MAX_REG
    return False


def slot_starts(insns: Sequence[Insn]) -> list[bool]:
    """True for every slot that begins an instruction (not an LD_IMM64 tail)."""
    starts = [True] * len(insns)
    i = 0
    while i < len(insns):
        if insns[i].is_ldimm64:
            if i + 1 < len(starts):
                starts[i + 1] = False
            i += 2
        else:
            i += 1
    return starts


def validate(insns: Sequence[Insn]) -> list[bool]:
    """Raise VmError (or InsnError) for programs no engine can run."""
    if not insns:
        raise VmError("empty program")
    check_program(insns)
    starts = slot_starts(insns)
    n = len(insns)
    for pc, ins in enumerate(insns):
        if not starts[pc]:
            continue
        if writes_r10(ins):
            raise VmError(f"insn {pc}: frame pointer r10 is read only", pc)
        if is_ja(ins) or is_cond_jump(ins) or is_local_call(ins):
            t = jump_target(ins, pc)
            what = "call" if is_local_call(ins) else "jump"
            if not 0 <= t < n:
                raise VmError(f"insn {pc}: {what} out of range to insn {t} "
                              f"(program has {n} slots)", pc)
            if not starts[t]:
                raise VmError(f"insn {pc}: {what} into the middle of ld_imm64 at insn {t - 1}", pc)
    return starts


@dataclass
class Block:
    start: int
    pcs: list[int]          # instruction starts in order (LD_IMM64 once)
    succ: list[int] = field(default_factory=list)

    @property
    def last(self) -> int:
        return self.pcs[-1]


@dataclass
class Function:
    entry: int
    blocks: dict[int, Block]


def is_packet_load(ins: Insn) -> bool:
    return ins.code & 7 == op.LD and ins.code & 0xE0 in (op.ABS, op.IND)


def _ends_block(ins: Insn) -> bool:
    # Calls and classic packet loads may end the program early (StopProgram);
    # ending the block there keeps the executed-instruction count exact.
    return (is_ja(ins) or is_cond_jump(ins) or is_call(ins) or ins.code == op.OP_EXIT
            or is_packet_load(ins))


def _next(insns: Sequence[Insn], pc: int) -> int:
    return pc + (2 if insns[pc].is_ldimm64 else 1)


def functions(insns: Sequence[Insn], max_block: int | None = None) -> dict[int, Function]:
    """Subprograms (entry 0 and every local call target) split into basic blocks.

    ``max_block`` cuts longer straight-line runs into several blocks (the fast
    engine keeps the Python functions it generates small that way).
    """
    n = len(insns)
    entries = [0]
    seen_entries = {0}
    result: dict[int, Function] = {}
    while entries:
        entry = entries.pop()
        # Reachable instructions and block leaders of this function.
        leaders = {entry}
        reach: set[int] = set()
        work = [entry]
        while work:
            pc = work.pop()
            while pc < n and pc not in reach:
                reach.add(pc)
                ins = insns[pc]
                nxt = _next(insns, pc)
                if ins.code == op.OP_EXIT:
                    break
                if is_local_call(ins):
                    t = jump_target(ins, pc)
                    if t not in seen_entries:
                        seen_entries.add(t)
                        entries.append(t)
                if is_ja(ins):
                    t = jump_target(ins, pc)
                    leaders.add(t)
                    work.append(t)
                    break
                if is_cond_jump(ins):
                    t = jump_target(ins, pc)
                    leaders.add(t)
                    work.append(t)
                if _ends_block(ins):
                    leaders.add(nxt)
                pc = nxt
        blocks: dict[int, Block] = {}
        for lead in sorted(x for x in leaders if x in reach):
            pcs = []
            pc = lead
            while True:
                pcs.append(pc)
                ins = insns[pc]
                nxt = _next(insns, pc)
                if _ends_block(ins) or nxt in leaders or nxt >= n:
                    break
                pc = nxt
            blk = Block(lead, pcs)
            last = insns[pcs[-1]]
            if is_ja(last):
                blk.succ = [jump_target(last, pcs[-1])]
            elif last.code != op.OP_EXIT:
                blk.succ = [_next(insns, pcs[-1])]
                if is_cond_jump(last):
                    blk.succ.append(jump_target(last, pcs[-1]))
            if max_block and len(pcs) > max_block:
                for i in range(0, len(pcs), max_block):
                    piece = pcs[i:i + max_block]
                    if i + max_block < len(pcs):
                        blocks[piece[0]] = Block(piece[0], piece, [pcs[i + max_block]])
                    else:
                        blocks[piece[0]] = Block(piece[0], piece, blk.succ)
            else:
                blocks[lead] = blk
        result[entry] = Function(entry, blocks)
    return result
