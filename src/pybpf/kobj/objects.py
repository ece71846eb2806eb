"""BPF objects: one unnamed shared file per object, its fd is the object's fd.

An object is created with O_TMPFILE in the store directory, so the kernel's
own inode reference counting gives Linux's lifetime rules for free: every fd
(in any process, after dup, fork or SCM_RIGHTS), every pin (hard link), every
mmap and every hold keeps it; when the last one goes, even by ``kill -9``, the
kernel frees the storage.

Bytes [0, 4096) hold the header below; the payload (map storage, program
instructions) follows.  Each process keeps one handle per object, keyed by
(st_dev, st_ino), holding its own fd and mmap; handles no fd of the process
refers to any more are dropped by :func:`sweep` so that closing an fd really
releases the object.
"""

from __future__ import annotations

import ctypes
import fcntl
import errno
import json
import mmap
import os
import stat
import struct
import threading
import time
import weakref

from . import fs

HEADER_SIZE = 4096
MAGIC = b"PYBPFOBJ"
VERSION = 1
KINDS = {"map": 1, "prog": 2, "btf": 3, "perf_event": 4}
KIND_NAMES = {v: k for k, v in KINDS.items()}
OBJ_NAME_LEN = 16

# magic, version, kind, id, uid, pid, ctime_ns, name[16], payload_size, json_len
_FIXED = struct.Struct("<8sIIIIIQ16sQI")
_JSON_AT = 128
_JSON_MAX = HEADER_SIZE - _JSON_AT


def _err(code: int, what: str = "") -> OSError:
    return OSError(code, os.strerror(code) + (f": {what}" if what else ""))


# -- ids ---------------------------------------------------------------------------

_ids_lock = threading.Lock()
_ids_addrs: dict[str, int] = {}   # store dir -> address of its shared id counter
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)


def _map_counter(path: str) -> int:
    # libc's mmap rather than Python's: mmap.mmap keeps a dup of the fd open for
    # its whole life, and this mapping lives as long as the process
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            os.fchmod(fd, 0o666)    # every user of this root allocates ids
        except PermissionError:
            pass
        if os.fstat(fd).st_size < 8:
            os.ftruncate(fd, 4096)
        addr = _libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e), path)
        return addr
    finally:
        os.close(fd)


def _next_id() -> int:
    """A system-wide id (shared by every process using this BPF fs root)."""
    from ..native import atomics

    store = fs.store_dir()
    with _ids_lock:
        addr = _ids_addrs.get(store)
        if addr is None:
            addr = _ids_addrs[store] = _map_counter(os.path.join(store, "ids"))
    while True:
        new = atomics.fetch_op("add", addr, 1, 32) + 1
        if 0 < new < 0x7FFFFFFF:
            return new
        atomics.cmpxchg(addr, new, 0, 32)   # wrapped: start again from 1


# -- header ------------------------------------------------------------------------

def _pack_header(kind: int, obj_id: int, name: str, payload_size: int, fields: dict) -> bytes:
    # ids are unique per BPF fs root: the root goes with the object
    blob = json.dumps({"f": fields, "root": fs.root()}, separators=(",", ":")).encode()
    if len(blob) > _JSON_MAX:
        raise _err(errno.E2BIG, "object header fields too large")
    fixed = _FIXED.pack(MAGIC, VERSION, kind, obj_id, os.getuid(), os.getpid(), time.time_ns(),
                        name.encode("latin-1", "replace")[:OBJ_NAME_LEN - 1], payload_size, len(blob))
    return fixed.ljust(_JSON_AT, b"\0") + blob


def read_header(fd: int) -> dict | None:
    """The header of the object behind fd, or None if fd is not a pybpf object."""
    try:
        raw = os.pread(fd, HEADER_SIZE, 0)
    except OSError:
        return None
    if len(raw) < _JSON_AT or raw[:8] != MAGIC:
        return None
    magic, ver, kind, obj_id, uid, pid, ctime, name, psize, jlen = _FIXED.unpack_from(raw)
    if ver != VERSION or kind not in KIND_NAMES or jlen > _JSON_MAX:
        return None
    try:
        meta = json.loads(raw[_JSON_AT:_JSON_AT + jlen] or b"{}")
        fields, root = meta["f"], meta["root"]
    except (ValueError, KeyError, TypeError):
        return None
    return {"kind": KIND_NAMES[kind], "id": obj_id, "uid": uid, "pid": pid, "ctime_ns": ctime,
            "name": name.rstrip(b"\0").decode("latin-1"), "payload_size": psize,
            "fields": fields, "root": root}


