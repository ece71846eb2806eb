"""``union bpf_attr`` as Linux lays it out, one ctypes structure per command family.

Written from include/uapi/linux/bpf.h.  ``SIZEOF_ATTR`` is the size of the
union in Linux 6.18 (probe: a non-zero byte at offset 168 gives E2BIG, at 167
does not), and ``LAST_FIELD_END`` the end of each command's last field, after
which Linux's CHECK_ATTR wants only zeroes.
"""

from __future__ import annotations

import ctypes

from . import constants as C

SIZEOF_ATTR = 168

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32


class MapCreateAttr(ctypes.Structure):
    _fields_ = [("map_type", u32), ("key_size", u32), ("value_size", u32), ("max_entries", u32),
                ("map_flags", u32), ("inner_map_fd", u32), ("numa_node", u32),
                ("map_name", ctypes.c_char * C.BPF_OBJ_NAME_LEN), ("map_ifindex", u32),
                ("btf_fd", u32), ("btf_key_type_id", u32), ("btf_value_type_id", u32),
                ("btf_vmlinux_value_type_id", u32), ("map_extra", u64),
                ("value_type_btf_obj_fd", s32), ("map_token_fd", s32),
                ("excl_prog_hash", u64), ("excl_prog_hash_size", u32)]


class MapElemAttr(ctypes.Structure):
    _fields_ = [("map_fd", u32), ("_pad", u32), ("key", u64), ("value", u64), ("flags", u64)]

    @property
    def next_key(self) -> int:
        return self.value


class ObjAttr(ctypes.Structure):
    _fields_ = [("pathname", u64), ("bpf_fd", u32), ("file_flags", u32), ("path_fd", s32)]


class GetIdAttr(ctypes.Structure):
    _fields_ = [("start_id", u32), ("next_id", u32), ("open_flags", u32), ("fd_by_id_token_fd", u32)]


class InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", u32), ("info_len", u32), ("info", u64)]


class BpfAttr(ctypes.Union):
    """The whole union, for callers building an attr in Python."""
    _fields_ = [("map_create", MapCreateAttr), ("elem", MapElemAttr), ("obj", ObjAttr),
                ("get_id", GetIdAttr), ("info", InfoAttr), ("_raw", ctypes.c_char * SIZEOF_ATTR)]


def _end(struct, field: str) -> int:
    f = getattr(struct, field)
    return f.offset + f.size


LAST_FIELD_END = {
    C.BPF_MAP_CREATE: _end(MapCreateAttr, "excl_prog_hash_size"),
    C.BPF_MAP_LOOKUP_ELEM: _end(MapElemAttr, "flags"),
    C.BPF_MAP_UPDATE_ELEM: _end(MapElemAttr, "flags"),
    C.BPF_MAP_DELETE_ELEM: _end(MapElemAttr, "flags"),
    C.BPF_MAP_GET_NEXT_KEY: _end(MapElemAttr, "value"),
    C.BPF_MAP_LOOKUP_AND_DELETE_ELEM: _end(MapElemAttr, "flags"),
    C.BPF_MAP_FREEZE: _end(MapElemAttr, "map_fd"),
    C.BPF_OBJ_PIN: _end(ObjAttr, "path_fd"),
    C.BPF_OBJ_GET: _end(ObjAttr, "path_fd"),
    C.BPF_MAP_GET_NEXT_ID: _end(GetIdAttr, "next_id"),
    C.BPF_PROG_GET_NEXT_ID: _end(GetIdAttr, "next_id"),
    C.BPF_MAP_GET_FD_BY_ID: _end(GetIdAttr, "fd_by_id_token_fd"),
    C.BPF_PROG_GET_FD_BY_ID: _end(GetIdAttr, "fd_by_id_token_fd"),
    C.BPF_OBJ_GET_INFO_BY_FD: _end(InfoAttr, "info"),
}
