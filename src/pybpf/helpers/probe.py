"""bpf_probe_read* : copy from any address, failing softly (-EFAULT, zeroed buffer) as Linux does.

"Any address" here means memory registered with the runtime (maps, stacks,
contexts, packets, event arguments): nothing else of the host process can
be read, so a wild pointer yields -EFAULT instead of a crash.
"""

from __future__ import annotations

import errno

from .common import neg, write


def _copy(vm, dst: int, size: int, src: int) -> int:
    size &= 0xFFFFFFFF
    if not size:
        return 0
    region = vm.memory.find(src, size)
    if region is None:
        write(vm, dst, b"\0" * size)
        return neg(errno.EFAULT)
    write(vm, dst, bytes(region.view[src - region.base:src - region.base + size]))
    return 0


def _copy_str(vm, dst: int, size: int, src: int) -> int:
    size &= 0xFFFFFFFF
    if not size:
        return 0
    out = bytearray()
    while len(out) < size - 1:
        region = vm.memory.find(src + len(out))
        if region is None:
            write(vm, dst, b"\0" * size)
            return neg(errno.EFAULT)
        off = src + len(out) - region.base
        chunk = bytes(region.view[off:min(region.size, off + size - 1 - len(out))])
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            break
        out += chunk
    # strncpy_from_kernel_nofault writes the string and its NUL, not the rest of the buffer
    write(vm, dst, bytes(out) + b"\0")
    return len(out) + 1


def probe_read(vm, r1, r2, r3, r4, r5):
    return _copy(vm, r1, r2, r3)


def probe_read_str(vm, r1, r2, r3, r4, r5):
    return _copy_str(vm, r1, r2, r3)


HELPERS = {4: probe_read, 45: probe_read_str, 112: probe_read, 113: probe_read,
           114: probe_read_str, 115: probe_read_str}
