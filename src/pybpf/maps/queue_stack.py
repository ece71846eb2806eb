"""QUEUE (FIFO) and STACK (LIFO): a ring of max_entries + 1 value slots, as Linux.

From user space, LOOKUP is peek, UPDATE is push and LOOKUP_AND_DELETE is pop
(the key is NULL: key_size is 0).  A push into a full map fails with E2BIG
unless BPF_EXIST is given, which overwrites the oldest element.
"""

from __future__ import annotations

import errno

from . import spec as S
from .base import MapImpl, as_bytes, check_flags, err

_HEAD, _TAIL = 0, 1


class _QueueStack(MapImpl):
    lifo = False

    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        return S.round8(spec.value_size) * (spec.max_entries + 1)

    def _setup(self) -> None:
        self.size = self.max_entries + 1

    def _slot(self, i: int) -> int:
        return self.doff + i * self.vsz8

    def _no_key(self, key) -> None:
        if key is not None and (not isinstance(key, (bytes, bytearray, memoryview)) or len(key)):
            raise err(errno.EINVAL, f"{self.name} maps have no key (key_size 0)")

    def _peek_index(self, head: int, tail: int) -> int:
        if self.lifo:
            return (head - 1) % self.size
        return tail

    # --- program and user-space operations -----------------------------------------------------
    def push(self, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        if flags & S.NOEXIST or flags > S.EXIST:
            raise err(errno.EINVAL, f"invalid push flags {flags:#x}")
        value = as_bytes(value, "value")
        if len(value) != self.value_size:
            raise err(errno.EINVAL, f"value of {len(value)} bytes, map has value_size {self.value_size}")
        with self:
            head, tail = self.field(_HEAD), self.field(_TAIL)
            if (head + 1) % self.size == tail:
                if not flags & S.EXIST:
                    raise err(errno.E2BIG, f"{self.name} is full ({self.max_entries} elements)")
                tail = (tail + 1) % self.size  # overwrite the oldest element
                self.set_field(_TAIL, tail)
            o = self._slot(head)
            self.view[o:o + len(value)] = value  # a free slot: unreachable until head moves
            self.set_field(_HEAD, (head + 1) % self.size)

    def peek(self, value=None) -> bytes:
        while True:
            s = self.seq()
            head, tail = self.field(_HEAD), self.field(_TAIL)
            r = None
            if head != tail and head < self.size and tail < self.size:
                o = self._slot(self._peek_index(head, tail))
                r = self.view[o:o + self.value_size].tobytes()
            if not self.retry(s):
                break
        if r is None:
            raise err(errno.ENOENT, f"{self.name} is empty")
        return r

    def pop(self) -> bytes:
        with self:
            head, tail = self.field(_HEAD), self.field(_TAIL)
            if head == tail:
                raise err(errno.ENOENT, f"{self.name} is empty")
            i = self._peek_index(head, tail)
            o = self._slot(i)
            r = self.view[o:o + self.value_size].tobytes()
            if self.lifo:
                self.set_field(_HEAD, i)
            else:
                self.set_field(_TAIL, (tail + 1) % self.size)
            return r

    def lookup(self, key=None, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        self._no_key(key)
        if flags & ~S.F_LOCK:
            raise err(errno.EINVAL, f"invalid lookup flags {flags:#x}")
        self._no_lock_flag(flags)
        return self.peek()

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        self._no_key(key)
        self._no_lock_flag(flags)
        self.push(value, flags)

    def lookup_and_delete(self, key=None, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        self._no_key(key)
        if flags:
            raise err(errno.EINVAL, f"{self.name} pop takes no flags ({flags:#x})")
        return self.pop()

    def delete(self, key) -> None:
        raise err(errno.EINVAL, f"{self.name} elements cannot be deleted by key")

    def get_next_key(self, key) -> bytes:
        raise err(errno.EINVAL, f"{self.name} maps have no keys to iterate")

    def keys(self):
        return iter(())

    def __len__(self) -> int:
        return (self.field(_HEAD) - self.field(_TAIL)) % self.size

    def _check_locked(self) -> list[str]:
        head, tail = self.field(_HEAD), self.field(_TAIL)
        if head >= self.size or tail >= self.size:
            return [f"head {head} / tail {tail} outside the ring of {self.size}"]
        return []


class QueueMap(_QueueStack):
    map_type = S.QUEUE


class StackMap(_QueueStack):
    map_type = S.STACK
    lifo = True
