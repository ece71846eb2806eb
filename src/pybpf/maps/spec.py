"""Map types, flags, the MapSpec record and Linux's BPF_MAP_CREATE validation.

`validate` reproduces the checks the kernel makes before it allocates a map
(map_create and each type's alloc_check), in the same order, so that a bad
combination fails here with the errno Linux gives for it.  The expected errnos
are pinned by differential tests against the host kernel
(tests/test_maps_kernel_diff.py).
"""

from __future__ import annotations

import errno
import functools
import re
from dataclasses import dataclass

# enum bpf_map_type
HASH, ARRAY, PROG_ARRAY, PERF_EVENT_ARRAY = 1, 2, 3, 4
PERCPU_HASH, PERCPU_ARRAY, STACK_TRACE, CGROUP_ARRAY = 5, 6, 7, 8
LRU_HASH, LRU_PERCPU_HASH, LPM_TRIE = 9, 10, 11
ARRAY_OF_MAPS, HASH_OF_MAPS = 12, 13
QUEUE, STACK = 22, 23
RINGBUF = 27
BLOOM_FILTER = 30

TYPE_NAMES = {
    HASH: "hash", ARRAY: "array", PROG_ARRAY: "prog_array", PERF_EVENT_ARRAY: "perf_event_array",
    PERCPU_HASH: "percpu_hash", PERCPU_ARRAY: "percpu_array", LRU_HASH: "lru_hash",
    LRU_PERCPU_HASH: "lru_percpu_hash", LPM_TRIE: "lpm_trie", ARRAY_OF_MAPS: "array_of_maps",
    HASH_OF_MAPS: "hash_of_maps", QUEUE: "queue", STACK: "stack", RINGBUF: "ringbuf",
    BLOOM_FILTER: "bloom_filter",
}
TYPE_BY_NAME = {v: k for k, v in TYPE_NAMES.items()}
# Known to Linux (so not EINVAL-unknown) but not provided by pybpf.
_LINUX_ONLY = {7: "stack_trace", 8: "cgroup_array", 14: "devmap", 15: "sockmap", 16: "cpumap",
               17: "xskmap", 18: "sockhash", 19: "cgroup_storage", 20: "reuseport_sockarray",
               21: "percpu_cgroup_storage", 24: "sk_storage", 25: "devmap_hash", 26: "struct_ops",
               28: "inode_storage", 29: "task_storage", 31: "user_ringbuf", 32: "cgrp_storage",
               33: "arena"}

# Element update flags
ANY, NOEXIST, EXIST, F_LOCK = 0, 1, 2, 4

# Map creation flags
F_NO_PREALLOC = 1 << 0
F_NO_COMMON_LRU = 1 << 1
F_NUMA_NODE = 1 << 2
F_RDONLY = 1 << 3
F_WRONLY = 1 << 4
F_STACK_BUILD_ID = 1 << 5
F_ZERO_SEED = 1 << 6
F_RDONLY_PROG = 1 << 7
F_WRONLY_PROG = 1 << 8
F_CLONE = 1 << 9
F_MMAPABLE = 1 << 10
F_PRESERVE_ELEMS = 1 << 11
F_INNER_MAP = 1 << 12
F_ACCESS_MASK = F_RDONLY | F_RDONLY_PROG | F_WRONLY | F_WRONLY_PROG

# Kernel limits (x86_64, 4 KiB pages, SLUB): KMALLOC_MAX_SIZE = 1 << (10 + 12).
PAGE_SIZE = 4096
KMALLOC_MAX_SIZE = 1 << 22
PCPU_MIN_UNIT_SIZE = 32768
MAX_BPF_STACK = 512
HTAB_ELEM_SIZE = 48          # sizeof(struct htab_elem) on x86_64
LPM_NODE_SIZE = 40           # sizeof(struct lpm_trie_node) before its data
LPM_DATA_SIZE_MAX = 256
ENOTSUPP = 524               # the kernel-internal errno bpf() leaks to user space


