"""``Program``: a loaded BPF program as a Python object (the counterpart of ``pybpf.Map``).

    prog = Program.load("r0 = 0\\nexit", "socket_filter", license="GPL")
    prog.pin("/sys/fs/bpf/p")
    same = Program.from_pinned("/sys/fs/bpf/p")

Maps: pass them as ``maps=[m0, m1, ...]`` (Map objects or fds) and refer to
them in the program as ``r1 = map_idx(0) ll`` (LD_IMM64 with BPF_PSEUDO_MAP_IDX,
Linux's fd_array), or use their fds directly with ``map_fd(fd)``.
"""

from __future__ import annotations

import errno
import os
from datetime import datetime, timedelta, timezone
from typing import Mapping, Sequence

from .. import kobj
from ..isa.insn import Insn
from . import load as L
from . import logbuf
from .image import ProgImage, held_maps, read_image
from .types import prog_type_name, prog_type_number


def _fd_of(m) -> int:
    if isinstance(m, int):
        return m
    fd = getattr(m, "fd", None)
    if isinstance(fd, int):
        return fd
    raise TypeError(f"a map is a Map or an fd, not {type(m).__name__}")


def _fd_list(maps) -> list[int]:
    """fd_array from a sequence of maps, or a mapping index -> map without gaps."""
    if maps is None:
        return []
    if isinstance(maps, Mapping):
        n = max(maps, default=-1) + 1
        missing = [i for i in range(n) if i not in maps]
        if missing or any(not isinstance(k, int) or k < 0 for k in maps):
            raise L.ProgLoadError(errno.EINVAL, f"maps: indexes must be 0..{n - 1} without gaps "
                                  f"(missing {missing[:3]})")
        return [_fd_of(maps[i]) for i in range(n)]
    return [_fd_of(m) for m in maps]


def _records(recs, size: int, what: str) -> bytes:
    """Records as raw bytes (whole records of ``size``) from bytes or tuples of u32 fields."""
    import struct
    if not recs:
        return b""
    if isinstance(recs, (bytes, bytearray, memoryview)):
        raw = bytes(recs)
    else:
        try:
            raw = b"".join(struct.pack(f"<{size // 4}I", *r) for r in recs)
        except (struct.error, TypeError) as e:
            raise L.ProgLoadError(errno.EINVAL, f"{what}: each record is {size // 4} u32 fields ({e})") from None
    if len(raw) % size:
        raise L.ProgLoadError(errno.EINVAL, f"{what} of {len(raw)} bytes is not a whole number of "
                              f"{size}-byte records")
    return raw


