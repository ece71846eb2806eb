"""Handlers of the map and object commands, registered with the dispatcher.

Checks run in the order of Linux's kernel/bpf/syscall.c so that an attr with
several faults fails with the errno Linux reports first.
"""

from __future__ import annotations

import errno
import os

from .. import kobj
from . import constants as C
from . import mapops
from .attr import GetIdAttr, MapCreateAttr, MapElemAttr, ObjAttr
from .dispatch import Attr, register
from .freeze import check_writable
from .umem import read, read_cstr, write


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {what}")


def _name(raw: bytes) -> str:
    """bpf_obj_name_cpy: NUL-terminated within 16 bytes, only [A-Za-z0-9_.]."""
    nul = raw.find(b"\0")
    if nul < 0:
        raise _err(errno.EINVAL, "map_name is not NUL-terminated within 16 bytes")
    name = raw[:nul]
    if any(not _name_char(c) for c in name):
        raise _err(errno.EINVAL, f"map_name {name!r} has characters other than letters, digits, _ and .")
    return name.decode("latin-1")


def _name_char(c: int) -> bool:
    """isalnum() of the kernel's Latin-1 ctype table, or '_' / '.'."""
    return (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in (95, 46)
            or 192 <= c <= 255 and c not in (215, 247))


def map_create(a: Attr) -> int:
    from .. import maps
    m = a.view(MapCreateAttr)
    if m.excl_prog_hash or m.excl_prog_hash_size:
        raise _err(errno.EINVAL, "exclusive maps (excl_prog_hash) are not supported")
    if m.map_flags & C.BPF_F_TOKEN_FD:
        raise _err(errno.EINVAL, "BPF tokens are not supported")
    if not m.map_flags & C.BPF_F_TOKEN_FD and m.map_token_fd:
        raise _err(errno.EINVAL, "map_token_fd without BPF_F_TOKEN_FD")
    if not m.map_flags & C.BPF_F_NUMA_NODE and m.numa_node:
        raise _err(errno.EINVAL, "numa_node without BPF_F_NUMA_NODE")
    name = _name(a.raw[MapCreateAttr.map_name.offset:MapCreateAttr.map_name.offset + 16])
    if m.btf_key_type_id or m.btf_value_type_id or m.btf_vmlinux_value_type_id:
        from .map_btf import check_attr
        check_attr(m.btf_key_type_id, m.btf_value_type_id, m.btf_vmlinux_value_type_id)
    if m.map_ifindex:
        raise _err(errno.EINVAL, "device-offloaded maps are not supported")
    spec = maps.MapSpec(map_type=m.map_type, key_size=m.key_size, value_size=m.value_size,
                        max_entries=m.max_entries, map_flags=m.map_flags, map_extra=m.map_extra,
                        name=name)
    if hasattr(spec, "numa_node"):
        spec.numa_node = m.numa_node
    inner_fd = None
    if m.map_type in C.MAP_IN_MAP_TYPES:
        inner_fd = m.inner_map_fd
        try:
            os.fstat(inner_fd)
        except OSError:
            raise _err(errno.EBADF, f"inner_map_fd {inner_fd}") from None
    return mapops.create_map(spec, inner_fd, m.btf_fd, m.btf_key_type_id, m.btf_value_type_id)


def _elem_map(e: MapElemAttr, need: str):
    obj = mapops.map_from_fd(e.map_fd)
    acc = kobj.fd_access(e.map_fd)
    if "r" in need and acc == os.O_WRONLY or "w" in need and acc == os.O_RDONLY:
        raise _err(errno.EPERM, f"map fd {e.map_fd} was opened "
                   f"{'write' if acc == os.O_WRONLY else 'read'}-only")
    if "w" in need:
        check_writable(obj)
    return obj, mapops.spec_of(obj)


def _key(spec, addr: int) -> bytes:
    """__bpf_copy_key: key_size bytes, or nothing (and then the pointer must be NULL)."""
    if spec.key_size:
        return read(addr, spec.key_size, "key")
    if addr:
        raise _err(errno.EINVAL, "key must be NULL for a map without keys")
    return b""


def map_lookup(a: Attr) -> int:
    e = a.view(MapElemAttr)
    if e.flags & ~C.BPF_F_LOCK:
        raise _err(errno.EINVAL, f"bad flags {e.flags:#x}")
    obj, spec = _elem_map(e, "r")
    key = _key(spec, e.key)
    vsize = mapops.user_value_size(spec)
    if spec.map_type == C.BPF_MAP_TYPE_BLOOM_FILTER:
        value = read(e.value, vsize, "value")
        mapops.bloom_contains(obj, value)
        return 0
    value = mapops.lookup(obj, key, e.flags)
    write(e.value, value, "value")
    return 0


def map_update(a: Attr) -> int:
    e = a.view(MapElemAttr)
    obj, spec = _elem_map(e, "w")
    key = _key(spec, e.key)
    value = read(e.value, mapops.user_value_size(spec), "value")
    mapops.update(obj, key, value, e.flags)
    return 0


def map_delete(a: Attr) -> int:
    e = a.view(MapElemAttr)
    if e.flags:
        raise _err(errno.EINVAL, f"bad flags {e.flags:#x}")
    obj, spec = _elem_map(e, "w")
    key = _key(spec, e.key)
    mapops.delete(obj, key)
    return 0


