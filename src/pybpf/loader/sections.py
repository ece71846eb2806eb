"""Program type and expected attach type from an ELF section name.

The names are the ones libbpf (1.x) understands.  A pattern ending in ``+``
matches the bare name or ``name/<attach target>``; one ending in ``/`` needs
a target; any other matches exactly.  Objects written for libbpf before 1.0
(and iproute2) rely on plain prefix matching (``classifier/foo``,
``socket1``), which we accept as a fallback.
"""

from __future__ import annotations

from dataclasses import dataclass

# enum bpf_prog_type (linux/bpf.h)
PROG_TYPES = {
    "UNSPEC": 0, "SOCKET_FILTER": 1, "KPROBE": 2, "SCHED_CLS": 3, "SCHED_ACT": 4,
    "TRACEPOINT": 5, "XDP": 6, "PERF_EVENT": 7, "CGROUP_SKB": 8, "CGROUP_SOCK": 9,
    "LWT_IN": 10, "LWT_OUT": 11, "LWT_XMIT": 12, "SOCK_OPS": 13, "SK_SKB": 14,
    "CGROUP_DEVICE": 15, "SK_MSG": 16, "RAW_TRACEPOINT": 17, "CGROUP_SOCK_ADDR": 18,
    "LWT_SEG6LOCAL": 19, "LIRC_MODE2": 20, "SK_REUSEPORT": 21, "FLOW_DISSECTOR": 22,
    "CGROUP_SYSCTL": 23, "RAW_TRACEPOINT_WRITABLE": 24, "CGROUP_SOCKOPT": 25,
    "TRACING": 26, "STRUCT_OPS": 27, "EXT": 28, "LSM": 29, "SK_LOOKUP": 30,
    "SYSCALL": 31, "NETFILTER": 32,
}

# enum bpf_attach_type (linux/bpf.h)
ATTACH_TYPES = {
    "CGROUP_INET_INGRESS": 0, "CGROUP_INET_EGRESS": 1, "CGROUP_INET_SOCK_CREATE": 2,
    "CGROUP_SOCK_OPS": 3, "SK_SKB_STREAM_PARSER": 4, "SK_SKB_STREAM_VERDICT": 5,
    "CGROUP_DEVICE": 6, "SK_MSG_VERDICT": 7, "CGROUP_INET4_BIND": 8,
    "CGROUP_INET6_BIND": 9, "CGROUP_INET4_CONNECT": 10, "CGROUP_INET6_CONNECT": 11,
    "CGROUP_INET4_POST_BIND": 12, "CGROUP_INET6_POST_BIND": 13, "CGROUP_UDP4_SENDMSG": 14,
    "CGROUP_UDP6_SENDMSG": 15, "LIRC_MODE2": 16, "FLOW_DISSECTOR": 17, "CGROUP_SYSCTL": 18,
    "CGROUP_UDP4_RECVMSG": 19, "CGROUP_UDP6_RECVMSG": 20, "CGROUP_GETSOCKOPT": 21,
    "CGROUP_SETSOCKOPT": 22, "TRACE_RAW_TP": 23, "TRACE_FENTRY": 24, "TRACE_FEXIT": 25,
    "MODIFY_RETURN": 26, "LSM_MAC": 27, "TRACE_ITER": 28, "CGROUP_INET4_GETPEERNAME": 29,
    "CGROUP_INET6_GETPEERNAME": 30, "CGROUP_INET4_GETSOCKNAME": 31,
    "CGROUP_INET6_GETSOCKNAME": 32, "XDP_DEVMAP": 33, "CGROUP_INET_SOCK_RELEASE": 34,
    "XDP_CPUMAP": 35, "SK_LOOKUP": 36, "XDP": 37, "SK_SKB_VERDICT": 38,
    "SK_REUSEPORT_SELECT": 39, "SK_REUSEPORT_SELECT_OR_MIGRATE": 40, "PERF_EVENT": 41,
    "TRACE_KPROBE_MULTI": 42, "LSM_CGROUP": 43, "STRUCT_OPS": 44, "NETFILTER": 45,
    "TCX_INGRESS": 46, "TCX_EGRESS": 47, "TRACE_UPROBE_MULTI": 48,
    "CGROUP_UNIX_CONNECT": 49, "CGROUP_UNIX_SENDMSG": 50, "CGROUP_UNIX_RECVMSG": 51,
    "CGROUP_UNIX_GETPEERNAME": 52, "CGROUP_UNIX_GETSOCKNAME": 53, "NETKIT_PRIMARY": 54,
    "NETKIT_PEER": 55, "TRACE_KPROBE_SESSION": 56, "TRACE_UPROBE_SESSION": 57,
}


@dataclass(frozen=True)
class SectionDef:
    pattern: str
    prog_type: int
    expected_attach_type: int
    sleepable: bool = False


def _d(pattern: str, ptype: str, attach: str | None = None, sleepable: bool = False) -> SectionDef:
    return SectionDef(pattern, PROG_TYPES[ptype], ATTACH_TYPES[attach] if attach else 0, sleepable)


