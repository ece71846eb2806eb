"""A loaded program as its object stores it, readable by any process that opens the object.

Header fields (small, JSON): type, attach type, flags, license, tag, counts,
load time, map ids.  Payload: the original instructions, the translated
(verified and rewritten) ones, then a JSON blob with the verifier's facts the
runtime needs (subprogram starts, stack depth of each, helpers used).
In the translated instructions, LD_IMM64 map references carry the map's id
(not an fd, which only meant something in the loading process), as Linux's
``xlated`` dump does; the maps themselves are held by the program object.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field

from .. import kobj
from ..errors import InsnError
from ..isa import opcodes as op
from ..isa.insn import Insn, decode, encode


@dataclass
class ProgImage:
    prog_type: int
    expected_attach_type: int
    prog_flags: int
    license: str
    gpl_compatible: bool
    tag: bytes
    insns: list[Insn]
    xlated: list[Insn]
    map_ids: list[int]
    load_time_ns: int           # CLOCK_BOOTTIME, as Linux's bpf_prog_info.load_time
    verified_insns: int
    subprog_starts: list[int] = field(default_factory=lambda: [0])
    stack_depth: list[int] = field(default_factory=lambda: [0])
    helpers_used: list[int] = field(default_factory=list)
    name: str = ""
    id: int = 0
    uid: int = 0
    # BTF (prog_btf_fd): the BTF object's id and the records as loaded (8- and 16-byte)
    btf_id: int = 0
    func_info: bytes = b""
    line_info: bytes = b""

    def header_fields(self) -> dict:
        return {"prog_type": self.prog_type, "expected_attach_type": self.expected_attach_type,
                "prog_flags": self.prog_flags, "license": self.license[:127], "gpl": self.gpl_compatible,
                "tag": self.tag.hex(), "insn_cnt": len(self.insns), "load_time": self.load_time_ns,
                "verified_insns": self.verified_insns, "map_ids": self.map_ids, "btf_id": self.btf_id}

    def payload(self) -> bytes:
        meta = json.dumps({"subprog_starts": self.subprog_starts, "stack_depth": self.stack_depth,
                           "helpers_used": self.helpers_used, "func_info": self.func_info.hex(),
                           "line_info": self.line_info.hex()}, separators=(",", ":")).encode()
        return encode(self.insns) + encode(self.xlated) + meta


def read_image(obj: kobj.BpfObject) -> ProgImage:
    """The program behind a handle (EINVAL if the object is not a program)."""
    if obj.kind != "prog":
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: object id {obj.id} is a {obj.kind}, not a program")
    try:
        return _parse(obj)
    except (KeyError, ValueError, TypeError, InsnError) as e:
        raise OSError(errno.EINVAL, f"{os.strerror(errno.EINVAL)}: program id {obj.id} has a damaged "
                      f"object ({type(e).__name__}: {e})") from None


def _parse(obj: kobj.BpfObject) -> ProgImage:
    f = obj.fields
    n = f["insn_cnt"] * 8
    raw = bytes(obj.payload)
    meta = json.loads(raw[2 * n:] or b"{}")
    return ProgImage(prog_type=f["prog_type"], expected_attach_type=f["expected_attach_type"],
                     prog_flags=f["prog_flags"], license=f["license"], gpl_compatible=f["gpl"],
                     tag=bytes.fromhex(f["tag"]), insns=decode(raw[:n], check=False),
                     xlated=decode(raw[n:2 * n], check=False), map_ids=list(f["map_ids"]),
                     load_time_ns=f["load_time"], verified_insns=f["verified_insns"],
                     subprog_starts=meta.get("subprog_starts", [0]),
                     stack_depth=meta.get("stack_depth", [0]),
                     helpers_used=meta.get("helpers_used", []), name=obj.name, id=obj.id,
                     uid=obj.header["uid"], btf_id=f.get("btf_id", 0),
                     func_info=bytes.fromhex(meta.get("func_info", "")),
                     line_info=bytes.fromhex(meta.get("line_info", "")))


def held_maps(obj: kobj.BpfObject, image: ProgImage | None = None) -> dict[int, kobj.BpfObject]:
    """map id -> handle of each map the program uses, found through the program's holds."""
    image = image or read_image(obj)
    out = {}
    for mid in image.map_ids:
        p = kobj.held_path(obj, f"id{mid}")
        if p is None:
            raise OSError(errno.ENOENT, f"{os.strerror(errno.ENOENT)}: program id {obj.id} lost its map id {mid}")
        out[mid] = kobj.obj_from_path(p)
    return out


def map_refs(xlated: list[Insn]) -> list[tuple[int, int, int]]:
    """(slot, map id, value offset or -1) of every LD_IMM64 map reference."""
    out = []
    i = 0
    while i < len(xlated):
        ins = xlated[i]
        if ins.code == op.LD_IMM64 and i + 1 < len(xlated):
            if ins.src == op.PSEUDO_MAP_FD:
                out.append((i, ins.imm & 0xFFFFFFFF, -1))
            elif ins.src == op.PSEUDO_MAP_VALUE:
                out.append((i, ins.imm & 0xFFFFFFFF, xlated[i + 1].imm & 0xFFFFFFFF))
            i += 2
        else:
            i += 1
    return out


def held_btf(obj: kobj.BpfObject) -> bytes | None:
    """The BTF blob the program was loaded with (prog_btf_fd), None without one."""
    p = kobj.held_path(obj, "btf")
    if p is None:
        return None
    btf = kobj.obj_from_path(p)
    return bytes(btf.payload[:btf.fields["btf_size"]])


def source_lines(image: ProgImage, btf: bytes | None) -> dict[int, tuple[str, int, int, str]]:
    """insn index -> (file, line, column, source text) from the program's bpf_line_info."""
    if not image.line_info or not btf:
        return {}
    import struct
    from ..loader.btf import Btf
    from ..errors import PybpfError
    try:
        b = Btf(btf)
    except PybpfError:
        return {}
    out = {}
    for i in range(0, len(image.line_info) - 15, 16):
        off, file_off, line_off, lc = struct.unpack_from("<IIII", image.line_info, i)
        try:
            out[off] = (b.string(file_off), lc >> 10, lc & 0x3FF, b.string(line_off))
        except PybpfError:
            continue
    return out
