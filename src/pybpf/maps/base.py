"""MapImpl: the process-local handle every map type derives from.

Methods mirror the bpf() user-space commands and raise OSError with the errno
Linux gives; a type that lacks an operation answers as Linux does for it.
"""

from __future__ import annotations

import errno

from . import spec as S
from .layout import Storage, read_spec


def err(code: int, msg: str) -> OSError:
    return OSError(code, msg)


def check_flags(flags) -> int:
    if type(flags) is not int:
        if isinstance(flags, int):  # bool, IntFlag
            return int(flags)
        raise err(errno.EINVAL, f"flags must be an integer, not {type(flags).__name__}")
    return flags


def as_bytes(x, what: str) -> bytes:
    """bytes from a bytes-like argument; anything else is EINVAL, never a TypeError."""
    if type(x) is bytes:
        return x
    if isinstance(x, (bytes, bytearray, memoryview)):
        return bytes(x)
    raise err(errno.EINVAL, f"{what} must be bytes, not {type(x).__name__}")


class MapImpl(Storage):
    map_type = 0

    def __init__(self, view: memoryview, base_addr: int, spec: S.MapSpec | None = None):
        super().__init__(view, base_addr)
        self.spec = spec if spec is not None else read_spec(self.view)
        sp = self.spec
        self.key_size = sp.key_size
        self.value_size = sp.value_size
        self.max_entries = S.effective_max_entries(sp)
        self.map_flags = sp.map_flags
        self.ncpus = S.ncpus()
        self.percpu = S.is_percpu(sp.map_type)
        self.vsz8 = S.round8(sp.value_size)
        self.user_value_size = S.user_value_size(sp)
        self._setup()

    # Subclasses: data_size(spec) (classmethod), init(view, spec) (classmethod), _setup().
    @classmethod
    def data_size(cls, spec: S.MapSpec) -> int:
        raise NotImplementedError

    @classmethod
    def init_data(cls, view: memoryview, data_off: int, spec: S.MapSpec) -> None:
        """Fresh storage is all zeroes; types that need more override this."""

    def _setup(self) -> None:
        pass

    @property
    def name(self) -> str:
        return S.type_name(self.spec.map_type)

    def close(self) -> None:
        self.release_views()

    # --- argument checks shared by the commands -------------------------------------------
    def _key(self, key) -> bytes:
        key = as_bytes(key, "key")
        if len(key) != self.key_size:
            raise err(errno.EINVAL, f"key of {len(key)} bytes, {self.name} map has key_size "
                      f"{self.key_size}")
        return key

    def _value(self, value) -> bytes:
        value = as_bytes(value, "value")
        if len(value) != self.user_value_size:
            what = " (per-CPU: round_up(value_size, 8) * ncpus)" if self.percpu else ""
            raise err(errno.EINVAL, f"value of {len(value)} bytes, {self.name} map expects "
                      f"{self.user_value_size}{what}")
        return value

    def _prog_value(self, value) -> bytes:
        """A program's value: one CPU's worth (value_size bytes; extra bytes ignored)."""
        value = as_bytes(value, "value")
        if len(value) < self.value_size:
            raise err(errno.EINVAL, f"value of {len(value)} bytes, map has value_size {self.value_size}")
        return value[:self.value_size]

    def _no_lock_flag(self, flags: int) -> None:
        if flags & S.F_LOCK:
            raise err(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the map value (BTF)")

    # --- user-space commands: defaults are Linux's answers for types lacking them ---------
    def lookup(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        raise err(S.ENOTSUPP, f"lookup not supported on {self.name} maps")

    def update(self, key, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        raise err(S.ENOTSUPP, f"update not supported on {self.name} maps")

    def delete(self, key) -> None:
        raise err(S.ENOTSUPP, f"delete not supported on {self.name} maps")

    def get_next_key(self, key) -> bytes:
        raise err(S.ENOTSUPP, f"get_next_key not supported on {self.name} maps")

    def lookup_and_delete(self, key, flags: int = 0) -> bytes:
        flags = check_flags(flags)
        raise err(S.ENOTSUPP, f"lookup_and_delete not supported on {self.name} maps")

    # --- program-side entry points ---------------------------------------------------------
    def value_address(self, key, cpu: int = 0) -> int | None:
        return None

    def update_from_program(self, key, value, flags: int = 0, cpu: int = 0) -> None:
        flags = check_flags(flags)
        raise err(errno.EINVAL, f"update not supported from programs on {self.name} maps")

    def delete_from_program(self, key) -> None:
        self.delete(key)

    def push(self, value, flags: int = 0) -> None:
        flags = check_flags(flags)
        raise err(errno.EINVAL, f"push not supported on {self.name} maps")

    def pop(self) -> bytes:
        raise err(errno.EINVAL, f"pop not supported on {self.name} maps")

    def peek(self, value=None) -> bytes:
        raise err(errno.EINVAL, f"peek not supported on {self.name} maps")

    def keys(self):
        """All keys, in get_next_key order (a convenience for tools and tests)."""
        k = None
        seen = 0
        while True:
            try:
                k = self.get_next_key(k)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return
                raise
            yield k
            seen += 1
            if seen > self.max_entries + 1:
                return

    def check(self) -> list[str]:
        """Consistency check of the whole storage (after taking over from a dead writer)."""
        self.acquire()
        try:
            return self.check_header() + self._check_locked()
        finally:
            self.release()

    def _check_locked(self) -> list[str]:
        return []
