"""Helper prototypes: argument and return kinds, GPL restriction, who may call them.

Ids and kinds mirror the kernel's ``struct bpf_func_proto`` for each helper; the
sets of program types mirror each type's ``get_func_proto``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..asm.helper_names import HELPER_NAMES as _BPF_NAMES

# uapi order, without the bpf_ prefix the log adds back
HELPER_NAMES = tuple(_BPF_NAMES[i][4:] for i in range(len(_BPF_NAMES)))
from .progtypes import KPROBE, SCHED_ACT, SCHED_CLS, SOCKET_FILTER, TRACEPOINT, XDP

# Argument kinds.
ANYTHING = "anything"
CONST_MAP_PTR = "map_ptr"
MAP_KEY = "map_key"
MAP_VALUE = "map_value"            # initialised, value_size bytes
MAP_VALUE_UNINIT = "map_value_uninit"
MEM = "mem"                        # readable memory of the size in the next argument
MEM_OR_NULL = "mem_or_null"
UNINIT_MEM = "uninit_mem"          # writable memory of the size in the next argument
UNINIT_MEM_OR_NULL = "uninit_mem_or_null"
CONST_SIZE = "const_size"
CONST_SIZE_OR_ZERO = "const_size_or_zero"
CONST_ALLOC_SIZE_OR_ZERO = "const_alloc_size_or_zero"
CTX = "ctx"
ALLOC_MEM = "alloc_mem"            # a ringbuf record, released by the call
CONST_STR = "const_str"
FUNC = "func"
STACK_OR_NULL = "stack_or_null"

# Return kinds.
RET_INTEGER = "integer"
RET_VOID = "void"
RET_MAP_VALUE_OR_NULL = "map_value_or_null"
RET_ALLOC_MEM_OR_NULL = "alloc_mem_or_null"

# Map types (uapi enum bpf_map_type).
MAP_HASH, MAP_ARRAY, MAP_PROG_ARRAY, MAP_PERF_EVENT_ARRAY = 1, 2, 3, 4
MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_HASH, MAP_LRU_PERCPU_HASH = 5, 6, 9, 10
MAP_QUEUE, MAP_STACK, MAP_RINGBUF = 22, 23, 27


@dataclass(frozen=True)
class Proto:
    id: int
    args: tuple[str, ...]
    ret: str = RET_INTEGER
    gpl_only: bool = False
    prog_types: frozenset = frozenset()
    changes_pkt_data: bool = False
    map_types: frozenset = field(default=frozenset())   # maps this helper accepts (empty: any lookup-able)

    @property
    def name(self) -> str:
        return helper_name(self.id)


def helper_name(fid: int) -> str:
    if 0 <= fid < len(HELPER_NAMES):
        return f"bpf_{HELPER_NAMES[fid]}"
    return "unknown"


NET = frozenset({SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP})
TC = frozenset({SCHED_CLS, SCHED_ACT})
ALL = frozenset({SOCKET_FILTER, SCHED_CLS, SCHED_ACT, XDP, KPROBE, TRACEPOINT})
TRACE = frozenset({KPROBE, TRACEPOINT})
SKB = frozenset({SOCKET_FILTER, SCHED_CLS, SCHED_ACT})
TCXDP = frozenset({SCHED_CLS, SCHED_ACT, XDP})

_KEYED = frozenset({MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_HASH,
                    MAP_LRU_PERCPU_HASH})

_PROTOS = [
    Proto(1, (CONST_MAP_PTR, MAP_KEY), RET_MAP_VALUE_OR_NULL, prog_types=ALL),
    Proto(2, (CONST_MAP_PTR, MAP_KEY, MAP_VALUE, ANYTHING), prog_types=ALL),
    Proto(3, (CONST_MAP_PTR, MAP_KEY), prog_types=ALL),
    Proto(4, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=TRACE),
    Proto(5, (), prog_types=ALL),
    Proto(6, (MEM, CONST_SIZE), gpl_only=True, prog_types=ALL),
    Proto(7, (), prog_types=ALL),
    Proto(8, (), prog_types=ALL),
    Proto(9, (CTX, ANYTHING, MEM, CONST_SIZE, ANYTHING), prog_types=TC, changes_pkt_data=True),
    Proto(10, (CTX, ANYTHING, ANYTHING, ANYTHING, ANYTHING), prog_types=TC, changes_pkt_data=True),
    Proto(11, (CTX, ANYTHING, ANYTHING, ANYTHING, ANYTHING), prog_types=TC, changes_pkt_data=True),
    Proto(12, (CTX, CONST_MAP_PTR, ANYTHING), RET_VOID, prog_types=ALL,
          map_types=frozenset({MAP_PROG_ARRAY})),
    Proto(13, (CTX, ANYTHING, ANYTHING), prog_types=TC, changes_pkt_data=True),
    Proto(14, (), prog_types=ALL),
    Proto(15, (), prog_types=ALL),
    Proto(16, (UNINIT_MEM, CONST_SIZE), prog_types=ALL),
    Proto(17, (CTX,), prog_types=ALL),
    Proto(18, (CTX, ANYTHING, ANYTHING), prog_types=TC, changes_pkt_data=True),
    Proto(19, (CTX,), prog_types=TC, changes_pkt_data=True),
    Proto(20, (CTX, UNINIT_MEM, CONST_SIZE, ANYTHING), prog_types=TC),
    Proto(21, (CTX, MEM, CONST_SIZE, ANYTHING), prog_types=TC),
    Proto(22, (CONST_MAP_PTR, ANYTHING), gpl_only=True, prog_types=ALL,
          map_types=frozenset({MAP_PERF_EVENT_ARRAY})),
    Proto(23, (ANYTHING, ANYTHING), prog_types=TCXDP),
    Proto(24, (CTX,), prog_types=TC),
    Proto(25, (CTX, CONST_MAP_PTR, ANYTHING, MEM, CONST_SIZE_OR_ZERO), gpl_only=True,
          prog_types=ALL, map_types=frozenset({MAP_PERF_EVENT_ARRAY})),
    Proto(26, (CTX, ANYTHING, UNINIT_MEM, CONST_SIZE), prog_types=SKB),
    Proto(28, (MEM_OR_NULL, CONST_SIZE_OR_ZERO, MEM_OR_NULL, CONST_SIZE_OR_ZERO, ANYTHING),
          prog_types=TCXDP),
    Proto(44, (CTX, ANYTHING), prog_types=frozenset({XDP}), changes_pkt_data=True),
    Proto(45, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=TRACE),
    Proto(65, (CTX, ANYTHING), prog_types=frozenset({XDP}), changes_pkt_data=True),
    Proto(87, (CONST_MAP_PTR, MAP_VALUE, ANYTHING), prog_types=ALL,
          map_types=frozenset({MAP_QUEUE, MAP_STACK})),
    Proto(88, (CONST_MAP_PTR, MAP_VALUE_UNINIT), prog_types=ALL,
          map_types=frozenset({MAP_QUEUE, MAP_STACK})),
    Proto(89, (CONST_MAP_PTR, MAP_VALUE_UNINIT), prog_types=ALL,
          map_types=frozenset({MAP_QUEUE, MAP_STACK})),
    Proto(112, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=ALL),
    Proto(113, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=ALL),
    Proto(114, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=ALL),
    Proto(115, (UNINIT_MEM, CONST_SIZE_OR_ZERO, ANYTHING), gpl_only=True, prog_types=ALL),
    Proto(125, (), prog_types=ALL),
    Proto(130, (CONST_MAP_PTR, MEM, CONST_SIZE_OR_ZERO, ANYTHING), prog_types=ALL,
          map_types=frozenset({MAP_RINGBUF})),
    Proto(131, (CONST_MAP_PTR, CONST_ALLOC_SIZE_OR_ZERO, ANYTHING), RET_ALLOC_MEM_OR_NULL,
          prog_types=ALL, map_types=frozenset({MAP_RINGBUF})),
    Proto(132, (ALLOC_MEM, ANYTHING), RET_VOID, prog_types=ALL),
    Proto(133, (ALLOC_MEM, ANYTHING), RET_VOID, prog_types=ALL),
    Proto(134, (CONST_MAP_PTR, ANYTHING), prog_types=ALL, map_types=frozenset({MAP_RINGBUF})),
    Proto(164, (CONST_MAP_PTR, FUNC, STACK_OR_NULL, ANYTHING), prog_types=ALL),
    Proto(181, (ANYTHING, FUNC, STACK_OR_NULL, ANYTHING), prog_types=ALL),
    Proto(165, (UNINIT_MEM_OR_NULL, CONST_SIZE_OR_ZERO, CONST_STR, MEM_OR_NULL, CONST_SIZE_OR_ZERO),
          prog_types=ALL),
]

PROTOS: dict[int, Proto] = {p.id: p for p in _PROTOS}
MAX_HELPER_ID = len(HELPER_NAMES)

# Helpers an unprivileged loader may call (Linux's part of bpf_base_func_proto before the
# CAP_BPF/CAP_PERFMON checks, plus the socket filter's own; bpf_get_current_pid_tgid and
# bpf_get_current_uid_gid are there too in Linux 6.18).
UNPRIVILEGED = frozenset({1, 2, 3, 5, 7, 8, 12, 14, 15, 25, 26, 87, 88, 89, 125, 130, 131, 132, 133,
                          134})

# Helpers that call a callback of the program (synchronously, before they return):
# Linux verifies the callback as called any number of times at the call instruction.
CALLBACK_HELPERS = frozenset({164, 181})
LOOP, FOR_EACH_MAP_ELEM = 181, 164
GET_SMP_PROCESSOR_ID = 8
FOR_EACH_MAPS = frozenset({MAP_HASH, MAP_ARRAY, MAP_PERCPU_HASH, MAP_PERCPU_ARRAY, MAP_LRU_HASH,
                           MAP_LRU_PERCPU_HASH})
ENOTSUPP = 524          # Linux's internal "operation not supported", which bpf() passes through

# Helpers that may be given pointers into the packet (Linux: ``pkt_access`` in the proto).
PKT_ACCESS = frozenset({1, 2, 3, 28})

# Map types each helper family insists on, for maps passed to helpers that take "any keyed map".
SPECIAL_MAPS = {MAP_PROG_ARRAY: {12}, MAP_PERF_EVENT_ARRAY: {22, 25}, MAP_RINGBUF: {130, 131, 134},
                MAP_QUEUE: {87, 88, 89}, MAP_STACK: {87, 88, 89}}


def changes_pkt_data(fid: int) -> bool:
    p = PROTOS.get(fid)
    return p is not None and p.changes_pkt_data


def lookup(fid: int, prog_type: int, privileged: bool = True) -> Proto | None:
    p = PROTOS.get(fid)
    if p is None or prog_type not in p.prog_types:
        return None
    if not privileged and fid not in UNPRIVILEGED:
        return None
    return p


def map_compatible(proto: Proto, map_type: int) -> bool:
    if map_type in SPECIAL_MAPS:
        return proto.id in SPECIAL_MAPS[map_type]
    return not proto.map_types or map_type in proto.map_types
