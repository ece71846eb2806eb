"""Where the BPF file system lives, and how Linux paths map onto it.

The tree plays the role of ``/sys/fs/bpf``.  Objects themselves are unnamed
files created in a hidden store directory *inside* the root, because pins are
hard links and hard links cannot cross file systems.
"""

from __future__ import annotations

import os

LINUX_ROOT = "/sys/fs/bpf"
STORE_NAME = ".pybpf"          # hidden: `ls` and `map show` never list it


def root() -> str:
    """The BPF fs root, created 01777-like on first use (per-user default)."""
    env = os.environ.get("PYBPF_FS")
    if env:
        path = os.path.abspath(env)
    else:
        xdg = os.environ.get("XDG_RUNTIME_DIR")
        if xdg and os.path.isdir(xdg):
            path = os.path.join(xdg, "pybpf")
        else:
            path = f"/dev/shm/pybpf-{os.getuid()}"
    _ensure(path)
    return path


_checked: set[str] = set()
_STORE_SUBDIRS = ("holds", "tmp")


def _ensure(path: str) -> None:
    store = os.path.join(path, STORE_NAME)
    # Every part is checked, not one marker: a process starting while another is still
    # creating the tree must not see it half made (or after someone removed a part).
    if not all(os.path.isdir(os.path.join(store, sub)) for sub in _STORE_SUBDIRS):
        _make(path, store)
    if path not in _checked:
        _probe(store)
        _checked.add(path)


def _probe(store: str) -> None:
    """Objects are unnamed files that pins hard-link: the file system must allow both."""
    from ..errors import PybpfError
    tmp = os.path.join(store, "tmp", f"probe.{os.getpid()}")
    try:
        fd = os.open(store, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise PybpfError(f"BPF file system root {os.path.dirname(store)}: cannot create unnamed "
                         f"files there ({e.strerror}); set PYBPF_FS to a directory on a tmpfs "
                         f"such as /dev/shm") from None
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        link_fd(fd, tmp)
        os.unlink(tmp)
    except OSError as e:
        raise PybpfError(f"BPF file system root {os.path.dirname(store)}: cannot pin (hard-link) "
                         f"objects there ({e.strerror}); set PYBPF_FS to a directory on a tmpfs "
                         f"such as /dev/shm") from None
    finally:
        os.close(fd)


def _make(path: str, store: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)
    for sub in ("",) + _STORE_SUBDIRS:
        d = os.path.join(store, sub)
        try:
            os.mkdir(d, 0o1777)
            os.chmod(d, 0o1777)     # other users' processes create objects here too
        except FileExistsError:
            pass


def store_dir() -> str:
    return os.path.join(root(), STORE_NAME)


def translate(path: str | bytes) -> str:
    """Map a user path to the real path: ``/sys/fs/bpf/x`` becomes ``<root>/x``.

    Relative paths and paths elsewhere are returned absolute and unchanged; the
    caller decides whether they are inside the tree.
    """
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if path == LINUX_ROOT or path.startswith(LINUX_ROOT + "/"):
        return root() + path[len(LINUX_ROOT):]
    return os.path.abspath(path) if path else path


def inside_tree(real_path: str) -> bool:
    """True when the *parent directory* of real_path resolves into the tree (not the store)."""
    r = os.path.realpath(root())
    parent = os.path.realpath(os.path.dirname(real_path) or ".")
    if parent != r and not parent.startswith(r + os.sep):
        return False
    store = os.path.join(r, STORE_NAME)
    return not (parent == store or parent.startswith(store + os.sep))


def to_linux(real_path: str) -> str:
    """The ``/sys/fs/bpf/...`` spelling of a path inside the tree (for listings)."""
    r = root()
    if real_path == r or real_path.startswith(r + os.sep):
        return LINUX_ROOT + real_path[len(r):]
    return real_path


_libc = None


def link_fd(fd: int, dst: str) -> None:
    """Give the file open as fd the name dst (linkat through /proc/self/fd, following it).

    os.link would call link(2), which links the /proc symlink itself (EXDEV).
    """
    global _libc
    if _libc is None:
        import ctypes
        _libc = ctypes.CDLL(None, use_errno=True)
    import ctypes
    if _libc.linkat(-100, f"/proc/self/fd/{fd}".encode(), -100, os.fsencode(dst), 0x400) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), dst)
