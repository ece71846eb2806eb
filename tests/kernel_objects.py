"""Loading a BPF object file into the host kernel with raw bpf(), for differential tests.

No libbpf: maps are created from our loader's :class:`ObjectSpec`, programs
are the instructions our ``resolve()`` produces with the kernel's map fds,
and prog arrays / map-in-map slots are filled the way ``pybpf.load`` fills
them.  So a difference between the kernel and pybpf is a difference in
maps, verifier or runtime, never in how the object was read.
"""

from __future__ import annotations

import ctypes
import os
import struct

from kernel_oracle import attr_elem, attr_map_create, sys_bpf
from pybpf.isa.insn import encode
from pybpf.loader import read_object, resolve
from pybpf.loader.spec import (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS,
                               MAP_TYPE_PROG_ARRAY)

BPF_MAP_CREATE, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM = 0, 1, 2
BPF_MAP_GET_NEXT_KEY, BPF_PROG_LOAD, BPF_PROG_TEST_RUN, BPF_MAP_FREEZE = 4, 5, 10, 22
PERCPU_TYPES = {5, 6, 10, 21}


class KernelError(RuntimeError):
    pass


def possible_cpus() -> int:
    text = open("/sys/devices/system/cpu/possible").read().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n = max(n, int(hi or lo) + 1)
    return n


class KernelObject:
    """One object file's maps and programs alive in the host kernel."""

    def __init__(self, path: str, *, log_level: int = 1):
        self.spec = read_object(path)
        self.map_fds: dict[str, int] = {}
        self.prog_fds: dict[str, int] = {}
        try:
            self._create_maps()
            self._load_programs(log_level)
            self._fill_slots()
        except BaseException:
            self.close()
            raise

    # -- building ------------------------------------------------------------------
    def _create(self, m, inner_fd: int = 0) -> int:
        name = m.name.encode()[:15]
        a = attr_map_create(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags,
                            inner_fd, name, m.map_extra)
        fd, err = sys_bpf(BPF_MAP_CREATE, a)
        if fd < 0:
            raise KernelError(f"map '{m.name}': BPF_MAP_CREATE failed: {os.strerror(err)}")
        return fd

    def _create_maps(self) -> None:
        for m in self.spec.maps.values():
            inner = 0
            if m.type in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS) and m.inner is not None:
                inner = self._create(m.inner)
            try:
                self.map_fds[m.name] = self._create(m, inner)
            finally:
                if inner:
                    os.close(inner)
            if m.data is not None:
                self.update(m.name, bytes(4), m.data)
                if m.frozen:
                    a = bytearray(4)
                    a[0:4] = self.map_fds[m.name].to_bytes(4, "little")
                    ret, err = sys_bpf(BPF_MAP_FREEZE, a)
                    if ret < 0:
                        raise KernelError(f"map '{m.name}': BPF_MAP_FREEZE: {os.strerror(err)}")

    def _load_programs(self, log_level: int) -> None:
        code = resolve(self.spec, self.map_fds,
                       [n for n, p in self.spec.programs.items() if p.autoload])
        for name, insns in code.items():
            p = self.spec.programs[name]
            raw = encode(insns)
            buf = ctypes.create_string_buffer(raw, len(raw))
            lic = ctypes.create_string_buffer((self.spec.license or "").encode() + b"\0")
            log = ctypes.create_string_buffer(1 << 20)
            a = bytearray(144)
            struct.pack_into("<IIQQIIQII", a, 0, p.prog_type, len(insns), ctypes.addressof(buf),
                             ctypes.addressof(lic), log_level, len(log), ctypes.addressof(log),
                             self.spec.kern_version, 0)
            a[48:48 + min(15, len(name))] = name.encode()[:15]
            struct.pack_into("<I", a, 68, p.expected_attach_type)
            fd, err = sys_bpf(BPF_PROG_LOAD, a)
            if fd < 0:
                raise KernelError(f"program '{name}': BPF_PROG_LOAD failed: {os.strerror(err)}\n"
                                  f"{log.value.decode(errors='replace')}")
            self.prog_fds[name] = fd

    def _fill_slots(self) -> None:
        for m in self.spec.maps.values():
            for idx, target in m.init_slots.items():
                if m.type == MAP_TYPE_PROG_ARRAY:
                    if target not in self.prog_fds:
                        continue
                    fd = self.prog_fds[target]
                else:
                    fd = self.map_fds[target]
                self.update(m.name, idx.to_bytes(m.key_size, "little"), fd.to_bytes(4, "little"))

    # -- use -----------------------------------------------------------------------
    def _value_size(self, name: str) -> int:
        m = self.spec.maps[name]
        if m.type in PERCPU_TYPES:
            return ((m.value_size + 7) & ~7) * possible_cpus()
        if m.type in (MAP_TYPE_PROG_ARRAY, MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS):
            return 4
        return m.value_size

    def update(self, name: str, key: bytes, value: bytes, flags: int = 0) -> None:
        k = ctypes.create_string_buffer(key, max(len(key), 1))
        v = ctypes.create_string_buffer(value, max(len(value), 1))
        ret, err = sys_bpf(BPF_MAP_UPDATE_ELEM, attr_elem(self.map_fds[name], ctypes.addressof(k),
                                                          ctypes.addressof(v), flags))
        if ret < 0:
            raise KernelError(f"map '{name}': update failed: {os.strerror(err)}")

    def dump(self, name: str) -> dict[bytes, bytes]:
        """Every key -> value of a map (per-CPU values as the kernel gives them, all CPUs)."""
        m = self.spec.maps[name]
        fd = self.map_fds[name]
        ks, vs = m.key_size, self._value_size(name)
        cur = ctypes.create_string_buffer(max(ks, 1))
        nxt = ctypes.create_string_buffer(max(ks, 1))
        val = ctypes.create_string_buffer(max(vs, 1))
        out = {}
        first = True
        while True:
            ret, err = sys_bpf(BPF_MAP_GET_NEXT_KEY, attr_elem(fd, 0 if first else ctypes.addressof(cur),
                                                               ctypes.addressof(nxt)))
            if ret < 0:
                break
            first = False
            ret, err = sys_bpf(BPF_MAP_LOOKUP_ELEM, attr_elem(fd, ctypes.addressof(nxt), ctypes.addressof(val)))
            if ret == 0:
                out[nxt.raw[:ks]] = val.raw[:vs]
            ctypes.memmove(cur, nxt, ks)
        return out

    def run(self, prog: str, data: bytes) -> tuple[int, bytes]:
        """BPF_PROG_TEST_RUN once: (return value, packet after the program)."""
        din = ctypes.create_string_buffer(bytes(data), max(len(data), 1))
        dout = ctypes.create_string_buffer(len(data) + 4096)
        a = bytearray(80)
        struct.pack_into("<IIIIQQII", a, 0, self.prog_fds[prog], 0, len(data), len(dout),
                         ctypes.addressof(din), ctypes.addressof(dout), 1, 0)
        ret, err = sys_bpf(BPF_PROG_TEST_RUN, a)
        if ret < 0:
            raise KernelError(f"program '{prog}': BPF_PROG_TEST_RUN failed: {os.strerror(err)}")
        retval, size_out = struct.unpack_from("<II", a, 4)
        return retval, dout.raw[:size_out]

    def close(self) -> None:
        for fd in list(self.prog_fds.values()) + list(self.map_fds.values()):
            os.close(fd)
        self.prog_fds.clear()
        self.map_fds.clear()

    def __enter__(self) -> "KernelObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
