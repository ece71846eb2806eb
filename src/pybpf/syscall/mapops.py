"""Map commands at the object level, shared by ``bpf()`` and the ``Map`` API.

The storage engines (pybpf.maps) deal in bytes and object ids only; here we
create map objects, turn fds in the values of PROG_ARRAY, PERF_EVENT_ARRAY and
map-in-map maps into ids (holding the referenced object while its slot does),
and enforce the fd's access mode (BPF_F_RDONLY / BPF_F_WRONLY), as Linux's
kernel/bpf/syscall.c does around each map's ops.
"""

from __future__ import annotations

import errno
import hashlib
import os

from .. import kobj
from . import constants as C

ENOTSUPP = 524          # kernel-internal errno that bpf() lets through to user space


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code) if code != ENOTSUPP else 'Operation not supported'}: {what}")


def _maps():
    from .. import maps
    return maps


def spec_to_fields(spec) -> dict:
    inner = spec.inner_map_spec
    return {"map_type": spec.map_type, "key_size": spec.key_size, "value_size": spec.value_size,
            "max_entries": spec.max_entries, "map_flags": spec.map_flags,
            "map_extra": spec.map_extra, "numa_node": getattr(spec, "numa_node", 0),
            "inner": spec_to_fields(inner) if inner is not None else None}


def fields_to_spec(f: dict, name: str = ""):
    maps = _maps()
    inner = fields_to_spec(f["inner"]) if f.get("inner") else None
    spec = maps.MapSpec(map_type=f["map_type"], key_size=f["key_size"], value_size=f["value_size"],
                        max_entries=f["max_entries"], map_flags=f["map_flags"],
                        inner_map_spec=inner, map_extra=f.get("map_extra", 0), name=name)
    if hasattr(spec, "numa_node"):
        spec.numa_node = f.get("numa_node", 0)
    return spec


_specs: dict[tuple[int, int], object] = {}


def spec_of(obj: kobj.BpfObject):
    s = _specs.get(obj.key)
    if s is None:
        if obj.kind != "map":
            raise _err(errno.EINVAL, f"object id {obj.id} is a {obj.kind}, not a map")
        s = _specs[obj.key] = fields_to_spec(obj.fields, obj.name)
    return s


def map_from_fd(fd: int) -> kobj.BpfObject:
    obj = kobj.obj_from_fd(fd)
    if obj.kind != "map":
        raise _err(errno.EINVAL, f"fd {fd} is a {obj.kind}, not a map")
    return obj


def user_value_size(spec) -> int:
    if spec.map_type in C.PERCPU_TYPES:
        return ((spec.value_size + 7) & ~7) * _maps().ncpus()
    return spec.value_size


