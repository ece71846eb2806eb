"""HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH and HASH_OF_MAPS.

Layout: a bucket array (u32 head element index, 0 = empty; the count is the
next power of two >= max_entries as in Linux), a byte per element marking it
in use, a byte per element for the LRU reference bit, then max_entries + 1
preallocated elements (one spare) : [next u32][hash u32][key, 8-aligned]
[value, 8-aligned (per-CPU: one slot per CPU)].  A new element is filled
completely while unreachable, then published with a single 4-byte store of
its index; an existing key's value is rewritten in place under the journal
and the seqlock, so readers see either the old or the new value.

Free elements are taken first from a free list, then from a bump index, so a
fresh map needs no initialisation pass.  Hashing is CRC-32 of the key: stable
across processes, unlike Python's hash().

LRU maps evict with a clock (second-chance) hand over the elements: a
program-side lookup sets the element's reference bit; the hand clears set bits
and evicts the first element whose bit is clear.  User-space lookups do not
set it (as in Linux).
"""

from __future__ import annotations

import errno
import re
import struct
import zlib

from . import spec as S
from .base import MapImpl, check_flags, err

_COUNT, _FREE, _BUMP, _HAND = 0, 1, 2, 3
_NONZERO = re.compile(rb"[^\x00]")
_EHDR = 8


def _layout(spec: S.MapSpec):
    me = S.effective_max_entries(spec)
    nb = 1 << max(0, (me - 1).bit_length())
    nelem = me + 1
    per = S.ncpus() if S.is_percpu(spec.map_type) else 1
    esz = _EHDR + S.round8(spec.key_size) + S.round8(spec.value_size) * per
    flags_sz = S.round8(nelem + 1)
    b_off = 0
    used_off = 4 * nb
    ref_off = used_off + flags_sz
    e_off = ref_off + flags_sz
    return nb, nelem, esz, b_off, used_off, ref_off, e_off, e_off + nelem * esz


