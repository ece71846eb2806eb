"""Program type numbers (uapi enum bpf_prog_type) the verifier knows."""

SOCKET_FILTER = 1
KPROBE = 2
SCHED_CLS = 3
SCHED_ACT = 4
TRACEPOINT = 5
XDP = 6

NAMES = {SOCKET_FILTER: "socket_filter", KPROBE: "kprobe", SCHED_CLS: "sched_cls",
         SCHED_ACT: "sched_act", TRACEPOINT: "tracepoint",
         XDP: "xdp"}
BY_NAME = {v: k for k, v in NAMES.items()}
SUPPORTED = frozenset(NAMES)
