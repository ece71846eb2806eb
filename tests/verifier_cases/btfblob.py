"""Minimal program BTF for corpus cases with subprograms described by func_info.

Callbacks (bpf_loop, bpf_for_each_map_elem) need BTF func_info, in Linux as in pybpf.
:func:`build` writes a tiny .BTF blob: ``int``, ``void *``, a prototype for the main
function ``int (void)`` (Linux logs a note for a ``void *`` argument it cannot size), one for callbacks ``int (int index, void *data)`` and one
FUNC per subprogram with the linkage the case asks for.  :func:`kernel_load` loads a
program with that BTF into the host kernel (the test oracle's loader takes no BTF).
"""

from __future__ import annotations

import ctypes
import os
import struct

BTF_MAGIC = 0xEB9F
KIND_INT, KIND_PTR, KIND_FUNC, KIND_FUNC_PROTO = 1, 2, 12, 13
LINKAGE = {"static": 0, "global": 1, "extern": 2}
FIRST_FUNC_ID = 5            # ids 1-4: int, void *, main prototype, callback prototype


def build(linkages: list[str]) -> bytes:
    """BTF with FUNC ``f0``, ``f1``... (ids FIRST_FUNC_ID + k) of the given linkages."""
    strings = bytearray(b"\0")

    def s(name: str) -> int:
        off = len(strings)
        strings.extend(name.encode() + b"\0")
        return off

    def info(kind, vlen=0):
        return (kind << 24) | vlen

    types = bytearray()
    types += struct.pack("<IIII", s("int"), info(KIND_INT), 4, (1 << 24) | 32)
    types += struct.pack("<III", 0, info(KIND_PTR), 0)
    types += struct.pack("<III", 0, info(KIND_FUNC_PROTO, 0), 1)
    types += struct.pack("<III", 0, info(KIND_FUNC_PROTO, 2), 1) + struct.pack("<II", s("index"), 1) \
        + struct.pack("<II", s("data"), 2)
    for k, link in enumerate(linkages):
        types += struct.pack("<III", s(f"f{k}"), info(KIND_FUNC, LINKAGE[link]), 3 if k == 0 else 4)
    hdr = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + bytes(types) + bytes(strings)


def func_info_bytes(records: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("<II", off, tid) for off, tid in records)


def kernel_btf_load(blob: bytes) -> tuple[int, int, str]:
    from kernel_oracle import sys_bpf
    buf = ctypes.create_string_buffer(blob, len(blob))
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(40)
    struct.pack_into("<QQIII", attr, 0, ctypes.addressof(buf), ctypes.addressof(log), len(blob),
                     len(log), 1)
    fd, err = sys_bpf(18, attr, 32)
    return fd, err, log.value.decode(errors="replace")


def kernel_load(code: bytes, prog_type: int, blob: bytes, records: list[tuple[int, int]], *,
                license: str = "GPL", log_level: int = 1, btf_fd: int = -1) -> tuple[int, int, str]:
    """BPF_PROG_LOAD with prog_btf_fd and func_info; returns (fd, errno, log).

    ``btf_fd`` is BTF already loaded from ``blob`` (kept open: the caller owns it); else the
    blob is loaded here and closed afterwards.
    """
    from kernel_oracle import sys_bpf
    own = btf_fd < 0
    if own:
        btf_fd, err, blog = kernel_btf_load(blob)
        if btf_fd < 0:
            raise RuntimeError(f"kernel refused the test BTF (errno {err}): {blog}")
    try:
        insns = ctypes.create_string_buffer(bytes(code), max(len(code), 1))
        lic = ctypes.create_string_buffer(license.encode() + b"\0")
        log = ctypes.create_string_buffer(1 << 20)
        fi = func_info_bytes(records)
        fib = ctypes.create_string_buffer(fi, max(len(fi), 1))
        attr = bytearray(160)
        struct.pack_into("<IIQQIIQ", attr, 0, prog_type, len(code) // 8, ctypes.addressof(insns),
                         ctypes.addressof(lic), log_level, len(log) if log_level else 0,
                         ctypes.addressof(log) if log_level else 0)
        struct.pack_into("<IIQI", attr, 72, btf_fd, 8, ctypes.addressof(fib), len(records))
        fd, err = sys_bpf(5, attr, 144)
        return fd, err, log.value.decode(errors="replace") if log_level else ""
    finally:
        if own:
            os.close(btf_fd)
