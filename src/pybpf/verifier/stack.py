"""A call frame: its registers and its 512-byte stack, tracked per 8-byte slot.

Each slot keeps one type character per byte, indexed as Linux indexes them
(``j = (-off - 1) % 8``, so ``j == 0`` is the slot's highest address) plus the
register that was spilled there, if any.
"""

from __future__ import annotations

from .regstate import NOT_INIT, PTR_TO_STACK, SCALAR, Reg

INVALID, SPILL, MISC, ZERO = "?", "r", "m", "0"
SLOT = 8


class Slot:
    __slots__ = ("types", "spilled")

    def __init__(self, types: list[str] | None = None, spilled: Reg | None = None):
        self.types = types if types is not None else [INVALID] * SLOT
        self.spilled = spilled

    def copy(self) -> "Slot":
        return Slot(self.types[:], self.spilled.copy() if self.spilled is not None else None)

    @property
    def is_spill(self) -> bool:
        return self.types[SLOT - 1] == SPILL

    def spill_size(self) -> int:
        n = 0
        for j in range(SLOT - 1, -1, -1):
            if self.types[j] != SPILL:
                break
            n += 1
        return n

    def key(self) -> tuple:
        return (tuple(self.types), self.spilled.key() if self.is_spill else None)


_UNINIT = Reg()


class Frame:
    """Registers r0..r10 and the stack of one function invocation."""

    __slots__ = ("regs", "stack", "frameno", "callsite", "subprog", "in_callback", "callback_depth",
                 "allocated", "lv")

    def __init__(self, frameno: int = 0, callsite: int = -1, subprog: int = 0):
        # in_callback: the frame runs a callback (bpf_loop, for_each_map_elem) and returns to
        # the helper call; callback_depth: callbacks pushed from this frame at that call so far.
        self.in_callback = False
        self.callback_depth = 0
        self.regs = [_UNINIT.copy() for _ in range(10)]
        self.regs.append(None)
        self.stack: list[Slot] = []
        # slots the frame's accesses reached so far, reads too (Linux's allocated_stack / 8);
        # those past the end of ``stack`` are all invalid bytes
        self.allocated = 0
        self.lv = None      # the stack liveness instance of the call chain ending here (cache)
        self.frameno = frameno
        self.callsite = callsite
        self.subprog = subprog
        fp = Reg.pointer(PTR_TO_STACK, 0, frameno=frameno)
        self.regs[10] = fp

    def copy(self) -> "Frame":
        f = Frame.__new__(Frame)
        f.regs = [r.copy() for r in self.regs]
        f.stack = [s.copy() for s in self.stack]
        f.frameno = self.frameno
        f.callsite = self.callsite
        f.subprog = self.subprog
        f.in_callback = self.in_callback
        f.callback_depth = self.callback_depth
        f.allocated = self.allocated
        f.lv = self.lv
        return f

    @property
    def depth(self) -> int:
        return self.allocated * SLOT

    def slot(self, spi: int) -> Slot:
        while len(self.stack) <= spi:
            self.stack.append(Slot())
        if spi >= self.allocated:
            self.allocated = spi + 1
        return self.stack[spi]

    def peek(self, spi: int) -> Slot | None:
        return self.stack[spi] if spi < len(self.stack) else None


def _misc_keep(t: str, privileged: bool) -> str:
    if t == ZERO or (t == INVALID and privileged):
        return t
    return MISC