# -- creation ----------------------------------------------------------------------

def create_object(kind: str, header_fields: dict, payload_size: int, name: str = "",
                  mode: int = 0o600) -> int:
    """Create an unnamed object and return its new fd (O_RDWR, close-on-exec, as Linux).

    ``header_fields`` (JSON-able) describe the object (map spec, program type,
    ...); the payload of ``payload_size`` bytes after the header is zeroed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown object kind {kind!r}")
    # objects that were pinned or held live on under a hidden name until a gc() finds them
    # unused: every process that creates objects collects now and then
    from .holds import maybe_gc
    maybe_gc()
    obj_id = _next_id()
    fd = os.open(fs.store_dir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)   # umask must not widen or narrow the pin mode
        try:
            os.ftruncate(fd, HEADER_SIZE + payload_size)
        except OSError as e:
            raise _err(errno.ENOMEM if e.errno in (errno.EFBIG, errno.ENOSPC, errno.EINVAL) else e.errno,
                       "cannot size object storage")
        os.pwrite(fd, _pack_header(KINDS[kind], obj_id, name, payload_size, header_fields), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- process-local handles --------------------------------------------------------

class BpfObject:
    """This process's handle on one object: own fd, shared mmap, parsed header.

    ``users`` counts Python-level owners (Map objects, programs being run)
    that keep the handle even when no user fd refers to the object.
    """

    __slots__ = ("key", "kind", "id", "name", "fields", "header", "root", "fd", "mm", "base", "size",
                 "writable", "impl", "users", "__weakref__")

    def __init__(self, key, fd: int, header: dict):
        self.key = key
        self.kind = header["kind"]
        self.id = header["id"]
        self.name = header["name"]
        self.fields = header["fields"]
        self.root = header["root"]
        self.header = header
        self.fd = fd
        self.size = HEADER_SIZE + header["payload_size"]
        self.writable = fd_access(fd) == os.O_RDWR
        self.mm = _map(fd, self.size, self.writable)
        self.base = ctypes.addressof(self.mm)
        self.impl = None
        self.users = 0

    @property
    def payload(self) -> memoryview:
        return memoryview(self.mm).cast("B")[HEADER_SIZE:]

    @property
    def payload_addr(self) -> int:
        return self.base + HEADER_SIZE

    def path(self) -> str:
        """A path that opens this object (while this handle lives)."""
        return f"/proc/self/fd/{self.fd}"

    def new_fd(self, flags: int = os.O_RDWR) -> int:
        """A new user fd on this object (for OBJ_GET-like commands)."""
        return os.open(self.path(), flags | os.O_CLOEXEC)

    def map_impl(self):
        """The map storage handle (attached on first use)."""
        if self.kind != "map":      # impl holds other kinds' handles too (a perf event's ring)
            raise _err(errno.EINVAL, "not a map")
        if self.impl is None:
            from .. import maps
            self.impl = maps.attach(self.payload, self.payload_addr)
        return self.impl

    def _release(self) -> None:
        impl, self.impl = self.impl, None
        if impl is not None:
            try:
                impl.close()        # drops its views of our mapping first
            except Exception:
                pass
        self.mm = None      # unmapped when the last view of it goes (see _map)
        try:
            os.close(self.fd)
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"<BpfObject {self.kind} id={self.id} name={self.name!r}>"


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _map(fd: int, size: int, writable: bool):
    """A shared mapping of the object as a ctypes array, unmapped when garbage.

    Python's mmap.mmap keeps a dup of the fd, which would hide from sweep()
    whether the user still has one; and we need the address anyway.  Every
    memoryview of the array keeps it alive, so the mapping cannot vanish
    under a view.  Without write permission, a private writable mapping keeps
    readers that write (lock recovery) from faulting.
    """
    prot = mmap.PROT_READ | mmap.PROT_WRITE
    flags = mmap.MAP_SHARED if writable else mmap.MAP_PRIVATE
    addr = _libc.mmap(None, size, prot, flags, fd, 0)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: cannot map BPF object")
    cls = type("_ObjectMapping", (ctypes.c_char * size,), {})
    arr = cls.from_address(addr)
    weakref.finalize(arr, _libc.munmap, addr, size)
    return arr


_cache: dict[tuple[int, int], BpfObject] = {}
_cache_fds: set[int] = set()
_cache_lock = threading.RLock()
_cache_pid = os.getpid()


def _check_pid() -> None:
    """After fork the inherited handles are fine (same fds, same shared mappings), but a
    lock another thread held at fork time would stay held forever in the child."""
    global _cache_pid, _cache_lock, _ids_lock
    _cache_pid = os.getpid()
    _cache_lock = threading.RLock()
    _ids_lock = threading.Lock()


def obj_from_fd(fd: int) -> BpfObject:
    """The handle of the object behind a user fd: EBADF if closed, EINVAL if not ours."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        raise _err(errno.EBADF if e.errno == errno.EBADF else e.errno, f"fd {fd}") from None
    except (OverflowError, TypeError):
        raise _err(errno.EBADF, f"fd {fd}") from None
    key = (st.st_dev, st.st_ino)
    obj = _cache.get(key)
    if obj is not None:
        return obj
    if not stat.S_ISREG(st.st_mode) or st.st_size < HEADER_SIZE:
        raise _err(errno.EINVAL, f"fd {fd} is not a BPF object")
    header = read_header(fd)
    if header is None and fd_access(fd) == os.O_WRONLY:   # a BPF_F_WRONLY fd cannot pread
        try:
            tmp = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            tmp = -1
        if tmp >= 0:
            try:
                header = read_header(tmp)
            finally:
                os.close(tmp)
    if header is None:
        raise _err(errno.EINVAL, f"fd {fd} is not a BPF object")
    return _adopt(key, f"/proc/self/fd/{fd}", header)