def max_storage() -> int:
    """Largest storage we lay out: Linux's vmalloc fails (ENOMEM) beyond physical memory."""
    import os
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 36

_ARRAY_FLAGS = F_NUMA_NODE | F_MMAPABLE | F_ACCESS_MASK | F_PRESERVE_ELEMS | F_INNER_MAP
_HTAB_FLAGS = F_NO_PREALLOC | F_NO_COMMON_LRU | F_NUMA_NODE | F_ACCESS_MASK | F_ZERO_SEED
_LPM_FLAGS = F_NO_PREALLOC | F_NUMA_NODE | F_ACCESS_MASK
_QS_FLAGS = F_NUMA_NODE | F_ACCESS_MASK
_RINGBUF_FLAGS = F_NUMA_NODE
_BLOOM_FLAGS = F_NUMA_NODE | F_ZERO_SEED | F_ACCESS_MASK

_NAME_RE = re.compile(r"[A-Za-z0-9_.]*")


@dataclass
class MapSpec:
    map_type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    inner_map_spec: "MapSpec | None" = None
    map_extra: int = 0
    name: str = ""
    numa_node: int = 0


@functools.cache
def ncpus() -> int:
    """Number of possible CPUs, read as libbpf does from /sys/devices/system/cpu/possible."""
    try:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read().strip()
    except OSError:
        import os
        return os.cpu_count() or 1
    highest = 0
    for part in text.split(","):
        hi = part.split("-")[-1]
        highest = max(highest, int(hi))
    return highest + 1


@functools.cache
def _numa_nodes() -> int:
    try:
        with open("/sys/devices/system/node/online") as f:
            text = f.read().strip()
        return max(int(p.split("-")[-1]) for p in text.split(",")) + 1
    except (OSError, ValueError):
        return 1


def round8(n: int) -> int:
    return (n + 7) & ~7


def is_percpu(map_type: int) -> bool:
    return map_type in (PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH)


def user_value_size(spec: MapSpec) -> int:
    """Size of a value as user space passes it (per-CPU: one rounded slot per possible CPU)."""
    if is_percpu(spec.map_type):
        return round8(spec.value_size) * ncpus()
    return spec.value_size


def _err(code: int, msg: str) -> OSError:
    return OSError(code, msg)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def type_name(map_type: int) -> str:
    return TYPE_NAMES.get(map_type) or _LINUX_ONLY.get(map_type) or f"type {map_type}"


def validate(spec: MapSpec) -> None:
    """Raise OSError(errno, reason) exactly where Linux's BPF_MAP_CREATE would fail."""
    t, ks, vs, me, fl = spec.map_type, spec.key_size, spec.value_size, spec.max_entries, spec.map_flags
    for field in ("map_type", "key_size", "value_size", "max_entries", "map_flags"):
        v = getattr(spec, field)
        if not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
            raise _err(errno.EINVAL, f"{field} {v!r} is not a u32")
    if t not in (BLOOM_FILTER,) and spec.map_extra != 0:
        raise _err(errno.EINVAL, f"map_extra must be 0 for {type_name(t)} maps")
    if fl & F_RDONLY and fl & F_WRONLY:
        raise _err(errno.EINVAL, "map_flags: BPF_F_RDONLY and BPF_F_WRONLY are exclusive")
    if fl & F_NUMA_NODE and not 0 <= spec.numa_node < _numa_nodes():
        raise _err(errno.EINVAL, f"numa_node {spec.numa_node} is not an online node")
    if t not in TYPE_NAMES:
        if t in _LINUX_ONLY:
            raise _err(errno.EINVAL, f"map type {type_name(t)} is not supported by pybpf")
        raise _err(errno.EINVAL, f"unknown map type {t}")
    _CHECKS[t](spec, t, ks, vs, me, fl)
    name = spec.name
    if len(name.encode()) > 15 or not _NAME_RE.fullmatch(name):
        raise _err(errno.EINVAL, f"invalid map name {name!r} (at most 15 of [A-Za-z0-9_.])")
    from .layout import storage_size_unchecked
    if storage_size_unchecked(spec) > max_storage():
        raise _err(errno.ENOMEM, f"{type_name(t)} map of {me} entries of {vs} bytes is too large")


