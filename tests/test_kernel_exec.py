"""Differential test: random programs run by the host kernel (BPF_PROG_TEST_RUN) and by pybpf.

Programs are generated so that the kernel verifier accepts them: every
register is initialised first, immediates are legal (no division by an
immediate 0, shift counts in range), the stack is written before it is read,
and control flow only jumps forward.  At the end every register is folded
into r0.  test_run returns r0's low 32 bits, so each program is loaded twice:
once as is, once with ``r0 >>= 32`` before the exit.
"""

from __future__ import annotations

import os
import random

import pytest

from kernel_oracle import kernel_available, kernel_prog_load, kernel_prog_test_run
from pybpf.isa import Insn, encode, ldimm64
from pybpf.isa import opcodes as op
from pybpf.vm import VM

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available")]

SOCKET_FILTER = 1
ALU_OPS = [op.ADD, op.SUB, op.MUL, op.DIV, op.OR, op.AND, op.LSH, op.RSH, op.NEG, op.MOD,
           op.XOR, op.MOV, op.ARSH, op.END]
SHIFTS = (op.LSH, op.RSH, op.ARSH)
EXIT = Insn(op.OP_EXIT)


def _imm(rng: random.Random) -> int:
    return rng.choice([0, 1, -1, 2, 7, 0x7FFFFFFF, -0x80000000, 0xFFFF, -2,
                       rng.randrange(-2**31, 2**31), rng.randrange(-300, 300)])


def _alu(rng: random.Random) -> Insn:
    cls = rng.choice([op.ALU, op.ALU64])
    o = rng.choice(ALU_OPS)
    dst, src = rng.randrange(10), rng.randrange(10)
    if o == op.END:
        srcbit = op.K if cls == op.ALU64 else rng.choice([op.K, op.X])
        return Insn(cls | o | srcbit, dst, 0, 0, rng.choice([16, 32, 64]))
    if o == op.NEG:
        return Insn(cls | o, dst)
    off = rng.choice([0, 1]) if o in (op.DIV, op.MOD) else 0
    if o == op.MOV and rng.random() < 0.3:
        off = rng.choice([8, 16, 32] if cls == op.ALU64 else [8, 16])
        return Insn(cls | o | op.X, dst, src, off)
    if rng.random() < 0.5:
        return Insn(cls | o | op.X, dst, src, off)
    imm = _imm(rng)
    if o in SHIFTS:
        imm = rng.randrange(64 if cls == op.ALU64 else 32)
    if o in (op.DIV, op.MOD) and imm == 0:
        imm = rng.choice([3, -3, 1, -1])
    return Insn(cls | o | op.K, dst, 0, off, imm)