def boot_time_ns() -> int:
    """Wall-clock time of boot, to turn CLOCK_BOOTTIME stamps into dates (as bpftool does)."""
    import time
    return time.time_ns() - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class Program:
    """A program object held through a real fd (closing the last fd and pin frees it)."""

    def __init__(self, fd: int, *, log: str = "", _owned: bool = True):
        self._obj = kobj.obj_from_fd(fd)
        if self._obj.kind != "prog":
            raise L.ProgLoadError(errno.EINVAL, f"the object is a {self._obj.kind}, not a program")
        self._fd = fd
        self._owned = _owned
        self.log = log
        self._image: ProgImage | None = None

    # -- creation -----------------------------------------------------------------
    @classmethod
    def load(cls, code, prog_type, *, license: str = "GPL", log_level: int = 0, log_size: int | None = None,
             privileged: bool = True, name: str = "", maps: Sequence | None = None,
             expected_attach_type: int = 0, prog_flags: int = 0, btf=None, func_info=None,
             line_info=None) -> "Program":
        """Load ``code`` (Insn list, raw bytes, or assembler text); raises ProgLoadError.

        ``log_level`` as Linux (1, 2, 4 stats, 8 fixed); ``log_size`` limits the
        log as a user buffer would (ENOSPC when it does not fit), default unlimited.
        ``btf``: the program's BTF as raw bytes (loaded as a BTF object) or a BTF
        object fd (prog_btf_fd); ``func_info`` / ``line_info``: ``struct
        bpf_func_info`` (8-byte) / ``struct bpf_line_info`` (16-byte) records as
        bytes, or func_info as ``(insn_off, type_id)`` pairs.  Callbacks
        (bpf_loop, ...) need btf and func_info, as in Linux.
        """
        insns = L.as_insns(code)
        ptype = prog_type_number(prog_type)
        fds = _fd_list(maps)
        name_raw = name.encode("latin-1", "replace") if isinstance(name, str) else bytes(name)
        if len(name_raw) > 15:
            raise L.ProgLoadError(errno.EINVAL, f"program name {name!r} is longer than 15 characters")
        req = L.LoadRequest(insns=insns, prog_type=ptype, license=license, log_level=log_level,
                            log_size=(log_size if log_size is not None else logbuf.LOG_SIZE_MAX if log_level else 0),
                            has_log_buf=bool(log_level) if log_size is None else bool(log_size),
                            name=L.name_check(name_raw + b"\0"),
                            expected_attach_type=expected_attach_type, prog_flags=prog_flags,
                            privileged=privileged, fd_array=L.seq_fd_array(fds) if maps is not None else None)
        own_btf = -1
        if func_info or line_info:
            if btf is None:
                raise L.ProgLoadError(errno.EINVAL, "func_info/line_info need the program's BTF (btf=)")
            if isinstance(btf, int):
                req.btf_fd = btf
            else:
                from ..syscall.btf import BtfError, btf_load
                try:
                    own_btf, _ = btf_load(bytes(btf))
                except BtfError as e:
                    raise L.ProgLoadError(e.errno, f"the program's BTF: {e.message}", e.log) from None
                req.btf_fd = own_btf
            req.func_info = _records(func_info, L.FUNC_INFO_SIZE, "func_info")
            req.line_info = _records(line_info, L.LINE_INFO_SIZE, "line_info")
        try:
            done = L.load(req, want_index=True)
        finally:
            if own_btf >= 0:
                os.close(own_btf)       # the program holds the BTF object now (or it is freed)
        p = cls(done.fd, log=done.log)
        p._image = done.image
        return p

    @classmethod
    def from_pinned(cls, path: str) -> "Program":
        fd = kobj.get(path, 0)
        try:
            return cls(fd)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def from_fd(cls, fd: int, *, dup: bool = True) -> "Program":
        """A Program on an existing fd (a dup of it by default, so the caller keeps theirs)."""
        own = os.dup(fd) if dup else fd
        try:
            return cls(own)
        except BaseException:
            if dup:
                os.close(own)
            raise

    @classmethod
    def from_id(cls, prog_id: int) -> "Program":
        obj = kobj.find_by_id(prog_id, "prog")
        return cls(obj.new_fd())

    # -- properties -----------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self._fd < 0:
            raise ValueError("program is closed")
        return self._fd

    def fileno(self) -> int:
        return self.fd

    @property
    def image(self) -> ProgImage:
        if self._image is None:
            self._image = read_image(self._obj)
        return self._image

    @property
    def id(self) -> int:
        return self._obj.id

    @property
    def name(self) -> str:
        return self._obj.name

    @property
    def type(self) -> int:
        return self.image.prog_type

    @property
    def type_name(self) -> str:
        return prog_type_name(self.type)

    @property
    def insns(self) -> list[Insn]:
        """The instructions as loaded."""
        return list(self.image.insns)

    @property
    def xlated(self) -> list[Insn]:
        """The instructions after verification, map references by map id (Linux's xlated)."""
        return list(self.image.xlated)

    @property
    def tag(self) -> str:
        return self.image.tag.hex()

    @property
    def map_ids(self) -> list[int]:
        return list(self.image.map_ids)

    def maps(self) -> dict[int, "object"]:
        """map id -> pybpf.Map of each map the program uses (they live as long as it does)."""
        from ..map import Map
        out = {}
        for mid, obj in held_maps(self._obj, self.image).items():
            out[mid] = Map(obj.new_fd())
        return out

    @property
    def loaded_at(self) -> datetime:
        ns = boot_time_ns() + self.image.load_time_ns
        return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=ns // 1000)

    def info(self) -> dict:
        im = self.image
        return {"id": self.id, "type": prog_type_name(im.prog_type), "name": self.name, "tag": im.tag.hex(),
                "gpl_compatible": im.gpl_compatible, "loaded_at": int(self.loaded_at.timestamp()),
                "uid": im.uid, "bytes_xlated": len(im.xlated) * 8, "jited": False,
                "map_ids": list(im.map_ids), "verified_insns": im.verified_insns,
                **({"btf_id": im.btf_id} if im.btf_id else {})}

    # -- running ------------------------------------------------------------------
    def run(self, packet: bytes = b"", *, ctx: bytes | None = None, repeat: int = 1):
        """One BPF_PROG_TEST_RUN: ``.retval``, ``.data_out``, ``.ctx_out``, ``.duration`` (ns per run)."""
        from ..runtime import test_run  # the runtime sits above this layer; it registers the command

        return test_run(self, packet, ctx=ctx, repeat=repeat)

    # -- lifetime -----------------------------------------------------------------
    def pin(self, path: str) -> None:
        kobj.pin(self.fd, path)

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0 and self._owned:
            os.close(fd)
            kobj.sweep()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_fd", -1) >= 0 and self._owned:
                os.close(self._fd)
                self._fd = -1
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<Program id={self.id} {prog_type_name(self.type)} name={self.name!r} {state}>"