def _access_ok(fl: int) -> bool:
    return fl & (F_RDONLY_PROG | F_WRONLY_PROG) != (F_RDONLY_PROG | F_WRONLY_PROG)


def _check_array(spec, t, ks, vs, me, fl):
    percpu = t == PERCPU_ARRAY
    if t in (PROG_ARRAY, PERF_EVENT_ARRAY, ARRAY_OF_MAPS):
        if vs != 4:
            raise _err(errno.EINVAL, f"value_size must be 4 for {type_name(t)} maps, got {vs}")
        if fl & (F_RDONLY_PROG | F_WRONLY_PROG):
            raise _err(errno.EINVAL, f"BPF_F_RDONLY_PROG/WRONLY_PROG not allowed for {type_name(t)}")
    if me == 0:
        raise _err(errno.EINVAL, "max_entries must be > 0")
    if ks != 4:
        raise _err(errno.EINVAL, f"key_size must be 4 for {type_name(t)} maps, got {ks}")
    if vs == 0:
        raise _err(errno.EINVAL, "value_size must be > 0")
    if fl & ~_ARRAY_FLAGS or not _access_ok(fl) or (percpu and fl & F_NUMA_NODE):
        raise _err(errno.EINVAL, f"invalid map_flags {fl:#x} for {type_name(t)} maps")
    if t != ARRAY and fl & (F_MMAPABLE | F_INNER_MAP):
        raise _err(errno.EINVAL, "BPF_F_MMAPABLE/INNER_MAP only valid for array maps")
    if t != PERF_EVENT_ARRAY and fl & F_PRESERVE_ELEMS:
        raise _err(errno.EINVAL, "BPF_F_PRESERVE_ELEMS only valid for perf_event_array maps")
    if vs > 0x7FFFFFFF:
        raise _err(errno.E2BIG, f"value_size {vs} too large")
    if percpu and round8(vs) > PCPU_MIN_UNIT_SIZE:
        raise _err(errno.E2BIG, f"per-CPU value_size {vs} exceeds {PCPU_MIN_UNIT_SIZE}")
    if t == ARRAY_OF_MAPS:
        _check_inner(spec)


def _check_inner(spec):
    inner = spec.inner_map_spec
    if inner is None:
        raise _err(errno.EINVAL, f"{type_name(spec.map_type)} needs an inner map (inner_map_fd)")
    if inner.map_type in (ARRAY_OF_MAPS, HASH_OF_MAPS):
        raise _err(errno.EINVAL, "inner map cannot itself be a map of maps")
    if inner.map_type == PROG_ARRAY:
        raise _err(ENOTSUPP, "inner map of type prog_array is not supported")


def _check_htab(spec, t, ks, vs, me, fl):
    percpu = t in (PERCPU_HASH, LRU_PERCPU_HASH)
    lru = t in (LRU_HASH, LRU_PERCPU_HASH)
    if t == HASH_OF_MAPS and vs != 4:
        raise _err(errno.EINVAL, f"value_size must be 4 for hash_of_maps, got {vs}")
    if fl & ~_HTAB_FLAGS or not _access_ok(fl):
        raise _err(errno.EINVAL, f"invalid map_flags {fl:#x} for {type_name(t)} maps")
    if not lru and fl & F_NO_COMMON_LRU:
        raise _err(errno.EINVAL, "BPF_F_NO_COMMON_LRU only valid for LRU maps")
    if lru and fl & F_NO_PREALLOC:
        raise _err(ENOTSUPP, "LRU maps cannot use BPF_F_NO_PREALLOC")
    if fl & F_NUMA_NODE and (percpu or fl & F_NO_COMMON_LRU):
        raise _err(errno.EINVAL, "BPF_F_NUMA_NODE not allowed for per-CPU maps")
    if me == 0 or ks == 0 or vs == 0:
        raise _err(errno.EINVAL, "key_size, value_size and max_entries must be > 0")
    if ks + vs >= KMALLOC_MAX_SIZE - HTAB_ELEM_SIZE:
        raise _err(errno.E2BIG, f"key_size + value_size = {ks + vs} too large")
    if percpu and round8(vs) > PCPU_MIN_UNIT_SIZE:
        raise _err(errno.E2BIG, f"per-CPU value_size {vs} exceeds {PCPU_MIN_UNIT_SIZE}")
    if effective_max_entries(spec) > 1 << 31:
        raise _err(errno.E2BIG, f"max_entries {me} exceeds 2^31")
    if t == HASH_OF_MAPS:
        _check_inner(spec)


