"""OBJ_GET_INFO_BY_FD for programs: ``struct bpf_prog_info`` with Linux's array rules.

Programs need more than a fixed struct (the map handling in
pybpf.syscall.info): the caller's struct carries pointers and counts
(xlated_prog_insns / xlated_prog_len, map_ids / nr_map_ids, prog_tags /
nr_prog_tags).  As Linux does, each count is replaced by the real one, and
min(count given, real) items are copied where the pointer says.  So we
register our own handler for the command and hand every other object kind
back to the one we replace.
"""

from __future__ import annotations

import ctypes
import errno
import struct

from .. import kobj
from ..isa.insn import encode
from ..syscall import constants as C
from ..syscall import register, register_info
from ..syscall.attr import InfoAttr
from ..syscall.dispatch import Attr, _handlers
from ..syscall.umem import read, write
from .attr import ProgInfo
from .image import ProgImage, read_image

INFO_SIZE = ctypes.sizeof(ProgInfo)
FUNC_INFO_SIZE = 8
LINE_INFO_SIZE = 16


def build_info(obj: kobj.BpfObject, image: ProgImage | None = None) -> ProgInfo:
    """The fixed fields (no arrays copied) of the program's info."""
    image = image or read_image(obj)
    info = ProgInfo()
    info.type = image.prog_type
    info.id = obj.id
    info.tag[:] = list(image.tag)
    info.xlated_prog_len = len(image.xlated) * 8
    info.load_time = image.load_time_ns
    info.created_by_uid = obj.header["uid"]
    info.nr_map_ids = len(image.map_ids)
    info.name = obj.name.encode("latin-1", "replace")[:15]
    info.gpl_compatible = 1 if image.gpl_compatible else 0
    info.nr_prog_tags = 1
    info.verified_insns = image.verified_insns
    info.btf_id = image.btf_id
    info.nr_func_info = len(image.func_info) // FUNC_INFO_SIZE
    info.func_info_rec_size = FUNC_INFO_SIZE      # Linux reports the record sizes even without BTF
    info.nr_line_info = len(image.line_info) // LINE_INFO_SIZE
    info.line_info_rec_size = LINE_INFO_SIZE
    info.jited_line_info_rec_size = 8
    return info


def prog_info_bytes(obj: kobj.BpfObject) -> bytes:
    return bytes(build_info(obj))


def _fill(obj: kobj.BpfObject, user: ProgInfo) -> ProgInfo:
    image = read_image(obj)
    info = build_info(obj, image)
    # Linux: a caller asking for records must use its record sizes, else EINVAL
    if (user.nr_func_info or user.func_info_rec_size) and user.func_info_rec_size != FUNC_INFO_SIZE:
        raise OSError(errno.EINVAL, f"func_info_rec_size {user.func_info_rec_size} is not {FUNC_INFO_SIZE}")
    if (user.nr_line_info or user.line_info_rec_size) and user.line_info_rec_size != LINE_INFO_SIZE:
        raise OSError(errno.EINVAL, f"line_info_rec_size {user.line_info_rec_size} is not {LINE_INFO_SIZE}")
    for recs, want, ptr, size in ((image.func_info, user.nr_func_info, user.func_info, FUNC_INFO_SIZE),
                                  (image.line_info, user.nr_line_info, user.line_info, LINE_INFO_SIZE)):
        n = min(want, len(recs) // size)
        if n:
            write(ptr, recs[:n * size], "func_info" if size == FUNC_INFO_SIZE else "line_info")
    # each array: the caller's count in, the real count out, min of both copied
    xl = encode(image.xlated)
    if user.xlated_prog_len and info.xlated_prog_len:
        n = min(user.xlated_prog_len, len(xl))
        write(user.xlated_prog_insns, xl[:n], "xlated_prog_insns")
    info.xlated_prog_insns = user.xlated_prog_insns
    if user.nr_map_ids and image.map_ids:
        n = min(user.nr_map_ids, len(image.map_ids))
        write(user.map_ids, struct.pack(f"<{n}I", *image.map_ids[:n]), "map_ids")
    info.map_ids = user.map_ids
    if user.nr_prog_tags:
        write(user.prog_tags, image.tag, "prog_tags")
    info.prog_tags = user.prog_tags
    # jited_*: pybpf never JITs, so the lengths stay 0 and nothing is copied; keep the pointers
    for f in ("jited_prog_insns", "jited_ksyms", "jited_func_lens", "func_info", "line_info",
              "jited_line_info"):
        setattr(info, f, getattr(user, f))
    return info


def _handler(previous):
    def obj_get_info_by_fd(a: Attr) -> int:
        i = a.view(InfoAttr)
        try:
            obj = kobj.obj_from_fd(i.bpf_fd)
        except OSError:
            obj = None
        if obj is None or obj.kind != "prog":
            return previous(a)
        n = i.info_len
        if n > INFO_SIZE:
            if n - INFO_SIZE > 4096 * 16:
                raise OSError(errno.E2BIG, "info_len too large")
            if read(i.info + INFO_SIZE, n - INFO_SIZE, "info").strip(b"\0"):
                raise OSError(errno.E2BIG, f"non-zero bytes after the {INFO_SIZE}-byte bpf_prog_info")
            n = INFO_SIZE
        raw = read(i.info, n, "info") if n else b""
        user = ProgInfo.from_buffer_copy(raw.ljust(INFO_SIZE, b"\0"))
        info = _fill(obj, user)
        if n:
            write(i.info, bytes(info)[:n], "info")
        a.write_back(InfoAttr.info_len.offset, n.to_bytes(4, "little"))
        return 0
    return obj_get_info_by_fd


def install() -> None:
    register_info("prog", prog_info_bytes)
    entry = _handlers.get(C.BPF_OBJ_GET_INFO_BY_FD)
    if entry is None or getattr(entry[0], "_pybpf_prog", False):
        return
    h = _handler(entry[0])
    h._pybpf_prog = True
    register(C.BPF_OBJ_GET_INFO_BY_FD, h, entry[1])


install()
