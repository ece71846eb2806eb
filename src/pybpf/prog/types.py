"""Program type and attach type names (uapi enum bpf_prog_type / bpf_attach_type)."""

from __future__ import annotations

from ..errors import PybpfError

PROG_TYPE_NAMES = [
    "unspec", "socket_filter", "kprobe", "sched_cls", "sched_act", "tracepoint", "xdp", "perf_event",
    "cgroup_skb", "cgroup_sock", "lwt_in", "lwt_out", "lwt_xmit", "sock_ops", "sk_skb", "cgroup_device",
    "sk_msg", "raw_tracepoint", "cgroup_sock_addr", "lwt_seg6local", "lirc_mode2", "sk_reuseport",
    "flow_dissector", "cgroup_sysctl", "raw_tracepoint_writable", "cgroup_sockopt", "tracing",
    "struct_ops", "ext", "lsm", "sk_lookup", "syscall", "netfilter",
]
PROG_TYPES = {n: i for i, n in enumerate(PROG_TYPE_NAMES)}

# bpftool / libbpf section-style words for the same types
_ALIASES = {"socket": "socket_filter", "filter": "socket_filter", "classifier": "sched_cls",
            "tc": "sched_cls", "action": "sched_act", "uprobe": "kprobe", "kretprobe": "kprobe"}

SOCKET_FILTER = 1
CGROUP_SKB = 8
# Linux lets a loader without CAP_BPF load only these (kernel/bpf/syscall.c)
UNPRIVILEGED_TYPES = frozenset({SOCKET_FILTER, CGROUP_SKB})


class ProgTypeError(PybpfError, ValueError):
    pass


def prog_type_number(t) -> int:
    """An int, or a name as Linux's enum spells it ("xdp", "BPF_PROG_TYPE_XDP", "socket_filter")."""
    if isinstance(t, bool):
        raise ProgTypeError(f"bad program type {t!r}")
    if isinstance(t, int):
        return t
    if isinstance(t, str):
        s = t.strip().lower()
        if s.startswith("bpf_prog_type_"):
            s = s[len("bpf_prog_type_"):]
        s = _ALIASES.get(s, s)
        if s in PROG_TYPES:
            return PROG_TYPES[s]
        if s.isdigit():
            return int(s)
        raise ProgTypeError(f"unknown program type {t!r} (known: {', '.join(PROG_TYPE_NAMES[1:])})")
    raise ProgTypeError(f"bad program type {t!r}")


def prog_type_name(n: int) -> str:
    return PROG_TYPE_NAMES[n] if 0 <= n < len(PROG_TYPE_NAMES) else f"type {n}"
