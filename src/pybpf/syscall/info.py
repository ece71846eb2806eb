"""BPF_OBJ_GET_INFO_BY_FD: the info struct of an object, with Linux's length rules.

Each object kind registers a provider returning its full info struct (for
maps ``struct bpf_map_info``, 104 bytes in Linux 6.18); the program layer
registers one for "prog".  As Linux: user bytes past the struct we know must
be zero (E2BIG), at most info_len bytes are written, and info_len is set to
what was written.
"""

from __future__ import annotations

import errno
import os
import struct
from typing import Callable

from .. import kobj
from .attr import InfoAttr
from .dispatch import Attr
from .umem import read, write

_providers: dict[str, Callable[[kobj.BpfObject], bytes]] = {}

MAP_INFO_SIZE = 104


def register_info(kind: str, provider: Callable[[kobj.BpfObject], bytes]) -> None:
    _providers[kind] = provider


def map_info(obj: kobj.BpfObject) -> bytes:
    from .mapops import spec_of
    s = spec_of(obj)
    b = bytearray(MAP_INFO_SIZE)
    struct.pack_into("<6I", b, 0, s.map_type, obj.id, s.key_size, s.value_size, s.max_entries,
                     s.map_flags)
    name = obj.name.encode("latin-1", "replace")[:15]
    b[24:24 + len(name)] = name
    f = obj.fields
    if f.get("btf_id"):
        struct.pack_into("<3I", b, 64, f["btf_id"], f["btf_key_type_id"], f["btf_value_type_id"])
    struct.pack_into("<Q", b, 80, s.map_extra)
    return bytes(b)


def obj_get_info_by_fd(a: Attr) -> int:
    i = a.view(InfoAttr)
    try:
        os.fstat(i.bpf_fd)
    except OSError:
        raise OSError(errno.EBADFD, f"{os.strerror(errno.EBADFD)}: fd {i.bpf_fd}") from None
    obj = kobj.obj_from_fd(i.bpf_fd)
    provider = _providers.get(obj.kind)
    if provider is None:
        raise OSError(errno.EINVAL, f"no info for {obj.kind} objects")
    info = provider(obj)
    n = i.info_len
    if n > len(info):
        if n - len(info) > 4096 * 16:
            raise OSError(errno.E2BIG, "info_len too large")
        if read(i.info + len(info), n - len(info), "info").strip(b"\0"):
            raise OSError(errno.E2BIG, f"non-zero bytes after the {len(info)}-byte info struct")
        n = len(info)
    if n:
        read(i.info, n, "info")                 # Linux reads the user's struct in first
        write(i.info, info[:n], "info")
    a.write_back(InfoAttr.info_len.offset, n.to_bytes(4, "little"))
    return 0


register_info("map", map_info)
