"""What every helper family shares: the run state, errno returns, checked memory."""

from __future__ import annotations

from ..vm.memory import VmError

M64 = 0xFFFFFFFFFFFFFFFF


def neg(code: int) -> int:
    """-code as the u64 a helper returns in r0."""
    return -code & M64


def s64(v: int) -> int:
    v &= M64
    return v - (1 << 64) if v >> 63 else v


def s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def state(vm):
    st = getattr(vm, "state", None)
    if st is None:
        raise VmError("helper called outside a runtime invocation (use pybpf.runtime to run programs "
                      "that call helpers)")
    return st


def read(vm, addr: int, n: int) -> bytes:
    return vm.memory.read(addr, n) if n else b""


def write(vm, addr: int, data: bytes) -> None:
    vm.memory.write(addr, data)


def skb_state(vm):
    """The state of a run on an __sk_buff (socket filter / tc), else a VmError."""
    st = state(vm)
    if st.skb is None:
        raise VmError("this helper needs an __sk_buff context (socket filter or tc program)")
    return st


def xdp_state(vm):
    st = state(vm)
    if st.xdp is None:
        raise VmError("this helper needs an xdp_md context (XDP program)")
    return st
