"""Scalar range tracking: signed/unsigned 64- and 32-bit bounds kept in step with a tnum.

Functions here work on any object with the scalar fields of
:class:`~pybpf.verifier.regstate.Reg` (``var``, ``smin`` .. ``u32max``).  The
deduction rules follow the ones Linux documents for its verifier: each bound
family tightens the others in rounds of the kernel's order (32-bit, 64-bit,
then mixed facts); three rounds at most, as in the kernel, even where a fourth
would tighten further: pybpf derives what Linux derives.
"""

from __future__ import annotations

from . import tnum

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
S64_MIN, S64_MAX = -(1 << 63), (1 << 63) - 1
S32_MIN, S32_MAX = -(1 << 31), (1 << 31) - 1


def s64(v: int) -> int:
    v &= U64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= U32
    return v - (1 << 32) if v >> 31 else v


def limits(bits: int) -> tuple[int, int, int]:
    """(signed min, signed max, unsigned max) of a ``bits``-wide integer."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1, (1 << bits) - 1)


def mark_unknown(r) -> None:
    r.var = tnum.UNKNOWN
    r.smin, r.smax, r.umin, r.umax = S64_MIN, S64_MAX, 0, U64
    r.s32min, r.s32max, r.u32min, r.u32max = S32_MIN, S32_MAX, 0, U32


def mark_known(r, v: int) -> None:
    v &= U64
    r.var = (v, 0)
    r.smin = r.smax = s64(v)
    r.umin = r.umax = v
    r.s32min = r.s32max = s32(v)
    r.u32min = r.u32max = v & U32


def mark_known32(r, v: int) -> None:
    """Only the low 32 bits become known (upper bits keep their 64-bit facts)."""
    v &= U32
    r.var = tnum.with_subreg(r.var, (v, 0))
    r.s32min = r.s32max = s32(v)
    r.u32min = r.u32max = v


def update_bounds(r) -> None:
    v, m = r.var
    v32, m32 = v & U32, m & U32
    r.s32min = max(r.s32min, s32(v32 | (m32 & 0x80000000)))
    r.s32max = min(r.s32max, s32(v32 | (m32 & 0x7FFFFFFF)))
    r.u32min = max(r.u32min, v32)
    r.u32max = min(r.u32max, v32 | m32)
    r.smin = max(r.smin, s64(v | (m & (1 << 63))))
    r.smax = min(r.smax, s64(v | (m & S64_MAX)))
    r.umin = max(r.umin, v)
    r.umax = min(r.umax, v | m)


def update_bounds32(r) -> None:
    """The 32-bit bounds tightened from the tnum's low half (kernel: __update_reg32_bounds)."""
    v32, m32 = r.var[0] & U32, r.var[1] & U32
    r.s32min = max(r.s32min, s32(v32 | (m32 & 0x80000000)))
    r.s32max = min(r.s32max, s32(v32 | (m32 & 0x7FFFFFFF)))
    r.u32min = max(r.u32min, v32)
    r.u32max = min(r.u32max, v32 | m32)


def _deduce32(r) -> None:
    if (r.umin >> 32) == (r.umax >> 32):
        r.u32min = max(r.u32min, r.umin & U32)
        r.u32max = min(r.u32max, r.umax & U32)
        if s32(r.umin) <= s32(r.umax):
            r.s32min = max(r.s32min, s32(r.umin))
            r.s32max = min(r.s32max, s32(r.umax))
    if (r.smin >> 32) == (r.smax >> 32):
        r.u32min = max(r.u32min, r.smin & U32)
        r.u32max = min(r.u32max, r.smax & U32)
        if s32(r.smin) <= s32(r.smax):
            r.s32min = max(r.s32min, s32(r.smin))
            r.s32max = min(r.s32max, s32(r.smax))
    if s32(r.u32min) <= s32(r.u32max):
        r.s32min = max(r.s32min, s32(r.u32min))
        r.s32max = min(r.s32max, s32(r.u32max))
    if (r.s32min & U32) <= (r.s32max & U32):
        r.u32min = max(r.u32min, r.s32min & U32)
        r.u32max = min(r.u32max, r.s32max & U32)
    elif r.u32max < (r.s32min & U32):
        r.s32min = s32(r.u32min)
        r.u32max = min(r.u32max, r.s32max & U32)
    elif (r.s32max & U32) < r.u32min:
        r.s32max = s32(r.u32max)
        r.u32min = max(r.u32min, r.s32min & U32)


