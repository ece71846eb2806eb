"""The BPF file system: root selection, /sys/fs/bpf aliases, pins with ordinary tools, permissions."""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap

import pytest

from pybpf import kobj
from pybpf.map import Map


@pytest.fixture(autouse=True)
def bpffs(monkeypatch):
    d = tempfile.mkdtemp(prefix="pybpf-fs-", dir="/dev/shm")
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def errno_of(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno
    return 0


def test_default_root(monkeypatch, bpffs):
    monkeypatch.delenv("PYBPF_FS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", bpffs)
    assert kobj.root() == os.path.join(bpffs, "pybpf")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert kobj.root() == f"/dev/shm/pybpf-{os.getuid()}"


def test_root_on_unsuitable_fs_is_a_clear_error(monkeypatch, tmp_path):
    from pybpf.errors import PybpfError
    monkeypatch.setenv("PYBPF_FS", "/proc/self/nonexistent_dir_for_pybpf")
    with pytest.raises((PybpfError, OSError)):
        kobj.root()


def test_root_half_made_by_another_process_is_completed(monkeypatch, bpffs):
    """A process may find the tree while another is still creating it (a CI failure once)."""
    root = os.path.join(bpffs, "fresh")
    os.makedirs(os.path.join(root, kobj.fs.STORE_NAME, "holds"))
    monkeypatch.setenv("PYBPF_FS", root)
    assert kobj.root() == root
    assert os.path.isdir(os.path.join(root, kobj.fs.STORE_NAME, "tmp"))


def test_processes_creating_the_root_at_once(bpffs):
    root = os.path.join(bpffs, "raced")
    env = dict(os.environ, PYBPF_FS=root)
    code = "from pybpf import kobj\nkobj.root()\n"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)
             for _ in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()


def test_linux_paths_are_aliases(bpffs):
    assert kobj.translate("/sys/fs/bpf/a/b") == os.path.join(bpffs, "a/b")
    assert kobj.translate("/sys/fs/bpf") == bpffs
    assert kobj.translate("/sys/fs/bpfx") == "/sys/fs/bpfx"
    m = Map.create("array", 4, 4, 1)
    m.pin("/sys/fs/bpf/alias")
    m.close()
    with Map.from_pinned(os.path.join(bpffs, "alias")) as a, Map.from_pinned("/sys/fs/bpf/alias") as b:
        assert a.id == b.id


def test_pin_errnos(bpffs):
    m = Map.create("array", 4, 4, 1)
    assert errno_of(kobj.pin, m.fd, "/sys/fs/bpf/p") == 0
    assert errno_of(kobj.pin, m.fd, "/sys/fs/bpf/p") == errno.EEXIST
    assert errno_of(kobj.pin, m.fd, "/sys/fs/bpf/no/such/dir") == errno.ENOENT
    assert errno_of(kobj.pin, m.fd, "/tmp/outside-pybpf-pin") == errno.EPERM
    assert errno_of(kobj.pin, m.fd, os.path.join(bpffs, ".pybpf", "sneaky")) == errno.EPERM
    with open("/dev/null") as f:
        assert errno_of(kobj.pin, f.fileno(), "/sys/fs/bpf/q") == errno.EINVAL
    assert errno_of(kobj.pin, m.fd, "") == errno.ENOENT
    m.close()


def test_get_errnos(bpffs):
    os.mkdir(os.path.join(bpffs, "dir"))
    assert errno_of(kobj.get, "/sys/fs/bpf/missing") == errno.ENOENT
    assert errno_of(kobj.get, "/sys/fs/bpf/dir") == errno.EACCES
    assert errno_of(kobj.get, "/etc/hostname") == errno.EACCES
    with open(os.path.join(bpffs, "plain"), "wb") as f:
        f.write(b"not an object" * 1000)
    assert errno_of(kobj.get, "/sys/fs/bpf/plain") == errno.EACCES
    assert errno_of(kobj.get, "/sys/fs/bpf/missing", 3) == errno.EINVAL


def test_ordinary_tools_on_the_tree(bpffs):
    m = Map.create("hash", 4, 4, 4)
    m[1] = 1
    os.mkdir(os.path.join(bpffs, "sub"))
    m.pin("/sys/fs/bpf/sub/m")
    ls = subprocess.run(["ls", bpffs], capture_output=True, text=True).stdout.split()
    assert ls == ["sub"]                               # the object store stays hidden
    st = os.stat(os.path.join(bpffs, "sub/m"))
    assert st.st_mode & 0o777 == 0o600
    subprocess.run(["rm", os.path.join(bpffs, "sub/m")], check=True)
    subprocess.run(["rmdir", os.path.join(bpffs, "sub")], check=True)
    m[2] = 2                                           # the fd keeps the object
    assert len(m) == 2
    assert errno_of(kobj.get, "/sys/fs/bpf/sub/m") == errno.ENOENT
    m.close()


