"""BPF_MAP_FREEZE: a map that user space may no longer change (libbpf freezes .rodata).

As Linux's map_freeze(): the fd must be writable (EPERM); afterwards every
user-space write (update, delete, lookup-and-delete, through any fd of any
process) fails with EPERM, and so does a second freeze (Linux's write
permission check comes before its "already frozen" EBUSY, which only a
write-mapped map reaches), while programs keep writing
unless the map also has BPF_F_RDONLY_PROG.  The flag lives in the map
storage header, so other processes see it.
"""

from __future__ import annotations

import errno
import os

from .. import kobj
from ..maps import layout
from . import constants as C
from .attr import MapElemAttr
from .dispatch import Attr, register


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {what}")


def is_frozen(obj) -> bool:
    return layout.is_frozen(obj.payload)


def check_writable(obj) -> None:
    """EPERM for a user-space write to a frozen map."""
    if layout.is_frozen(obj.payload):
        raise _err(errno.EPERM, f"map id {obj.id} is frozen (BPF_MAP_FREEZE): user space cannot change it")


def freeze_fd(fd: int) -> None:
    from .mapops import map_from_fd
    obj = map_from_fd(fd)
    if kobj.fd_access(fd) == os.O_RDONLY:
        raise _err(errno.EPERM, f"map fd {fd} is read-only")
    if not layout.freeze(obj.payload_addr):
        raise _err(errno.EPERM, f"map id {obj.id} is already frozen")


def map_freeze(a: Attr) -> int:
    freeze_fd(a.view(MapElemAttr).map_fd)
    return 0


register(C.BPF_MAP_FREEZE, map_freeze)
