"""References from one object to another (program -> maps, PROG_ARRAY -> programs,
map-in-map -> inner maps), and finding live objects across processes.

A hold is a hard link ``<store>/holds/<holder id>/<tag>`` to the held object,
so the kernel keeps the held object while the hold exists.  The holder's
directory also links the holder itself as ``self``: that is how the garbage
collector finds it again.  A holder is dead when ``self`` is its only name and
no process has it open or mapped; :func:`gc` then removes its holds, and the
kernel frees whatever they were the last reference of (recursively, since a
held holder becomes dead in turn).

Limits: cycles of holds (a PROG_ARRAY holding a program that uses it) are
never collected; an fd in flight in a Unix socket is invisible to the scan.
"""

from __future__ import annotations

import errno
import os
import re
import threading

from . import fs
from .objects import BpfObject, _err, obj_from_path, read_header

_lock = threading.Lock()


def _reinit_after_fork() -> None:
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reinit_after_fork)


def _holder_dir(holder: BpfObject, create: bool) -> str:
    d = os.path.join(fs.store_dir(), "holds", str(holder.id))
    for attempt in range(5):
        if not create or os.path.exists(os.path.join(d, "self")):
            return d
        os.makedirs(d, exist_ok=True)
        try:
            fs.link_fd(holder.fd, os.path.join(d, "self"))
        except FileExistsError:
            pass
        except FileNotFoundError:
            continue        # another process's gc() removed the empty directory meanwhile
    return d


def keep_name(obj: BpfObject) -> None:
    """Give obj its hidden name ``holds/<id>/self`` (before it gets a pin or a hold).

    An O_TMPFILE file may be linked only while it never had a name or still
    has one: without this name, an object whose pins were all removed (rm) or
    that left the last slot holding it could never be pinned or held again,
    though Linux allows both.  The object's life is then the garbage
    collector's business once nothing else names it: gc() frees it when no
    process has it open or mapped.
    """
    _holder_dir(obj, True)


