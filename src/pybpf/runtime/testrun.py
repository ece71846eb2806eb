"""BPF_PROG_TEST_RUN: run a loaded program on caller-given data, with Linux's attr layout and rules.

The same checks in the same order as Linux's ``bpf_prog_test_run_skb`` and
``bpf_prog_test_run_xdp`` (net/bpf/test_run.c), so a bad attr fails with the
errno the kernel gives; the skb is set up as the kernel's (loopback device,
``eth_type_trans``; a socket filter sees the packet from the network header
and gets a zeroed Ethernet header back).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from dataclasses import dataclass

from ..syscall.dispatch import Attr, register
from ..syscall.umem import read as uread
from ..syscall.umem import write as uwrite
from ..verifier.context import SK_BUFF, SK_BUFF_SIZE, XDP_MD_SIZE
from ..verifier.progtypes import SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP
from .core import ExecProgram
from .execute import run_skb, run_xdp
from .skb import ETH_HLEN, SkBuff, XdpBuff, eth_pkt_type

BPF_PROG_TEST_RUN = 10
ENOTSUPP = 524
PAGE_SIZE = 4096
SKB_SHINFO = 320                     # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
SKB_HEADROOM = 64                    # NET_SKB_PAD + NET_IP_ALIGN (x86)
XDP_HEADROOM = 256
BPF_F_TEST_RUN_ON_CPU = 1 << 0
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
BPF_F_TEST_SKB_CHECKSUM_COMPLETE = 1 << 2
GSO_MAX_SEGS = 65535
GSO_LEGACY_MAX_SIZE = 65536
XDP_FRAME_STRUCT = 40              # sizeof(struct xdp_frame), kept free in the headroom
MAX_SKB_FRAGS = 17
BPF_XDP_DEVMAP, BPF_XDP_CPUMAP = 39, 38


class TestRunAttr(ctypes.Structure):
    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


LAST_FIELD_END = TestRunAttr.batch_size.offset + 4
_OFF = {name: getattr(TestRunAttr, name).offset for name, _ in TestRunAttr._fields_}


def _err(code: int, what: str) -> OSError:
    return OSError(code, f"{os.strerror(code) if code != ENOTSUPP else 'Operation not supported'}: {what}")


@dataclass
class TestRunResult:
    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration: int
    data_size_out: int


# -- skb ------------------------------------------------------------------------------------

_SKB_FIELD = {f.name: f for f in SK_BUFF}


def _off(name: str) -> int:
    return _SKB_FIELD[name].off


def _end(name: str) -> int:
    f = _SKB_FIELD[name]
    return f.off + f.size


def _zero(raw: bytes, a: int, b: int) -> bool:
    return not raw[a:b].strip(b"\0")


def _u32(raw: bytes, name: str) -> int:
    return int.from_bytes(raw[_off(name):_off(name) + 4], "little")


def _u64(raw: bytes, name: str) -> int:
    return int.from_bytes(raw[_off(name):_off(name) + 8], "little")


def _skb_ctx_check(raw: bytes) -> None:
    """convert___skb_to_skb: only the fields a test run takes may be non-zero."""
    spans = [(0, _off("mark")), (_end("mark"), _off("priority")), (_end("ifindex"), _off("cb[0]")),
             (_end("cb[4]"), _off("tstamp")), (_end("gso_segs"), _off("gso_size")),
             (_end("gso_size"), _off("hwtstamp")), (_end("hwtstamp"), SK_BUFF_SIZE)]
    for a, b in spans:
        if not _zero(raw, a, b):
            raise _err(errno.EINVAL, f"__sk_buff bytes {a}..{b} must be zero in ctx_in")


def _ifindex_ok(ifindex: int) -> bool:
    try:
        socket.if_indextoname(ifindex)
        return True
    except OSError:
        return False


def _skb_ctx_out(skb: SkBuff, wire_len: int) -> bytes:
    out = bytearray(SK_BUFF_SIZE)

    def put(name, v, size=4):
        out[_off(name):_off(name) + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little")
    put("mark", skb.mark)
    put("priority", skb.priority)
    put("ingress_ifindex", skb.ingress_ifindex)
    put("ifindex", skb.ifindex)
    for i in range(5):
        put(f"cb[{i}]", skb.cb[i])
    put("tstamp", skb.tstamp, 8)
    put("wire_len", wire_len)
    put("gso_segs", skb.gso_segs)
    put("gso_size", skb.gso_size)
    put("hwtstamp", skb.hwtstamp, 8)
    return bytes(out)


def run_skb_test(prog: ExecProgram, data: bytes, ctx: bytes | None, repeat: int, flags: int = 0,
                 cpu: int = 0, batch_size: int = 0):
    if flags & ~BPF_F_TEST_SKB_CHECKSUM_COMPLETE or cpu or batch_size:
        raise _err(errno.EINVAL, "flags/cpu/batch_size are not supported for skb programs")
    if len(data) < ETH_HLEN or len(data) > PAGE_SIZE - SKB_HEADROOM - SKB_SHINFO:
        raise _err(errno.EINVAL, f"data_size_in {len(data)} outside [{ETH_HLEN}, "
                                 f"{PAGE_SIZE - SKB_HEADROOM - SKB_SHINFO}]")
    if callable(ctx):
        ctx = ctx()             # bpf_ctx_init comes after bpf_test_init for skb programs
    is_l2 = prog.prog_type in (SCHED_CLS, SCHED_ACT)
    skb = SkBuff(data, l2=is_l2, pkt_type=eth_pkt_type(data))
    if ctx is not None:
        if _u32(ctx, "ifindex") > 1 and not _ifindex_ok(_u32(ctx, "ifindex")):
            raise _err(errno.ENODEV, f"ifindex {_u32(ctx, 'ifindex')}")
        _skb_ctx_check(ctx)
        skb.ifindex = max(1, _u32(ctx, "ifindex"))
        skb.mark = _u32(ctx, "mark")
        skb.priority = _u32(ctx, "priority")
        skb.ingress_ifindex = _u32(ctx, "ingress_ifindex")
        skb.tstamp = _u64(ctx, "tstamp")
        skb.cb = [_u32(ctx, f"cb[{i}]") for i in range(5)]
        wire = _u32(ctx, "wire_len")
        if wire and (wire < skb.len or wire > GSO_LEGACY_MAX_SIZE):
            raise _err(errno.EINVAL, f"wire_len {wire}")
        skb.wire_len = wire or skb.len
        skb.gso_segs = _u32(ctx, "gso_segs")
        if skb.gso_segs > GSO_MAX_SEGS:
            raise _err(errno.EINVAL, f"gso_segs {skb.gso_segs}")
        skb.gso_size = _u32(ctx, "gso_size")
        skb.hwtstamp = _u64(ctx, "hwtstamp")
    res = run_skb(prog, skb, repeat=repeat)
    out = res.data
    if not is_l2:
        out = bytes(ETH_HLEN) + out[ETH_HLEN:]
    return res.retval, out, _skb_ctx_out(skb, skb.wire_len), res.duration_ns


# -- xdp ------------------------------------------------------------------------------------

def run_xdp_test(prog: ExecProgram, data: bytes, ctx: bytes | None, repeat: int, flags: int = 0,
                 cpu: int = 0, batch_size: int = 0):
    if prog.expected_attach_type in (BPF_XDP_DEVMAP, BPF_XDP_CPUMAP):
        raise _err(errno.EINVAL, "devmap/cpumap XDP programs cannot be test-run")
    if flags & ~BPF_F_TEST_XDP_LIVE_FRAMES:
        raise _err(errno.EINVAL, f"flags {flags:#x}")
    if flags & BPF_F_TEST_XDP_LIVE_FRAMES:
        raise _err(errno.EINVAL, "live-frame mode (BPF_F_TEST_XDP_LIVE_FRAMES) is not supported by pybpf")
    if batch_size:
        raise _err(errno.EINVAL, "batch_size without live frames")
    if callable(ctx):
        ctx = ctx()             # for XDP, bpf_ctx_init comes before the data checks
    headroom = XDP_HEADROOM
    metalen, ingress, rxq, egress = 0, 0, 0, 0
    linear = len(data)
    if ctx is not None:
        d, d_end, d_meta, ingress, rxq, egress = struct.unpack_from("<6I", ctx.ljust(24, b"\0"))
        if d_meta or d_end > len(data) or d > d_end or d & 3 or d > XDP_HEADROOM - XDP_FRAME_STRUCT:
            raise _err(errno.EINVAL, "xdp_md: data_meta must be 0, data the metadata length (a "
                                     f"multiple of 4, at most {XDP_HEADROOM - XDP_FRAME_STRUCT}), "
                                     "data_end at most the data size")
        metalen = d
        headroom -= d
        linear = d_end          # the rest of the data goes to fragments
    if len(data) - metalen < ETH_HLEN:
        raise _err(errno.EINVAL, f"data_size_in {len(data)} leaves less than an Ethernet header "
                                 f"after {metalen} bytes of metadata")
    if ctx is not None:         # xdp_convert_md_to_buff, after the data is taken in
        if egress:
            raise _err(errno.EINVAL, "xdp_md.egress_ifindex must be 0")
        if ingress:
            if not _ifindex_ok(ingress):
                raise _err(errno.ENODEV, f"ingress_ifindex {ingress}")
            if rxq >= max(1, _rx_queues(ingress)):
                raise _err(errno.EINVAL, f"rx_queue_index {rxq}")
        elif rxq:
            raise _err(errno.EINVAL, "rx_queue_index without ingress_ifindex")
    max_data = PAGE_SIZE - headroom - SKB_SHINFO
    linear = min(linear, max_data)
    if len(data) - linear > MAX_SKB_FRAGS * PAGE_SIZE:
        raise _err(errno.ENOMEM, f"data_size_in {len(data)} needs more than {MAX_SKB_FRAGS} fragments")
    # past the linear part the data goes to fragments, which the program does not see
    xdp = XdpBuff(data[metalen:linear], data[:metalen], ingress_ifindex=ingress or 1,
                  rx_queue_index=rxq, frags=data[linear:])
    res = run_xdp(prog, xdp, repeat=repeat)
    frags = xdp.frags_bytes
    ctx_out = None
    if ctx is not None:
        ctx_out = struct.pack("<6I", len(xdp.meta), len(xdp.meta) + len(xdp.data), 0, ingress, rxq, 0)
    return res.retval, (xdp.meta + xdp.data, frags), ctx_out, res.duration_ns


def _rx_queues(ifindex: int) -> int:
    try:
        name = socket.if_indextoname(ifindex)
        return len([q for q in os.listdir(f"/sys/class/net/{name}/queues") if q.startswith("rx-")])
    except OSError:
        return 1


# -- the command --------------------------------------------------------------------------

def _ctx_init(a: TestRunAttr, max_size: int) -> bytes | None:
    """bpf_ctx_init: the ctx_in bytes (zero-extended), E2BIG for a non-zero tail past max_size."""
    if not a.ctx_in and not a.ctx_out:
        return None
    if not a.ctx_in:
        return None
    raw = uread(a.ctx_in, a.ctx_size_in, "ctx_in") if a.ctx_size_in else b""
    if len(raw) > max_size and raw[max_size:].strip(b"\0"):
        raise _err(errno.E2BIG, f"ctx_in has non-zero bytes past {max_size}")
    return raw[:max_size].ljust(max_size, b"\0")


def test_run_handler(attr: Attr) -> int:
    from .. import kobj
    a = attr.view(TestRunAttr)
    if bool(a.ctx_size_in) != bool(a.ctx_in) or bool(a.ctx_size_out) != bool(a.ctx_out):
        raise _err(errno.EINVAL, "ctx_size_in/ctx_in (or ctx_size_out/ctx_out) given without the other")
    try:
        obj = kobj.obj_from_fd(a.prog_fd)
    except OSError as e:
        raise _err(e.errno or errno.EBADF, f"prog_fd {a.prog_fd}") from None
    if obj.kind != "prog":
        raise _err(errno.EINVAL, f"fd {a.prog_fd} is a {obj.kind}, not a program")
    from .core import runtime
    prog = runtime().program_of(obj)
    t = prog.prog_type
    if t in (SOCKET_FILTER, SCHED_CLS, SCHED_ACT):
        runner, ctx_size = run_skb_test, SK_BUFF_SIZE
    elif t == XDP:
        runner, ctx_size = run_xdp_test, XDP_MD_SIZE
    else:
        raise _err(ENOTSUPP, f"program type {t} has no test run")
    # bpf_test_init/ctx_init order: the data checks come first in the kernel for skb programs
    data = uread(a.data_in, a.data_size_in, "data_in") if a.data_size_in else b""
    ctx = (lambda: _ctx_init(a, ctx_size))
    # the caller's fd keeps the program alive while it runs; its maps are held by the runtime
    retval, out, ctx_out, duration = runner(prog, data, ctx, a.repeat, a.flags, a.cpu, a.batch_size)
    return _finish(attr, a, retval, out, ctx_out, duration, ctx_size)


def _finish(attr: Attr, a: TestRunAttr, retval, out, ctx_out, duration, ctx_size) -> int:
    """bpf_test_finish + bpf_ctx_finish: copy out, ENOSPC when the caller's buffer is short."""
    linear, frags = out if isinstance(out, tuple) else (out, b"")
    size = len(linear) + len(frags)
    copy = size
    err = 0
    if a.data_size_out and size > a.data_size_out:
        copy, err = a.data_size_out, errno.ENOSPC
    if a.data_out:
        # As Linux: the fragments are copied whole after as much of the linear part as
        # leaves room for them; nothing at all when they alone do not fit.
        keep = copy - len(frags)
        if keep < 0:
            raise _err(errno.ENOSPC, f"data_out of {a.data_size_out} bytes is too small for {size}")
        uwrite(a.data_out, linear[:keep] + frags, "data_out")
    attr.write_back(_OFF["data_size_out"], struct.pack("<I", size))
    attr.write_back(_OFF["retval"], struct.pack("<I", retval & 0xFFFFFFFF))
    attr.write_back(_OFF["duration"], struct.pack("<I", min(duration, 0xFFFFFFFF)))
    if err:
        raise _err(err, f"data_out of {a.data_size_out} bytes is too small for {size}")
    if ctx_out is not None and a.ctx_out:
        n = min(a.ctx_size_out, ctx_size)
        uwrite(a.ctx_out, ctx_out[:n], "ctx_out")
        attr.write_back(_OFF["ctx_size_out"], struct.pack("<I", ctx_size))
        if a.ctx_size_out < ctx_size:
            raise _err(errno.ENOSPC, f"ctx_out of {a.ctx_size_out} bytes is too small for {ctx_size}")
    return 0


