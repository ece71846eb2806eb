"""The fds_example scenario: a pinned ARRAY map shared by processes that never meet.

Each step runs in its own process:

    python fds_example.py create  /sys/fs/bpf/fds_example   # create, pin, write 123 = 456, exit
    python fds_example.py read    /sys/fs/bpf/fds_example   # a new process reads 456 by path
    python fds_example.py hold    /sys/fs/bpf/fds_example   # open by path, then keep using the fd
    python fds_example.py unlink  /sys/fs/bpf/fds_example   # remove the pin (while `hold` runs)

`hold` opens the map, prints "holding", waits for a line on stdin (sent after
`unlink` ran), then keeps updating and reading the map through its fd and
prints the value it read back.  Written with the raw bpf() command interface,
as a C program using the syscall would be.
"""

from __future__ import annotations

import ctypes
import os
import sys

from pybpf.syscall import MapCreateAttr, MapElemAttr, ObjAttr, bpf
from pybpf.syscall import constants as C

KEY, VALUE = 123, 456


def _path(p: str):
    buf = ctypes.create_string_buffer(p.encode())
    return buf, ObjAttr(pathname=ctypes.addressof(buf))


def update(fd: int, key: int, value: int) -> None:
    k, v = ctypes.c_uint32(key), ctypes.c_uint64(value)
    bpf(C.BPF_MAP_UPDATE_ELEM, MapElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v),
                                           flags=C.BPF_ANY))


def lookup(fd: int, key: int) -> int:
    k, v = ctypes.c_uint32(key), ctypes.c_uint64()
    bpf(C.BPF_MAP_LOOKUP_ELEM, MapElemAttr(map_fd=fd, key=ctypes.addressof(k), value=ctypes.addressof(v)))
    return v.value


def open_pinned(path: str) -> int:
    buf, attr = _path(path)
    return bpf(C.BPF_OBJ_GET, attr)


def step_create(path: str) -> None:
    fd = bpf(C.BPF_MAP_CREATE, MapCreateAttr(map_type=C.BPF_MAP_TYPE_ARRAY, key_size=4, value_size=8,
                                              max_entries=1024, map_name=b"fds_example"))
    buf, attr = _path(path)
    attr.bpf_fd = fd
    bpf(C.BPF_OBJ_PIN, attr)
    update(fd, KEY, VALUE)
    print(f"created map fd {fd}, pinned at {path}, wrote {KEY} = {VALUE}")


def step_read(path: str) -> None:
    fd = open_pinned(path)
    print(f"read {KEY} = {lookup(fd, KEY)}")


def step_hold(path: str) -> None:
    fd = open_pinned(path)
    print(f"holding {lookup(fd, KEY)}", flush=True)
    sys.stdin.readline()                         # the pin is gone by now
    from pybpf import kobj
    print(f"pin exists: {os.path.exists(kobj.translate(path))}")
    update(fd, KEY, lookup(fd, KEY) + 1)
    update(fd, 7, 700)
    print(f"still using fd: {KEY} = {lookup(fd, KEY)}, 7 = {lookup(fd, 7)}")


def step_unlink(path: str) -> None:
    from pybpf import kobj
    os.unlink(kobj.translate(path))             # as `rm /sys/fs/bpf/...` would
    print(f"unlinked {path}")


STEPS = {"create": step_create, "read": step_read, "hold": step_hold, "unlink": step_unlink}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in STEPS:
        print(f"usage: {argv[0]} {{{'|'.join(STEPS)}}} PATH", file=sys.stderr)
        return 2
    try:
        STEPS[argv[1]](argv[2])
    except OSError as e:
        print(f"fds_example: {argv[1]}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