def test_repin_after_all_names_removed(bpffs):
    m = Map.create("array", 4, 4, 1)
    m.pin("/sys/fs/bpf/once")
    os.unlink(os.path.join(bpffs, "once"))
    assert errno_of(m.pin, "/sys/fs/bpf/again") == 0               # as Linux
    os.unlink(os.path.join(bpffs, "again"))
    kobj.gc()                                          # our fd keeps it through a collection
    m[0] = 7
    m.pin("/sys/fs/bpf/third")
    with Map.from_pinned("/sys/fs/bpf/third") as again:
        assert again[0] == (7).to_bytes(4, "little")
    os.unlink(os.path.join(bpffs, "third"))
    mid = m.id
    m.close()
    kobj.gc()                                          # no name, no fd: freed
    assert all(h["id"] != mid for h in kobj.live_objects())
    assert not os.path.exists(os.path.join(bpffs, ".pybpf", "holds", str(mid)))
    # a map taken out of a map-in-map slot can be put back (and pinned)
    inner = Map.create("array", 4, 4, 1)
    outer = Map.create("array_of_maps", 4, 4, 2, inner_map=inner)
    outer[0] = inner.fd.to_bytes(4, "little")
    del outer[0]
    outer[1] = inner.fd.to_bytes(4, "little")
    inner.pin("/sys/fs/bpf/inner")
    outer.close()
    inner.close()
    m2 = Map.create("array", 4, 4, 1)
    m2.pin("/sys/fs/bpf/a")
    m2.pin("/sys/fs/bpf/b")                            # a second name while one exists is fine
    os.unlink(os.path.join(bpffs, "a"))
    m2.pin("/sys/fs/bpf/c")
    m.close()
    m2.close()


def _as_nobody(fn) -> int:
    """Run fn() in a child that dropped root (root bypasses the permission checks)."""
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no 'nobody' user")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch users")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            code = fn()
        except OSError as e:
            code = e.errno
        except BaseException:
            code = 255
        os.write(w, str(code).encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    out = os.read(r, 100)
    os.close(r)
    return int(out)


def test_get_needs_write_permission(bpffs):
    m = Map.create("array", 4, 4, 1)
    m.pin("/sys/fs/bpf/private")
    os.chmod(bpffs, 0o755)
    assert _as_nobody(lambda: kobj.get("/sys/fs/bpf/private") and 0) == errno.EACCES
    os.chmod(os.path.join(bpffs, "private"), 0o644)
    assert _as_nobody(lambda: kobj.get("/sys/fs/bpf/private") and 0) == errno.EACCES
    assert _as_nobody(lambda: kobj.get("/sys/fs/bpf/private", kobj.BPF_F_RDONLY) and 0) == 0
    os.chmod(os.path.join(bpffs, "private"), 0o666)
    assert _as_nobody(lambda: kobj.get("/sys/fs/bpf/private") and 0) == 0
    m.close()


def test_pinned_object_shared_by_unrelated_processes(bpffs):
    code = """
        import sys
        from pybpf.map import Map
        if sys.argv[1] == "make":
            m = Map.create("hash", 4, 8, 16, name="shared")
            m[1] = 100
            m.pin("/sys/fs/bpf/shared")
        else:
            with Map.from_pinned("/sys/fs/bpf/shared") as m:
                m[1] = int.from_bytes(m[1], "little") + int(sys.argv[1])
    """
    run = lambda arg: subprocess.run([sys.executable, "-c", textwrap.dedent(code), arg], timeout=60,
                                     capture_output=True, text=True)
    r = run("make")
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        r = run(str(i))
        assert r.returncode == 0, r.stderr
    with Map.from_pinned("/sys/fs/bpf/shared") as m:
        assert int.from_bytes(m[1], "little") == 106
        assert m.name == "shared"


def test_live_objects_lists_pins_and_open_fds(bpffs):
    a = Map.create("array", 4, 4, 1, name="a_pinned")
    a.pin("/sys/fs/bpf/a")
    b = Map.create("array", 4, 4, 1, name="b_open")
    found = {h["name"]: h for h in kobj.live_objects()}
    assert found["a_pinned"]["pinned"] == ["/sys/fs/bpf/a"]
    assert found["b_open"]["pinned"] == []
    b.close()
    kobj.sweep()
    assert "b_open" not in {h["name"] for h in kobj.live_objects()}
    a.close()
