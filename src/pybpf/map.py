"""``Map``: a BPF map as a Python mapping, on the same objects ``bpf()`` uses.

Keys and values go in as bytes, ints (little-endian, of the map's size) or
ctypes objects of exactly the map's size; they come out as bytes, or as
``key_type``/``value_type`` (int or a ctypes type) when set.  Per-CPU maps
take and give a list with one value per possible CPU.
"""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Iterator

from . import kobj
from .errors import PybpfError
from .syscall import constants as C
from .syscall import mapops
from .syscall.freeze import check_writable, freeze_fd


class MapError(PybpfError):
    """A map operation refused before reaching the map (bad key/value, closed map)."""


class MapSizeError(MapError, ValueError):
    pass


_FLAG_NAMES = {"any": C.BPF_ANY, "noexist": C.BPF_NOEXIST, "exist": C.BPF_EXIST,
               "lock": C.BPF_F_LOCK}


def _flags(flags) -> int:
    if isinstance(flags, str):
        try:
            return _FLAG_NAMES[flags.lower()]
        except KeyError:
            raise MapError(f"unknown update flag {flags!r} (any, noexist, exist)") from None
    return int(flags)


def map_type_number(map_type) -> int:
    if isinstance(map_type, str):
        name = map_type.lower().removeprefix("bpf_map_type_")
        if name not in C.MAP_TYPES:
            raise MapError(f"unknown map type {map_type!r}; known: {', '.join(sorted(C.MAP_TYPES))}")
        return C.MAP_TYPES[name]
    return int(map_type)


def to_bytes(obj, size: int, what: str) -> bytes:
    """bytes of exactly ``size`` from bytes-like, int or ctypes input (else MapSizeError)."""
    if type(obj) is bytes:
        b = obj
    elif isinstance(obj, int):
        try:
            b = obj.to_bytes(size, "little", signed=obj < 0)
        except OverflowError:
            raise MapSizeError(f"{what}: integer {obj} does not fit in {size} bytes") from None
    elif isinstance(obj, (ctypes._SimpleCData, ctypes.Structure, ctypes.Union, ctypes.Array)):
        b = bytes(memoryview(obj).cast("B")) if ctypes.sizeof(obj) else b""
        b = ctypes.string_at(ctypes.addressof(obj), ctypes.sizeof(obj))
    elif isinstance(obj, (bytearray, memoryview)):
        b = bytes(obj)
    elif isinstance(obj, str):
        raise MapSizeError(f"{what}: got str {obj!r}; pass bytes, an int or a ctypes object")
    else:
        raise MapSizeError(f"{what}: cannot use {type(obj).__name__} (bytes, int or ctypes expected)")
    if len(b) != size:
        raise MapSizeError(f"{what}: expected {size} bytes, got {len(b)}")
    return b


