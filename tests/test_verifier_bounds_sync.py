"""The fast bounds synchronisation (bounds.sync: written-out comparisons, memoised) gives
exactly what the straightforward formulation gives, on random register states."""

from hypothesis import given, settings, strategies as st

from pybpf.verifier import bounds as B
from pybpf.verifier.bounds import S64_MAX, U32, U64, s32, s64
from pybpf.verifier import tnum
from pybpf.verifier.regstate import Reg


# The straightforward formulation (the verifier's first version, now with Linux's three rounds
# of deduction and no early stop), kept as the reference.
def reference_sync(r) -> None:
    """Bring every bound family and the tnum into agreement (kernel: reg_bounds_sync).

    The steps are those of :func:`update_bounds`, the 32-bit, 64-bit and mixed
    deductions and :func:`bound_offset`, done on local variables because this
    runs for nearly every ALU instruction and branch.
    """
    v, m = r.var
    if m == 0 and r.umin <= v <= r.umax and r.smin <= s64(v) <= r.smax and \
            r.u32min <= (v & U32) <= r.u32max and r.s32min <= s32(v) <= r.s32max:  # noqa
        B.mark_known(r, v)
        return
    smin, smax, umin, umax = r.smin, r.smax, r.umin, r.umax
    s32min, s32max, u32min, u32max = r.s32min, r.s32max, r.u32min, r.u32max
    for _ in (0, 1):
        # from the tnum
        v32, m32 = v & U32, m & U32
        x = v32 | (m32 & 0x80000000)
        x = x - (1 << 32) if x >> 31 else x
        if x > s32min:
            s32min = x
        x = v32 | (m32 & 0x7FFFFFFF)
        x = x - (1 << 32) if x >> 31 else x
        if x < s32max:
            s32max = x
        if v32 > u32min:
            u32min = v32
        if (v32 | m32) < u32max:
            u32max = v32 | m32
        x = v | (m & (1 << 63))
        x = x - (1 << 64) if x >> 63 else x
        if x > smin:
            smin = x
        x = v | (m & S64_MAX)
        x = x - (1 << 64) if x >> 63 else x      # (a known sign bit)
        if x < smax:
            smax = x
        if v > umin:
            umin = v
        if (v | m) < umax:
            umax = v | m
        # __update_reg64_bounds: one value where the tnum and [umin, umax] seem to share one
        nxt = tnum.step((v, m), umin)
        tmax = v | m
        if (umin & ~m) == v:
            one = umin if nxt > umax else None
        elif nxt == tmax:
            one = tmax
        elif nxt <= umax and tnum.step((v, m), nxt) > umax:
            one = nxt
        else:
            one = None
        if one is not None:
            v, m = one, 0
            smin = smax = s64(one)
            umin = umax = one
            s32min = s32max = s32(one)
            u32min = u32max = one & U32
        if _:
            break
        # Linux's __reg_deduce_bounds, three times in a row
        for _round in range(3):
            # 32-bit facts from 64-bit ones
            if (umin >> 32) == (umax >> 32):
                u32min = max(u32min, umin & U32)
                u32max = min(u32max, umax & U32)
                a, b = s32(umin), s32(umax)
                if a <= b:
                    s32min = max(s32min, a)
                    s32max = min(s32max, b)
            if (smin >> 32) == (smax >> 32):
                if (smin & U32) <= (smax & U32):
                    u32min = max(u32min, smin & U32)
                    u32max = min(u32max, smax & U32)
                a, b = s32(smin), s32(smax)
                if a <= b:
                    s32min = max(s32min, a)
                    s32max = min(s32max, b)
            # upper halves two consecutive numbers, lower halves a range through zero
            if ((umin >> 32) + 1) & U32 == (umax >> 32) & U32 and s32(umin) < 0 <= s32(umax):
                s32min = max(s32min, s32(umin))
                s32max = min(s32max, s32(umax))
            if (((smin >> 32) + 1) & U32) == (smax >> 32) & U32 and s32(smin) < 0 <= s32(smax):
                s32min = max(s32min, s32(smin))
                s32max = min(s32max, s32(smax))
            a, b = s32(u32min), s32(u32max)
            if a <= b:
                s32min = max(s32min, a)
                s32max = min(s32max, b)
            if (s32min & U32) <= (s32max & U32):
                u32min = max(u32min, s32min & U32)
                u32max = min(u32max, s32max & U32)
            elif u32max < (s32min & U32):
                # the s32 range wraps through the sign boundary, the u32 range overlaps one end
                s32min = s32(u32min)
                u32max = min(u32max, s32max & U32)
            elif (s32max & U32) < u32min:
                s32max = s32(u32max)
                u32min = max(u32min, s32min & U32)
            # signed and unsigned 64-bit facts
            a, b = s64(umin), s64(umax)
            if a <= b:
                smin = max(smin, a)
                smax = min(smax, b)
            if (smin & U64) <= (smax & U64):
                umin = max(umin, smin & U64)
                umax = min(umax, smax & U64)
            elif umax < (smin & U64):
                # the signed range wraps through the sign boundary and the unsigned range
                # overlaps only its non-negative end
                smin = s64(umin)
                umax = min(umax, smax & U64)
            elif (smax & U64) < umin:
                smax = s64(umax)
                umin = max(umin, smin & U64)
            # 64-bit facts from 32-bit ones
            hi = ~U32 & U64
            umin = max(umin, (umin & hi) | u32min)
            umax = min(umax, (umax & hi) | u32max)
            smin = max(smin, s64((smin & hi) | u32min))
            smax = min(smax, s64((smax & hi) | u32max))
            if (s32min & U32) <= (s32max & U32):
                lo, up = s32min & U32, s32max & U32
                umin = max(umin, (umin & hi) | lo)
                umax = min(umax, (umax & hi) | up)
                smin = max(smin, s64((smin & hi) | lo))
                smax = min(smax, s64((smax & hi) | up))
            # a non-negative s32 range inside a 64-bit range within s32: upper half all zeros
            if s32min >= 0 and smin >= -(1 << 31) and smax <= (1 << 31) - 1:
                smin, umin = s32min, s32min & U64
                smax, umax = s32max, s32max & U64
                v, m = tnum.intersect((v, m), tnum.range_(smin & U64, smax & U64))
        # tnum from the ranges, contradictory ones too
        v, m = tnum.intersect((v, m), tnum.range_(umin, umax))
        v32, m32 = tnum.intersect((v & U32, m & U32), tnum.range_(u32min, u32max))
        v = (v & hi) | v32
        m = (m & hi) | m32
    r.var = (v, m)
    r.smin, r.smax, r.umin, r.umax = smin, smax, umin, umax
    r.s32min, r.s32max, r.u32min, r.u32max = s32min, s32max, u32min, u32max



