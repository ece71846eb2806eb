"""Program contexts: the fields each program type may read or write, and their runtime layout.

The user-visible layouts are the uapi ones (``struct __sk_buff``, ``struct
xdp_md``, x86-64 ``struct pt_regs``).  As in Linux, a context access is
rewritten by the verifier to the runtime's own structure: pybpf's runtime
layouts (``RUNTIME``) keep every 32-bit field where uapi has it and give the
packet pointers (``data``, ``data_end``, ``data_meta``) real 64-bit slots, so an
interpreter can hold host addresses there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .progtypes import KPROBE, SCHED_ACT, SCHED_CLS, SOCKET_FILTER, TRACEPOINT, XDP
from .regstate import PTR_TO_PACKET, PTR_TO_PACKET_END, PTR_TO_PACKET_META, SCALAR


@dataclass(frozen=True)
class Field:
    name: str
    off: int
    size: int


def _fields(spec):
    out, off = [], 0
    for name, size, count in spec:
        for i in range(count):
            out.append(Field(name if count == 1 else f"{name}[{i}]", off, size))
            off += size
    return out


SK_BUFF = _fields([
    ("len", 4, 1), ("pkt_type", 4, 1), ("mark", 4, 1), ("queue_mapping", 4, 1), ("protocol", 4, 1),
    ("vlan_present", 4, 1), ("vlan_tci", 4, 1), ("vlan_proto", 4, 1), ("priority", 4, 1),
    ("ingress_ifindex", 4, 1), ("ifindex", 4, 1), ("tc_index", 4, 1), ("cb", 4, 5), ("hash", 4, 1),
    ("tc_classid", 4, 1), ("data", 4, 1), ("data_end", 4, 1), ("napi_id", 4, 1), ("family", 4, 1),
    ("remote_ip4", 4, 1), ("local_ip4", 4, 1), ("remote_ip6", 4, 4), ("local_ip6", 4, 4),
    ("remote_port", 4, 1), ("local_port", 4, 1), ("data_meta", 4, 1), ("flow_keys", 8, 1),
    ("tstamp", 8, 1), ("wire_len", 4, 1), ("gso_segs", 4, 1), ("sk", 8, 1), ("gso_size", 4, 1),
    ("tstamp_type", 1, 1), ("_pad", 1, 3), ("hwtstamp", 8, 1),
])
SK_BUFF_SIZE = 192
XDP_MD = _fields([("data", 4, 1), ("data_end", 4, 1), ("data_meta", 4, 1), ("ingress_ifindex", 4, 1),
                  ("rx_queue_index", 4, 1), ("egress_ifindex", 4, 1)])
XDP_MD_SIZE = 24
PT_REGS = _fields([(n, 8, 1) for n in (
    "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
    "orig_ax", "ip", "cs", "flags", "sp", "ss")])
PT_REGS_SIZE = 168
# A tracepoint program's context is the raw trace record (Linux: PERF_MAX_TRACE_SIZE bytes at
# most); its first 8 bytes are the common header the program may not read.
TP_RECORD_MAX = 8192
TP_HEADER = 8

PKT_FIELDS = {"data": PTR_TO_PACKET, "data_end": PTR_TO_PACKET_END, "data_meta": PTR_TO_PACKET_META}


@dataclass(frozen=True)
class RuntimeLayout:
    """Where the runtime keeps each context field: name -> (offset, size)."""
    size: int
    fields: dict


def _skb_runtime() -> RuntimeLayout:
    fields = {f.name: (f.off, f.size) for f in SK_BUFF}
    fields["data"], fields["data_end"], fields["data_meta"] = (192, 8), (200, 8), (208, 8)
    return RuntimeLayout(216, fields)


RUNTIME = {
    SOCKET_FILTER: _skb_runtime(), SCHED_CLS: _skb_runtime(), SCHED_ACT: _skb_runtime(),
    XDP: RuntimeLayout(40, {"data": (0, 8), "data_end": (8, 8), "data_meta": (16, 8),
                            "ingress_ifindex": (24, 4), "rx_queue_index": (28, 4),
                            "egress_ifindex": (32, 4)}),
    KPROBE: RuntimeLayout(PT_REGS_SIZE, {f.name: (f.off, f.size) for f in PT_REGS}),
}


@dataclass(frozen=True)
class Access:
    """A permitted context access: the field, the loaded register type, the runtime rewrite."""
    field: Field
    reg_type: str
    runtime_off: int
    runtime_size: int


def _field_at(fields, off):
    for f in fields:
        if f.off <= off < f.off + f.size:
            return f
    return None


def _range(fields, first, last):
    names = [f.name for f in fields]
    i, j = names.index(first), names.index(last)
    return {f.name for f in fields[i:j + 1]}


_CB = {f"cb[{i}]" for i in range(5)}
_SK_FILTER_DENY = ({"tc_classid", "data", "data_meta", "data_end", "tstamp", "wire_len", "hwtstamp"}
                   | _range(SK_BUFF, "family", "local_port"))
_TC_WRITE = {"mark", "tc_index", "priority", "tc_classid", "tstamp", "queue_mapping"} | _CB


def _skb_access(prog_type, off, size, write):
    if off < 0 or off >= SK_BUFF_SIZE or off % size:
        return None
    f = _field_at(SK_BUFF, off)
    if prog_type == SOCKET_FILTER:
        if f.name in _SK_FILTER_DENY or (write and f.name not in _CB):
            return None
    else:
        if write and f.name not in _TC_WRITE:
            return None
        if f.name in _range(SK_BUFF, "family", "local_port"):
            return None
    reg_type = SCALAR
    if f.name in _CB:
        if off + size > SK_BUFF[SK_BUFF.index(f) + 4 - int(f.name[3])].off + 4:
            return None
    elif f.name == "tc_classid":
        if write is False and prog_type == SOCKET_FILTER:
            return None
        if size > 4 or (write and size != 4):
            return None
    elif f.name in PKT_FIELDS:
        if size != 4:
            return None
        reg_type = PKT_FIELDS[f.name] if prog_type != SOCKET_FILTER else SCALAR
    elif f.name in ("flow_keys", "sk", "tstamp_type", "_pad[0]", "_pad[1]", "_pad[2]"):
        # sk needs socket pointer types pybpf does not model yet; the others are closed to
        # these program types in Linux too.
        return None
    elif f.name in ("tstamp", "hwtstamp"):
        if size != 8 or (write and f.name == "hwtstamp"):
            return None
    else:
        if size > 4 or (write and size != 4):
            return None
    return f, reg_type


def _xdp_access(off, size, write, expected_attach_type):
    if write or off < 0 or off >= XDP_MD_SIZE or off % size or size != 4:
        return None
    f = _field_at(XDP_MD, off)
    if f.name == "egress_ifindex" and expected_attach_type != 39:   # BPF_XDP_DEVMAP
        return None
    return f, PKT_FIELDS.get(f.name, SCALAR)


def _kprobe_access(off, size, write):
    if write or off < 0 or off >= PT_REGS_SIZE or off % size or off + size > PT_REGS_SIZE:
        return None
    return _field_at(PT_REGS, off), SCALAR


def _tp_access(off, size, write):
    # Linux takes any naturally aligned read past the header.  Its bound check compares the
    # offset as unsigned only on the low side, so it also lets negative offsets through; they
    # would read before the record, which pybpf refuses (a deliberate difference).
    if write or off < TP_HEADER or off >= TP_RECORD_MAX or off % size:
        return None
    return Field("record", off, size), SCALAR


def check_access(prog_type: int, off: int, size: int, write: bool,
                 expected_attach_type: int = 0) -> Access | None:
    """The permitted access of ``size`` bytes at context offset ``off``, or None."""
    if size not in (1, 2, 4, 8):
        return None
    if prog_type in (SOCKET_FILTER, SCHED_CLS, SCHED_ACT):
        got = _skb_access(prog_type, off, size, write)
    elif prog_type == XDP:
        got = _xdp_access(off, size, write, expected_attach_type)
    elif prog_type == KPROBE:
        got = _kprobe_access(off, size, write)
    elif prog_type == TRACEPOINT:
        got = _tp_access(off, size, write)
        # the record is the runtime context itself: nothing to rewrite
        return None if got is None else Access(got[0], SCALAR, off, size)
    else:
        got = None
    if got is None:
        return None
    f, reg_type = got
    roff, rsize = RUNTIME[prog_type].fields[f.name]
    if rsize == f.size:
        roff += off - f.off
        rsize = size
    return Access(f, reg_type, roff, rsize)