def effective_max_entries(spec: MapSpec) -> int:
    """max_entries as Linux reports it after creation (per-CPU LRU lists round it to ncpus)."""
    me = spec.max_entries
    if spec.map_type in (LRU_HASH, LRU_PERCPU_HASH) and spec.map_flags & F_NO_COMMON_LRU:
        n = ncpus()
        up = -(-me // n) * n
        me = up if up <= 0xFFFFFFFF else me // n * n
    return me


def _check_lpm(spec, t, ks, vs, me, fl):
    if (me == 0 or not fl & F_NO_PREALLOC or fl & ~_LPM_FLAGS or not _access_ok(fl)
            or ks < 5 or ks > 4 + LPM_DATA_SIZE_MAX
            or vs < 1 or vs > KMALLOC_MAX_SIZE - LPM_DATA_SIZE_MAX - LPM_NODE_SIZE):
        raise _err(errno.EINVAL, "lpm_trie needs BPF_F_NO_PREALLOC, key_size 5..260, "
                   "value_size >= 1 and max_entries > 0")


def _check_queue_stack(spec, t, ks, vs, me, fl):
    if me == 0 or ks != 0 or vs == 0 or fl & ~_QS_FLAGS or not _access_ok(fl):
        raise _err(errno.EINVAL, f"{type_name(t)} needs key_size 0, value_size > 0, max_entries > 0")
    if vs > KMALLOC_MAX_SIZE:
        raise _err(errno.E2BIG, f"value_size {vs} too large")


def _check_ringbuf(spec, t, ks, vs, me, fl):
    if fl & ~_RINGBUF_FLAGS:
        raise _err(errno.EINVAL, f"invalid map_flags {fl:#x} for ringbuf maps")
    if ks or vs or not _is_pow2(me) or me % PAGE_SIZE:
        raise _err(errno.EINVAL, "ringbuf needs key_size 0, value_size 0 and max_entries a "
                   "power of 2 multiple of the page size")


def _check_bloom(spec, t, ks, vs, me, fl):
    if vs > KMALLOC_MAX_SIZE:
        raise _err(errno.E2BIG, f"value_size {vs} too large")
    if (ks != 0 or vs == 0 or me == 0 or fl & ~_BLOOM_FLAGS or not _access_ok(fl)
            or spec.map_extra & ~0xF):
        raise _err(errno.EINVAL, "bloom_filter needs key_size 0, value_size > 0, max_entries > 0 "
                   "and map_extra (number of hashes) <= 15")


_CHECKS = {
    ARRAY: _check_array, PERCPU_ARRAY: _check_array, PROG_ARRAY: _check_array,
    PERF_EVENT_ARRAY: _check_array, ARRAY_OF_MAPS: _check_array,
    HASH: _check_htab, PERCPU_HASH: _check_htab, LRU_HASH: _check_htab,
    LRU_PERCPU_HASH: _check_htab, HASH_OF_MAPS: _check_htab,
    LPM_TRIE: _check_lpm, QUEUE: _check_queue_stack, STACK: _check_queue_stack,
    RINGBUF: _check_ringbuf, BLOOM_FILTER: _check_bloom,
}
