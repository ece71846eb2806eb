"""Objects and fds: real fds (dup, fork, SCM_RIGHTS), Linux's lifetime rules, holds, no leaks."""

from __future__ import annotations

import array
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap

import pytest

from pybpf import kobj
from pybpf.map import Map


@pytest.fixture(autouse=True)
def bpffs(monkeypatch):
    d = tempfile.mkdtemp(prefix="pybpf-obj-", dir="/dev/shm")
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def inode_refs(dev_ino) -> list[str]:
    """Every fd or mapping, in any process, still referring to the inode."""
    dev, ino = dev_ino
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for n in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{n}")
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (dev, ino):
                found.append(f"{pid}/fd/{n}")
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 5 and parts[4] == str(ino) and ".pybpf" in line:
                        found.append(f"{pid}/maps")
        except OSError:
            pass
    return found


def names_of(root: str, dev_ino) -> list[str]:
    """Every name (pin or hold) of the inode under the BPF fs root."""
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == tuple(dev_ino):
                out.append(p)
    return out


def alive(root, dev_ino) -> bool:
    return bool(inode_refs(dev_ino) or names_of(root, dev_ino))


def key_of(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def shm_free() -> int:
    s = os.statvfs("/dev/shm")
    return s.f_bfree * s.f_frsize


def run_py(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60, **kw)


def test_obj_from_fd_errors():
    with pytest.raises(OSError) as e:
        kobj.obj_from_fd(99999)
    assert e.value.errno == errno.EBADF
    with open("/dev/null") as f, pytest.raises(OSError) as e:
        kobj.obj_from_fd(f.fileno())
    assert e.value.errno == errno.EINVAL
    with tempfile.TemporaryFile() as f:
        f.write(b"x" * 8192)
        f.flush()
        with pytest.raises(OSError) as e:
            kobj.obj_from_fd(f.fileno())
        assert e.value.errno == errno.EINVAL


def test_create_object_for_programs():
    fd = kobj.create_object("prog", {"prog_type": 1, "insn_cnt": 2}, 16, name="myprog")
    obj = kobj.obj_from_fd(fd)
    assert (obj.kind, obj.name, obj.fields) == ("prog", "myprog", {"prog_type": 1, "insn_cnt": 2})
    obj.payload[:16] = bytes(range(16))
    fd2 = os.dup(fd)
    assert kobj.obj_from_fd(fd2) is obj
    assert bytes(kobj.obj_from_fd(fd2).payload[:16]) == bytes(range(16))
    with pytest.raises(ValueError):
        kobj.create_object("link", {}, 0)
    os.close(fd)
    os.close(fd2)


def test_ids_unique_and_increasing():
    maps = [Map.create("array", 4, 4, 1) for _ in range(5)]
    ids = [m.id for m in maps]
    assert ids == sorted(ids) and len(set(ids)) == 5
    for m in maps:
        m.close()


def test_dup_and_close():
    m = Map.create("hash", 4, 4, 8)
    fd2 = os.dup(m.fd)
    m[1] = 2
    m2 = Map.from_fd(fd2, dup=False)
    m.close()
    assert m2[1] == (2).to_bytes(4, "little")
    m2[3] = 4
    m2.close()


def test_fork_inherits_fds():
    m = Map.create("array", 4, 8, 4)
    pid = os.fork()
    if pid == 0:
        try:
            m2 = Map.from_fd(m.fd)
            m2[1] = 1234
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert int.from_bytes(m[1], "little") == 1234
    m.close()


def test_scm_rights_to_unrelated_process(bpffs):
    m = Map.create("hash", 4, 8, 16, name="shared")
    m[7] = 49
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    code = f"""
        import array, os, socket, sys
        from pybpf.map import Map
        s = socket.socket(fileno={b.fileno()})
        msg, anc, flags, addr = s.recvmsg(16, socket.CMSG_LEN(4))
        fds = array.array("i"); fds.frombytes(anc[0][2][:4])
        m = Map.from_fd(fds[0], dup=False)
        assert m.name == "shared", m.name
        print(int.from_bytes(m[7], "little"))
        m[8] = 64
    """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], pass_fds=[b.fileno()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b.close()
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [m.fd]))])
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.strip() == "49"
    assert int.from_bytes(m[8], "little") == 64
    m.close()
    a.close()