def write_fixed(frame: Frame, off: int, size: int, reg: Reg | None, imm: int | None,
                privileged: bool, own_frame: bool = True) -> str | None:
    """Record a store of ``size`` bytes at frame offset ``off``; the error text or None.

    ``reg`` is the stored register (STX) or None with ``imm`` for BPF_ST.
    """
    spi = (-off - 1) // SLOT
    slot = frame.slot(spi)
    j0 = (-off - 1) % SLOT
    if (not privileged and slot.is_spill and slot.spilled.type != SCALAR and size != SLOT):
        return "attempt to corrupt spilled pointer on stack"
    aligned = off % SLOT == 0
    if reg is not None and aligned and reg.type == SCALAR and privileged:
        _save(slot, reg, size, privileged)
        if size * 8 < 64 and not _fits(reg, size):
            slot.spilled.id = 0
        return None
    if reg is None and imm is not None and aligned and privileged:
        _save(slot, Reg.scalar(imm), size, privileged)
        return None
    if reg is not None and reg.type != SCALAR:
        if size != SLOT:
            return "invalid size of register spill"
        if not own_frame and reg.type == PTR_TO_STACK:
            return "cannot spill pointers to stack into stack frame of the caller"
        _save(slot, reg, size, privileged)
        return None
    if slot.is_spill or SPILL in slot.types:
        slot.types = [t if t == INVALID else MISC for t in slot.types]
    slot.spilled = None
    zero = (reg is not None and reg.is_const and reg.value == 0) or (reg is None and imm == 0)
    t = ZERO if zero else MISC
    for i in range(size):
        slot.types[(j0 - i) % SLOT] = t
    return None


def _fits(reg: Reg, size: int) -> bool:
    return reg.umax < (1 << (size * 8)) if reg.smin >= 0 else False


def _save(slot: Slot, reg: Reg, size: int, privileged: bool) -> None:
    slot.spilled = reg.copy()
    for j in range(SLOT):
        if j >= SLOT - size:
            slot.types[j] = SPILL
        else:
            slot.types[j] = _misc_keep(slot.types[j], privileged)


def read_fixed(frame: Frame, off: int, size: int, privileged: bool) -> tuple[Reg | None, str | None]:
    """The register a load of ``size`` bytes at frame offset ``off`` produces, or an error."""
    spi = (-off - 1) // SLOT
    slot = frame.peek(spi) or Slot()
    j0 = (-off - 1) % SLOT
    if slot.is_spill:
        spilled = slot.spilled
        spill_size = slot.spill_size()
        if size != SLOT or spill_size != SLOT:
            if spilled.type != SCALAR:
                return None, "invalid size of register fill"
            if size <= spill_size and off % SLOT == 0:
                r = spilled.copy()
                if not _fits(spilled, size):
                    r.id = 0
                return r, None
            spill_cnt = zero_cnt = 0
            for i in range(size):
                t = slot.types[(j0 - i) % SLOT]
                if t == SPILL:
                    spill_cnt += 1
                elif t == ZERO:
                    zero_cnt += 1
                elif t == MISC or (t == INVALID and privileged):
                    pass
                else:
                    return None, f"invalid read from stack off {off}+{i} size {size}"
            if (spill_cnt == size and spilled.is_const and spilled.value == 0) or zero_cnt == size:
                return Reg.scalar(0), None
            return Reg.scalar(), None
        return spilled.copy(), None
    zeros = 0
    for i in range(size):
        t = slot.types[(j0 - i) % SLOT]
        if t == ZERO:
            zeros += 1
        elif t == MISC or (t == INVALID and privileged):
            pass
        else:
            return None, f"invalid read from stack off {off}+{i} size {size}"
    return (Reg.scalar(0) if zeros == size else Reg.scalar()), None


def fmt_slots(frame: Frame, only: set[int] | None, fmt_reg) -> list[str]:
    out = []
    for spi, slot in enumerate(frame.stack):
        if only is not None and spi not in only:
            continue
        if all(t == INVALID for t in slot.types):
            continue
        name = f"fp{-(spi + 1) * SLOT}"
        if slot.is_spill:
            prefix = "".join(t for t in slot.types if t != SPILL)
            out.append(f"{name}={prefix}{fmt_reg(slot.spilled)}")
        else:
            out.append(f"{name}={''.join(slot.types)}")
    return out


__all__ = ["Frame", "Slot", "write_fixed", "read_fixed", "fmt_slots", "INVALID", "SPILL", "MISC",
           "ZERO", "NOT_INIT"]