def _deduce64(r) -> None:
    if s64(r.umin) <= s64(r.umax):
        r.smin = max(r.smin, s64(r.umin))
        r.smax = min(r.smax, s64(r.umax))
    if (r.smin & U64) <= (r.smax & U64):
        r.umin = max(r.umin, r.smin & U64)
        r.umax = min(r.umax, r.smax & U64)


def _deduce_mixed(r) -> None:
    hi_min, hi_max = r.umin & ~U32 & U64, r.umax & ~U32 & U64
    r.umin = max(r.umin, hi_min | r.u32min)
    r.umax = min(r.umax, hi_max | r.u32max)
    r.smin = max(r.smin, s64((r.smin & ~U32 & U64) | r.u32min))
    r.smax = min(r.smax, s64((r.smax & ~U32 & U64) | r.u32max))
    if (r.s32min & U32) <= (r.s32max & U32):
        lo, hi = r.s32min & U32, r.s32max & U32
        r.umin = max(r.umin, (r.umin & ~U32 & U64) | lo)
        r.umax = min(r.umax, (r.umax & ~U32 & U64) | hi)
        r.smin = max(r.smin, s64((r.smin & ~U32 & U64) | lo))
        r.smax = min(r.smax, s64((r.smax & ~U32 & U64) | hi))
    if r.s32min >= 0 and r.smin >= S32_MIN and r.smax <= S32_MAX:
        r.smin = r.umin = r.s32min
        r.smax = r.umax = r.s32max
        r.var = tnum.intersect(r.var, tnum.range_(r.smin, r.smax))


def bound_offset(r) -> None:
    v64 = tnum.intersect(r.var, tnum.range_(r.umin, r.umax))
    v32 = tnum.intersect(tnum.subreg(v64), tnum.range_(r.u32min, r.u32max))
    hi = tnum.clear_subreg(v64)
    r.var = (hi[0] | v32[0], hi[1] | v32[1])


