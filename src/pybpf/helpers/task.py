"""Helpers about the current task, time, randomness and CPU: this Python process stands for "current"."""

from __future__ import annotations

import os
import threading
import time

from ..runtime.core import current_cpu
from .common import state, write

TASK_COMM_LEN = 16


def comm() -> bytes:
    """This thread's comm, as /proc shows it (at most 15 characters)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "rb") as f:
            return f.read().rstrip(b"\n")[:TASK_COMM_LEN - 1]
    except OSError:
        return os.path.basename(os.sys.argv[0] or "python").encode()[:TASK_COMM_LEN - 1]


def ktime_get_ns(vm, r1, r2, r3, r4, r5):
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def ktime_get_boot_ns(vm, r1, r2, r3, r4, r5):
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def get_prandom_u32(vm, r1, r2, r3, r4, r5):
    return state(vm).rng.getrandbits(32)


def get_smp_processor_id(vm, r1, r2, r3, r4, r5):
    st = getattr(vm, "state", None)
    return st.cpu if st is not None else current_cpu()


def get_current_pid_tgid(vm, r1, r2, r3, r4, r5):
    return (os.getpid() << 32) | threading.get_native_id()


def get_current_uid_gid(vm, r1, r2, r3, r4, r5):
    return (os.getgid() << 32) | os.getuid()


def get_current_comm(vm, r1, r2, r3, r4, r5):
    size = r2 & 0xFFFFFFFF
    if not size:
        return 0
    name = comm()[:size - 1]
    write(vm, r1, name + b"\0" * (size - len(name)))   # strscpy_pad: always NUL-padded
    return 0


HELPERS = {5: ktime_get_ns, 7: get_prandom_u32, 8: get_smp_processor_id, 14: get_current_pid_tgid,
           15: get_current_uid_gid, 16: get_current_comm, 125: ktime_get_boot_ns}
