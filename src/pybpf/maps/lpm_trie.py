"""LPM_TRIE: longest-prefix match over keys {u32 prefixlen; u8 data[]} (data in network order).

Entries live in the hash table engine keyed by the prefix itself (prefixlen +
data with the bits past prefixlen cleared); the element value holds the key as
given (Linux keeps those extra bits and returns them from get_next_key) then
the value.  A per-prefix-length entry count lets a lookup probe only the
lengths present, longest first: at most 8 * data_size + 1 probes, each O(1).

get_next_key follows Linux's order, a post-order walk of the binary trie:
more specific prefixes come before the prefixes that contain them, and the 0
branch before the 1 branch.  The sorted order is cached per map version.
"""

from __future__ import annotations

import errno
import zlib

from . import spec as S
from .base import as_bytes, check_flags, err
from .hashtab import HashMap, _layout


def _table(spec: S.MapSpec) -> S.MapSpec:
    # the stored key is padded to 8 bytes so that the value is 8-byte aligned, as
    # Linux aligns it: programs do atomic adds on LPM values
    return S.MapSpec(S.HASH, spec.key_size, S.round8(spec.key_size) + spec.value_size, spec.max_entries)


class LpmTrieMap(HashMap):
    map_type = S.LPM_TRIE

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        max_plen = 8 * (spec.key_size - 4)
        return S.round8(_layout(_table(spec))[-1]) + S.round8(4 * (max_plen + 1))

    def _table_spec(self) -> S.MapSpec:
        return _table(self.spec)

    def _setup_fast(self) -> None:
        pass  # prefix lookups keep the method below

    def _setup(self) -> None:
        super()._setup()
        self.data_size_ = self.key_size - 4
        self.max_plen = 8 * self.data_size_
        self.pc_off = self.doff + S.round8(_layout(_table(self.spec))[-1])
        self.pc_idx = self.pc_off >> 2
        self.lpm_value_size = self.value_size
        # the table's value is the key as given, padding, then the value
        self.kpad = b"\0" * (S.round8(self.key_size) - self.key_size)
        self.user_value_size = S.round8(self.key_size) + self.value_size
        self.v_rel_public = self.v_rel + S.round8(self.key_size)
        bits = self.max_plen
        self._masks = [((1 << p) - 1) << (bits - p) for p in range(bits + 1)]
        self._order_cache = (None, [])

    # --- keys ----------------------------------------------------------------------------------
    def _split(self, key) -> tuple[int, bytes]:
        key = self._key(key)
        return int.from_bytes(key[:4], "little"), key

    def _norm(self, plen: int, key: bytes) -> bytes:
        d = int.from_bytes(key[4:], "big") & self._masks[plen]
        return plen.to_bytes(4, "little") + d.to_bytes(self.data_size_, "big")

    def _lengths(self, upto: int) -> list[int]:
        counts = self.w32[self.pc_idx:self.pc_idx + upto + 1].tolist()
        return [p for p in range(upto, -1, -1) if counts[p]]

    def _match(self, plen: int, key: bytes) -> int:
        """Element of the longest stored prefix matching key's first plen bits (seqlock by caller)."""
        if plen > self.max_plen:
            return 0  # Linux matches nothing for an over-long lookup key
        for p in self._lengths(plen):
            nk = self._norm(p, key)
            i = self._find(nk, zlib.crc32(nk))
            if i:
                return i
        return 0

    # --- user-space commands --------------------------------------------------------------------
    def lookup(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        if flags & ~S.F_LOCK:
            raise err(errno.EINVAL, f"invalid lookup flags {flags:#x}")
        self._no_lock_flag(flags)
        plen, key = self._split(key)
        n = self.lpm_value_size
        while True:
            s = self.seq()
            i = self._match(plen, key)
            if i > 0:
                o = self.e_base + i * self.esz + self.v_rel_public
                r = self.view[o:o + n].tobytes()
            if not self.retry(s):
                break
        if i <= 0:
            raise err(errno.ENOENT, "no prefix matches the key")
        return r

    def value_address(self, key, cpu: int = 0) -> int | None:
        plen, key = self._split(key)
        while True:
            s = self.seq()
            i = self._match(plen, key)
            if not self.retry(s):
                break
        if i <= 0:
            return None
        return self.base + self.e_base + i * self.esz + self.v_rel_public

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        plen, key = self._split(key)
        value = as_bytes(value, "value")
        if len(value) != self.value_size:
            raise err(errno.EINVAL, f"value of {len(value)} bytes, map has value_size {self.value_size}")
        if flags & ~S.F_LOCK > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        self._no_lock_flag(flags)
        if plen > self.max_plen:
            raise err(errno.EINVAL, f"prefixlen {plen} exceeds {self.max_plen}")
        self._update(plen, key, value, flags)

    def update_from_program(self, key, value, flags: int = 0, cpu: int = 0) -> None:
        flags = check_flags(flags)
        plen, key = self._split(key)
        if flags > S.EXIST or plen > self.max_plen:
            raise err(errno.EINVAL, "invalid flags or prefixlen")
        self._update(plen, key, self._prog_value(value), flags)

    def _update(self, plen: int, key: bytes, value: bytes, flags: int) -> None:
        nk = self._norm(plen, key)
        h = zlib.crc32(nk)
        with self:
            existed = self._find(nk, h) > 0
            try:
                self._update_locked(nk, h, key + self.kpad + value, flags, None)
            except OSError as e:
                if e.errno == errno.E2BIG:
                    raise err(errno.ENOSPC, f"lpm_trie is full ({self.max_entries} entries)") from None
                raise
            if not existed:
                o = self.pc_off + 4 * plen
                self.put32(o, self.w32[o >> 2] + 1)

    def delete(self, key) -> None:
        plen, key = self._split(key)
        if plen > self.max_plen:
            raise err(errno.EINVAL, f"prefixlen {plen} exceeds {self.max_plen}")
        nk = self._norm(plen, key)
        h = zlib.crc32(nk)
        with self:
            self._delete_locked(nk, h)
            o = self.pc_off + 4 * plen
            self.put32(o, self.w32[o >> 2] - 1)

    def lookup_and_delete(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        raise err(S.ENOTSUPP, "lookup_and_delete not supported on lpm_trie maps")

    def _order(self) -> list[tuple[str, bytes, bytes]]:
        """Entries in Linux's get_next_key order: (sort key, normalized key, stored key)."""
        while True:
            s = self.seq()
            cached_seq, order = self._order_cache
            if cached_seq == s:
                return order
            entries = []
            for nk, stored in self._all_elements():
                plen = int.from_bytes(nk[:4], "little")
                bits = bin(int.from_bytes(nk[4:], "big") | (1 << self.max_plen))[3:3 + plen]
                entries.append((bits + "2", nk, stored))
            if not self.retry(s):
                entries.sort()
                self._order_cache = (s, entries)
                return entries

    def _all_elements(self):
        w32, view = self.w32, self.view
        ks = self.key_size
        out = []
        for b in range(self.nbuckets):
            i = w32[self.b_idx + b]
            steps = 0
            while i and 0 < i <= self.nelem and steps <= self.nelem:
                eo = self.e_base + i * self.esz
                out.append((view[eo + 8:eo + 8 + ks].tobytes(),
                            view[eo + self.v_rel:eo + self.v_rel + ks].tobytes()))
                i = w32[eo >> 2]
                steps += 1
        return out

    def get_next_key(self, key) -> bytes:
        order = self._order()
        if not order:
            raise err(errno.ENOENT, "lpm_trie is empty")
        if key is None:
            return order[0][2]
        plen, key = self._split(key)
        if plen > self.max_plen:
            return order[0][2]
        nk = self._norm(plen, key)
        for idx, (_, n, _) in enumerate(order):
            if n == nk:
                if idx + 1 == len(order):
                    raise err(errno.ENOENT, "no next key")
                return order[idx + 1][2]
        return order[0][2]

    def keys(self):
        return iter([stored for _, _, stored in self._order()])

    def _check_locked(self) -> list[str]:
        p = super()._check_locked()
        counts = [0] * (self.max_plen + 1)
        for nk, stored in self._all_elements():
            plen = int.from_bytes(nk[:4], "little")
            if plen > self.max_plen or self._norm(plen, stored) != nk:
                p.append(f"entry {stored.hex()} stored under a wrong prefix")
                continue
            counts[plen] += 1
        if counts != self.w32[self.pc_idx:self.pc_idx + self.max_plen + 1].tolist():
            p.append("per-prefix-length counts do not match the entries")
        return p
