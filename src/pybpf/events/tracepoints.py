"""Tracepoints the host application declares and fires, with programs attached to them.

    tp = declare("myapp", "request", [("status", "u32"), ("bytes", "u64"), ("path", "char[32]")])
    tp.attach(prog)                 # a TRACEPOINT program (its ctx is the record)
    tp.fire(status=200, bytes=512, path=b"/index.html")

The record is laid out as a Linux tracepoint record: the common header
(``common_type``, ``common_flags``, ``common_preempt_count``, ``common_pid``)
then the fields at their natural alignment; ``format()`` describes it as
``/sys/kernel/tracing/events/<group>/<name>/format`` does.
"""

from __future__ import annotations

import itertools
import re
import struct
import threading
from dataclasses import dataclass

from ..runtime.execute import run_raw
from ..runtime.verdicts import TRACEPOINT
from .attach import Attachments, EventError, as_exec

_SCALARS = {"u8": ("B", 1), "s8": ("b", 1), "u16": ("H", 2), "s16": ("h", 2), "u32": ("I", 4),
            "s32": ("i", 4), "u64": ("Q", 8), "s64": ("q", 8), "int": ("i", 4),
            "unsigned int": ("I", 4), "long": ("q", 8), "unsigned long": ("Q", 8), "char": ("b", 1),
            "bool": ("B", 1), "pid_t": ("i", 4), "size_t": ("Q", 8), "void *": ("Q", 8)}
_ARRAY = re.compile(r"^(.+?)\s*\[(\d+)\]$")
COMMON = [("common_type", "unsigned short", 0, 2, 0), ("common_flags", "unsigned char", 2, 1, 0),
          ("common_preempt_count", "unsigned char", 3, 1, 0), ("common_pid", "int", 4, 4, 1)]
_ids = itertools.count(1000)


@dataclass(frozen=True)
class TpField:
    name: str
    ctype: str
    offset: int
    size: int
    code: str           # struct code of one element
    count: int          # 1 for scalars, N for arrays

    @property
    def signed(self) -> bool:
        return self.code.islower()


class Tracepoint:
    def __init__(self, group: str, name: str, fields) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", group) or \
                not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise EventError(f"tracepoint {group}:{name}: names must be C identifiers")
        self.group, self.name = group, name
        self.id = next(_ids)
        self.fields: list[TpField] = []
        off = 8
        seen = set()
        for item in fields:
            fname, ctype = item
            if fname in seen or fname.startswith("common_"):
                raise EventError(f"tracepoint {group}:{name}: field {fname!r} is repeated or reserved")
            seen.add(fname)
            m = _ARRAY.match(ctype)
            base, count = (m.group(1), int(m.group(2))) if m else (ctype, 1)
            if base not in _SCALARS:
                raise EventError(f"tracepoint {group}:{name}: field {fname}: unknown type {ctype!r} "
                                 f"(use {', '.join(sorted(_SCALARS))} or an array of them)")
            code, size = _SCALARS[base]
            off = (off + size - 1) // size * size
            self.fields.append(TpField(fname, ctype, off, size * count, code, count))
            off += size * count
        self.size = off
        self.attached = Attachments(f"tracepoint {group}:{name}")

    def __repr__(self) -> str:
        return f"<Tracepoint {self.group}:{self.name} ({len(self.fields)} fields, {self.size} bytes)>"

    def record(self, **values) -> bytes:
        """The record bytes for ``values`` (missing fields are zero)."""
        buf = bytearray(self.size)
        import os
        struct.pack_into("<HBBi", buf, 0, self.id & 0xFFFF, 0, 0, threading.get_native_id() or os.getpid())
        names = {f.name for f in self.fields}
        for k in values:
            if k not in names:
                raise EventError(f"tracepoint {self.group}:{self.name} has no field {k!r}")
        for f in self.fields:
            if f.name not in values:
                continue
            v = values[f.name]
            if f.count > 1:
                if isinstance(v, str):
                    v = v.encode()
                if isinstance(v, (bytes, bytearray)) and f.code in "bB":
                    if len(v) > f.count:
                        raise EventError(f"field {f.name}: {len(v)} bytes do not fit {f.ctype}")
                    buf[f.offset:f.offset + len(v)] = v
                else:
                    items = list(v)
                    if len(items) > f.count:
                        raise EventError(f"field {f.name}: {len(items)} items do not fit {f.ctype}")
                    struct.pack_into(f"<{len(items)}{f.code}", buf, f.offset, *items)
            else:
                try:
                    struct.pack_into("<" + f.code, buf, f.offset, int(v))
                except struct.error as e:
                    raise EventError(f"field {f.name} ({f.ctype}): {e}") from None
        return bytes(buf)

    def format(self) -> str:
        lines = [f"name: {self.name}", f"ID: {self.id}", "format:"]
        for n, t, off, size, signed in COMMON:
            lines.append(f"\tfield:{t} {n};\toffset:{off};\tsize:{size};\tsigned:{signed};")
        lines.append("")
        for f in self.fields:
            m = _ARRAY.match(f.ctype)
            decl = f"{m.group(1)} {f.name}[{m.group(2)}]" if m else f"{f.ctype} {f.name}"
            lines.append(f"\tfield:{decl};\toffset:{f.offset};\tsize:{f.size};\tsigned:{int(f.signed)};")
        return "\n".join(lines) + "\n"

    def attach(self, prog):
        """Attach a TRACEPOINT program (Program, prog fd, ExecProgram or instructions)."""
        ep = as_exec(prog, TRACEPOINT)
        if ep.prog_type != TRACEPOINT:
            raise EventError(f"tracepoint {self.group}:{self.name} takes TRACEPOINT programs "
                             f"(type 5), not type {ep.prog_type}")
        self.attached.add(ep)
        return ep

    def detach(self, prog) -> None:
        self.attached.remove(prog)

    def fire(self, **values) -> list:
        """Run every attached program on a record of ``values``; their return values."""
        if not self.attached.progs:
            return []
        rec = self.record(**values)
        return self.attached.run(lambda p: run_raw(p, rec, name=f"tracepoint {self.group}:{self.name}"))

    @property
    def errors(self) -> list[str]:
        return self.attached.errors


_registry: dict[str, Tracepoint] = {}
_lock = threading.Lock()


def declare(group: str, name: str, fields) -> Tracepoint:
    """Declare (or get, if the layout is the same) the tracepoint ``group:name``."""
    with _lock:
        tp = _registry.get(f"{group}:{name}")
        if tp is not None:
            new = Tracepoint(group, name, fields)
            if [(f.name, f.ctype) for f in new.fields] != [(f.name, f.ctype) for f in tp.fields]:
                raise EventError(f"tracepoint {group}:{name} is already declared with other fields")
            return tp
        tp = _registry[f"{group}:{name}"] = Tracepoint(group, name, fields)
        return tp


def get(spec: str) -> Tracepoint:
    try:
        return _registry[spec]
    except KeyError:
        raise EventError(f"no tracepoint {spec!r} (declared: {', '.join(sorted(_registry)) or 'none'})") from None


def tracepoints() -> list[Tracepoint]:
    return list(_registry.values())
