"""BLOOM_FILTER: a bit array sized as Linux sizes it, k hashes of the value.

push (user-space UPDATE) sets k bits with atomic ORs, so it needs no lock and
a writer killed midway can only leave extra bits set; peek (user-space LOOKUP,
the value to test is passed in the value buffer) answers 0 if every bit is set
and ENOENT otherwise.  The hash is CRC-32 seeded per function (Linux uses
jhash with a random seed, so the exact bits differ; the false-positive rate
is what matters).
"""

from __future__ import annotations

import errno
import zlib

from ..native import atomics
from . import spec as S
from .base import MapImpl, as_bytes, check_flags, err


def _geometry(spec: S.MapSpec) -> tuple[int, int]:
    """(nr_hashes, bitset_mask) computed as Linux's bloom_map_alloc."""
    k = spec.map_extra & 0xF or 5
    nr_bits = spec.max_entries * k
    if nr_bits > 0xFFFFFFFF or (nr_bits // 5) * 7 > 0xFFFFFFFF or (nr_bits // 5) * 7 > 1 << 31:
        return k, 0xFFFFFFFF
    nr_bits = (nr_bits // 5) * 7
    if nr_bits <= 64:
        nr_bits = 64
    else:
        nr_bits = 1 << (nr_bits - 1).bit_length()
    return k, nr_bits - 1


_M64 = (1 << 64) - 1


class BloomMap(MapImpl):
    map_type = S.BLOOM_FILTER

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        _, mask = _geometry(spec)
        return ((mask + 1 + 63) // 64) * 8

    def _setup(self) -> None:
        self.nr_hashes, self.bit_mask = _geometry(self.spec)
        self._words = self.doff >> 3

    def _bits(self, value: bytes):
        # CRC-32 with different seeds differs only by a constant XOR, so the k
        # positions come from a 64-bit finaliser over (crc, i) instead.
        base = zlib.crc32(value) * 0x9E3779B97F4A7C15
        for i in range(self.nr_hashes):
            x = (base + i * 0xC2B2AE3D27D4EB4F) & _M64
            x ^= x >> 33
            x = (x * 0xFF51AFD7ED558CCD) & _M64
            x ^= x >> 33
            x = (x * 0xC4CEB9FE1A85EC53) & _M64
            x ^= x >> 33
            yield x & self.bit_mask

    def _check_value(self, value) -> bytes:
        value = as_bytes(value, "value")
        if len(value) != self.value_size:
            raise err(errno.EINVAL, f"value of {len(value)} bytes, map has value_size {self.value_size}")
        return value

    def push(self, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        if flags != S.ANY:
            raise err(errno.EINVAL, f"bloom filter push takes only BPF_ANY (flags {flags:#x})")
        value = self._check_value(value)
        base = self.base + self.doff
        for b in self._bits(value):
            atomics.fetch_op("or", base + (b >> 6) * 8, 1 << (b & 63))

    def peek(self, value=None) -> bytes:
        value = self._check_value(value if value is not None else b"")
        w64 = self.w64
        for b in self._bits(value):
            if not (w64[self._words + (b >> 6)] >> (b & 63)) & 1:
                raise err(errno.ENOENT, "value not in the bloom filter")
        return value

    # user space: LOOKUP (value in the value buffer) is peek, UPDATE is push
    def lookup(self, key=None, flags: int = 0, value=None) -> bytes:
        flags = check_flags(flags)
        if flags:
            self._no_lock_flag(flags)
            raise err(errno.EINVAL, f"invalid lookup flags {flags:#x}")
        return self.peek(value)

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        self._no_lock_flag(flags)
        self.push(value, flags)

    def delete(self, key) -> None:
        raise err(errno.EOPNOTSUPP, "bloom filter elements cannot be deleted")

    def get_next_key(self, key) -> bytes:
        raise err(errno.EOPNOTSUPP, "bloom filters cannot be iterated")

    def lookup_and_delete(self, key=None, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        raise err(S.ENOTSUPP, "lookup_and_delete not supported on bloom_filter maps")

    def pop(self) -> bytes:
        raise err(errno.EOPNOTSUPP, "bloom filters have no pop")

    def keys(self):
        return iter(())
