"""The BPF_PROG_LOAD part of ``union bpf_attr`` and ``struct bpf_prog_info``, as Linux 6.18 lays them out.

The installed uapi header predates some fields (fd_array_cnt, signature);
the layout below was checked against the running kernel: a non-zero byte at
offset 167 is accepted, so ``keyring_id`` is the last field.
"""

from __future__ import annotations

import ctypes

u32 = ctypes.c_uint32
u64 = ctypes.c_uint64
s32 = ctypes.c_int32


class ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", u32), ("insn_cnt", u32), ("insns", u64), ("license", u64),
                ("log_level", u32), ("log_size", u32), ("log_buf", u64), ("kern_version", u32),
                ("prog_flags", u32), ("prog_name", ctypes.c_char * 16), ("prog_ifindex", u32),
                ("expected_attach_type", u32), ("prog_btf_fd", u32), ("func_info_rec_size", u32),
                ("func_info", u64), ("func_info_cnt", u32), ("line_info_rec_size", u32),
                ("line_info", u64), ("line_info_cnt", u32), ("attach_btf_id", u32),
                ("attach_prog_fd", u32), ("core_relo_cnt", u32), ("fd_array", u64),
                ("core_relos", u64), ("core_relo_rec_size", u32), ("log_true_size", u32),
                ("prog_token_fd", s32), ("fd_array_cnt", u32), ("signature", u64),
                ("signature_size", u32), ("keyring_id", s32)]


PROG_LOAD_LAST_FIELD_END = ProgLoadAttr.keyring_id.offset + ProgLoadAttr.keyring_id.size
PROG_NAME_OFFSET = ProgLoadAttr.prog_name.offset
LOG_TRUE_SIZE_OFFSET = ProgLoadAttr.log_true_size.offset


class ProgInfo(ctypes.Structure):
    """struct bpf_prog_info (232 bytes in Linux 6.18)."""
    _fields_ = [("type", u32), ("id", u32), ("tag", ctypes.c_uint8 * 8), ("jited_prog_len", u32),
                ("xlated_prog_len", u32), ("jited_prog_insns", u64), ("xlated_prog_insns", u64),
                ("load_time", u64), ("created_by_uid", u32), ("nr_map_ids", u32), ("map_ids", u64),
                ("name", ctypes.c_char * 16), ("ifindex", u32), ("gpl_compatible", u32),
                ("netns_dev", u64), ("netns_ino", u64), ("nr_jited_ksyms", u32),
                ("nr_jited_func_lens", u32), ("jited_ksyms", u64), ("jited_func_lens", u64),
                ("btf_id", u32), ("func_info_rec_size", u32), ("func_info", u64), ("nr_func_info", u32),
                ("nr_line_info", u32), ("line_info", u64), ("jited_line_info", u64),
                ("nr_jited_line_info", u32), ("line_info_rec_size", u32),
                ("jited_line_info_rec_size", u32), ("nr_prog_tags", u32), ("prog_tags", u64),
                ("run_time_ns", u64), ("run_cnt", u64), ("recursion_misses", u64),
                ("verified_insns", u32), ("attach_btf_obj_id", u32), ("attach_btf_id", u32),
                ("_pad", u32)]


assert ctypes.sizeof(ProgLoadAttr) == 168 and PROG_LOAD_LAST_FIELD_END == 168
assert ctypes.sizeof(ProgInfo) == 232