def _mem(rng: random.Random) -> Insn:
    size = rng.choice([1, 2, 4, 8])
    slot = -8 * rng.randrange(1, 9) + rng.randrange(0, 8 // size) * size
    reg = rng.randrange(10)
    r = rng.random()
    if r < 0.35:
        return Insn(op.STX | op.MEM | op.SIZE_OF_BYTES[size], 10, reg, slot)
    if r < 0.45:
        return Insn(op.ST | op.MEM | op.SIZE_OF_BYTES[size], 10, 0, slot, _imm(rng))
    if r < 0.55 and size < 8:
        return Insn(op.LDX | op.MEMSX | op.SIZE_OF_BYTES[size], reg, 10, slot)
    if r < 0.65 and size >= 4:
        kinds = [op.ADD, op.OR, op.AND, op.XOR, op.ADD | op.FETCH, op.OR | op.FETCH,
                 op.AND | op.FETCH, op.XOR | op.FETCH, op.XCHG, op.CMPXCHG]
        slot = -8 * rng.randrange(1, 9) + (4 if size == 4 and rng.random() < 0.5 else 0)
        return Insn(op.STX | op.ATOMIC | op.SIZE_OF_BYTES[size], 10, reg, slot, rng.choice(kinds))
    return Insn(op.LDX | op.MEM | op.SIZE_OF_BYTES[size], reg, 10, slot)


def random_program(seed: int) -> list[Insn]:
    rng = random.Random(seed)
    prog: list[Insn] = []
    for reg in range(10):
        if rng.random() < 0.5:
            prog.extend(ldimm64(reg, rng.getrandbits(64)))
        else:
            prog.append(Insn(op.ALU64 | op.MOV | op.K, reg, 0, 0, _imm(rng)))
    for k in range(1, 9):      # the stack is written before any read
        prog.append(Insn(op.STX | op.MEM | op.DW, 10, rng.randrange(10), -8 * k))
    n = rng.randrange(5, 40)
    body: list[Insn] = []
    for i in range(n):
        r = rng.random()
        if r < 0.7:
            body.append(_alu(rng))
        elif r < 0.85:
            body.append(_mem(rng))
        else:
            cls = rng.choice([op.JMP, op.JMP32])
            o = rng.choice(op.COND_JUMPS)
            off = rng.randrange(0, n - i)
            if rng.random() < 0.5:
                body.append(Insn(cls | o | op.X, rng.randrange(10), rng.randrange(10), off))
            else:
                body.append(Insn(cls | o | op.K, rng.randrange(10), 0, off, _imm(rng)))
    prog.extend(body)
    for reg in range(1, 10):   # fold every register into r0
        prog.append(Insn(op.ALU64 | op.MUL | op.K, 0, 0, 0, 0x3B9ACA07))
        prog.append(Insn(op.ALU64 | op.XOR | op.X, 0, reg))
    prog.append(Insn(op.LDX | op.MEM | op.DW, 1, 10, -8 * rng.randrange(1, 9)))
    prog.append(Insn(op.ALU64 | op.ADD | op.X, 0, 1))
    return prog


def kernel_r0(prog: list[Insn]) -> tuple[int | None, str]:
    halves = []
    for tail in ([], [Insn(op.ALU64 | op.RSH | op.K, 0, 0, 0, 32)]):
        fd, err, log = kernel_prog_load(encode(prog + tail + [EXIT]), SOCKET_FILTER, log_level=1)
        if fd < 0:
            return None, f"errno {err}: {log[-600:]}"
        try:
            ret, err = kernel_prog_test_run(fd, bytes(64))
        finally:
            os.close(fd)
        if err:
            return None, f"test_run errno {err}"
        halves.append(ret)
    return halves[0] | (halves[1] << 32), ""


def check_seeds(seeds) -> int:
    compared = 0
    for seed in seeds:
        prog = random_program(seed)
        want, why = kernel_r0(prog)
        assert want is not None, f"seed {seed}: kernel refused the program: {why}"
        vm = VM(prog + [EXIT])
        for engine in ("fast", "reference"):
            got = vm.run(bytes(64), engine=engine).r0
            assert got == want, f"seed {seed} ({engine}): pybpf r0={got:#x}, kernel r0={want:#x}"
        compared += 1
    return compared


def test_random_programs_match_the_kernel():
    assert check_seeds(range(300)) == 300


def test_division_corner_cases_match_the_kernel():
    M = 2**64 - 1
    for cls in (op.ALU64, op.ALU):
        for o in (op.DIV, op.MOD):
            for off in (0, 1):
                for d, s in ((2**63, M), (0x80000000, 0xFFFFFFFF), (7, 0), (M, 0), (M - 6, 2),
                             (7, M - 1), (0x1_0000_0007, 0x1_0000_0000)):
                    prog = [*ldimm64(0, d), *ldimm64(1, s), Insn(cls | o | op.X, 0, 1, off)]
                    want, why = kernel_r0(prog)
                    assert want is not None, why
                    got = VM(prog + [EXIT]).run().r0
                    assert got == want, (cls, o, off, hex(d), hex(s))


@pytest.mark.slow
def test_many_random_programs_match_the_kernel():
    assert check_seeds(range(300, 5300)) == 5000


SCHED_CLS = 3


def test_classic_packet_loads_match_the_kernel():
    """LD_ABS / LD_IND: big-endian loads from the packet, 0 from the program when out of range.

    SCHED_CLS test runs see the whole data_in as the packet (Ethernet header
    included), which is the packet pybpf is given.
    """
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(64))
    compared = 0
    for _ in range(120):
        size = rng.choice([1, 2, 4])
        off = rng.choice([0, 1, 13, 14, 59, 60, 61, 62, 63, 64, 100, -1, -50, rng.randrange(70)])
        prog = [Insn(op.ALU64 | op.MOV | op.X, 6, 1), Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 77)]
        if rng.random() < 0.5:
            prog.append(Insn(op.LD | op.ABS | op.SIZE_OF_BYTES[size], 0, 0, 0, off))
        else:
            base = rng.randrange(40)
            prog += [Insn(op.ALU64 | op.MOV | op.K, 7, 0, 0, base),
                     Insn(op.LD | op.IND | op.SIZE_OF_BYTES[size], 0, 7, 0, off - base)]
        prog.append(Insn(op.ALU64 | op.ADD | op.K, 0, 0, 0, 1))   # not reached when out of range
        fd, err, log = kernel_prog_load(encode(prog + [EXIT]), SCHED_CLS, log_level=1)
        assert fd >= 0, f"kernel refused: errno {err}: {log[-400:]}"
        try:
            want, err = kernel_prog_test_run(fd, data)
        finally:
            os.close(fd)
        assert err == 0
        vm = VM(prog + [EXIT])
        for engine in ("fast", "reference"):
            got = vm.run(packet=data, engine=engine).r0
            assert got == want, f"size {size} off {off} ({engine}): pybpf {got:#x}, kernel {want:#x}"
        compared += 1
    assert compared == 120