def test_closing_last_fd_frees_storage():
    m = Map.create("array", 4, 8, 4)
    key = key_of(m.fd)
    assert inode_refs(key)
    m.close()                                       # Map.close releases at once
    assert inode_refs(key) == []


def test_closing_raw_fd_frees_storage_at_next_sweep():
    import kernel_oracle as K
    from pybpf.syscall import bpf
    fd = bpf(0, K.attr_map_create(2, 4, 8, 4))
    key = key_of(fd)
    kobj.obj_from_fd(fd)
    dup = os.dup(fd)
    os.close(fd)
    kobj.sweep()
    assert inode_refs(key)                          # the dup still holds it
    os.close(dup)
    kobj.sweep()
    assert inode_refs(key) == []


def test_storage_memory_returned_after_close():
    before = shm_free()
    m = Map.create("array", 4, 4096, 16384)          # 64 MiB, touched below
    for i in range(0, 16384, 1):
        m[i] = bytes([1]) * 4096
    used = before - shm_free()
    assert used > 48 << 20
    m.close()
    kobj.sweep()
    import gc
    gc.collect()
    assert before - shm_free() < 16 << 20


def test_pinned_object_outlives_fds(bpffs):
    m = Map.create("array", 4, 8, 4)
    m[0] = 99
    m.pin("/sys/fs/bpf/keep")
    key = key_of(m.fd)
    m.close()
    kobj.sweep()
    assert inode_refs(key) == []
    assert os.stat(os.path.join(bpffs, "keep")).st_ino == key[1]
    with Map.from_pinned("/sys/fs/bpf/keep") as m2:
        assert int.from_bytes(m2[0], "little") == 99
    os.unlink(os.path.join(bpffs, "keep"))


def test_kill_9_releases_unpinned_keeps_pinned(bpffs):
    code = """
        import os, sys, time
        from pybpf.map import Map
        a = Map.create("array", 4, 8, 8, name="pinned_one")
        b = Map.create("hash", 4, 8, 8, name="lost_one")
        for i in range(8):
            a[i] = i * 11
            b[i] = i
        a.pin("/sys/fs/bpf/survivor")
        st = os.fstat(b.fd)
        print(st.st_dev, st.st_ino, flush=True)
        time.sleep(60)
    """
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             text=True)
        line = p.stdout.readline()
        dev, ino = map(int, line.split())
        assert inode_refs((dev, ino))
        p.send_signal(signal.SIGKILL)
        p.wait()
        p.stdout.close()
        assert inode_refs((dev, ino)) == []
        with Map.from_pinned("/sys/fs/bpf/survivor") as m:
            assert [int.from_bytes(m[i], "little") for i in range(8)] == [i * 11 for i in range(8)]
        os.unlink(os.path.join(bpffs, "survivor"))


def test_holds_keep_objects_alive_until_holder_dies():
    inner = Map.create("array", 4, 8, 2)
    inner[1] = 5
    ikey = key_of(inner.fd)
    pfd = kobj.create_object("prog", {"prog_type": 1}, 8, name="holder")
    prog = kobj.obj_from_fd(pfd)
    kobj.add_hold(prog, kobj.obj_from_fd(inner.fd))
    inner_id = inner.id
    inner.close()
    kobj.gc()
    assert alive(os.environ["PYBPF_FS"], ikey)                          # held by the program
    again = Map.from_id(inner_id)
    assert int.from_bytes(again[1], "little") == 5
    again.close()
    os.close(pfd)
    kobj.gc()
    assert not alive(os.environ["PYBPF_FS"], ikey)


def test_holder_killed_releases_holds(bpffs):
    code = """
        import os, time
        from pybpf import kobj
        from pybpf.map import Map
        m = Map.create("array", 4, 8, 2)
        p = kobj.create_object("prog", {}, 8)
        kobj.add_hold(kobj.obj_from_fd(p), kobj.obj_from_fd(m.fd))
        st = os.fstat(m.fd)
        m.close()
        print(st.st_dev, st.st_ino, flush=True)
        time.sleep(60)
    """
    p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    dev, ino = map(int, p.stdout.readline().split())
    kobj.gc()
    assert alive(os.environ["PYBPF_FS"], (dev, ino))                    # the holder is alive
    p.kill()
    p.wait()
    p.stdout.close()
    kobj.gc()
    assert not alive(os.environ["PYBPF_FS"], (dev, ino))
    assert os.listdir(os.path.join(bpffs, ".pybpf", "holds")) == []


