"""BTF at BPF_MAP_CREATE: btf_fd, btf_key_type_id, btf_value_type_id, as Linux checks them.

Linux (kernel/bpf/syscall.c, map_create / map_check_btf) reads the BTF fields only
when a key or value type id is set: btf_fd must then be a BTF object (EBADF / EINVAL),
the key and value types must exist and resolve through typedefs, qualifiers and
variables to a type with a size (not void, a forward declaration or a function) equal
to key_size / value_size (EINVAL), and the map type may add rules of its own
(``map_check_btf``): an array's key is a 32-bit integer, a key-less array is a global
section (one element, a DATASEC value), an LPM trie's key is a struct, a bloom filter
has no key type, and maps of file descriptors take no BTF at all (ENOTSUPP).  Every
errno here was checked against the host kernel (tests/test_map_btf_kernel.py).

The map records the type ids and holds its BTF object (a hold, as a program holds its
maps), so the BTF lives as long as the map; OBJ_GET_INFO_BY_FD reports them.
"""

from __future__ import annotations

import errno
import os

from .. import kobj
from ..loader import btf as B
from . import constants as C

ENOTSUPP = 524
HOLD_TAG = "btf"

# map types whose map_check_btf is map_check_no_btf: their values are fds / ids
NO_BTF_TYPES = frozenset({4, 7, 8, 12, 13, 14, 15, 16, 17, 18, 25})
# map types with a map_check_btf of their own (the others need a key type)
_OWN_CHECK = frozenset({C.BPF_MAP_TYPE_ARRAY, C.BPF_MAP_TYPE_PERCPU_ARRAY, C.BPF_MAP_TYPE_LPM_TRIE,
                        C.BPF_MAP_TYPE_BLOOM_FILTER}) | NO_BTF_TYPES
# structs Linux gives a meaning inside map values (btf_parse_fields), by their size there;
# pybpf has none of them
_SPECIAL = {"bpf_spin_lock": 4, "bpf_res_spin_lock": 8, "bpf_timer": 16, "bpf_wq": 16,
            "bpf_list_head": 16, "bpf_list_node": 24, "bpf_rb_root": 16, "bpf_rb_node": 32,
            "bpf_refcount": 4}
# the map types Linux allows them in (others: EOPNOTSUPP)
_LOCK_TYPES = frozenset({C.BPF_MAP_TYPE_HASH, C.BPF_MAP_TYPE_ARRAY, 19, 24, 28, 29, 32})
_TIMER_TYPES = frozenset({C.BPF_MAP_TYPE_HASH, C.BPF_MAP_TYPE_LRU_HASH, C.BPF_MAP_TYPE_ARRAY})
_ALLOWED_IN = {"bpf_spin_lock": _LOCK_TYPES, "bpf_res_spin_lock": _LOCK_TYPES,
               "bpf_timer": _TIMER_TYPES, "bpf_wq": _TIMER_TYPES}
BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG = 1 << 7, 1 << 8



def _err(code: int, what: str) -> OSError:
    name = os.strerror(code) if code != ENOTSUPP else "Operation not supported"
    return OSError(code, f"{name}: {what}")


def check_attr(key_id: int, value_id: int, vmlinux_id: int) -> None:
    """The first checks of Linux's map_create(), before anything else is looked at."""
    if vmlinux_id:
        raise _err(errno.EINVAL, "btf_vmlinux_value_type_id (struct_ops maps with kernel BTF) "
                                 "is not supported")
    if key_id and not value_id:
        raise _err(errno.EINVAL, "btf_key_type_id without btf_value_type_id")


_parsed: dict[tuple[int, int], object] = {}


def parsed_btf(obj):
    """The loader's parse of a BTF object (cached: a BTF object never changes)."""
    b = _parsed.get(obj.key)
    if b is None or b.raw_id != obj.id:
        from ..loader.btf import Btf
        from .btf import btf_bytes
        b = Btf(btf_bytes(obj))
        b.raw_id = obj.id
        if len(_parsed) > 64:
            _parsed.clear()
        _parsed[obj.key] = b
    return b


def type_size(btf, tid: int):
    """Linux's btf_type_id_size(): (resolved type, size), or None where there is no size."""
    types = btf.types
    t = types[tid] if 0 < tid < len(types) else None
    if t is None:
        return None
    if t.kind in B.MODIFIER_KINDS or t.kind == B.KIND_VAR:
        t = _skip(types, tid, var=True)
        if t is None:
            return None
    k = t.kind
    if k in B.SIZED_KINDS:
        return t, t.size
    if k == B.KIND_PTR:
        return t, 8
    if k == B.KIND_ARRAY:
        from .btf import _size_of
        size = _size_of(btf, t.id)
        return None if size is None else (t, size)
    return None                 # void, FWD, FUNC, FUNC_PROTO, DECL_TAG