def create_map(spec, inner_map_fd: int | None = None, btf_fd: int = 0, btf_key_type_id: int = 0,
               btf_value_type_id: int = 0) -> int:
    """Validate as Linux, create the object and lay out its storage; returns the new fd.

    With a key or value type id, ``btf_fd`` is checked and held as Linux's map_check_btf
    (see :mod:`pybpf.syscall.map_btf`).
    """
    maps = _maps()
    if spec.map_type in C.MAP_IN_MAP_TYPES and spec.inner_map_spec is None and inner_map_fd is not None:
        inner = kobj.obj_from_fd(inner_map_fd)
        if inner.kind != "map":
            raise _err(errno.EINVAL, f"inner_map_fd {inner_map_fd} is not a map")
        spec.inner_map_spec = spec_of(inner)
    # the name was checked by the caller with Linux's rules (Latin-1 letters too); storage
    # does not need it, and the object header keeps it
    name, spec.name = spec.name, ""
    maps.validate(spec)
    fields = spec_to_fields(spec)
    btf_obj = None
    if btf_key_type_id or btf_value_type_id:
        from .map_btf import check_map_btf
        btf_obj = check_map_btf(spec, btf_fd, btf_key_type_id, btf_value_type_id)
        fields.update(btf_id=btf_obj.id, btf_key_type_id=btf_key_type_id,
                      btf_value_type_id=btf_value_type_id)
    size = maps.storage_size(spec)
    fd = kobj.create_object("map", fields, size, name=name)
    try:
        obj = kobj.obj_from_fd(fd)
        maps.init_storage(obj.payload, obj.payload_addr, spec)
        if btf_obj is not None:     # the map keeps its BTF alive, as Linux's map->btf
            from .map_btf import HOLD_TAG
            kobj.add_hold(obj, btf_obj, HOLD_TAG)
        acc = spec.map_flags & (C.BPF_F_RDONLY | C.BPF_F_WRONLY)
        if acc:     # the creator's fd itself is read-only / write-only, as Linux's
            mode = os.O_RDONLY if acc == C.BPF_F_RDONLY else os.O_WRONLY
            newfd = os.open(f"/proc/self/fd/{fd}", mode | os.O_CLOEXEC)
            os.dup2(newfd, fd, inheritable=False)
            os.close(newfd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _hold_tag(key: bytes) -> str:
    return "k" + (key.hex() if len(key) <= 64 else hashlib.sha1(key).hexdigest())


def _meta_equal(outer_inner, cand) -> bool:
    """bpf_map_meta_equal: an inner map must match the template (max_entries unless INNER_MAP)."""
    return (cand.map_type == outer_inner.map_type and cand.key_size == outer_inner.key_size
            and cand.value_size == outer_inner.value_size and cand.map_flags == outer_inner.map_flags
            and (outer_inner.map_flags & C.BPF_F_INNER_MAP
                 or cand.max_entries == outer_inner.max_entries))


def _check_flags_lookup(flags: int) -> None:
    if flags & ~C.BPF_F_LOCK:
        raise _err(errno.EINVAL, f"bad lookup flags {flags:#x}")


def lookup(obj, key: bytes, flags: int = 0) -> bytes:
    spec = spec_of(obj)
    _check_flags_lookup(flags)
    if spec.map_type == C.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        obj.map_impl().lookup(key, 0)       # the key is still checked (E2BIG/ENOENT)
        raise _err(ENOTSUPP, "perf_event_array elements cannot be read from user space")
    return obj.map_impl().lookup(key, flags)


def update(obj, key: bytes, value: bytes, flags: int = 0) -> None:
    spec = spec_of(obj)
    impl = obj.map_impl()
    if spec.map_type not in C.FD_MAP_TYPES:
        impl.update(key, value, flags)
        return
    if flags & ~C.BPF_F_LOCK > C.BPF_EXIST:
        raise _err(errno.EINVAL, f"bad update flags {flags:#x}")
    if flags & C.BPF_F_LOCK:
        raise _err(errno.EINVAL, "BPF_F_LOCK needs a bpf_spin_lock in the value")
    if spec.map_type == C.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        impl.check_slot(key, flags)         # EINVAL / E2BIG come before the fd's EBADF
    vfd = int.from_bytes(value[:4], "little", signed=True)
    held = _resolve_ref(spec, vfd)
    impl.update(key, held.id.to_bytes(4, "little"), flags)
    kobj.add_hold(obj, held, _hold_tag(key))


def _resolve_ref(spec, vfd: int):
    t = spec.map_type
    if t == C.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        return kobj.perf_event.event_from_fd(vfd)      # EBADF unless a perf event, as perf_event_get()
    held = kobj.obj_from_fd(vfd)
    if t == C.BPF_MAP_TYPE_PROG_ARRAY:
        if held.kind != "prog":
            raise _err(errno.EINVAL, f"fd {vfd} is not a program")
        return held
    if held.kind != "map":
        raise _err(errno.EINVAL, f"fd {vfd} is not a map")
    if not _meta_equal(spec.inner_map_spec, spec_of(held)):
        raise _err(errno.EINVAL, f"map fd {vfd} does not match the inner map template")
    return held


def delete(obj, key: bytes) -> None:
    spec = spec_of(obj)
    obj.map_impl().delete(key)
    if spec.map_type in C.FD_MAP_TYPES:
        kobj.drop_hold(obj, _hold_tag(key))


def get_next_key(obj, key: bytes | None) -> bytes:
    spec_of(obj)
    return obj.map_impl().get_next_key(key)


def lookup_and_delete(obj, key: bytes | None, flags: int = 0) -> bytes:
    spec = spec_of(obj)
    if spec.map_type in C.FD_MAP_TYPES:
        raise _err(ENOTSUPP, "lookup_and_delete is not supported for this map type")
    return obj.map_impl().lookup_and_delete(key, flags) if flags else \
        obj.map_impl().lookup_and_delete(key)


def bloom_contains(obj, value: bytes) -> None:
    """BPF_MAP_LOOKUP_ELEM on a bloom filter: 0 if maybe present, ENOENT if surely absent."""
    obj.map_impl().peek(value)


_ref_cache: dict[tuple[tuple[int, int], int], object] = {}


def ref_object(obj, key: bytes):
    """The object a PROG_ARRAY / map-in-map slot refers to (for tail calls and inner lookups).

    None for an empty slot.  The handle comes from this process's cache when
    it has one, else from the hold that keeps the slot's object alive.
    """
    spec = spec_of(obj)
    if spec.map_type not in C.FD_MAP_TYPES:
        raise _err(errno.EINVAL, "not a map of object references")
    try:
        raw = obj.map_impl().lookup(key)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    ref_id = int.from_bytes(raw[:4], "little")
    if not ref_id:
        return None
    hit = _ref_cache.get((obj.key, ref_id))
    if hit is not None and hit.mm is not None:
        return hit
    path = kobj.held_path(obj, _hold_tag(key))
    held = kobj.obj_from_path(path) if path else kobj.find_by_id(ref_id)
    if held.id != ref_id:           # the slot changed between the two reads
        held = kobj.find_by_id(ref_id)
    _ref_cache[(obj.key, ref_id)] = held
    return held