def _safe_tag(tag: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", tag) or tag in ("self", ".", ".."):
        raise ValueError(f"bad hold tag {tag!r}")
    return tag


def add_hold(holder: BpfObject, held: BpfObject, tag: str | None = None) -> None:
    """holder keeps held alive until :func:`drop_hold` or the holder's death.

    ``tag`` names the reference (e.g. a map slot's key in hex); by default the
    held object's id, so a program holds each map once.
    """
    tag = _safe_tag(tag if tag is not None else f"id{held.id}")
    maybe_gc()
    with _lock:
        keep_name(held)
        d = _holder_dir(holder, True)
        dst = os.path.join(d, tag)
        tmp = os.path.join(d, f".{tag}.{os.getpid()}.{threading.get_ident()}")
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        try:
            fs.link_fd(held.fd, tmp)
        except FileNotFoundError:
            raise _err(errno.ENOENT, f"object id {held.id} lost all its names and cannot be held") from None
        os.replace(tmp, dst)    # atomic: a slot always holds either the old or the new object


def drop_hold(holder: BpfObject, tag: str) -> None:
    try:
        os.unlink(os.path.join(_holder_dir(holder, False), _safe_tag(tag)))
    except FileNotFoundError:
        pass


def held_path(holder: BpfObject, tag: str) -> str | None:
    p = os.path.join(_holder_dir(holder, False), _safe_tag(tag))
    return p if os.path.exists(p) else None


# -- scanning the system for live objects -------------------------------------------

def _proc_refs() -> set[tuple[int, int]]:
    """(dev, ino) of every store file open or mapped by any visible process."""
    refs: set[tuple[int, int]] = set()
    store_dev = os.stat(fs.store_dir()).st_dev
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = []
        for n in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{n}")
            except OSError:
                continue
            if st.st_dev == store_dev:
                refs.add((st.st_dev, st.st_ino))
        try:
            with open(f"/proc/{pid}/maps", "rb") as f:
                for line in f:
                    parts = line.split(None, 5)
                    if len(parts) >= 5 and parts[4] != b"0":
                        maj, mi = parts[3].split(b":")
                        dev = os.makedev(int(maj, 16), int(mi, 16))
                        if dev == store_dev:
                            refs.add((dev, int(parts[4])))
        except OSError:
            pass
    return refs


_last_gc = 0.0
GC_INTERVAL = 10.0


def maybe_gc() -> None:
    """gc() at most every GC_INTERVAL seconds (it scans /proc), from the paths that add holds."""
    global _last_gc
    import time
    now = time.monotonic()
    if now - _last_gc >= GC_INTERVAL:
        _last_gc = now
        try:
            gc()
        except OSError:
            pass


def gc() -> int:
    """Drop the holds of dead holders (and our own unused handles); returns holders collected."""
    from .objects import sweep
    sweep()
    collected = 0
    hdir = os.path.join(fs.store_dir(), "holds")
    while True:
        refs = None
        progress = False
        for name in os.listdir(hdir):
            d = os.path.join(hdir, name)
            selfp = os.path.join(d, "self")
            try:
                st = os.stat(selfp)
            except FileNotFoundError:
                _rmtree(d)
                continue
            if st.st_nlink > 1:
                continue
            if refs is None:
                refs = _proc_refs()
            if (st.st_dev, st.st_ino) in refs:
                continue
            _rmtree(d)
            collected += 1
            progress = True
        if not progress:
            return collected


def _rmtree(d: str) -> None:
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for n in names:
        if n != "self":
            try:
                os.unlink(os.path.join(d, n))
            except FileNotFoundError:
                pass
    try:
        os.unlink(os.path.join(d, "self"))
    except FileNotFoundError:
        pass
    try:
        os.rmdir(d)
    except OSError:
        pass


def pins() -> list[tuple[str, tuple[int, int]]]:
    """Every pin in the tree: (real path, (dev, ino))."""
    out = []
    r = fs.root()
    for dirpath, dirnames, filenames in os.walk(r):
        if dirpath == r and fs.STORE_NAME in dirnames:
            dirnames.remove(fs.STORE_NAME)
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            out.append((p, (st.st_dev, st.st_ino)))
    return out


def live_objects() -> list[dict]:
    """Every object reachable from here: pinned, held, or open in a visible process.

    Each entry is the object's header plus ``pinned`` (Linux-style paths) and
    an ``open_path`` that opens it.  Sorted by id, like ``bpftool map show``.
    """
    found: dict[tuple[int, int], dict] = {}
    pin_paths: dict[tuple[int, int], list[str]] = {}

    def visit(path: str, key: tuple[int, int]) -> None:
        if key in found:
            return
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            h = read_header(fd)
        finally:
            os.close(fd)
        if h is not None:
            h["open_path"] = path
            found[key] = h

    for p, key in pins():
        pin_paths.setdefault(key, []).append(fs.to_linux(p))
        visit(p, key)
    hdir = os.path.join(fs.store_dir(), "holds")
    for name in os.listdir(hdir):
        d = os.path.join(hdir, name)
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for n in entries:
            p = os.path.join(d, n)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if n == "self" and st.st_nlink == 1:
                continue        # only its hidden name left: live only if open (found below)
            visit(p, (st.st_dev, st.st_ino))
    store_dev = os.stat(fs.store_dir()).st_dev
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for n in fds:
            p = f"/proc/{pid}/fd/{n}"
            try:
                st = os.stat(p)
            except OSError:
                continue
            if st.st_dev == store_dev and (st.st_dev, st.st_ino) not in found:
                visit(p, (st.st_dev, st.st_ino))
    here = fs.root()
    found = {k: h for k, h in found.items() if h["root"] == here}
    for key, h in found.items():
        h["pinned"] = sorted(pin_paths.get(key, []))
        h["key"] = key
    return sorted(found.values(), key=lambda h: h["id"])


def find_by_id(obj_id: int, kind: str | None = None) -> BpfObject:
    """Handle of the live object with this id (GET_FD_BY_ID); ENOENT if none."""
    from .objects import cached
    here = fs.root()
    for obj in cached():
        if obj.id == obj_id and obj.root == here and (kind is None or obj.kind == kind):
            return obj
    for h in live_objects():
        if h["id"] == obj_id and (kind is None or h["kind"] == kind):
            return obj_from_path(h["open_path"])
    raise _err(errno.ENOENT, f"no {kind or 'object'} with id {obj_id}")
