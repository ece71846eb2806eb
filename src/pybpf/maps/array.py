"""ARRAY and PERCPU_ARRAY, and the id arrays PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS.

Values sit at fixed slots of round_up(value_size, 8) bytes (per-CPU: one slot
per possible CPU, consecutive, so the user-space view of an element is one
contiguous slice).  The id arrays keep a u32 object id per slot (0 = empty);
the object layer translates fds to ids and back.
"""

from __future__ import annotations

import errno
import struct

from . import spec as S
from .base import MapImpl, as_bytes, check_flags, err


class ArrayMap(MapImpl):
    map_type = S.ARRAY

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        per = S.ncpus() if spec.map_type == S.PERCPU_ARRAY else 1
        return S.round8(spec.value_size) * per * spec.max_entries

    def _setup(self) -> None:
        self.stride = self.vsz8 * (self.ncpus if self.percpu else 1)
        self._setup_fast()

    def _index(self, key) -> int:
        if type(key) is not bytes or len(key) != 4:
            key = self._key(key)
        return int.from_bytes(key, "little")

    def _setup_fast(self) -> None:
        """Bind a lookup closure: locals instead of attribute loads on the hot path."""
        doff, stride, me = self.doff, self.stride, self.max_entries
        rd = struct.Struct(f"{self.user_value_size}s").unpack_from
        view, w64, si = self.view, self.w64, self._seq_i
        wait, slow = self._wait_even, self._lookup_slow
        fb = int.from_bytes

        def lookup(key, flags=0):
            if flags or type(key) is not bytes or len(key) != 4:
                return slow(key, flags)
            idx = fb(key, "little")
            if idx >= me:
                raise err(errno.ENOENT, f"index {idx} out of range (max_entries {me})")
            if w64[si] & 1:
                return locked_read(idx)
            # As in Linux, a read racing a live writer may see a torn value; a dead
            # writer's half-done update is seen (odd sequence) and rolled back first.
            return rd(view, doff + idx * stride)[0]

        def locked_read(idx):
            o = doff + idx * stride
            while True:
                s = w64[si]
                if s & 1:
                    s = wait()
                r = rd(view, o)[0]
                if w64[si] == s:
                    return r
        self.lookup = lookup

    def _lookup_slow(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        if flags & ~S.F_LOCK:
            raise err(errno.EINVAL, f"invalid lookup flags {flags:#x}")
        self._no_lock_flag(flags)
        return self.lookup(self._key(key), 0)

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        idx = self._index(key)
        value = self._value(value)
        if flags & ~S.F_LOCK > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        self._no_lock_flag(flags)
        if idx >= self.max_entries:
            raise err(errno.E2BIG, f"index {idx} out of range (max_entries {self.max_entries})")
        if flags & S.NOEXIST:
            raise err(errno.EEXIST, "array elements always exist (BPF_NOEXIST)")
        with self:
            self.put(self.doff + idx * self.stride, value)

    def update_from_program(self, key, value, flags: int = 0, cpu: int = 0) -> None:
        flags = check_flags(flags)
        idx = self._index(key)
        if flags > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        if idx >= self.max_entries:
            raise err(errno.E2BIG, f"index {idx} out of range")
        if flags & S.NOEXIST:
            raise err(errno.EEXIST, "array elements always exist (BPF_NOEXIST)")
        value = self._prog_value(value)
        if self.percpu and not 0 <= cpu < self.ncpus:
            raise err(errno.EINVAL, f"cpu {cpu} out of range")
        o = self.doff + idx * self.stride + (cpu * self.vsz8 if self.percpu else 0)
        with self:
            self.put(o, value)

    def delete(self, key) -> None:
        self._index(key)
        raise err(errno.EINVAL, "array elements cannot be deleted")

    def get_next_key(self, key) -> bytes:
        if key is None:
            idx = 0
        else:
            idx = self._index(key)
            idx = 0 if idx >= self.max_entries else idx + 1
        if idx >= self.max_entries:
            raise err(errno.ENOENT, "no next key (last index)")
        return idx.to_bytes(4, "little")

    def value_address(self, key, cpu: int = 0) -> int | None:
        idx = key if isinstance(key, int) else self._index(key)
        if not 0 <= idx < self.max_entries or self.percpu and not 0 <= cpu < self.ncpus:
            return None
        return self.base + self.doff + idx * self.stride + (cpu * self.vsz8 if self.percpu else 0)

    def value_offset(self, idx: int, cpu: int = 0) -> int:
        """Offset of a value inside the storage view (for direct memoryview access)."""
        return self.doff + idx * self.stride + (cpu * self.vsz8 if self.percpu else 0)

    def _check_locked(self) -> list[str]:
        return []


class PercpuArrayMap(ArrayMap):
    map_type = S.PERCPU_ARRAY

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        # per-CPU arrays have no spin-lock values, so any flag above BPF_EXIST is invalid
        if flags > S.EXIST:
            raise err(errno.EINVAL, f"invalid update flags {flags:#x}")
        super().update(key, value, flags)


class IdArrayMap(ArrayMap):
    """PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS: a u32 object id per slot, 0 = empty."""

    map_type = S.PROG_ARRAY

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        return 4 * spec.max_entries

    def _setup(self) -> None:
        self.stride = 4
        self._ids = self.doff >> 2

    def get_id(self, idx: int) -> int:
        """Object id stored at idx (0 if empty or out of range); lock-free."""
        if not 0 <= idx < self.max_entries:
            return 0
        return self.w32[self._ids + idx]

    def lookup(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        idx = self._index(key)
        if self.spec.map_type == S.PERF_EVENT_ARRAY:
            raise err(S.ENOTSUPP, "perf_event_array elements cannot be read from user space")
        v = self.get_id(idx)
        if not v:
            raise err(errno.ENOENT, f"slot {idx} is empty")
        return v.to_bytes(4, "little")

    def check_slot(self, key, flags: int = 0) -> int:
        """The checks Linux makes before it looks at the value's fd: flags, then index."""
        flags = check_flags(flags)
        idx = self._index(key)
        if flags != S.ANY:
            raise err(errno.EINVAL, f"{self.name} updates take only BPF_ANY (flags {flags:#x})")
        if idx >= self.max_entries:
            raise err(errno.E2BIG, f"index {idx} out of range (max_entries {self.max_entries})")
        return idx

    def exchange(self, key, new_id: int, flags: int = 0) -> int:
        """Store an object id (0 clears) and return the id it replaced; errnos as update."""
        idx = self.check_slot(key, flags)
        o = self.doff + 4 * idx
        with self:
            old = self.w32[o >> 2]
            self.put32(o, new_id & 0xFFFFFFFF)
        return old

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        value = as_bytes(value, "value")
        if len(value) != 4:
            raise err(errno.EINVAL, f"value of {len(value)} bytes, {self.name} expects a u32 id")
        self.exchange(key, int.from_bytes(value, "little"), flags)

    def delete(self, key) -> None:
        idx = self._index(key)
        if idx >= self.max_entries:
            raise err(errno.E2BIG, f"index {idx} out of range (max_entries {self.max_entries})")
        o = self.doff + 4 * idx
        with self:
            if not self.w32[o >> 2]:
                raise err(errno.ENOENT, f"slot {idx} is empty")
            self.put32(o, 0)

    def delete_id(self, key) -> int:
        """Clear a slot, returning the id it held (0 if it was empty)."""
        idx = self._index(key)
        if idx >= self.max_entries:
            raise err(errno.E2BIG, f"index {idx} out of range")
        o = self.doff + 4 * idx
        with self:
            old = self.w32[o >> 2]
            if old:
                self.put32(o, 0)
        return old

    def clear_if(self, idx: int, expected: int) -> bool:
        """Empty slot idx if it still holds object id ``expected`` (a perf buffer closing, or
        finding its reader gone, must not remove a newer reader's event); True if cleared."""
        if not 0 <= idx < self.max_entries or not expected:
            return False
        o = self.doff + 4 * idx
        if self.w32[o >> 2] != expected:
            return False
        with self:
            if self.w32[o >> 2] != expected:
                return False
            self.put32(o, 0)
        return True

    def ids(self) -> list[int]:
        """Every non-zero id held (the object layer's holds)."""
        a = self._ids
        return [v for v in self.w32[a:a + self.max_entries] if v]

    def value_address(self, key, cpu: int = 0) -> int | None:
        return None