def map_get_next_key(a: Attr) -> int:
    e = a.view(MapElemAttr)
    obj, spec = _elem_map(e, "r")
    key = read(e.key, spec.key_size, "key") if e.key else None
    nxt = mapops.get_next_key(obj, key)
    write(e.value, nxt, "next_key")
    return 0


def map_lookup_and_delete(a: Attr) -> int:
    e = a.view(MapElemAttr)
    obj, spec = _elem_map(e, "rw")
    if e.flags and spec.map_type in (C.BPF_MAP_TYPE_QUEUE, C.BPF_MAP_TYPE_STACK):
        raise _err(errno.EINVAL, "flags must be 0 for queue and stack maps")
    if e.flags & ~C.BPF_F_LOCK:
        raise _err(errno.EINVAL, f"bad flags {e.flags:#x}")
    key = _key(spec, e.key)
    value = mapops.lookup_and_delete(obj, key if spec.key_size else None, e.flags)
    write(e.value, value, "value")
    return 0


def _path(o: ObjAttr) -> str:
    path = os.fsdecode(read_cstr(o.pathname, 4096, "pathname"))
    if o.file_flags & C.BPF_F_PATH_FD and not path.startswith("/"):
        path = os.path.join(f"/proc/self/fd/{o.path_fd}", path)
    return path


def _check_path_fd(o: ObjAttr) -> None:
    if not o.file_flags & C.BPF_F_PATH_FD and o.path_fd:
        raise _err(errno.EINVAL, "path_fd without BPF_F_PATH_FD")


def obj_pin(a: Attr) -> int:
    o = a.view(ObjAttr)
    if o.file_flags & ~C.BPF_F_PATH_FD:
        raise _err(errno.EINVAL, f"bad file_flags {o.file_flags:#x}")
    _check_path_fd(o)
    try:
        kobj.obj_from_fd(o.bpf_fd)
    except OSError:
        # Linux probes map, prog and link in turn and reports EINVAL for any failure
        raise _err(errno.EINVAL, f"fd {o.bpf_fd} is not a BPF object") from None
    kobj.pin(o.bpf_fd, _path(o))
    return 0


def obj_get(a: Attr) -> int:
    o = a.view(ObjAttr)
    if o.bpf_fd or o.file_flags & ~(C.BPF_F_RDONLY | C.BPF_F_WRONLY | C.BPF_F_PATH_FD):
        raise _err(errno.EINVAL, "bpf_fd must be 0 and file_flags RDONLY/WRONLY/PATH_FD")
    _check_path_fd(o)
    if o.file_flags & C.BPF_F_RDONLY and o.file_flags & C.BPF_F_WRONLY:
        raise _err(errno.EINVAL, "BPF_F_RDONLY and BPF_F_WRONLY together")
    return kobj.get(_path(o), o.file_flags & (C.BPF_F_RDONLY | C.BPF_F_WRONLY))


def _next_id(kind: str):
    def handler(a: Attr) -> int:
        g = a.view(GetIdAttr)
        if os.geteuid() != 0:
            raise _err(errno.EPERM, "listing ids needs CAP_SYS_ADMIN")
        ids = sorted(h["id"] for h in kobj.live_objects() if h["kind"] == kind and h["id"] > g.start_id)
        if not ids:
            raise _err(errno.ENOENT, f"no {kind} id after {g.start_id}")
        a.write_back(GetIdAttr.next_id.offset, ids[0].to_bytes(4, "little"))
        return 0
    return handler


def _fd_by_id(kind: str):
    def handler(a: Attr) -> int:
        g = a.view(GetIdAttr)
        if g.open_flags & ~(C.BPF_F_RDONLY | C.BPF_F_WRONLY) or \
                g.open_flags & C.BPF_F_RDONLY and g.open_flags & C.BPF_F_WRONLY:
            raise _err(errno.EINVAL, f"bad open_flags {g.open_flags:#x}")
        if os.geteuid() != 0:
            raise _err(errno.EPERM, "opening by id needs CAP_SYS_ADMIN")
        obj = kobj.find_by_id(g.start_id, kind)
        mode = os.O_RDONLY if g.open_flags & C.BPF_F_RDONLY else \
            os.O_WRONLY if g.open_flags & C.BPF_F_WRONLY else os.O_RDWR
        return obj.new_fd(mode)
    return handler


from .info import obj_get_info_by_fd  # noqa: E402

register(C.BPF_OBJ_GET_INFO_BY_FD, obj_get_info_by_fd)
register(C.BPF_MAP_CREATE, map_create)
register(C.BPF_MAP_LOOKUP_ELEM, map_lookup)
register(C.BPF_MAP_UPDATE_ELEM, map_update)
register(C.BPF_MAP_DELETE_ELEM, map_delete)
register(C.BPF_MAP_GET_NEXT_KEY, map_get_next_key)
register(C.BPF_MAP_LOOKUP_AND_DELETE_ELEM, map_lookup_and_delete)
register(C.BPF_OBJ_PIN, obj_pin)
register(C.BPF_OBJ_GET, obj_get)
register(C.BPF_MAP_GET_NEXT_ID, _next_id("map"))
register(C.BPF_PROG_GET_NEXT_ID, _next_id("prog"))
register(C.BPF_MAP_GET_FD_BY_ID, _fd_by_id("map"))
register(C.BPF_PROG_GET_FD_BY_ID, _fd_by_id("prog"))

from . import btf as _btf  # noqa: E402,F401  (registers BTF_LOAD and the BTF object commands)
