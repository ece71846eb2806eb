"""Internet checksum arithmetic as Linux does it (include/net/checksum.h), and bpf_csum_diff.

Values are the 16/32-bit words as they sit in memory read little-endian, as
the kernel reads them on x86: one's-complement sums do not care about the
byte order as long as everything is read the same way.
"""

from __future__ import annotations

from .common import read

M32 = 0xFFFFFFFF


def csum_add(a: int, b: int) -> int:
    s = (a & M32) + (b & M32)
    return (s + (s >> 32)) & M32


def csum_sub(a: int, b: int) -> int:
    return csum_add(a, ~b & M32)


def csum_fold(c: int) -> int:
    c &= M32
    c = (c & 0xFFFF) + (c >> 16)
    c = (c & 0xFFFF) + (c >> 16)
    return ~c & 0xFFFF


def csum_unfold(s16: int) -> int:
    return s16 & 0xFFFF


def csum16_add(c: int, addend: int) -> int:
    s = (c & 0xFFFF) + (addend & 0xFFFF)
    return (s + (s >> 16)) & 0xFFFF


def csum_replace_by_diff(s16: int, diff: int) -> int:
    return csum_fold(csum_add(diff, ~csum_unfold(s16) & M32))


def csum_replace2(s16: int, old: int, new: int) -> int:
    return ~csum16_add(csum16_add(~s16 & 0xFFFF, ~old & 0xFFFF), new) & 0xFFFF


def csum_replace4(s16: int, old: int, new: int) -> int:
    tmp = csum_sub(~csum_unfold(s16) & M32, old)
    return csum_fold(csum_add(tmp, new))


def csum_partial(data: bytes, seed: int) -> int:
    """x86-64 csum_partial: 32-bit words summed with end-around carry, folded to 32 bits."""
    total = seed & M32
    n4 = len(data) // 4 * 4
    for i in range(0, n4, 4):
        total += int.from_bytes(data[i:i + 4], "little")
    tail = data[n4:]
    if tail:
        total += int.from_bytes(tail.ljust(4, b"\0"), "little")
    while total >> 32:
        total = (total & M32) + (total >> 32)
    return total


def csum_from32to16(c: int) -> int:
    c &= M32
    c = (c & 0xFFFF) + (c >> 16)
    return ((c & 0xFFFF) + (c >> 16)) & 0xFFFF


def csum_diff(vm, r1, r2, r3, r4, r5):
    """bpf_csum_diff(from, from_size, to, to_size, seed).

    As Linux 6.18: the sum of ``to`` (seeded) minus the sum of ``from``, folded to
    16 bits (not inverted) so that every architecture returns the same value;
    any sizes (the verifier bounds the memory).
    """
    from_size, to_size, seed = r2 & M32, r4 & M32, r5 & M32
    old = read(vm, r1, from_size) if from_size else b""
    new = read(vm, r3, to_size) if to_size else b""
    if from_size and to_size:
        ret = csum_sub(csum_partial(new, seed), csum_partial(old, 0))
    elif to_size:
        ret = csum_partial(new, seed)
    elif from_size:
        ret = ~csum_partial(old, ~seed & M32) & M32
    else:
        ret = seed
    return csum_from32to16(ret)


HELPERS = {28: csum_diff}
