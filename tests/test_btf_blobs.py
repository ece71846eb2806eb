"""Small BTF blobs and raw-attr builders shared by the BTF / func_info differential tests."""

from __future__ import annotations

import ctypes
import os
import struct

KIND_INT, KIND_PTR, KIND_FUNC, KIND_FUNC_PROTO = 1, 2, 12, 13


def int_type(name_off: int) -> bytes:
    return struct.pack("<III", name_off, KIND_INT << 24, 4) + struct.pack("<I", (1 << 24) | 32)


def proto(ret: int) -> bytes:
    return struct.pack("<III", 0, KIND_FUNC_PROTO << 24, ret)


def func(name_off: int, proto_id: int, linkage: int = 0) -> bytes:
    return struct.pack("<III", name_off, (KIND_FUNC << 24) | linkage, proto_id)


STRS = b"\0int\0main\0sub\0f.c\0return 0;\0"
S_INT, S_MAIN, S_SUB, S_FILE, S_LINE = 1, 5, 10, 14, 18
# [1] INT int, [2] FUNC_PROTO () -> int, [3] FUNC main, [4] FUNC sub
TYPES = int_type(S_INT) + proto(1) + func(S_MAIN, 2) + func(S_SUB, 2)


def blob(types: bytes = TYPES, strs: bytes = STRS, *, hdr_len: int = 24, magic: int = 0xEB9F,
         version: int = 1, flags: int = 0, type_off: int = 0, str_off: int | None = None,
         type_len: int | None = None, str_len: int | None = None, gap: bytes = b"") -> bytes:
    """A BTF blob: header, ``gap`` bytes, types, strings; any header field overridable."""
    tl = len(types) if type_len is None else type_len
    so = len(gap) + len(types) if str_off is None else str_off
    sl = len(strs) if str_len is None else str_len
    hdr = struct.pack("<HBBIIIII", magic, version, flags, hdr_len, type_off, tl, so, sl)
    return hdr.ljust(hdr_len, b"\0")[:max(hdr_len, 24)] + gap + types + strs


class Buffers:
    """Keeps the ctypes buffers an attr points into alive."""

    def __init__(self):
        self.keep = []

    def buf(self, data: bytes | None, size: int | None = None) -> int:
        if data is None:
            return 0
        b = ctypes.create_string_buffer(bytes(data), max(size or len(data), 1))
        self.keep.append(b)
        return ctypes.addressof(b)


def btf_attr(bufs: Buffers, data: bytes, log_level: int = 0, log_size: int = 0,
             size: int | None = None) -> tuple[bytearray, ctypes.Array | None]:
    log = ctypes.create_string_buffer(log_size) if log_size else None
    bufs.keep.append(log)
    a = bytearray(40)
    struct.pack_into("<QQIII", a, 0, bufs.buf(data) if data is not None else 0,
                     ctypes.addressof(log) if log is not None else 0,
                     len(data or b"") if size is None else size, log_size, log_level)
    return a, log


# main: call sub; exit.  sub: r0 = 0; exit
PROG = bytes.fromhex("8510000001000000" "9500000000000000" "b700000000000000" "9500000000000000")


def prog_attr(bufs: Buffers, *, btf_fd: int, func_info: bytes = b"", func_rec: int = 8,
              func_cnt: int | None = None, line_info: bytes = b"", line_rec: int = 16,
              line_cnt: int | None = None, insns: bytes = PROG, prog_type: int = 1,
              log_level: int = 1, log_size: int = 65536) -> tuple[bytearray, ctypes.Array | None]:
    log = ctypes.create_string_buffer(log_size) if log_size else None
    bufs.keep.append(log)
    a = bytearray(168)
    struct.pack_into("<IIQQIIQ", a, 0, prog_type, len(insns) // 8, bufs.buf(insns), bufs.buf(b"GPL\0"),
                     log_level, log_size, ctypes.addressof(log) if log is not None else 0)
    fcnt = (len(func_info) // func_rec if func_rec else 0) if func_cnt is None else func_cnt
    lcnt = (len(line_info) // line_rec if line_rec else 0) if line_cnt is None else line_cnt
    struct.pack_into("<IIQIIQI", a, 72, btf_fd, func_rec, bufs.buf(func_info) if func_info else 0, fcnt,
                     line_rec, bufs.buf(line_info) if line_info else 0, lcnt)
    return a, log


def func_recs(*recs, rec_size: int = 8, tail: bytes = b"") -> bytes:
    return b"".join(struct.pack("<II", o, t).ljust(rec_size - len(tail), b"\0") + tail for o, t in recs)


def line_recs(*recs) -> bytes:
    return b"".join(struct.pack("<IIII", o, f, l, c) for o, f, l, c in recs)


def close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)