def test_map_in_map_holds_inner_and_reports_id():
    inner = Map.create("array", 4, 8, 2)
    outer = Map.create("array_of_maps", 4, 4, 4, inner_map=inner)
    other = Map.create("array", 4, 8, 2)
    other[0] = 42
    okey = key_of(other.fd)
    outer[2] = other.fd
    assert int.from_bytes(outer[2], "little") == other.id
    oid = other.id
    other.close()
    kobj.gc()
    assert alive(os.environ["PYBPF_FS"], okey)
    with Map.from_id(oid) as again:
        assert int.from_bytes(again[0], "little") == 42
    wrong = Map.create("array", 4, 8, 3)
    with pytest.raises(OSError) as e:
        outer[1] = wrong.fd
    assert e.value.errno == errno.EINVAL
    del outer[2]
    kobj.gc()
    assert not alive(os.environ["PYBPF_FS"], okey)
    for m in (inner, outer, wrong):
        m.close()


def test_prog_array_holds_programs():
    from pybpf.syscall import mapops
    pa = Map.create("prog_array", 4, 4, 4)
    pfd = kobj.create_object("prog", {"prog_type": 1}, 8)
    pkey = key_of(pfd)
    pa[0] = pfd
    assert mapops.ref_object(pa._obj, (0).to_bytes(4, "little")).key == pkey
    assert mapops.ref_object(pa._obj, (1).to_bytes(4, "little")) is None
    pid_ = kobj.obj_from_fd(pfd).id
    assert int.from_bytes(pa[0], "little") == pid_
    os.close(pfd)
    kobj.gc()
    assert alive(os.environ["PYBPF_FS"], pkey)
    m = Map.create("array", 4, 8, 1)
    with pytest.raises(OSError) as e:
        pa[1] = m.fd                                 # a map is not a program
    assert e.value.errno == errno.EINVAL
    pa.close()
    m.close()
    kobj.gc()
    assert not alive(os.environ["PYBPF_FS"], pkey)


def test_concurrent_hash_updates_from_processes():
    m = Map.create("hash", 8, 8, 4096)
    code = f"""
        import os, sys
        from pybpf.map import Map
        m = Map.from_fd({m.fd})
        base = int(sys.argv[1])
        for i in range(300):
            m[base * 1000 + i] = i
            if i % 3 == 0:
                del m[base * 1000 + i]
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), str(n)], pass_fds=[m.fd])
             for n in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    keys = sorted(int.from_bytes(k, "little") for k in m)
    want = sorted(n * 1000 + i for n in range(4) for i in range(300) if i % 3)
    assert keys == want
    m.close()


@pytest.mark.parametrize("rounds", [6, pytest.param(60, marks=pytest.mark.slow)])
def test_writer_killed_mid_update_leaves_map_consistent(bpffs, rounds):
    m = Map.create("hash", 8, 16, 64, key_type=int)
    m.pin("/sys/fs/bpf/victim")
    code = """
        import random
        from pybpf.map import Map
        m = Map.from_pinned("/sys/fs/bpf/victim")
        r = random.Random()
        print("ready", flush=True)
        while True:
            k = r.randrange(48)
            try:
                if r.random() < 0.3:
                    del m[k]
                else:
                    m[k] = bytes([k & 0xFF]) * 16
            except (KeyError, OSError):
                pass
    """
    import random
    rnd = random.Random(5)
    for _ in range(rounds):
        p = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout.readline().strip() == "ready"
        import time
        time.sleep(rnd.uniform(0.0, 0.05))
        p.kill()
        p.wait()
        p.stdout.close()
        items = m.items()                         # readable, and each value is the one written
        assert len(items) <= 64
        for k, v in items:
            assert v == bytes([k & 0xFF]) * 16
        assert len({k for k, _ in items}) == len(items)
        m[1000] = bytes(16)                       # still writable after taking over the lock
        del m[1000]
        impl = m._obj.map_impl()
        if hasattr(impl, "check"):
            assert impl.check() == []
    m.close()