def test_run(prog, data: bytes = b"", *, ctx: bytes | None = None, repeat: int = 1,
             data_size_out: int | None = None, ctx_size_out: int | None = None, flags: int = 0) -> TestRunResult:
    """BPF_PROG_TEST_RUN through :func:`pybpf.bpf` for a prog fd (or an object with ``.fd``)."""
    from ..syscall import bpf
    fd = prog if isinstance(prog, int) else prog.fd
    data = bytes(data)
    din = (ctypes.c_char * max(1, len(data))).from_buffer_copy(data.ljust(1, b"\0"))
    cap = data_size_out if data_size_out is not None else len(data) + 4096
    dout = (ctypes.c_char * max(1, cap))()
    a = TestRunAttr(prog_fd=fd, data_size_in=len(data), data_in=ctypes.addressof(din) if data else 0,
                    data_size_out=cap, data_out=ctypes.addressof(dout), repeat=repeat, flags=flags)
    cin = cout = None
    if ctx is not None:
        cin = (ctypes.c_char * max(1, len(ctx))).from_buffer_copy(bytes(ctx).ljust(1, b"\0"))
        a.ctx_in, a.ctx_size_in = ctypes.addressof(cin), len(ctx)
        csz = ctx_size_out if ctx_size_out is not None else max(len(ctx), SK_BUFF_SIZE)
        cout = (ctypes.c_char * csz)()
        a.ctx_out, a.ctx_size_out = ctypes.addressof(cout), csz
    bpf(BPF_PROG_TEST_RUN, a)
    n = min(a.data_size_out, cap)
    return TestRunResult(a.retval, bytes(dout)[:n],
                         bytes(cout)[:a.ctx_size_out] if cout is not None else None, a.duration,
                         a.data_size_out)


register(BPF_PROG_TEST_RUN, test_run_handler, LAST_FIELD_END)
