"""OBJ_PIN and OBJ_GET: pins are hard links of the object's file into the tree.

Errnos follow Linux 6.x (checked against the host kernel by
tests/test_kernel_maps.py): a path whose parent is outside the tree is EPERM
for pin and EACCES for get; an existing name is EEXIST; a missing parent or an
empty path ENOENT; OBJ_GET of a directory or of a non-object file EACCES.
"""

from __future__ import annotations

import errno
import os

from . import fs
from .objects import _err, obj_from_fd, read_header

BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_PATH_FD = 1 << 14


def pin(fd: int, path: str | bytes) -> None:
    """Give the object behind fd a name in the BPF fs (0600, as Linux's pins)."""
    obj = obj_from_fd(fd)              # EBADF / EINVAL before the path is looked at
    if obj.kind == "perf_event":
        raise _err(errno.EINVAL, f"fd {fd} is a perf event, which cannot be pinned")
    real = fs.translate(path)
    if not real:
        raise _err(errno.ENOENT, "empty path")
    if os.path.realpath(real) == os.path.realpath(fs.root()):
        raise _err(errno.EEXIST, os.fsdecode(path))
    if real.endswith("/") or os.path.basename(real) in ("", ".", ".."):
        raise _err(errno.ENOENT if not os.path.exists(real) else errno.EEXIST, real)
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        raise _err(errno.ENOENT if not os.path.exists(parent) else errno.ENOTDIR, parent)
    if not fs.inside_tree(real):
        raise _err(errno.EPERM, f"{path}: not in the BPF file system ({fs.root()})")
    from .holds import keep_name
    try:
        keep_name(obj)          # so that the object can be pinned again after every pin is removed
    except FileNotFoundError:
        pass                    # already lost all its names: the link below says so
    try:
        fs.link_fd(obj.fd, real)
    except FileExistsError:
        raise _err(errno.EEXIST, os.fsdecode(path)) from None
    except FileNotFoundError:
        if os.path.isdir(parent):
            # Linux lets an O_TMPFILE file get a name only while it never had one
            # before, or still has one; keep_name() gives every pinned or held
            # object a lasting hidden name, so only an object that lost its names
            # before that existed gets here.
            raise _err(errno.ENOENT, f"{path}: object lost all its names and cannot be re-linked") from None
        raise _err(errno.ENOENT, parent) from None


def get(path: str | bytes, file_flags: int = 0) -> int:
    """A new fd on the object pinned at path."""
    if file_flags & ~(BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_PATH_FD) or \
            (file_flags & BPF_F_RDONLY and file_flags & BPF_F_WRONLY):
        raise _err(errno.EINVAL, "bad file_flags")
    real = fs.translate(path)
    if not real:
        raise _err(errno.ENOENT, "empty path")
    if file_flags & BPF_F_RDONLY:
        flags = os.O_RDONLY
    elif file_flags & BPF_F_WRONLY:
        flags = os.O_WRONLY
    else:
        flags = os.O_RDWR
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise _err(errno.ENOENT, os.fsdecode(path)) from None
    except NotADirectoryError:
        raise _err(errno.ENOTDIR, os.fsdecode(path)) from None
    if not os.path.isfile(real) or not fs.inside_tree(real) or st.st_size < 4096:
        raise _err(errno.EACCES, f"{os.fsdecode(path)}: not a pinned BPF object")
    try:
        fd = os.open(real, flags | os.O_CLOEXEC | os.O_NOFOLLOW)
    except PermissionError:
        raise _err(errno.EACCES, os.fsdecode(path)) from None
    except OSError as e:
        raise _err(e.errno, os.fsdecode(path)) from None
    if read_header(fd) is None and flags != os.O_WRONLY:
        os.close(fd)
        raise _err(errno.EACCES, f"{os.fsdecode(path)}: not a pinned BPF object")
    return fd