def sync(r) -> None:
    """Bring every bound family and the tnum into agreement (kernel: reg_bounds_sync).

    The steps are those of :func:`update_bounds`, three rounds of the 32-bit,
    64-bit and mixed deductions and :func:`bound_offset`, done on local variables
    because this runs for nearly every ALU instruction and branch.
    """
    v, m = r.var
    if m == 0 and r.umin <= v <= r.umax and r.smin <= s64(v) <= r.smax and \
            r.u32min <= (v & U32) <= r.u32max and r.s32min <= s32(v) <= r.s32max:
        mark_known(r, v)
        return
    smin, smax, umin, umax = r.smin, r.smax, r.umin, r.umax
    s32min, s32max, u32min, u32max = r.s32min, r.s32max, r.u32min, r.u32max
    # A pure function of nine numbers that loops feed the same inputs again and again.
    key = (v, m, smin, smax, umin, umax, s32min, s32max, u32min, u32max)
    got = _SYNCED.get(key)
    if got is not None:
        (r.var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max) = got
        return
    if len(_SYNCED) >= _SYNC_CACHE_MAX:
        _SYNCED.clear()
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
        # Linux (__update_reg64_bounds) makes the register a constant where the tnum and the
        # unsigned range share one value, or seem to: it checks only the values of the tnum
        # next to umin, so a tnum and a range with nothing in common give one too.
        if m:
            nxt = tnum.step((v, m), umin)
            if (umin & ~m) == v:
                known = nxt > umax
                if known:
                    v, m = umin, 0
            elif nxt == (v | m):
                known = True
                v, m = nxt, 0
            else:
                known = nxt <= umax and tnum.step((v, m), nxt) > umax
                if known:
                    v, m = nxt, 0
        else:
            known = umin != v or umax < v
        if known:
            smin = smax = v - (1 << 64) if v >> 63 else v
            umin = umax = v
            u32min = u32max = v & U32
            s32min = s32max = u32min - (1 << 32) if u32min >> 31 else u32min
        if _:
            break
        # Linux deduces three times in a row (32-bit, 64-bit, then mixed facts): what one
        # round learns can feed an earlier step of the next, e.g. an s32 bound that made
        # u32 tighter makes s32 tighter in turn.  A round that changes nothing is a fixed
        # point, so the rounds left would change nothing either.
        hi = _HI32
        for _r in (0, 1, 2):
            before = (smin, smax, umin, umax, s32min, s32max, u32min, u32max)
            # 32-bit facts from 64-bit ones (comparisons written out: this is the hot path)
            if (umin >> 32) == (umax >> 32):
                lo, up = umin & U32, umax & U32
                if lo > u32min:
                    u32min = lo
                if up < u32max:
                    u32max = up
                a = lo - 0x100000000 if lo >> 31 else lo
                b = up - 0x100000000 if up >> 31 else up
                if a <= b:
                    if a > s32min:
                        s32min = a
                    if b < s32max:
                        s32max = b
            if (smin >> 32) == (smax >> 32):
                lo, up = smin & U32, smax & U32
                if lo <= up:        # (not so only in a contradictory range)
                    if lo > u32min:
                        u32min = lo
                    if up < u32max:
                        u32max = up
                a = lo - 0x100000000 if lo >> 31 else lo
                b = up - 0x100000000 if up >> 31 else up
                if a <= b:
                    if a > s32min:
                        s32min = a
                    if b < s32max:
                        s32max = b
            # upper halves two consecutive numbers, lower halves a range through zero
            if ((umin >> 32) + 1) & U32 == (umax >> 32) & U32:
                a, b = s32(umin), s32(umax)
                if a < 0 <= b:
                    if a > s32min:
                        s32min = a
                    if b < s32max:
                        s32max = b
            if (((smin >> 32) + 1) & U32) == (smax >> 32) & U32:
                a, b = s32(smin), s32(smax)
                if a < 0 <= b:
                    if a > s32min:
                        s32min = a
                    if b < s32max:
                        s32max = b
            a = u32min - 0x100000000 if u32min >> 31 else u32min
            b = u32max - 0x100000000 if u32max >> 31 else u32max
            if a <= b:
                if a > s32min:
                    s32min = a
                if b < s32max:
                    s32max = b
            lo, up = s32min & U32, s32max & U32
            if lo <= up:
                if lo > u32min:
                    u32min = lo
                if up < u32max:
                    u32max = up
            elif u32max < lo:
                # the s32 range wraps through the sign boundary and the u32 range overlaps only
                # its non-negative end (or only its negative end, below)
                s32min = u32min - 0x100000000 if u32min >> 31 else u32min
                if up < u32max:
                    u32max = up
            elif up < u32min:
                s32max = u32max - 0x100000000 if u32max >> 31 else u32max
                if lo > u32min:
                    u32min = lo
            # signed and unsigned 64-bit facts
            a = umin - 0x10000000000000000 if umin >> 63 else umin
            b = umax - 0x10000000000000000 if umax >> 63 else umax
            if a <= b:
                if a > smin:
                    smin = a
                if b < smax:
                    smax = b
            lo, up = smin & U64, smax & U64
            if lo <= up:
                if lo > umin:
                    umin = lo
                if up < umax:
                    umax = up
            elif umax < lo:
                # the signed range wraps through the sign boundary and the unsigned range
                # overlaps only its non-negative end
                smin = s64(umin)
                if up < umax:
                    umax = up
            elif up < umin:
                smax = s64(umax)
                if lo > umin:
                    umin = lo
            # 64-bit facts from 32-bit ones
            x = (umin & hi) | u32min
            if x > umin:
                umin = x
            x = (umax & hi) | u32max
            if x < umax:
                umax = x
            x = s64((smin & hi) | u32min)
            if x > smin:
                smin = x
            x = s64((smax & hi) | u32max)
            if x < smax:
                smax = x
            lo, up = s32min & U32, s32max & U32
            if lo <= up:
                x = (umin & hi) | lo
                if x > umin:
                    umin = x
                x = (umax & hi) | up
                if x < umax:
                    umax = x
                x = s64((smin & hi) | lo)
                if x > smin:
                    smin = x
                x = s64((smax & hi) | up)
                if x < smax:
                    smax = x
            # a non-negative 32-bit range while the 64-bit one stays within s32 (as after a
            # sign-extending load): the upper half cannot be all ones, so it is all zeros
            if s32min >= 0 and smin >= S32_MIN and smax <= S32_MAX:
                smin = s32min
                smax = s32max
                umin = s32min & U64
                umax = s32max & U64
                # tnum & tnum_range(umin, umax), written out
                chi = umin ^ umax
                rm = U64 if chi >> 63 else (1 << chi.bit_length()) - 1
                m &= rm
                v = (v | (umin & ~rm)) & ~m & U64
            if (smin, smax, umin, umax, s32min, s32max, u32min, u32max) == before:
                break
        # tnum from the ranges (as Linux, from a contradictory range too)
        chi = umin ^ umax
        if chi == 0:
            rv, rm = umin, 0
        elif chi >> 63:
            rv, rm = 0, U64
        else:
            rm = (1 << chi.bit_length()) - 1
            rv = umin & ~rm
        mu = m & rm
        v = (v | rv) & ~mu & U64
        m = mu
        chi = u32min ^ u32max
        if chi == 0:
            rv, rm = u32min, 0
        else:
            rm = (1 << chi.bit_length()) - 1
            rv = u32min & ~rm
        mu = m & U32 & rm
        v32 = ((v & U32) | rv) & ~mu & U32
        v = (v & hi) | v32
        m = (m & hi) | mu
    got = ((v, m), smin, smax, umin, umax, s32min, s32max, u32min, u32max)
    _SYNCED[key] = got
    (r.var, r.smin, r.smax, r.umin, r.umax, r.s32min, r.s32max, r.u32min, r.u32max) = got


