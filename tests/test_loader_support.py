"""Shared helpers of the object-reader tests (no tests here).

Compiles tests/c/*.c with clang 19 into a session temp dir, and can create an
ObjectSpec's maps and programs in the host kernel (the oracle) to prove that
what we read and linked is what the kernel accepts.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from kernel_oracle import kernel_prog_load, sys_bpf
from pybpf.isa.insn import encode
from pybpf.loader import resolve
from pybpf.loader.spec import MAP_TYPE_PROG_ARRAY, ObjectSpec

LLVM = Path("/usr/lib/llvm-19/bin")
CLANG = LLVM / "clang"
OBJDUMP = LLVM / "llvm-objdump"
C_DIR = Path(__file__).parent / "c"
MULTIARCH = Path("/usr/include/x86_64-linux-gnu")

BPF_MAP_CREATE, BPF_MAP_UPDATE_ELEM, BPF_PROG_LOAD, BPF_BTF_LOAD, BPF_MAP_FREEZE = 0, 2, 5, 18, 22


def have_clang() -> bool:
    return CLANG.exists()


def require_clang() -> None:
    if not have_clang():
        pytest.skip("clang 19 not installed")


def compile_c(source: str | Path, out_dir: Path, *, defines: dict[str, str] | None = None,
              name: str | None = None, extra: tuple[str, ...] = ()) -> Path:
    """Compile a tests/c file (or C text) to a BPF object with -O2 -g; returns the .o path."""
    require_clang()
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith(".c")
                                    and "\n" not in source):
        src = C_DIR / source if not Path(source).is_absolute() else Path(source)
        stem = name or src.stem
    else:
        stem = name or "inline"
        src = out_dir / f"{stem}.c"
        src.write_text(source)
    suffix = "".join(f"_{k}{v}" for k, v in sorted((defines or {}).items()))
    out = out_dir / f"{stem}{suffix}.o"
    cmd = [str(CLANG), "-O2", "-g", "-target", "bpf", "-c", str(src), "-o", str(out)]
    if MULTIARCH.exists():
        cmd.insert(1, f"-I{MULTIARCH}")
    cmd += [f"-D{k}={v}" for k, v in (defines or {}).items()]
    cmd += list(extra)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise AssertionError(f"clang failed on {src}:\n{res.stderr}")
    return out


def objdump(path: Path) -> str:
    return subprocess.run([str(OBJDUMP), "-d", "-r", str(path)], capture_output=True, text=True,
                          check=True).stdout


# --- the kernel oracle --------------------------------------------------------------------------

def _u32(attr: bytearray, off: int, v: int) -> None:
    attr[off:off + 4] = (v & 0xFFFFFFFF).to_bytes(4, "little")


def _u64(attr: bytearray, off: int, v: int) -> None:
    attr[off:off + 8] = (v & (2**64 - 1)).to_bytes(8, "little")


def kernel_create_map(m, inner_fd: int = 0, btf_fd: int = -1) -> int:
    attr = bytearray(72)
    for off, v in ((0, m.type), (4, m.key_size), (8, m.value_size), (12, m.max_entries),
                   (16, m.map_flags), (20, inner_fd), (24, m.numa_node)):
        _u32(attr, off, v)
    if btf_fd >= 0 and m.value_type_id:
        _u32(attr, 48, btf_fd)
        _u32(attr, 52, m.key_type_id)
        _u32(attr, 56, m.value_type_id)
    name = m.name.encode()[:15]
    attr[28:28 + len(name)] = name
    _u64(attr, 64, m.map_extra)
    fd, err = sys_bpf(BPF_MAP_CREATE, attr)
    assert fd >= 0, f"kernel refused map {m.name}: {os.strerror(err)}"
    return fd


def kernel_update(fd: int, key: bytes, value: bytes) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    attr = bytearray(32)
    _u32(attr, 0, fd)
    _u64(attr, 8, ctypes.addressof(k))
    _u64(attr, 16, ctypes.addressof(v))
    ret, err = sys_bpf(BPF_MAP_UPDATE_ELEM, attr)
    assert ret == 0, f"map update failed: {os.strerror(err)}"


def kernel_btf_load(raw: bytes) -> tuple[int, int, str]:
    """BPF_BTF_LOAD; returns (fd, errno, log)."""
    buf = ctypes.create_string_buffer(raw, len(raw))
    log = ctypes.create_string_buffer(1 << 16)
    attr = bytearray(32)
    _u64(attr, 0, ctypes.addressof(buf))
    _u64(attr, 8, ctypes.addressof(log))
    _u32(attr, 16, len(raw))
    _u32(attr, 20, len(log))
    _u32(attr, 24, 1)
    fd, err = sys_bpf(BPF_BTF_LOAD, attr)
    return fd, err, log.value.decode(errors="replace")


def kernel_prog_load_btf(code: bytes, prog, license: str, btf_fd: int) -> tuple[int, int, str]:
    """BPF_PROG_LOAD with the program's BTF func_info and line_info."""
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(license.encode() + b"\0")
    log = ctypes.create_string_buffer(1 << 20)
    finfo = prog.func_info_bytes()
    linfo = prog.line_info_bytes()
    fbuf = ctypes.create_string_buffer(finfo, max(1, len(finfo)))
    lbuf = ctypes.create_string_buffer(linfo, max(1, len(linfo)))
    attr = bytearray(144)
    _u32(attr, 0, prog.prog_type)
    _u32(attr, 4, len(code) // 8)
    _u64(attr, 8, ctypes.addressof(insns))
    _u64(attr, 16, ctypes.addressof(lic))
    _u32(attr, 24, 1)
    _u32(attr, 28, len(log))
    _u64(attr, 32, ctypes.addressof(log))
    _u32(attr, 68, prog.expected_attach_type)
    _u32(attr, 72, btf_fd)
    if finfo:
        _u32(attr, 76, 8)
        _u64(attr, 80, ctypes.addressof(fbuf))
        _u32(attr, 88, len(finfo) // 8)
    if linfo:
        _u32(attr, 92, 16)
        _u64(attr, 96, ctypes.addressof(lbuf))
        _u32(attr, 104, len(linfo) // 16)
    fd, err = sys_bpf(BPF_PROG_LOAD, attr)
    return fd, err, log.value.decode(errors="replace")


class KernelObject:
    """An ObjectSpec instantiated in the host kernel; close() releases every fd."""

    def __init__(self, spec: ObjectSpec, *, with_btf: bool = False):
        self.spec = spec
        self.with_btf = with_btf
        self.map_fds: dict[str, int] = {}
        self.prog_fds: dict[str, int] = {}
        self.errors: dict[str, tuple[int, str]] = {}
        self._extra: list[int] = []
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        spec = self.spec
        btf_fd = -1
        if self.with_btf:
            btf_fd, err, log = kernel_btf_load(spec.btf_for_kernel)
            assert btf_fd >= 0, f"kernel refused the BTF: {os.strerror(err)}\n{log[-2000:]}"
            self._extra.append(btf_fd)
        for m in spec.maps.values():
            inner_fd = 0
            if m.inner is not None:
                inner_fd = kernel_create_map(m.inner, btf_fd=btf_fd)
                self._extra.append(inner_fd)
            self.map_fds[m.name] = kernel_create_map(m, inner_fd, btf_fd=btf_fd)
        for m in spec.maps.values():
            fd = self.map_fds[m.name]
            if m.data is not None:
                kernel_update(fd, b"\0\0\0\0", m.data)
                if m.frozen:
                    attr = bytearray(8)
                    _u32(attr, 0, fd)
                    ret, err = sys_bpf(BPF_MAP_FREEZE, attr)
                    assert ret == 0, os.strerror(err)
            if m.type != MAP_TYPE_PROG_ARRAY:
                for slot, target in m.init_slots.items():
                    kernel_update(fd, slot.to_bytes(4, "little"),
                                  self.map_fds[target].to_bytes(4, "little"))
        for name, insns in resolve(spec, self.map_fds).items():
            p = spec.programs[name]
            if self.with_btf:
                fd, err, log = kernel_prog_load_btf(encode(insns), p, spec.license, btf_fd)
            else:
                fd, err, log = kernel_prog_load(encode(insns), p.prog_type, license=spec.license,
                                                log_level=1,
                                                expected_attach_type=p.expected_attach_type)
            if fd >= 0:
                self.prog_fds[name] = fd
            else:
                self.errors[name] = (err, log)
        for m in spec.maps.values():
            if m.type == MAP_TYPE_PROG_ARRAY:
                for slot, target in m.init_slots.items():
                    kernel_update(self.map_fds[m.name], slot.to_bytes(4, "little"),
                                  self.prog_fds[target].to_bytes(4, "little"))

    def close(self) -> None:
        for fd in [*self.prog_fds.values(), *self.map_fds.values(), *self._extra]:
            os.close(fd)
        self.prog_fds.clear()
        self.map_fds.clear()
        self._extra.clear()


def clang_available_or_skip() -> None:
    if shutil.which(str(CLANG)) is None and not CLANG.exists():
        pytest.skip("clang 19 not installed")