class HashMap(MapImpl):
    map_type = S.HASH

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        return S.round8(_layout(spec)[-1])

    def _setup(self) -> None:
        nb, nelem, esz, b, u, r, e, _ = _layout(self._table_spec())
        d = self.doff
        self.nbuckets, self.nelem, self.esz = nb, nelem, esz
        self.mask = nb - 1
        self.b_off, self.used_off, self.ref_off, self.e_off = d + b, d + u, d + r, d + e
        self.b_idx = self.b_off >> 2
        self.k_rel = _EHDR
        self.v_rel = _EHDR + S.round8(self.key_size)
        self.lru = self.spec.map_type in (S.LRU_HASH, S.LRU_PERCPU_HASH)
        # element i (1-based) starts at e_base + i * esz
        self.e_base = self.e_off - esz
        self._setup_fast()

    def _table_spec(self) -> S.MapSpec:
        return self.spec

    def ids(self) -> list[int]:
        """HASH_OF_MAPS: every inner map id held (the object layer's holds)."""
        out = []
        for k in self.keys():
            try:
                out.append(int.from_bytes(self.lookup(k)[:4], "little"))
            except OSError:
                pass
        return out

    # --- lock-free search ---------------------------------------------------------------------
    def _find(self, key: bytes, h: int) -> int:
        """Element index holding key (0 if none); caller validates with the seqlock."""
        w32, view = self.w32, self.view
        i = w32[self.b_idx + (h & self.mask)]
        e_base, esz, ks, nelem = self.e_base, self.esz, self.key_size, self.nelem
        steps = 0
        while i:
            if i > nelem or steps > nelem:
                return -1  # torn by a concurrent writer: the seqlock check will retry
            eo = e_base + i * esz
            if w32[(eo >> 2) + 1] == h and view[eo + 8:eo + 8 + ks] == key:
                return i
            i = w32[eo >> 2]
            steps += 1
        return 0

    def _setup_fast(self) -> None:
        """Bind a lookup closure: locals instead of attribute loads on the hot path."""
        view, w32, w64, si = self.view, self.w32, self.w64, self._seq_i
        b_idx, mask, e_base, esz, nelem = self.b_idx, self.mask, self.e_base, self.esz, self.nelem
        ks = self.key_size
        # one unpack per visited element: (next, hash, key, value)
        pad = self.v_rel - 8 - ks
        rd_elem = struct.Struct(f"<II{ks}s{pad}x{self.user_value_size}s").unpack_from
        wait, slow, crc = self._wait_even, self._lookup_slow, zlib.crc32

        def lookup(key, flags=0):
            if flags or type(key) is not bytes or len(key) != ks:
                return slow(key, flags)
            h = crc(key)
            while True:
                s = w64[si]
                if s & 1:
                    s = wait()
                r = None
                try:
                    i = w32[b_idx + (h & mask)]
                    steps = 0
                    while i and steps <= nelem:
                        nxt, eh, ek, ev = rd_elem(view, e_base + i * esz)
                        if eh == h and ek == key:
                            r = ev
                            break
                        i = nxt
                        steps += 1
                except (IndexError, struct.error):
                    pass  # torn by a writer: the sequence check below retries
                if w64[si] == s:
                    if r is None:
                        raise err(errno.ENOENT, "no such key")
                    return r
        self.lookup = lookup

    def _lookup_slow(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        key = self._key(key)
        if flags & ~S.F_LOCK:
            raise err(errno.EINVAL, f"invalid lookup flags {flags:#x}")
        self._no_lock_flag(flags)
        return self.lookup(key, 0)

    def value_address(self, key, cpu: int = 0) -> int | None:
        if self.percpu and not 0 <= cpu < self.ncpus:
            return None
        key = self._key(key)
        h = zlib.crc32(key)
        while True:
            s = self.seq()
            i = self._find(key, h)
            if not self.retry(s):
                break
        if i <= 0:
            return None
        if self.lru:
            self.view[self.ref_off + i] = 1
        return self.base + self.e_base + i * self.esz + self.v_rel + (cpu * self.vsz8 if self.percpu else 0)

    # --- writers (lock held) ------------------------------------------------------------------
    def _alloc(self) -> int:
        f = self.field(_FREE)
        if f:
            self.set_field(_FREE, self.w32[(self.e_base + f * self.esz) >> 2])
            return f
        b = self.field(_BUMP)
        if b < self.nelem:
            self.set_field(_BUMP, b + 1)
            return b + 1
        return 0

    def _free(self, i: int) -> None:
        self.put32(self.e_base + i * self.esz, self.field(_FREE))
        self.set_field(_FREE, i)
        self.put(self.used_off + i, b"\0")

    def _unlink(self, i: int, h: int) -> None:
        """Remove element i from its bucket chain (single 4-byte store readers may observe)."""
        w32 = self.w32
        slot = self.b_off + 4 * (h & self.mask)
        j = w32[slot >> 2]
        while j and j != i:
            slot = self.e_base + j * self.esz
            j = w32[slot >> 2]
        if j != i:
            raise RuntimeError("pybpf hash map: element not on its chain (corrupt storage)")
        self.put32(slot, w32[(self.e_base + i * self.esz) >> 2])

    def _evict(self) -> None:
        """LRU: free one element chosen by the clock hand."""
        view, w32 = self.view, self.w32
        hand = self.field(_HAND)
        nelem = self.nelem
        for _ in range(2 * nelem + 2):
            hand = hand % nelem + 1
            if view[self.used_off + hand]:
                if view[self.ref_off + hand]:
                    view[self.ref_off + hand] = 0
                    continue
                eo = self.e_base + hand * self.esz
                self._unlink(hand, w32[(eo >> 2) + 1])
                self._free(hand)
                self.set_field(_COUNT, self.field(_COUNT) - 1)
                self.set_field(_HAND, hand)
                return
        raise RuntimeError("pybpf LRU map: nothing to evict (corrupt storage)")

    def _write_elem(self, i: int, key: bytes, h: int, value: bytes, cpu: int | None) -> None:
        eo = self.e_base + i * self.esz
        view = self.view
        self.w32[(eo >> 2) + 1] = h
        view[eo + 8:eo + 8 + len(key)] = key
        vo = eo + self.v_rel
        if cpu is None:
            view[vo:vo + len(value)] = value
        else:
            # a program's update sets its CPU's value and zeroes the others (as Linux)
            view[vo:vo + self.vsz8 * self.ncpus] = bytes(self.vsz8 * self.ncpus)
            o = vo + cpu * self.vsz8
            view[o:o + len(value)] = value

    def _update_locked(self, key: bytes, h: int, value: bytes, flags: int, cpu) -> None:
        old = self._find(key, h)
        if old < 0:
            raise RuntimeError("pybpf hash map: corrupt chain")
        if old and flags == S.NOEXIST:
            raise err(errno.EEXIST, "key already exists (BPF_NOEXIST)")
        if not old and flags == S.EXIST:
            raise err(errno.ENOENT, "no such key (BPF_EXIST)")
        if old:
            # In place: readers retry on the sequence counter, and the journal restores
            # the old bytes if we die, so they never see a torn value.
            o = self.e_base + old * self.esz + self.v_rel
            if cpu is not None:
                o += cpu * self.vsz8  # a program updates its own CPU's slot (as Linux)
            self.put(o, value)
            return
        count = self.field(_COUNT)
        full = count >= self.max_entries
        if full and not self.lru:
            raise err(errno.E2BIG, f"map is full ({self.max_entries} entries)")
        # Take and fill the new element BEFORE an LRU eviction.  _write_elem writes hash,
        # key and value unjournalled, which is only safe on an element that is unreachable
        # in the state a rollback restores.  An element evicted in this same update is
        # reachable in that state (the journal re-links it), so reusing it would leave a
        # writer killed after _write_elem with the victim re-linked in its old bucket but
        # holding the new key, hash and value: "wrong hash or bucket", the victim's key
        # lost and the new key unfindable.  With max_entries + 1 elements there is always
        # one spare while count <= max_entries, so the spare is taken first and the victim
        # goes to the free list to become the next spare.
        new = self._alloc()
        if not new:
            raise RuntimeError("pybpf hash map: no free element (corrupt storage)")
        self._write_elem(new, key, h, value, cpu)
        if full:
            self._evict()  # new is not marked in use yet: the clock hand cannot pick it
            count -= 1
        eo_new = self.e_base + new * self.esz
        self.put(self.used_off + new, b"\1")
        if self.lru:
            self.view[self.ref_off + new] = 0
        slot = self.b_off + 4 * (h & self.mask)
        self.put32(eo_new, self.w32[slot >> 2])
        self.put32(slot, new)  # publish the fully written element
        self.set_field(_COUNT, count + 1)

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        key = self._key(key)
        value = self._value(value)
        if flags & ~S.F_LOCK > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        self._no_lock_flag(flags)
        h = zlib.crc32(key)
        with self:
            self._update_locked(key, h, value, flags, None)

    def update_from_program(self, key, value, flags: int = 0, cpu: int = 0) -> None:
        flags = check_flags(flags)
        key = self._key(key)
        if flags > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        value = self._prog_value(value)
        if self.percpu and not 0 <= cpu < self.ncpus:
            raise err(errno.EINVAL, f"cpu {cpu} out of range")
        h = zlib.crc32(key)
        with self:
            self._update_locked(key, h, value, flags, cpu if self.percpu else None)

    def _delete_locked(self, key: bytes, h: int) -> bytes:
        i = self._find(key, h)
        if i <= 0:
            raise err(errno.ENOENT, "no such key")
        vo = self.e_base + i * self.esz + self.v_rel
        value = self.view[vo:vo + self.user_value_size].tobytes()
        self._unlink(i, h)
        self._free(i)
        self.set_field(_COUNT, self.field(_COUNT) - 1)
        return value

    def delete(self, key) -> None:
        key = self._key(key)
        h = zlib.crc32(key)
        with self:
            self._delete_locked(key, h)

    def lookup_and_delete(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        if key is None:
            raise err(errno.EINVAL, "lookup_and_delete on a hash map needs a key")
        key = self._key(key)
        if flags & ~S.F_LOCK:
            raise err(errno.EINVAL, f"invalid flags {flags:#x}")
        self._no_lock_flag(flags)
        h = zlib.crc32(key)
        with self:
            return self._delete_locked(key, h)

    def get_next_key(self, key) -> bytes:
        if key is not None:
            key = self._key(key)
            h = zlib.crc32(key)
        w32, view = self.w32, self.view
        ks = self.key_size
        while True:
            s = self.seq()
            r = None
            start = 0
            if key is not None:
                i = self._find(key, h)
                if i > 0:
                    nxt = w32[(self.e_base + i * self.esz) >> 2]
                    start = (h & self.mask) + 1
                    if 0 < nxt <= self.nelem:
                        r = nxt
            if r is None:
                m = _NONZERO.search(view, self.b_off + 4 * start, self.b_off + 4 * self.nbuckets)
                if m is not None:
                    r = w32[self.b_idx + (m.start() - self.b_off) // 4]
            if r is not None and 0 < r <= self.nelem:
                eo = self.e_base + r * self.esz + 8
                out = view[eo:eo + ks].tobytes()
            if not self.retry(s):
                break
        if r is None:
            raise err(errno.ENOENT, "no next key")
        return out

    def __len__(self) -> int:
        return self.field(_COUNT)

    def _check_locked(self) -> list[str]:
        p = []
        w32, view = self.w32, self.view
        seen = set()
        keys = set()
        for b in range(self.nbuckets):
            i = w32[self.b_idx + b]
            steps = 0
            while i:
                if i > self.nelem or i in seen:
                    p.append(f"bucket {b}: bad or repeated element {i}")
                    break
                seen.add(i)
                eo = self.e_base + i * self.esz
                h = w32[(eo >> 2) + 1]
                k = view[eo + 8:eo + 8 + self.key_size].tobytes()
                if zlib.crc32(k) != h or h & self.mask != b:
                    p.append(f"element {i} has a wrong hash or bucket")
                if k in keys:
                    p.append(f"key {k.hex()} present twice")
                keys.add(k)
                if not view[self.used_off + i]:
                    p.append(f"element {i} reachable but marked free")
                i = w32[eo >> 2]
                steps += 1
        count = self.field(_COUNT)
        if count != len(seen):
            p.append(f"count {count} but {len(seen)} reachable elements")
        free = set()
        f = self.field(_FREE)
        while f:
            if f > self.nelem or f in free or f in seen:
                p.append(f"free list corrupt at {f}")
                break
            free.add(f)
            f = w32[(self.e_base + f * self.esz) >> 2]
        bump = self.field(_BUMP)
        if any(i > bump for i in free | seen):
            p.append("element beyond the bump index in use")
        if len(free) + len(seen) != bump:
            p.append(f"leak: {bump} elements handed out, {len(seen)} live + {len(free)} free")
        return p