def obj_from_path(real_path: str) -> BpfObject:
    """Handle of the object at an already-opened path (used by listings and holds)."""
    fd = os.open(real_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return obj_from_fd(fd)
    finally:
        os.close(fd)


def _adopt(key, open_path: str, header: dict) -> BpfObject:
    with _cache_lock:
        obj = _cache.get(key)
        if obj is not None:
            return obj
        sweep()
        try:
            own = os.open(open_path, os.O_RDWR | os.O_CLOEXEC)
        except PermissionError:
            own = os.open(open_path, os.O_RDONLY | os.O_CLOEXEC)
        obj = BpfObject(key, own, header)
        _cache[key] = obj
        _cache_fds.add(own)
        return obj


def fd_access(fd: int) -> int:
    """O_RDONLY / O_WRONLY / O_RDWR of a user fd (BPF_F_RDONLY / WRONLY fds)."""
    return fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE


def sweep() -> int:
    """Drop handles that no fd of this process (other than our own) refers to.

    Linux frees an unpinned map when its last fd closes; our handle's own fd
    and mmap would keep it alive, so they are released here.  Called on every
    new handle and by :func:`pybpf.kobj.gc`; returns how many were dropped.
    """
    with _cache_lock:
        if not _cache:
            return 0
        live = set()
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:
            return 0
        for n in names:
            fd = int(n)
            if fd in _cache_fds:
                continue
            try:
                st = os.stat(f"/proc/self/fd/{n}")
            except OSError:
                continue
            live.add((st.st_dev, st.st_ino))
        dropped = 0
        for key, obj in list(_cache.items()):
            if key in live or obj.users > 0:
                continue
            del _cache[key]
            _cache_fds.discard(obj.fd)
            obj._release()
            dropped += 1
        return dropped


def acquire(obj: BpfObject) -> BpfObject:
    """Keep a handle even without user fds (a Map object, a running program)."""
    with _cache_lock:
        obj.users += 1
    return obj


def release(obj: BpfObject) -> None:
    """Undo acquire(); the last owner going with no user fd left frees the object now."""
    with _cache_lock:
        obj.users -= 1
        if obj.users <= 0 and _cache.get(obj.key) is obj:
            sweep()


def cached() -> list[BpfObject]:
    return list(_cache.values())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_check_pid)
