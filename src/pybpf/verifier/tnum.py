"""Tristate numbers: 64-bit values whose bits are each 0, 1 or unknown.

A tnum is the pair ``(value, mask)``: bits set in ``mask`` are unknown, the
others equal the bits of ``value`` (``value & mask == 0`` always).  Plain tuples
keep them cheap to copy and compare, which matters because the verifier copies
register states at every branch.
"""

from __future__ import annotations

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

Tnum = tuple  # (value, mask)

UNKNOWN: Tnum = (0, U64)


def const(v: int) -> Tnum:
    return (v & U64, 0)


def is_const(t: Tnum) -> bool:
    return t[1] == 0


def is_unknown(t: Tnum) -> bool:
    return t[1] == U64


def range_(lo: int, hi: int) -> Tnum:
    """The smallest tnum holding every value of the unsigned range [lo, hi]."""
    chi = lo ^ hi
    if chi == 0:
        return (lo, 0)
    bits = chi.bit_length()
    if bits > 63:
        return UNKNOWN
    delta = (1 << bits) - 1
    return (lo & ~delta & U64, delta)


def add(a: Tnum, b: Tnum) -> Tnum:
    sm = (a[1] + b[1]) & U64
    sv = (a[0] + b[0]) & U64
    sigma = (sm + sv) & U64
    chi = sigma ^ sv
    mu = chi | a[1] | b[1]
    return (sv & ~mu & U64, mu)


def sub(a: Tnum, b: Tnum) -> Tnum:
    dv = (a[0] - b[0]) & U64
    alpha = (dv + a[1]) & U64
    beta = (dv - b[1]) & U64
    chi = alpha ^ beta
    mu = chi | a[1] | b[1]
    return (dv & ~mu & U64, mu)


def and_(a: Tnum, b: Tnum) -> Tnum:
    alpha = a[0] | a[1]
    beta = b[0] | b[1]
    v = a[0] & b[0]
    return (v, alpha & beta & ~v & U64)


def or_(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] | b[0]
    mu = a[1] | b[1]
    return (v, mu & ~v & U64)


def xor(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] ^ b[0]
    mu = a[1] | b[1]
    return (v & ~mu & U64, mu)


def mul(a: Tnum, b: Tnum) -> Tnum:
    # Long multiplication, one bit of ``a`` at a time (kernel: tnum_mul, Linux 6.17+): a known
    # 1 bit adds ``b`` to the accumulator, an unknown bit gives the union of the accumulator
    # with and without ``b`` added.  The tnum additions are inlined: this loop runs up to 64
    # times per multiplication.
    av, am = a
    bv, bm = b
    if not am and not bm:
        return ((av * bv) & U64, 0)
    cv, cm = 0, 0
    # Adding (0, 0) leaves a tnum unchanged, so the loop ends once ``b`` is shifted out.
    while (av or am) and (bv or bm):
        if av & 1 or am & 1:
            # (sv', sm') = add((cv, cm), (bv, bm))
            sm = (cm + bm) & U64
            sv = (cv + bv) & U64
            mu = (((sm + sv) & U64) ^ sv) | cm | bm
            sv &= ~mu & U64
            if av & 1:
                cv, cm = sv, mu
            else:
                # union of (cv, cm) and (sv, mu)
                mu = (cv ^ sv) | cm | mu
                cv, cm = cv & sv & ~mu & U64, mu
        av >>= 1
        am >>= 1
        bv = (bv << 1) & U64
        bm = (bm << 1) & U64
    return (cv, cm)


def lshift(a: Tnum, s: int) -> Tnum:
    return ((a[0] << s) & U64, (a[1] << s) & U64)


def rshift(a: Tnum, s: int) -> Tnum:
    return (a[0] >> s, a[1] >> s)


def arshift(a: Tnum, s: int, bits: int = 64) -> Tnum:
    m = (1 << bits) - 1
    def sar(x: int) -> int:
        x &= m
        if x >> (bits - 1):
            x -= 1 << bits
        return (x >> s) & m
    return (sar(a[0]), sar(a[1]))


def step(a: Tnum, z: int) -> int:
    """The smallest value of ``a`` above ``z`` (kernel: tnum_step): for ``z`` below the
    smallest value, that value; for ``z`` at or above the largest, the largest."""
    v, m = a
    tmax = v | m
    if z >= tmax:
        return tmax
    if z < v:
        return v
    x = z + 1               # (at most tmax: some value of ``a`` is >= x)
    diff = (x ^ v) & ~m
    if not diff:
        return x
    k = diff.bit_length()
    low = (1 << k) - 1
    if v >> (k - 1) & 1:
        # x has a 0 where every value has a 1: x's upper bits, then the smallest lower ones
        return (x & ~low) | (v & low)
    # x has a 1 where every value has a 0: the bits above must grow to their next value
    mh = m >> k
    up = (((x >> k) | ~mh) + 1) & mh
    return ((up | (v >> k)) << k) | (v & low)


def intersect(a: Tnum, b: Tnum) -> Tnum:
    v = a[0] | b[0]
    mu = a[1] & b[1]
    return (v & ~mu & U64, mu)


def cast(a: Tnum, size: int) -> Tnum:
    """Truncate to ``size`` bytes (zero extension)."""
    m = (1 << (size * 8)) - 1
    return (a[0] & m, a[1] & m)


def subreg(a: Tnum) -> Tnum:
    return (a[0] & U32, a[1] & U32)


def clear_subreg(a: Tnum) -> Tnum:
    return (a[0] & ~U32 & U64, a[1] & ~U32 & U64)


def with_subreg(a: Tnum, sub32: Tnum) -> Tnum:
    hi = clear_subreg(a)
    return (hi[0] | (sub32[0] & U32), hi[1] | (sub32[1] & U32))


def is_aligned(a: Tnum, size: int) -> bool:
    if not size:
        return True
    return ((a[0] | a[1]) & (size - 1)) == 0


def contains(a: Tnum, b: Tnum) -> bool:
    """True when every value of ``b`` is a value of ``a`` (kernel: tnum_in)."""
    if b[1] & ~a[1]:
        return False
    return (b[0] & ~a[1] & U64) == a[0]


def umin(a: Tnum) -> int:
    return a[0]


def umax(a: Tnum) -> int:
    return a[0] | a[1]


def fmt(a: Tnum) -> str:
    return f"({a[0]:#x}; {a[1]:#x})"