# Order matters: the first match wins, so specific names precede general ones.
SECTION_DEFS: tuple[SectionDef, ...] = (
    _d("socket", "SOCKET_FILTER"),
    _d("sk_reuseport/migrate", "SK_REUSEPORT", "SK_REUSEPORT_SELECT_OR_MIGRATE"),
    _d("sk_reuseport", "SK_REUSEPORT", "SK_REUSEPORT_SELECT"),
    _d("kprobe+", "KPROBE"),
    _d("uprobe+", "KPROBE"),
    _d("uprobe.s+", "KPROBE", sleepable=True),
    _d("kretprobe+", "KPROBE"),
    _d("uretprobe+", "KPROBE"),
    _d("uretprobe.s+", "KPROBE", sleepable=True),
    _d("kprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI"),
    _d("kretprobe.multi+", "KPROBE", "TRACE_KPROBE_MULTI"),
    _d("kprobe.session+", "KPROBE", "TRACE_KPROBE_SESSION"),
    _d("uprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI"),
    _d("uretprobe.multi+", "KPROBE", "TRACE_UPROBE_MULTI"),
    _d("uprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", sleepable=True),
    _d("uretprobe.multi.s+", "KPROBE", "TRACE_UPROBE_MULTI", sleepable=True),
    _d("uprobe.session+", "KPROBE", "TRACE_UPROBE_SESSION"),
    _d("uprobe.session.s+", "KPROBE", "TRACE_UPROBE_SESSION", sleepable=True),
    _d("ksyscall+", "KPROBE"),
    _d("kretsyscall+", "KPROBE"),
    _d("usdt+", "KPROBE"),
    _d("usdt.s+", "KPROBE", sleepable=True),
    _d("tc/ingress", "SCHED_CLS", "TCX_INGRESS"),
    _d("tc/egress", "SCHED_CLS", "TCX_EGRESS"),
    _d("tcx/ingress", "SCHED_CLS", "TCX_INGRESS"),
    _d("tcx/egress", "SCHED_CLS", "TCX_EGRESS"),
    _d("tc", "SCHED_CLS"),
    _d("classifier", "SCHED_CLS"),
    _d("action", "SCHED_ACT"),
    _d("netkit/primary", "SCHED_CLS", "NETKIT_PRIMARY"),
    _d("netkit/peer", "SCHED_CLS", "NETKIT_PEER"),
    _d("tracepoint+", "TRACEPOINT"),
    _d("tp+", "TRACEPOINT"),
    _d("raw_tracepoint+", "RAW_TRACEPOINT"),
    _d("raw_tp+", "RAW_TRACEPOINT"),
    _d("raw_tracepoint.w+", "RAW_TRACEPOINT_WRITABLE"),
    _d("raw_tp.w+", "RAW_TRACEPOINT_WRITABLE"),
    _d("tp_btf+", "TRACING", "TRACE_RAW_TP"),
    _d("fentry+", "TRACING", "TRACE_FENTRY"),
    _d("fmod_ret+", "TRACING", "MODIFY_RETURN"),
    _d("fexit+", "TRACING", "TRACE_FEXIT"),
    _d("fentry.s+", "TRACING", "TRACE_FENTRY", sleepable=True),
    _d("fmod_ret.s+", "TRACING", "MODIFY_RETURN", sleepable=True),
    _d("fexit.s+", "TRACING", "TRACE_FEXIT", sleepable=True),
    _d("freplace+", "EXT"),
    _d("lsm+", "LSM", "LSM_MAC"),
    _d("lsm.s+", "LSM", "LSM_MAC", sleepable=True),
    _d("lsm_cgroup+", "LSM", "LSM_CGROUP"),
    _d("iter+", "TRACING", "TRACE_ITER"),
    _d("iter.s+", "TRACING", "TRACE_ITER", sleepable=True),
    _d("syscall", "SYSCALL", sleepable=True),
    _d("xdp.frags/devmap", "XDP", "XDP_DEVMAP"),
    _d("xdp/devmap", "XDP", "XDP_DEVMAP"),
    _d("xdp.frags/cpumap", "XDP", "XDP_CPUMAP"),
    _d("xdp/cpumap", "XDP", "XDP_CPUMAP"),
    _d("xdp.frags", "XDP", "XDP"),
    _d("xdp", "XDP", "XDP"),
    _d("perf_event", "PERF_EVENT"),
    _d("lwt_in", "LWT_IN"),
    _d("lwt_out", "LWT_OUT"),
    _d("lwt_xmit", "LWT_XMIT"),
    _d("lwt_seg6local", "LWT_SEG6LOCAL"),
    _d("sockops", "SOCK_OPS", "CGROUP_SOCK_OPS"),
    _d("sk_skb/stream_parser", "SK_SKB", "SK_SKB_STREAM_PARSER"),
    _d("sk_skb/stream_verdict", "SK_SKB", "SK_SKB_STREAM_VERDICT"),
    _d("sk_skb/verdict", "SK_SKB", "SK_SKB_VERDICT"),
    _d("sk_skb", "SK_SKB"),
    _d("sk_msg", "SK_MSG", "SK_MSG_VERDICT"),
    _d("lirc_mode2", "LIRC_MODE2", "LIRC_MODE2"),
    _d("flow_dissector", "FLOW_DISSECTOR", "FLOW_DISSECTOR"),
    _d("cgroup_skb/ingress", "CGROUP_SKB", "CGROUP_INET_INGRESS"),
    _d("cgroup_skb/egress", "CGROUP_SKB", "CGROUP_INET_EGRESS"),
    _d("cgroup/skb", "CGROUP_SKB"),
    _d("cgroup/sock_create", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE"),
    _d("cgroup/sock_release", "CGROUP_SOCK", "CGROUP_INET_SOCK_RELEASE"),
    _d("cgroup/sock", "CGROUP_SOCK", "CGROUP_INET_SOCK_CREATE"),
    _d("cgroup/post_bind4", "CGROUP_SOCK", "CGROUP_INET4_POST_BIND"),
    _d("cgroup/post_bind6", "CGROUP_SOCK", "CGROUP_INET6_POST_BIND"),
    _d("cgroup/bind4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_BIND"),
    _d("cgroup/bind6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_BIND"),
    _d("cgroup/connect4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_CONNECT"),
    _d("cgroup/connect6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_CONNECT"),
    _d("cgroup/connect_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_CONNECT"),
    _d("cgroup/sendmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_SENDMSG"),
    _d("cgroup/sendmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_SENDMSG"),
    _d("cgroup/sendmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_SENDMSG"),
    _d("cgroup/recvmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_RECVMSG"),
    _d("cgroup/recvmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_RECVMSG"),
    _d("cgroup/recvmsg_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_RECVMSG"),
    _d("cgroup/getpeername4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETPEERNAME"),
    _d("cgroup/getpeername6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETPEERNAME"),
    _d("cgroup/getpeername_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETPEERNAME"),
    _d("cgroup/getsockname4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_GETSOCKNAME"),
    _d("cgroup/getsockname6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_GETSOCKNAME"),
    _d("cgroup/getsockname_unix", "CGROUP_SOCK_ADDR", "CGROUP_UNIX_GETSOCKNAME"),
    _d("cgroup/sysctl", "CGROUP_SYSCTL", "CGROUP_SYSCTL"),
    _d("cgroup/getsockopt", "CGROUP_SOCKOPT", "CGROUP_GETSOCKOPT"),
    _d("cgroup/setsockopt", "CGROUP_SOCKOPT", "CGROUP_SETSOCKOPT"),
    _d("cgroup/dev", "CGROUP_DEVICE", "CGROUP_DEVICE"),
    _d("struct_ops+", "STRUCT_OPS"),
    _d("struct_ops.s+", "STRUCT_OPS", sleepable=True),
    _d("sk_lookup", "SK_LOOKUP", "SK_LOOKUP"),
    _d("netfilter", "NETFILTER", "NETFILTER"),
)


@dataclass(frozen=True)
class ProgKind:
    """What a section name says about the programs in it."""

    prog_type: int
    expected_attach_type: int
    sleepable: bool
    attach_to: str | None
    matched: str | None    # the pattern that matched, None if nothing did


UNKNOWN = ProgKind(0, 0, False, None, None)


def _strict_match(name: str, pattern: str) -> str | None | bool:
    """False if no match; otherwise the attach target after '/' (or None)."""
    if pattern.endswith("/"):
        if name.startswith(pattern) and len(name) > len(pattern):
            return name[len(pattern):]
        return False
    if pattern.endswith("+"):
        base = pattern[:-1]
        if name == base:
            return None
        if name.startswith(base + "/"):
            return name[len(base) + 1:]
        return False
    return None if name == pattern else False


def classify(section: str) -> ProgKind:
    """The program type of a section, e.g. ``classify("kprobe/do_sys_open")``.

    Unknown names give ``prog_type`` 0 (BPF_PROG_TYPE_UNSPEC): reading still
    succeeds and it is for the loader to refuse such a program.
    """
    for d in SECTION_DEFS:
        got = _strict_match(section, d.pattern)
        if got is not False:
            return ProgKind(d.prog_type, d.expected_attach_type, d.sleepable, got or None, d.pattern)
    # libbpf < 1.0 matched any section starting with a known name; the
    # longest such name is the most specific one.
    best = None
    for d in SECTION_DEFS:
        base = d.pattern.rstrip("+")
        if section.startswith(base) and (best is None or len(base) > len(best.pattern.rstrip("+"))):
            best = d
    if best is not None:
        rest = section[len(best.pattern.rstrip("+")):]
        target = rest[1:] if rest.startswith("/") and len(rest) > 1 else None
        return ProgKind(best.prog_type, best.expected_attach_type, best.sleepable, target, best.pattern)
    return UNKNOWN