_HI32 = ~U32 & U64
_SYNCED: dict = {}
_SYNC_CACHE_MAX = 1 << 16


def new_verification() -> None:
    """Start each verification with an empty cache, so that its time does not depend on
    what was verified before (benchmarks compare single cold verifications)."""
    _SYNCED.clear()


def consistent(r) -> bool:
    """False when the facts contradict each other: no value satisfies them all."""
    return (r.smin <= r.smax and r.umin <= r.umax and r.s32min <= r.s32max
            and r.u32min <= r.u32max and (r.var[0] & r.var[1]) == 0)


def zext32(r) -> None:
    """The register after a 32-bit operation: upper half zero, 64-bit bounds from the 32-bit
    ones (kernel: zext_32_to_64; the signed ones from a non-negative s32 range, else all of
    [0, U32_MAX], left to reg_bounds_sync to narrow)."""
    r.var = tnum.subreg(r.var)
    r.umin, r.umax = r.u32min, r.u32max
    if r.s32min >= 0 and r.s32max >= 0:
        r.smin, r.smax = r.s32min, r.s32max
    else:
        r.smin, r.smax = 0, U32


def truncate(r, size: int) -> None:
    """Zero-extend the low ``size`` bytes (loads, BPF_END to_le, narrow casts; kernel:
    coerce_reg_to_size).  A 4-byte truncation leaves the 32-bit bounds as they were;
    narrower ones start the 32-bit bounds afresh from the 64-bit ones."""
    if size >= 8:
        return
    bits = size * 8
    mask = (1 << bits) - 1
    r.var = tnum.cast(r.var, size)
    if (r.umin >> bits) == (r.umax >> bits):
        lo, hi = r.umin & mask, r.umax & mask
    else:
        lo, hi = 0, mask
    r.umin, r.umax = lo, hi
    r.smin, r.smax = lo, hi
    if size < 4:
        r.u32min, r.u32max = 0, U32
        r.s32min, r.s32max = S32_MIN, S32_MAX
    sync(r)


def _sext(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def sign_extend(r, size: int) -> None:
    """Sign-extend the low ``size`` bytes to 64 bits (BPF_MEMSX loads, movsx; kernel:
    coerce_reg_to_size_sx, as the host's 6.18 behaves).  Where the s32 range fits the narrow
    type the low half is unchanged and the upper half is its sign: the 64-bit range is the
    s32 one.  Otherwise a range is kept only where the 64-bit signed range lies within one
    block of 2**bits values and its ends, sign-extended, have one sign.  Either way the old
    tnum gives way to the range's.  A value that may change loses its link to others."""
    bits = size * 8
    if r.umax >> (bits - 1):
        r.id = 0
    if r.var[1] == 0:
        mark_known(r, _sext(r.var[0], bits))
        return
    if -(1 << (bits - 1)) <= r.s32min and r.s32max < (1 << (bits - 1)):
        lo, hi = r.s32min, r.s32max
        r.var = tnum.range_(lo & U64, hi & U64)
        r.smin, r.smax = lo, hi
        if (lo >= 0) == (hi >= 0):
            r.umin, r.umax = lo & U64, hi & U64
        else:
            r.umin, r.umax = 0, U64
        sync(r)
        return
    lo = hi = None
    if (r.smin >> bits) == (r.smax >> bits):
        a, b = _sext(r.smin, bits), _sext(r.smax, bits)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) != (hi >= 0):
            lo = None
    if lo is None:
        lo, hi, _ = limits(bits)
        r.var = tnum.UNKNOWN
        r.smin, r.smax, r.umin, r.umax = lo, hi, 0, U64
        r.s32min, r.s32max, r.u32min, r.u32max = lo, hi, 0, U32
        return
    r.var = tnum.range_(lo & U64, hi & U64)
    r.smin, r.smax, r.umin, r.umax = lo, hi, lo & U64, hi & U64
    r.s32min, r.s32max, r.u32min, r.u32max = s32(lo), s32(hi), lo & U32, hi & U32


