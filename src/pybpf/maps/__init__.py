"""Map storage engines in shared memory.

The object layer (pybpf.kobj) owns the object file and its first 4 KiB; from
offset 4096 on, the bytes belong to the storage laid out here.  Contract:

    validate(spec)                      -> None or OSError(errno) as BPF_MAP_CREATE
    storage_size(spec)                  -> bytes to reserve after the object header
    init_storage(view, base_addr, spec) -> lay out fresh (zero-filled) storage
    attach(view, base_addr)             -> MapImpl, a process-local handle
    ncpus()                             -> possible CPUs (per-CPU value count)

`view` is a writable memoryview of the mapping from offset 4096 and
`base_addr` its real address.  Call MapImpl.close() before closing the mmap:
the handle keeps derived memoryviews of it.

MapImpl (keys/values are bytes; errors are OSError with Linux's errno; 524 is
the kernel's ENOTSUPP, which bpf() leaks to user space):
    lookup(key, flags) update(key, value, flags) delete(key) get_next_key(key|None)
    lookup_and_delete(key|None, flags) keys() check() close()
    .spec .max_entries (as Linux reports it) .user_value_size
    program side: value_address(key, cpu) update_from_program(key, value, flags, cpu)
    QUEUE/STACK: push(value, flags) pop() peek()  (user LOOKUP/UPDATE/LOOKUP_AND_DELETE
        map to them with key None)
    BLOOM_FILTER: push(value, flags) peek(value)  (user LOOKUP passes the value)
    RINGBUF: reserve(size) -> addr|None, submit(addr), discard(addr), output(data) -> 0|-EAGAIN,
        query(flag), consume(limit) -> [bytes] (one consumer at a time)
    PROG_ARRAY/PERF_EVENT_ARRAY/ARRAY_OF_MAPS: u32 object ids, get_id(idx), exchange(key, id)
        -> old id, delete_id(key) -> old id, ids(); HASH_OF_MAPS: a hash of u32 ids, ids()
"""

from __future__ import annotations

import errno

from . import spec as S
from .spec import MapSpec, ncpus, validate, user_value_size, effective_max_entries  # noqa: F401
from .base import MapImpl  # noqa: F401
from . import layout


def _impl_class(map_type: int):
    from .array import ArrayMap, PercpuArrayMap, IdArrayMap
    from .hashtab import HashMap
    table = {
        S.ARRAY: ArrayMap, S.PERCPU_ARRAY: PercpuArrayMap,
        S.PROG_ARRAY: IdArrayMap, S.PERF_EVENT_ARRAY: IdArrayMap, S.ARRAY_OF_MAPS: IdArrayMap,
        S.HASH: HashMap, S.PERCPU_HASH: HashMap, S.LRU_HASH: HashMap,
        S.LRU_PERCPU_HASH: HashMap, S.HASH_OF_MAPS: HashMap,
    }
    from .lpm_trie import LpmTrieMap
    from .queue_stack import QueueMap, StackMap
    from .ringbuf import RingbufMap
    from .bloom import BloomMap
    table.update({S.LPM_TRIE: LpmTrieMap, S.QUEUE: QueueMap, S.STACK: StackMap,
                  S.RINGBUF: RingbufMap, S.BLOOM_FILTER: BloomMap})
    cls = table.get(map_type)
    if cls is None:
        raise OSError(errno.EINVAL, f"map type {S.type_name(map_type)} is not supported by pybpf")
    return cls


def storage_size(spec: MapSpec) -> int:
    """Bytes of storage the map needs (a multiple of the page size)."""
    validate(spec)
    n = layout.storage_size_unchecked(spec)
    return -(-n // S.PAGE_SIZE) * S.PAGE_SIZE


def init_storage(view: memoryview, base_addr: int, spec: MapSpec) -> None:
    """Lay out fresh storage for spec in view (which must be zero-filled, as ftruncate gives)."""
    validate(spec)
    need = layout.storage_size_unchecked(spec)
    if len(view) < need:
        raise OSError(errno.EINVAL, f"storage view of {len(view)} bytes, map needs {need}")
    cls = _impl_class(spec.map_type)
    jsize = layout.journal_size_for(spec)
    data_off = layout.write_header(view, spec, jsize)
    cls.init_data(view, data_off, spec)


def attach(view: memoryview, base_addr: int) -> MapImpl:
    """A process-local handle on storage laid out by init_storage (in any process)."""
    if len(view) < layout.HDR_SIZE:
        raise OSError(errno.EINVAL, f"map storage of {len(view)} bytes has no room for its header")
    sp = layout.read_spec(view)
    try:
        validate(sp)
        need = layout.storage_size_unchecked(sp)
    except OSError as e:
        raise OSError(errno.EINVAL, f"map storage header is corrupt: {e.strerror}") from None
    if len(view) < need or len(view) % 8:
        raise OSError(errno.EINVAL, f"map storage of {len(view)} bytes, its map needs {need}")
    cls = _impl_class(sp.map_type)
    return cls(view, base_addr, sp)