class Map:
    """A map object, owning one fd.  ``Map.create``, ``Map.from_pinned``, ``Map.from_fd``."""

    def __init__(self, fd: int, *, key_type=None, value_type=None, _owned: bool = True):
        obj = mapops.map_from_fd(fd)
        self._fd = fd
        self._obj = kobj.acquire(obj)
        self._owned = _owned
        self.spec = mapops.spec_of(obj)
        self.key_type = key_type
        s = self.spec
        self._ks = s.key_size
        self._percpu = s.map_type in C.PERCPU_TYPES
        self.value_type = value_type
        self._uvs = mapops.user_value_size(s)
        self._slot = (s.value_size + 7) & ~7
        self._vs = s.value_size
        self._fdmap = s.map_type in C.FD_MAP_TYPES
        acc = kobj.fd_access(fd)
        self._can_read = acc != os.O_WRONLY
        self._can_write = acc != os.O_RDONLY
        impl = obj.map_impl()
        if self._fdmap or s.map_type == C.BPF_MAP_TYPE_BLOOM_FILTER:
            self._lookup = lambda k: mapops.lookup(obj, k)
        else:
            self._lookup = impl.lookup
        self._update = (lambda k, v, f: mapops.update(obj, k, v, f)) if self._fdmap else impl.update
        if not self._can_read:
            self._lookup = lambda k: self._check(True)
        if not self._can_write:
            self._update = lambda k, v, f: self._check(False)
        else:
            self._update = _unless_frozen(obj, self._update)

    @property
    def value_type(self):
        """None (bytes), int, or a ctypes type: what lookups return."""
        return self._value_type

    @value_type.setter
    def value_type(self, t) -> None:
        self._value_type = t
        self._plain = not self._percpu and t is None

    # -- construction ------------------------------------------------------------------

    @classmethod
    def create(cls, map_type, key_size: int, value_size: int, max_entries: int, flags: int = 0,
               name: str = "", *, inner_map: "Map | None" = None, map_extra: int = 0,
               key_type=None, value_type=None, btf=None, btf_key_type_id: int = 0,
               btf_value_type_id: int = 0) -> "Map":
        """A new map.  ``btf`` (a BTF object's fd, or anything with ``fileno()``) with
        ``btf_key_type_id`` / ``btf_value_type_id`` describes keys and values, as
        BPF_MAP_CREATE's BTF fields (checked as Linux checks them; the map holds the BTF)."""
        from . import maps
        spec = maps.MapSpec(map_type=map_type_number(map_type), key_size=key_size,
                            value_size=value_size, max_entries=max_entries, map_flags=flags,
                            map_extra=map_extra, name=name)
        btf_fd = 0
        if btf_key_type_id or btf_value_type_id:
            from .syscall.map_btf import check_attr
            check_attr(btf_key_type_id, btf_value_type_id, 0)
            btf_fd = btf.fileno() if hasattr(btf, "fileno") else (-1 if btf is None else int(btf))
        fd = mapops.create_map(spec, inner_map.fd if inner_map is not None else None,
                               btf_fd, btf_key_type_id, btf_value_type_id)
        try:
            return cls(fd, key_type=key_type, value_type=value_type)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_pinned(cls, path: str, *, readonly: bool = False, writeonly: bool = False,
                    key_type=None, value_type=None) -> "Map":
        flags = (C.BPF_F_RDONLY if readonly else 0) | (C.BPF_F_WRONLY if writeonly else 0)
        fd = kobj.get(path, flags)
        try:
            return cls(fd, key_type=key_type, value_type=value_type)
        except OSError as e:
            os.close(fd)
            if e.errno == errno.EINVAL:
                raise MapError(f"{path}: pinned object is not a map") from None
            raise
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = True, **kw) -> "Map":
        """A Map on an existing fd (duplicated unless dup=False, which takes ownership)."""
        own = os.dup(fd) if dup else fd
        try:
            return cls(own, **kw)
        except BaseException:
            if dup:
                os.close(own)
            raise

    @classmethod
    def from_id(cls, map_id: int, **kw) -> "Map":
        obj = kobj.find_by_id(map_id, "map")
        return cls(obj.new_fd(), **kw)

    # -- object ------------------------------------------------------------------------

    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise MapError("map is closed")
        return self._fd

    def fileno(self) -> int:
        return self.fd

    @property
    def id(self) -> int:
        return self._obj.id

    @property
    def name(self) -> str:
        return self._obj.name

    @property
    def type(self) -> int:
        return self.spec.map_type

    @property
    def type_name(self) -> str:
        return C.MAP_TYPE_NAMES.get(self.spec.map_type, str(self.spec.map_type))

    key_size = property(lambda self: self.spec.key_size)
    value_size = property(lambda self: self.spec.value_size)
    max_entries = property(lambda self: self.spec.max_entries)
    flags = property(lambda self: self.spec.map_flags)

    # -- BTF (BPF_MAP_CREATE's btf_fd and type ids) ---------------------------------------

    btf_id = property(lambda self: self._obj.fields.get("btf_id", 0),
                      doc="id of the BTF object describing keys and values (0 without)")
    btf_key_type_id = property(lambda self: self._obj.fields.get("btf_key_type_id", 0))
    btf_value_type_id = property(lambda self: self._obj.fields.get("btf_value_type_id", 0))

    def btf(self):
        """The map's BTF parsed (``pybpf.loader.btf.Btf``), None for a map without BTF."""
        from .syscall.map_btf import held_btf, parsed_btf
        obj = held_btf(self._obj)
        return parsed_btf(obj) if obj is not None else None

    def btf_fd(self) -> int | None:
        """A new fd of the map's BTF object (the caller closes it), None without BTF."""
        from .syscall.map_btf import held_btf
        obj = held_btf(self._obj)
        return obj.new_fd() if obj is not None else None

    def pin(self, path: str) -> None:
        kobj.pin(self.fd, path)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if self._owned:
                os.close(fd)
            kobj.release(self._obj)
            self._lookup = self._update = _closed

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return (f"<Map {self.type_name} id={self.id} name={self.name!r} key={self.key_size} "
                f"value={self.value_size} entries={self.max_entries} {state}>")

    def info(self) -> dict:
        out = {"id": self.id, "type": self.type_name, "name": self.name, "flags": self.flags,
               "bytes_key": self.key_size, "bytes_value": self.value_size,
               "max_entries": self.max_entries}
        if self.btf_id:
            out.update(btf_id=self.btf_id, btf_key_type_id=self.btf_key_type_id,
                       btf_value_type_id=self.btf_value_type_id)
        return out

    # -- conversions -------------------------------------------------------------------

    def _key(self, key) -> bytes:
        if type(key) is int:
            try:
                return key.to_bytes(self._ks, "little", signed=key < 0)
            except OverflowError:
                raise MapSizeError(f"key: integer {key} does not fit in {self._ks} bytes") from None
        if type(key) is bytes and len(key) == self._ks:
            return key
        return to_bytes(key, self._ks, "key")

    def _value(self, value) -> bytes:
        if self._percpu and isinstance(value, (list, tuple)):
            from . import maps
            n = maps.ncpus()
            if len(value) != n:
                raise MapSizeError(f"per-CPU value: expected {n} values (one per possible CPU), "
                                   f"got {len(value)}")
            return b"".join(to_bytes(v, self._vs, f"value for CPU {i}").ljust(self._slot, b"\0")
                            for i, v in enumerate(value))
        if type(value) is bytes and len(value) == self._uvs:
            return value
        if self._percpu and isinstance(value, int):
            raise MapSizeError("per-CPU value: pass a list with one value per possible CPU")
        return to_bytes(value, self._uvs, "value")

    def _out(self, raw: bytes, typ):
        if typ is None:
            return raw
        if typ is int:
            return int.from_bytes(raw, "little")
        return typ.from_buffer_copy(raw)

    def _vout(self, raw: bytes):
        if self._percpu:
            return [self._out(raw[i:i + self._vs], self.value_type)
                    for i in range(0, len(raw), self._slot)]
        return self._out(raw, self.value_type) if self.value_type is not None else raw

    # -- element operations ------------------------------------------------------------

    def _check(self, read: bool) -> None:
        if self._fd < 0:
            raise MapError("map is closed")
        if read and not self._can_read or not read and not self._can_write:
            raise OSError(errno.EPERM, f"{os.strerror(errno.EPERM)}: map fd is "
                          f"{'write' if read else 'read'}-only")

    def lookup(self, key, default=KeyError):
        """The value for key; KeyError (or default) if absent."""
        if not self._can_read:
            self._check(True)
        kb = self._key(key)
        try:
            raw = self._lookup(kb)
        except OSError as e:
            if e.errno == errno.ENOENT:
                if default is KeyError:
                    raise KeyError(key) from None
                return default
            raise
        return self._vout(raw)

    def __getitem__(self, key):
        try:
            raw = self._lookup(key.to_bytes(self._ks, "little") if type(key) is int else self._key(key))
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise
        except OverflowError:           # negative or too large an int: the slow path explains
            raw = self._lookup(self._key(key))
        if self._plain:
            return raw
        return self._vout(raw)

    def get(self, key, default=None):
        return self.lookup(key, default)

    def __setitem__(self, key, value) -> None:
        if not self._can_write:
            self._check(False)
        self._update(self._key(key), self._value(value), 0)

    def update(self, *args, flags=C.BPF_ANY, **kwargs) -> None:
        """``update(key, value, flags=...)`` for one element, or ``update(mapping)``.

        flags: BPF_ANY / BPF_NOEXIST / BPF_EXIST (ints or "any"/"noexist"/"exist").
        """
        if not self._can_write:
            self._check(False)
        f = _flags(flags)
        if len(args) == 2:
            self._update(self._key(args[0]), self._value(args[1]), f)
            return
        if len(args) > 2:
            raise TypeError("update(key, value, flags=...) or update(mapping)")
        items = args[0] if args else {}
        items = items.items() if hasattr(items, "items") else items
        for k, v in items:
            self._update(self._key(k), self._value(v), f)
        for k, v in kwargs.items():
            raise TypeError(f"unexpected keyword {k!r}")

    def __delitem__(self, key) -> None:
        if not self._can_write:
            self._check(False)
        try:
            check_writable(self._obj)
            mapops.delete(self._obj, self._key(key))
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise KeyError(key) from None
            raise

    def delete(self, key) -> None:
        del self[key]

    def __contains__(self, key) -> bool:
        if self.spec.map_type == C.BPF_MAP_TYPE_BLOOM_FILTER:
            try:
                mapops.bloom_contains(self._obj, self._value(key))
                return True
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return False
                raise
        try:
            self._lookup(self._key(key))
            return True
        except OSError as e:
            if e.errno == errno.ENOENT:
                return False
            if e.errno in (errno.E2BIG, errno.EINVAL) and self._ks == 4:   # array index out of range
                return False
            raise
        except MapSizeError:
            return False

    def next_key(self, key=None):
        """get_next_key: the first key for None or a missing key; None after the last."""
        self._check(True)
        try:
            raw = mapops.get_next_key(self._obj, None if key is None else self._key(key))
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return self._out(raw, self.key_type)

    def _raw_keys(self) -> Iterator[bytes]:
        self._check(True)
        key = None
        while True:
            try:
                key = mapops.get_next_key(self._obj, key)
            except OSError as e:
                if e.errno == errno.ENOENT:
                    return
                raise
            yield key

    def __iter__(self) -> Iterator:
        for k in self._raw_keys():
            yield self._out(k, self.key_type)

    def keys(self) -> list:
        return list(self)

    def items(self) -> list:
        out = []
        for k in self._raw_keys():
            try:
                v = self._lookup(k)
            except OSError as e:
                if e.errno == errno.ENOENT:     # deleted meanwhile by someone else
                    continue
                raise
            out.append((self._out(k, self.key_type), self._vout(v)))
        return out

    def values(self) -> list:
        return [v for _, v in self.items()]

    def __len__(self) -> int:
        if self.spec.map_type in (C.BPF_MAP_TYPE_ARRAY, C.BPF_MAP_TYPE_PERCPU_ARRAY):
            self._check(True)
            return self.spec.max_entries        # every index of an array exists
        n = 0
        for _ in self._raw_keys():
            n += 1
        return n

    def clear(self) -> None:
        check_writable(self._obj)
        for k in list(self._raw_keys()):
            try:
                mapops.delete(self._obj, k)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EINVAL):
                    raise

    def freeze(self) -> None:
        """BPF_MAP_FREEZE: from now on user space (every fd, every process) cannot change the map.

        EPERM on a read-only fd or if already frozen (as Linux); programs still write to it
        unless it was created with BPF_F_RDONLY_PROG.
        """
        self._check(False)
        freeze_fd(self.fd)

    @property
    def frozen(self) -> bool:
        from .syscall.freeze import is_frozen
        return is_frozen(self._obj)

    # -- queue / stack / bloom -----------------------------------------------------------

    def push(self, value, flags=C.BPF_ANY) -> None:
        """Queue/stack push (BPF_EXIST overwrites the oldest when full); bloom filter add."""
        self._check(False)
        self._update(b"", self._value(value), _flags(flags))

    def pop(self, key=None, *default):
        """Queue/stack pop (no key), or lookup-and-delete of key in a hash map."""
        self._check(False)
        try:
            check_writable(self._obj)
            raw = mapops.lookup_and_delete(self._obj, None if key is None else self._key(key))
        except OSError as e:
            if e.errno == errno.ENOENT and default:
                return default[0]
            if e.errno == errno.ENOENT:
                raise KeyError(key if key is not None else "pop from an empty map") from None
            raise
        return self._vout(raw)

    def peek(self):
        self._check(True)
        try:
            return self._vout(self._lookup(b""))
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise KeyError("peek at an empty map") from None
            raise


    def consume(self):
        """Ring buffer: iterate over the records submitted so far (each as bytes), consuming them."""
        self._check(True)
        if self.spec.map_type != C.BPF_MAP_TYPE_RINGBUF:
            raise MapError(f"consume() is for ringbuf maps, not {self.type_name}")
        return self._obj.map_impl().consume()


def _unless_frozen(obj, update):
    """update, refused with EPERM once the map is frozen (by any process: the flag is shared)."""
    from .maps.layout import OFF_FROZEN
    # through the storage handle's own view (which it releases on close): a view of our own
    # would keep the mapping, and so the map, alive from any traceback through here
    impl = obj.map_impl()
    i = OFF_FROZEN // 4

    def guarded(k, v, f):
        if impl.w32[i]:
            check_writable(obj)
        return update(k, v, f)
    return guarded


def _closed(*_a):
    raise MapError("map is closed")