def sign_extend32(r, size: int) -> None:
    """Sign-extend the low ``size`` (1 or 2) bytes to 32 bits, in the 32-bit facts only (the
    caller zero-extends; kernel: coerce_subreg_to_size_sx), by the rules of :func:`sign_extend`
    on the s32 range.  Only a tnum known in all 64 bits counts as a constant."""
    bits = size * 8
    if r.var[1] == 0:
        v = _sext(r.var[0], bits)
        r.var = (v & U64, 0)
        r.s32min = r.s32max = s32(v)
        r.u32min = r.u32max = v & U32
        return
    lo = hi = None
    if ((r.s32min & U32) >> bits) == ((r.s32max & U32) >> bits):
        a, b = _sext(r.s32min, bits), _sext(r.s32max, bits)
        lo, hi = min(a, b), max(a, b)
        if (lo >= 0) != (hi >= 0):
            lo = None
    if lo is None:
        lo, hi, _ = limits(bits)
        r.var = (0, U32)
        r.s32min, r.s32max, r.u32min, r.u32max = lo, hi, 0, U32
        return
    r.var = tnum.subreg(tnum.range_(lo & U64, hi & U64))
    r.s32min, r.s32max, r.u32min, r.u32max = lo, hi, lo & U32, hi & U32


# --- arithmetic on ranges -----------------------------------------------------------------

def add_range(a, b, bits, wrap=True):
    """(smin, smax, umin, umax) of a + b at width ``bits``; a/b are the same 4-tuples.

    ``wrap``: where every sum of the unsigned ranges overflows, the range wraps as a whole
    and stays known (Linux's scalar_min_max_add(); only some overflowing gives up).  Pointer
    arithmetic gives up on any overflow (adjust_ptr_min_max_vals())."""
    smin_l, smax_l, umax_l = limits(bits)
    smin, smax = a[0] + b[0], a[1] + b[1]
    if smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    umin, umax = a[2] + b[2], a[3] + b[3]
    if umax > umax_l:
        if wrap and umin > umax_l:
            umin, umax = umin & umax_l, umax & umax_l
        else:
            umin, umax = 0, umax_l
    return smin, smax, umin, umax


def sub_range(a, b, bits, wrap=True):
    """a - b as :func:`add_range`: a range whose every difference goes below zero wraps as a
    whole (Linux's scalar_min_max_sub())."""
    smin_l, smax_l, umax_l = limits(bits)
    smin, smax = a[0] - b[1], a[1] - b[0]
    if smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    if a[2] < b[3]:
        if wrap and a[3] < b[2]:
            umin, umax = (a[2] - b[3]) & umax_l, (a[3] - b[2]) & umax_l
        else:
            umin, umax = 0, umax_l
    else:
        umin, umax = a[2] - b[3], a[3] - b[2]
    return smin, smax, umin, umax


def mul_range(a, b, bits):
    smin_l, smax_l, umax_l = limits(bits)
    umin, umax = a[2] * b[2], a[3] * b[3]
    if umax > umax_l:
        umin, umax = 0, umax_l
    prods = (a[0] * b[0], a[0] * b[1], a[1] * b[0], a[1] * b[1])
    smin, smax = min(prods), max(prods)
    if smin < smin_l or smax > smax_l:
        smin, smax = smin_l, smax_l
    return smin, smax, umin, umax


def bitwise_range(op, a, b, t, bits):
    """Bounds of and/or/xor at width ``bits`` given the result tnum ``t`` (already that wide)."""
    smin_l, smax_l, umax_l = limits(bits)
    tmin, tmax = t[0], t[0] | t[1]
    if op == "and":
        umin, umax = tmin, min(a[3], b[3], tmax)
    elif op == "or":
        umin, umax = max(a[2], b[2], tmin), tmax
    else:
        umin, umax = tmin, tmax
    if a[0] >= 0 and b[0] >= 0:
        smin, smax = umin, umax
        if smax > smax_l:
            smin, smax = smin_l, smax_l
    elif op == "and" and (a[0] >= 0 or b[0] >= 0):
        smin, smax = 0, min(x[1] for x in (a, b) if x[0] >= 0)
    else:
        smin, smax = smin_l, smax_l
    return smin, smax, umin, umax