# -- bpf-to-bpf calls ---------------------------------------------------------------------

def _body_units(rng: random.Random, n: int, callees: list[str]) -> list:
    """Units of a body: ("insn", Insn), ("jump", Insn, units_to_skip) or ("call", name)."""
    units = []
    for i in range(n):
        r = rng.random()
        if callees and r < 0.12:
            units.append(("call", rng.choice(callees)))
        elif r < 0.72:
            units.append(("insn", _alu(rng)))
        elif r < 0.86:
            units.append(("insn", _mem(rng)))
        else:
            cls = rng.choice([op.JMP, op.JMP32])
            o = rng.choice(op.COND_JUMPS)
            if rng.random() < 0.5:
                ins = Insn(cls | o | op.X, rng.randrange(10), rng.randrange(10), 0)
            else:
                ins = Insn(cls | o | op.K, rng.randrange(10), 0, 0, _imm(rng))
            units.append(("jump", ins, rng.randrange(0, n - i)))
    return units


def _init_regs(rng: random.Random, regs) -> list[Insn]:
    out = []
    for reg in regs:
        if rng.random() < 0.5:
            out.extend(ldimm64(reg, rng.getrandbits(64)))
        else:
            out.append(Insn(op.ALU64 | op.MOV | op.K, reg, 0, 0, _imm(rng)))
    return out


def random_program_with_calls(seed: int) -> list[Insn]:
    """main -> f1 -> f2; every function initialises what it reads, as the verifier demands.

    After a call r1-r5 are dead in the kernel's eyes, so the caller sets them again.
    """
    rng = random.Random(seed)
    funcs = {}
    for name, callees, prologue_regs in (("main", ["f1", "f2"], range(10)),
                                         ("f1", ["f2"], [0, 6, 7, 8, 9]),
                                         ("f2", [], [0, 6, 7, 8, 9])):
        prologue = _init_regs(rng, prologue_regs)
        prologue += [Insn(op.STX | op.MEM | op.DW, 10, rng.randrange(10), -8 * k) for k in range(1, 9)]
        units = _body_units(rng, rng.randrange(3, 20), callees)
        if callees:  # the verifier rejects a subprogram nobody calls
            units.insert(rng.randrange(len(units) + 1), ("call", callees[0]))
        funcs[name] = (prologue, units)
    # Lay out: expand units to slots, then fix jump and call offsets.
    slots: list = []
    starts: dict[str, int] = {}
    fixups = []
    for name in ("main", "f1", "f2"):
        prologue, units = funcs[name]
        starts[name] = len(slots)
        slots.extend(prologue)
        unit_start = []
        for unit in units:
            unit_start.append(len(slots))
            if unit[0] == "insn":
                slots.append(unit[1])
            elif unit[0] == "jump":
                fixups.append(("jump", len(slots), unit[1], len(unit_start) - 1 + 1 + unit[2], name))
                slots.append(None)
            else:
                fixups.append(("call", len(slots), unit[1]))
                slots.append(None)
                slots.extend(_init_regs(rng, range(1, 6)))
        end = len(slots)
        if name == "main":
            for reg in range(1, 10):
                slots.append(Insn(op.ALU64 | op.MUL | op.K, 0, 0, 0, 0x3B9ACA07))
                slots.append(Insn(op.ALU64 | op.XOR | op.X, 0, reg))
        slots.append(EXIT)
        funcs[name] = (unit_start, end)
    for fix in fixups:
        if fix[0] == "call":
            _, at, target = fix
            slots[at] = Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, starts[target] - at - 1)
        else:
            _, at, ins, unit_index, name = fix
            unit_start, end = funcs[name]
            dest = unit_start[unit_index] if unit_index < len(unit_start) else end
            slots[at] = Insn(ins.code, ins.dst, ins.src, dest - at - 1, ins.imm)
    return slots


def test_random_programs_with_calls_match_the_kernel():
    compared = 0
    for seed in range(150):
        prog = random_program_with_calls(seed)
        lo = kernel_r0_exact(prog)
        assert lo is not None, f"seed {seed}: kernel refused the program"
        vm = VM(prog)
        for engine in ("fast", "reference"):
            got = vm.run(bytes(64), engine=engine).r0
            assert got & 0xFFFFFFFF == lo, f"seed {seed} ({engine}): {got:#x} vs kernel {lo:#x}"
        compared += 1
    assert compared == 150


def kernel_r0_exact(prog: list[Insn]) -> int | None:
    """Low 32 bits of r0 from the kernel for a program that ends with its own exit."""
    fd, err, log = kernel_prog_load(encode(prog), SOCKET_FILTER, log_level=1)
    if fd < 0:
        print(log[-1500:])
        return None
    try:
        ret, err = kernel_prog_test_run(fd, bytes(64))
    finally:
        os.close(fd)
    return None if err else ret