def _skip(types, tid: int, var: bool = False):
    """The type behind modifiers (and a VAR when ``var``); None for void, a bad id or a loop."""
    for _ in range(64):
        t = types[tid] if 0 < tid < len(types) else None
        if t is None or not (t.kind in B.MODIFIER_KINDS or var and t.kind == B.KIND_VAR):
            return t
        tid = t.type
    return None


def _special_field(btf, t, depth: int = 0) -> str | None:
    """The name of a Linux special struct (bpf_spin_lock, bpf_timer, ...) inside a value:
    a member of the struct or section, or of a struct or array inside it."""
    if t is None or depth > 32 or t.kind not in (B.KIND_STRUCT, B.KIND_DATASEC):
        return None
    types = btf.types
    for m in t.members:
        mt = _skip(types, m.type, var=True)
        while mt is not None and mt.kind == B.KIND_ARRAY:
            mt = _skip(types, mt.elem_type)
        if mt is not None and mt.kind == B.KIND_STRUCT:
            found = (mt.name if _SPECIAL.get(mt.name) == mt.size
                     else _special_field(btf, mt, depth + 1))
            if found:
                return found
    return None


def _sized(btf, btf_id: int, type_id: int, size: int, what: str):
    """The resolved type of ``type_id``, which must have the map's key or value size."""
    t = type_size(btf, type_id)
    if t is None:
        raise _err(errno.EINVAL, f"btf_{what}_type_id {type_id} is not a type with a size "
                                 f"in BTF id {btf_id}")
    if t[1] != size:
        raise _err(errno.EINVAL, f"btf_{what}_type_id {type_id} has size {t[1]}, {what}_size is {size}")
    return t

def check_map_btf(spec, btf_fd: int, key_id: int, value_id: int):
    """map_create()'s BTF step for a map already validated: the BTF object, or None.

    Only consulted when a type id is set (as Linux: btf_fd alone is ignored).
    """
    if not key_id and not value_id:
        return None
    from .btf import btf_object
    obj = btf_object(btf_fd)                    # EBADF / EINVAL
    if not value_id:
        return obj
    from ..errors import PybpfError
    try:
        btf = parsed_btf(obj)
    except (PybpfError, ValueError, IndexError):    # BTF_LOAD checked it: cannot happen
        raise _err(errno.EINVAL, f"BTF object id {obj.id} cannot be read") from None
    if key_id:
        kt = _sized(btf, obj.id, key_id, spec.key_size, "key")
    else:
        kt = None
        if spec.map_type not in _OWN_CHECK:
            raise _err(errno.EINVAL, "this map type needs btf_key_type_id with btf_value_type_id")
    vt = _sized(btf, obj.id, value_id, spec.value_size, "value")
    special = _special_field(btf, vt[0])
    if special:
        if special in _ALLOWED_IN:          # what Linux refuses, with its errno
            if spec.map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG):
                raise _err(errno.EACCES, f"a value holding a struct {special} needs a map "
                                         "programs can read and write")
            if spec.map_type not in _ALLOWED_IN[special]:
                raise _err(errno.EOPNOTSUPP, f"{C.MAP_TYPE_NAMES.get(spec.map_type)} maps cannot "
                                             f"hold a struct {special}")
        # what Linux accepts but pybpf cannot do (a deliberate difference)
        raise _err(errno.EINVAL, f"map values holding a struct {special} are not supported")
    _map_type_check(spec, kt[0] if kt else None, vt[0])
    return obj


def _map_type_check(spec, key, value) -> None:
    """The map type's own map_check_btf (key is None for a key-less map)."""
    t = spec.map_type
    if t in NO_BTF_TYPES:
        raise _err(ENOTSUPP, f"{C.MAP_TYPE_NAMES.get(t, t)} maps take no BTF")
    if t in (C.BPF_MAP_TYPE_ARRAY, C.BPF_MAP_TYPE_PERCPU_ARRAY):
        if key is None:
            if t != C.BPF_MAP_TYPE_ARRAY or spec.max_entries != 1:
                raise _err(errno.EINVAL, "a key-less array with BTF must be a global section "
                                         "(array, max_entries 1)")
            if value.kind != B.KIND_DATASEC:
                raise _err(errno.EINVAL, "a key-less array's value type must be a DATASEC")
            return
        if key.kind != B.KIND_INT or key.bits != 32 or key.bit_offset:
            raise _err(errno.EINVAL, "an array's key type must be a 32-bit integer")
    elif t == C.BPF_MAP_TYPE_LPM_TRIE:
        if key is None or key.kind != B.KIND_STRUCT:
            raise _err(errno.EINVAL, "an LPM trie's key type must be a struct")
    elif t == C.BPF_MAP_TYPE_BLOOM_FILTER and key is not None:
        raise _err(errno.EINVAL, "a bloom filter has no key type")


def held_btf(map_obj):
    """The BTF object a map holds (None without BTF)."""
    if not map_obj.fields.get("btf_id"):
        return None
    p = kobj.held_path(map_obj, HOLD_TAG)
    return kobj.obj_from_path(p) if p else None
