"""The printf dialect of bpf_trace_printk and bpf_snprintf (Linux's bpf_bprintf_prepare).

Only the conversions Linux accepts are accepted: ``%d %i %u %x %X`` with an
optional ``l``/``ll``, ``%c``, ``%s``, ``%%`` and the pointer forms ``%p``,
``%pK``, ``%px``, ``%pB``, ``%pks``/``%pus``, ``%pI4``/``%pi4``/``%pI6``/``%pi6``;
flags ``0 + - space`` and a width.  Anything else makes the helper fail with
-EINVAL, as in Linux.
"""

from __future__ import annotations

import errno
import ipaddress

MAX_BPRINTF_BUF = 1024
MAX_STR = 1024


class FormatError(Exception):
    """The format is not one Linux accepts (the helper returns -EINVAL)."""


def _isprint_or_space(c: int) -> bool:
    return 0x20 <= c < 0x7F or c in (9, 10, 11, 12, 13)


def _cstr(memory, addr: int, limit: int = MAX_STR) -> str:
    """The NUL-terminated string at addr; '' if unreadable (Linux prints nothing on a fault)."""
    out = bytearray()
    while len(out) < limit - 1:
        region = memory.find(addr + len(out))
        if region is None:
            return ""
        start = addr + len(out) - region.base
        chunk = bytes(region.view[start:min(region.size, start + limit - 1 - len(out))])
        nul = chunk.find(b"\0")
        if nul >= 0:
            out += chunk[:nul]
            break
        out += chunk
    return out.decode("latin-1")


def _ip(memory, addr: int, kind: str) -> str:
    n = 4 if kind[1] == "4" else 16
    region = memory.find(addr, n)
    if region is None:
        return ""
    raw = bytes(region.view[addr - region.base:addr - region.base + n])
    if kind == "I4":
        return ".".join(str(b) for b in raw)
    if kind == "i4":
        return ".".join(f"{b:03d}" for b in raw)
    if kind == "I6":
        return ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2))
    if kind == "I6c":
        return str(ipaddress.IPv6Address(raw))
    return raw.hex()


def format_args(fmt: bytes, args: list[int], memory) -> str:
    """``fmt`` (without its NUL) rendered with the raw 64-bit ``args``; FormatError if refused."""
    out: list[str] = []
    i, n, used = 0, len(fmt), 0
    for c in fmt:
        if not _isprint_or_space(c):
            raise FormatError(f"character {c:#x} in the format is neither printable nor space")

    def next_arg() -> int:
        nonlocal used
        if used >= len(args):
            raise FormatError(f"the format has more than {len(args)} conversions")
        used += 1
        return args[used - 1] & 0xFFFFFFFFFFFFFFFF

    while i < n:
        ch = chr(fmt[i])
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        if i + 1 < n and fmt[i + 1] == 0x25:
            out.append("%")
            i += 2
            continue
        i += 1
        flags = ""
        while i < n and chr(fmt[i]) in "0+- ":
            flags += chr(fmt[i])
            i += 1
        width = ""
        if i < n and chr(fmt[i]) in "123456789":
            while i < n and chr(fmt[i]).isdigit():
                width += chr(fmt[i])
                i += 1
        spec = "%" + flags + width
        if i >= n:
            raise FormatError("the format ends in the middle of a conversion")
        ch = chr(fmt[i])
        if ch == "p":
            nxt = chr(fmt[i + 1]) if i + 1 < n else ""
            nxt2 = chr(fmt[i + 2]) if i + 2 < n else ""
            value = next_arg()
            if nxt in ("k", "u") and nxt2 == "s":
                out.append((spec + "s") % _cstr(memory, value))
                i += 3
            elif nxt in ("i", "I") and nxt2 in ("4", "6"):
                kind = nxt + nxt2
                i += 3
                if kind == "I6" and i < n and chr(fmt[i]) == "c":
                    kind += "c"
                    i += 1
                out.append((spec + "s") % _ip(memory, value, kind))
            elif nxt in ("K", "x", "B", "s", "S"):
                out.append((spec + "s") % f"{value:016x}")
                i += 2
            elif nxt == "" or nxt.isspace() or (not nxt.isalnum() and nxt.isprintable()):
                out.append((spec + "s") % f"{value:016x}")
                i += 1
            else:
                raise FormatError(f"unsupported pointer conversion %p{nxt}")
            continue
        if ch == "c":
            out.append((spec + "c") % chr(next_arg() & 0xFF))
            i += 1
            continue
        if ch == "s":
            out.append((spec + "s") % _cstr(memory, next_arg()))
            i += 1
            continue
        bits = 32
        if ch == "l":
            bits, i = 64, i + 1
            if i < n and chr(fmt[i]) == "l":
                i += 1
        if i >= n:
            raise FormatError("the format ends in the middle of a conversion")
        ch = chr(fmt[i])
        if ch not in "diuxX":
            raise FormatError(f"unsupported conversion %{ch}")
        value = next_arg() & ((1 << bits) - 1)
        if ch in "di" and value >> (bits - 1):
            value -= 1 << bits
        out.append((spec + ("d" if ch in "diu" else ch)) % value)
        i += 1
    return "".join(out)


def fetch_format(memory, addr: int, size: int) -> bytes:
    """The format at addr: must hold a NUL within size bytes (else FormatError)."""
    raw = memory.read(addr, size)
    nul = raw.find(b"\0")
    if nul < 0:
        raise FormatError("the format is not NUL-terminated within its size")
    return raw[:nul]


EINVAL = -errno.EINVAL
