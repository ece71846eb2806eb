"""What a program's return value means for each program type."""

from __future__ import annotations

from ..verifier.progtypes import SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP

TRACEPOINT = 5

# TC_ACT_* (linux/pkt_cls.h)
TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_RECLASSIFY, TC_ACT_SHOT = -1, 0, 1, 2
TC_ACT_PIPE, TC_ACT_STOLEN, TC_ACT_QUEUED, TC_ACT_REPEAT, TC_ACT_REDIRECT, TC_ACT_TRAP = 3, 4, 5, 6, 7, 8
TC_NAMES = {TC_ACT_UNSPEC: "TC_ACT_UNSPEC", TC_ACT_OK: "TC_ACT_OK", TC_ACT_RECLASSIFY: "TC_ACT_RECLASSIFY",
            TC_ACT_SHOT: "TC_ACT_SHOT", TC_ACT_PIPE: "TC_ACT_PIPE", TC_ACT_STOLEN: "TC_ACT_STOLEN",
            TC_ACT_QUEUED: "TC_ACT_QUEUED", TC_ACT_REPEAT: "TC_ACT_REPEAT",
            TC_ACT_REDIRECT: "TC_ACT_REDIRECT", TC_ACT_TRAP: "TC_ACT_TRAP"}

# enum xdp_action
XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = 0, 1, 2, 3, 4
XDP_NAMES = {XDP_ABORTED: "XDP_ABORTED", XDP_DROP: "XDP_DROP", XDP_PASS: "XDP_PASS", XDP_TX: "XDP_TX",
             XDP_REDIRECT: "XDP_REDIRECT"}

# What happens to the packet: the fate names used by `pybpf run`.
PASS, DROP, TX, REDIRECT = "pass", "drop", "tx", "redirect"


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def name(prog_type: int, retval: int, length: int | None = None) -> str:
    """The verdict as Linux would name it ("XDP_PASS", "TC_ACT_SHOT", "accept 60 bytes"...)."""
    if prog_type == XDP:
        return XDP_NAMES.get(retval & 0xFFFFFFFF, f"XDP_ABORTED (invalid action {retval & 0xFFFFFFFF})")
    if prog_type in (SCHED_CLS, SCHED_ACT):
        v = s32(retval)
        return TC_NAMES.get(v, f"TC_ACT_UNSPEC (unknown action {v})")
    if prog_type == SOCKET_FILTER:
        n = retval & 0xFFFFFFFF
        if n == 0:
            return "drop"
        if length is not None and n >= length:
            return "accept"
        return f"accept {n} bytes"
    return f"return {retval & 0xFFFFFFFFFFFFFFFF}"


def fate(prog_type: int, retval: int) -> str:
    """pass / drop / tx / redirect: what the kernel does with the packet after the program."""
    if prog_type == XDP:
        return {XDP_DROP: DROP, XDP_PASS: PASS, XDP_TX: TX, XDP_REDIRECT: REDIRECT}.get(
            retval & 0xFFFFFFFF, DROP)
    if prog_type in (SCHED_CLS, SCHED_ACT):
        v = s32(retval)
        if v in (TC_ACT_SHOT, TC_ACT_STOLEN, TC_ACT_QUEUED, TC_ACT_TRAP):
            return DROP
        if v == TC_ACT_REDIRECT:
            return REDIRECT
        return PASS
    if prog_type == SOCKET_FILTER:
        return DROP if (retval & 0xFFFFFFFF) == 0 else PASS
    return PASS