def _values(draw_bits):
    return st.one_of(st.integers(0, (1 << draw_bits) - 1),
                     st.sampled_from([0, 1, 2, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                                      1 << 32, (1 << 63) - 1, 1 << 63, U64, U64 - 1]))


@st.composite
def regs(draw):
    r = Reg.scalar()
    a, b = sorted((draw(_values(64)), draw(_values(64))))
    if draw(st.booleans()):
        r.umin, r.umax = a & U64, b & U64
    a, b = sorted((s64(draw(_values(64))), s64(draw(_values(64)))))
    if draw(st.booleans()):
        r.smin, r.smax = a, b
    a, b = sorted((draw(_values(32)) & U32, draw(_values(32)) & U32))
    if draw(st.booleans()):
        r.u32min, r.u32max = a, b
    a, b = sorted((s32(draw(_values(32))), s32(draw(_values(32)))))
    if draw(st.booleans()):
        r.s32min, r.s32max = a, b
    if draw(st.booleans()):
        m = draw(_values(64)) & U64
        r.var = (draw(_values(64)) & ~m & U64, m)
    return r


def _state(r):
    return (r.var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max)


@settings(max_examples=800, deadline=None)
@given(regs())
def test_sync_matches_reference(r):
    a, b = r.copy(), r.copy()
    reference_sync(a)
    B.sync(b)
    assert _state(b) == _state(a)
    B.sync(c := r.copy())          # again: from the memo
    assert _state(c) == _state(a)


def reference_mul(a, b):
    """tnum multiplication bit by bit (Linux 6.17+'s tnum_mul), without the shortcuts of
    tnum.mul: a known 1 bit of ``a`` adds ``b``, an unknown one takes the union of the
    accumulator with and without ``b``."""
    acc = (0, 0)
    av, am = a
    bv, bm = b
    while av or am:
        if av & 1:
            acc = tnum.add(acc, (bv, bm))
        elif am & 1:
            x = tnum.add(acc, (bv, bm))
            mu = (acc[0] ^ x[0]) | acc[1] | x[1]
            acc = (acc[0] & x[0] & ~mu & U64, mu)
        av >>= 1
        am >>= 1
        bv = (bv << 1) & U64
        bm = (bm << 1) & U64
    return acc


@st.composite
def tnums(draw):
    m = draw(_values(64)) & U64
    if draw(st.booleans()):
        m &= draw(_values(64))
    return (draw(_values(64)) & ~m & U64, m)


@settings(max_examples=800, deadline=None)
@given(tnums(), tnums())
def test_tnum_mul_matches_reference(a, b):
    assert tnum.mul(a, b) == reference_mul(a, b)
