"""Soundness: every random program the verifier accepts must run in the interpreter without a
memory-safety error (the interpreter's checked memory acts as the sanitizer), and the range
facts the verifier derives for ALU results must hold for concrete values.

The default run checks a few thousand programs; ``--runslow`` checks many more.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.isa import opcodes as op
from pybpf.verifier import verify
from pybpf.verifier import bounds as B
from pybpf.verifier import progtypes, tnum
from pybpf.verifier.alu import scalar_alu
from pybpf.verifier.regstate import Reg
from pybpf.vm import VM, VmError
from random_programs import MAP, MAP_FD, _gen_packet_program, _gen_program


class _Runtime:
    def __init__(self):
        self.values = None

    def vm(self, insns):
        vm = VM(insns, helpers={1: self.lookup}, ldimm64=lambda pc, src, v: 0xFEED0000)
        self.values = [vm.memory.add_region(f"map value {i}", bytearray(MAP.value_size))
                       for i in range(MAP.max_entries)]
        return vm

    def lookup(self, vm, r1, r2, r3, r4, r5):
        key = vm.memory.load(r2, 4)
        return self.values[key].base if key < MAP.max_entries else 0


def _check_seed(seed: int, count: int) -> int:
    rng = random.Random(seed)
    accepted = 0
    for _ in range(count):
        insns = _gen_program(rng)
        res = verify(insns, prog_type=progtypes.KPROBE, maps={MAP_FD: MAP}, license="GPL",
                     max_insns=20000)
        if not res.ok:
            continue
        accepted += 1
        rt = _Runtime()
        vm = rt.vm(res.insns_rewritten)
        ctx = bytes(rng.getrandbits(8) for _ in range(168))
        try:
            vm.run(ctx, engine="reference")
        except VmError as e:
            listing = "\n".join(f"{i}: {x}" for i, x in enumerate(insns))
            pytest.fail(f"accepted program faulted: {e}\n{listing}\n--- verifier log:\n"
                        + verify(insns, prog_type=progtypes.KPROBE, maps={MAP_FD: MAP}, license="GPL",
                                 log_level=2).log)
        finally:
            for r in rt.values:
                vm.memory.remove_region(r)
            vm.close()
    return accepted


@pytest.mark.parametrize("seed", range(20))
def test_accepted_random_programs_are_memory_safe(seed):
    accepted = _check_seed(seed, 150)
    assert accepted > 5      # the generator must keep producing programs the verifier accepts


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1000, 1100))
def test_accepted_random_programs_are_memory_safe_long(seed):
    _check_seed(seed, 400)


# --- ALU range facts ------------------------------------------------------------------------

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def _abstract(lo: int, hi: int, mask_bits: int, base: int) -> Reg:
    """An abstract scalar: unsigned range [lo, hi] intersected with tnum facts from ``base``."""
    r = Reg.scalar()
    r.umin, r.umax = lo, hi
    known = ~mask_bits & M64
    r.var = (base & known, mask_bits & M64)
    B.sync(r)
    return r


def _concrete_op(o, a, b, is64):
    m = M64 if is64 else M32
    a &= m
    b &= m
    bits = 64 if is64 else 32
    if o == op.ADD:
        return (a + b) & m
    if o == op.SUB:
        return (a - b) & m
    if o == op.MUL:
        return (a * b) & m
    if o == op.AND:
        return a & b
    if o == op.OR:
        return a | b
    if o == op.XOR:
        return a ^ b
    if o == op.LSH:
        return (a << (b % bits)) & m
    if o == op.RSH:
        return a >> (b % bits)
    if o == op.ARSH:
        sa = a - (1 << bits) if a >> (bits - 1) else a
        return (sa >> (b % bits)) & m
    raise AssertionError


def _contains(r: Reg, v: int) -> bool:
    s = B.s64(v)
    return (r.umin <= v <= r.umax and r.smin <= s <= r.smax and r.u32min <= (v & M32) <= r.u32max
            and r.s32min <= B.s32(v) <= r.s32max and tnum.contains(r.var, (v, 0)))


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, M64), st.integers(0, M64), st.integers(0, M64), st.integers(0, M64),
       st.sampled_from([op.ADD, op.SUB, op.MUL, op.AND, op.OR, op.XOR, op.LSH, op.RSH, op.ARSH]),
       st.booleans(), st.integers(0, 64), st.integers(0, 64))
def test_scalar_alu_is_sound(x, y, wx, wy, o, is64, mx_bits, my_bits):
    mx = (1 << (mx_bits % 65)) - 1 if mx_bits < 64 else M64
    my = (1 << (my_bits % 65)) - 1 if my_bits < 64 else M64
    # abstract values around the concrete x and y
    a = _abstract(min(x, wx), max(x, wx), mx, x)
    b = _abstract(min(y, wy), max(y, wy), my, y)
    if o in (op.LSH, op.RSH, op.ARSH):
        y = y % (64 if is64 else 32)
        b = Reg.scalar(y)
    if not (_contains(a, x) and _contains(b, y)):
        return
    res = a.copy()
    scalar_alu(res, b, o, is64)
    v = _concrete_op(o, x, y, is64)
    assert _contains(res, v), (hex(x), hex(y), o, is64, res)


# --- packet programs (XDP) ---------------------------------------------------------------------

def _xdp_run(insns, packet: bytes):
    import ctypes
    from pybpf.verifier import context
    layout = context.RUNTIME[progtypes.XDP]
    vm = VM(insns)
    pbuf = (ctypes.c_char * max(len(packet), 1)).from_buffer_copy(packet or b"\0")
    preg = vm.memory.add_region("packet", address=ctypes.addressof(pbuf), size=len(packet), keepalive=pbuf)
    ctx = bytearray(layout.size)
    base = ctypes.addressof(pbuf)
    for name, value in (("data", base), ("data_end", base + len(packet)), ("data_meta", base)):
        off, size = layout.fields[name]
        ctx[off:off + size] = value.to_bytes(size, "little")
    try:
        return vm.run(ctx=ctx, engine="reference")
    finally:
        vm.memory.remove_region(preg)
        vm.close()


def _check_packet_seed(seed: int, count: int) -> int:
    rng = random.Random(seed)
    accepted = 0
    for _ in range(count):
        insns = _gen_packet_program(rng)
        res = verify(insns, prog_type=progtypes.XDP, license="GPL", max_insns=20000)
        if not res.ok:
            continue
        accepted += 1
        for plen in (0, 1, 7, 14, 33, 64):
            try:
                _xdp_run(res.insns_rewritten, bytes(rng.getrandbits(8) for _ in range(plen)))
            except VmError as e:
                listing = "\n".join(f"{i}: {x}" for i, x in enumerate(insns))
                pytest.fail(f"accepted packet program faulted on a {plen}-byte packet: {e}\n{listing}\n"
                            + verify(insns, prog_type=progtypes.XDP, license="GPL", log_level=2).log)
    return accepted


@pytest.mark.parametrize("seed", range(10))
def test_accepted_packet_programs_are_memory_safe(seed):
    assert _check_packet_seed(seed, 200) > 3


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2000, 2050))
def test_accepted_packet_programs_are_memory_safe_long(seed):
    _check_packet_seed(seed, 300)


def _concrete_cmp(o, x, y, is32):
    m = M32 if is32 else M64
    bits = 32 if is32 else 64
    x &= m
    y &= m
    sx = x - (1 << bits) if x >> (bits - 1) else x
    sy = y - (1 << bits) if y >> (bits - 1) else y
    return {op.JEQ: x == y, op.JNE: x != y, op.JGT: x > y, op.JGE: x >= y, op.JLT: x < y,
            op.JLE: x <= y, op.JSGT: sx > sy, op.JSGE: sx >= sy, op.JSLT: sx < sy, op.JSLE: sx <= sy,
            op.JSET: bool(x & y)}[o]


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, M64), st.integers(0, M64), st.integers(0, M64), st.integers(0, M64),
       st.sampled_from([op.JEQ, op.JNE, op.JGT, op.JGE, op.JLT, op.JLE, op.JSGT, op.JSGE, op.JSLT,
                        op.JSLE, op.JSET]),
       st.booleans(), st.integers(0, 64), st.integers(0, 64), st.booleans())
def test_branch_outcome_and_refinement_are_sound(x, y, wx, wy, o, is32, mx_bits, my_bits, const_src):
    """The outcome the verifier predicts and the bounds it learns on each side must hold for
    every concrete pair of values the abstract registers allow."""
    from pybpf.verifier.branches import _REV, _violation, branch_taken, refine
    mx = (1 << mx_bits) - 1 if mx_bits < 64 else M64
    my = (1 << my_bits) - 1 if my_bits < 64 else M64
    a = _abstract(min(x, wx), max(x, wx), mx, x)
    b = Reg.scalar(y) if const_src else _abstract(min(y, wy), max(y, wy), my, y)
    if not (_contains(a, x) and _contains(b, y)):
        return
    truth = _concrete_cmp(o, x, y, is32)
    taken = branch_taken(a, b, o, is32)
    assert taken in (-1, int(truth)), (hex(x), hex(y), o, is32, a, b)
    ra, rb = a.copy(), b.copy()
    refine(ra, rb, o if truth else _REV[o], is32)
    assert not _violation(ra) and not _violation(rb), \
        ("refinement lost a possible path", hex(x), hex(y), o, truth, a, b)
    assert _contains(ra, x) and _contains(rb, y), (hex(x), hex(y), o, truth, a, b, ra, rb)
