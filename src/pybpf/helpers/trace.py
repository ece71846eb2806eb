"""bpf_trace_printk and the trace pipe it writes to; bpf_snprintf.

The pipe is a file in the BPF fs root (``.pybpf/trace_pipe``) shared by every
process using that root, as /sys/kernel/tracing/trace_pipe is shared by the
system: writers append whole lines under an exclusive lock, and a reader
consumes what it reads (the consumed offset is kept beside it), so two
``pybpf trace`` never print the same line.  Lines look like Linux's::

              python3-12345   [002] d.... 81234.567890: bpf_trace_printk: hello
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time

from .. import kobj
from .bprintf import MAX_BPRINTF_BUF, FormatError, fetch_format, format_args
from .common import neg, state, write
from .task import comm

PIPE_NAME = "trace_pipe"
MAX_PIPE_BYTES = 4 << 20       # like a ring buffer: the oldest unread lines go past this


def pipe_path(root: str | None = None) -> str:
    return os.path.join(root or kobj.root(), kobj.fs.STORE_NAME, PIPE_NAME)


def _open(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        os.fchmod(fd, 0o666)
    except OSError:
        pass
    return fd


class _Locked:
    def __init__(self, path: str):
        self.path = path

    def __enter__(self) -> int:
        self.fd = _open(self.path)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self.fd

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# The file starts with a 16-byte header: the consumed offset (decimal, space padded).
_HDR = 16


def _consumed(fd: int) -> int:
    raw = os.pread(fd, _HDR, 0)
    try:
        return max(_HDR, int(raw.strip() or b"0"))
    except ValueError:
        return _HDR


def _set_consumed(fd: int, off: int) -> None:
    os.pwrite(fd, str(off).encode().ljust(_HDR - 1) + b"\n", 0)


def append(line: str, root: str | None = None) -> None:
    """Add one line (no newline) to the trace pipe."""
    data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
    with _Locked(pipe_path(root)) as fd:
        size = os.fstat(fd).st_size
        if size < _HDR:
            _set_consumed(fd, _HDR)
            size = _HDR
        if size + len(data) > MAX_PIPE_BYTES:
            _compact(fd, size, keep=MAX_PIPE_BYTES // 2)
            size = os.fstat(fd).st_size
        os.pwrite(fd, data, size)


def _compact(fd: int, size: int, keep: int) -> None:
    """Drop consumed lines and, past ``keep`` bytes, the oldest unread ones."""
    start = _consumed(fd)
    rest = os.pread(fd, size - start, start)
    if len(rest) > keep:
        rest = rest[len(rest) - keep:]
        nl = rest.find(b"\n")
        rest = rest[nl + 1:] if nl >= 0 else b""
    os.pwrite(fd, rest, _HDR)
    os.ftruncate(fd, _HDR + len(rest))
    _set_consumed(fd, _HDR)


def read_lines(root: str | None = None) -> list[str]:
    """Consume and return the lines not read yet (empty list if none)."""
    path = pipe_path(root)
    if not os.path.exists(path):
        return []
    with _Locked(path) as fd:
        size = os.fstat(fd).st_size
        start = _consumed(fd)
        if size <= start:
            return []
        data = os.pread(fd, size - start, start)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return []
        if start + end >= size and size > 64 << 10:
            os.ftruncate(fd, _HDR)
            _set_consumed(fd, _HDR)
        else:
            _set_consumed(fd, start + end)
    return data[:end].decode("utf-8", "replace").splitlines()


def follow(root: str | None = None, interval: float = 0.1, stop=None):
    """Yield lines as they arrive (like ``cat trace_pipe``) until ``stop()`` is true."""
    while not (stop and stop()):
        lines = read_lines(root)
        if not lines:
            time.sleep(interval)
            continue
        yield from lines


def trace_fields(line: str) -> tuple[str, int, int, str, float, str]:
    """(task, pid, cpu, flags, timestamp, message) of a trace pipe line, as BCC's trace_fields."""
    head, _, msg = line.partition(": bpf_trace_printk: ")
    parts = head.rsplit(None, 3)
    task_pid, cpu, flags, ts = parts[0].strip(), parts[1], parts[2], parts[3].rstrip(":")
    task, _, pid = task_pid.rpartition("-")
    return task, int(pid), int(cpu.strip("[]")), flags, float(ts), msg


def format_line(message: str, *, task: str | None = None, pid: int | None = None, cpu: int = 0,
                ts_ns: int | None = None) -> str:
    task = task if task is not None else comm().decode("latin-1")
    pid = pid if pid is not None else threading.get_native_id()
    ts_ns = ts_ns if ts_ns is not None else time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    secs, rem = divmod(ts_ns, 1_000_000_000)
    return (f"{task:>16}-{pid:<7} [{cpu:03d}] d.... {secs:5d}.{rem // 1000:06d}: "
            f"bpf_trace_printk: {message}")


def trace_printk(vm, r1, r2, r3, r4, r5):
    st = state(vm)
    try:
        fmt = fetch_format(vm.memory, r1, r2 & 0xFFFFFFFF)
        msg = format_args(fmt, [r3, r4, r5], vm.memory)
    except FormatError:
        return neg(errno.EINVAL)
    msg = msg.encode("latin-1", "replace")[:MAX_BPRINTF_BUF - 1].decode("latin-1")
    st.runtime.trace(format_line(msg.rstrip("\n"), cpu=st.cpu))
    return len(msg)


MAX_SNPRINTF_VARARGS = 12


def snprintf(vm, r1, r2, r3, r4, r5):
    """bpf_snprintf(str, str_size, fmt, data, data_len): length + 1 of the whole output."""
    size, data_len = r2 & 0xFFFFFFFF, r5 & 0xFFFFFFFF
    if data_len & 7 or data_len > MAX_SNPRINTF_VARARGS * 8 or (data_len and not r4):
        return neg(errno.EINVAL)
    raw = vm.memory.read(r4, data_len) if data_len else b""
    args = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, data_len, 8)]
    try:
        fmt = vm.memory.read(r3, 1)
        fmt = _cstring(vm, r3)
        out = format_args(fmt, args, vm.memory).encode("latin-1", "replace")
    except FormatError:
        return neg(errno.EINVAL)
    if size:
        part = out[:size - 1]
        write(vm, r1, part + b"\0")
    return len(out) + 1


def _cstring(vm, addr: int) -> bytes:
    region = vm.memory.find(addr)
    if region is None:
        raise FormatError("format not readable")
    rest = bytes(region.view[addr - region.base:])
    nul = rest.find(b"\0")
    if nul < 0:
        raise FormatError("format not NUL-terminated")
    return rest[:nul]


HELPERS = {6: trace_printk, 165: snprintf}
