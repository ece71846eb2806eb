"""The verifier log in the kernel's format: instruction text, register states, level-1 rollback."""

from __future__ import annotations

from ..isa import opcodes as op
from ..isa.insn import Insn, imm64
from ..asm import format_insn as asm_format_insn


def format_insn(insns: list[Insn], i: int) -> str:
    """``(bf) r6 = r1``: one instruction as the kernel's verifier log prints it.

    The assembler's kernel style is the shared printer; the log differs only
    where Linux prints what it resolved while loading, which pybpf shows
    differently: map loads (Linux prints the map's kernel address, pybpf the
    fd), the other LD_IMM64 pseudo sources (their resolved value) and kfunc
    calls (Linux has no name without BTF).
    """
    ins = insns[i]
    if ins.code == op.LD_IMM64 and ins.src and i + 1 < len(insns):
        head = f"({ins.code:02x}) r{ins.dst} = "
        if ins.src == op.PSEUDO_MAP_FD:
            return f"{head}map[fd:{ins.imm}]"
        if ins.src == op.PSEUDO_MAP_VALUE:
            return f"{head}map[fd:{ins.imm}][0]+{insns[i + 1].imm}"
        if ins.src == op.PSEUDO_FUNC:
            return f"{head}{ins.imm & 0xFFFFFFFF:#x}"
        return f"{head}{imm64(insns, i):#x}"
    if ins.code == op.OP_CALL and ins.src == op.PSEUDO_KFUNC_CALL:
        return f"({ins.code:02x}) call kernel-function"
    return asm_format_insn(insns, i, style="kernel")


# the characters a rotating (level-2) log keeps at least: more than any log buffer in use
LOG_KEEP = 1 << 26


class Log:
    """The log as a character stream, rolled back exactly as Linux rolls its log back.

    At level 1 a path that ends safely is cut from the log back to the position
    saved when its branch was pushed; like Linux, that position may fall inside a
    line that was later extended with register state, and the cut keeps what
    precedes it.

    A level-2 log (which is never cut) is kept as Linux's rotating log buffer keeps it: only
    its last ``keep`` characters or more; ``dropped`` counts the characters gone from its start
    and ``size`` stays the whole log's.  (With BPF_LOG_FIXED the whole log is kept.)
    """

    def __init__(self, level: int, keep: int = LOG_KEEP):
        self.level = level
        self.on = bool(level & 3)
        self.parts: list[str] = []
        self.size = 0
        self.insn_end = -1       # stream position right after the last instruction line
        self.dropped = 0
        self._limit = 2 * keep if level & 2 and not level & 8 else -1
        self._keep = keep

    def pos(self) -> int:
        return self.size

    def reset(self, pos: int) -> None:
        if pos >= self.size:
            return
        text = "".join(self.parts)[:max(pos - self.dropped, 0)]
        self.parts = [text]
        self.size = max(pos, self.dropped)
        if self.insn_end > pos:
            self.insn_end = -1

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.size += len(text)
        if self.size - self.dropped > self._limit > 0:
            self._rotate()

    def _rotate(self) -> None:
        """Drop the log's start, keeping its last ``keep`` characters (and the last part whole:
        an instruction line may still be extended)."""
        last = self.parts.pop()
        text = "".join(self.parts)
        cut = max(len(text) + len(last) - self._keep, 0)
        cut = min(cut, len(text))
        self.parts = [text[cut:], last]
        self.dropped += cut

    def insn(self, idx: int, text: str) -> None:
        self.write(f"{idx}: {text}\n")
        self.insn_end = self.size
        self.insn_len = len(f"{idx}: {text}") + 1

    def state_after_insn(self, idx: int, state_text: str) -> None:
        """Append ``; R0=..`` on the instruction's own line, aligned like the kernel does it."""
        if self.insn_end == self.size:
            pos = self.insn_len
            width = -(-max(pos + 4, 40) // 8) * 8 - pos - 1
            last = self.parts[-1]
            self.parts[-1] = last[:-1]
            self.size -= 1
            self.write(" " * width + ";" + state_text + "\n")
        else:
            self.write(f"{idx}:{state_text}\n")
        self.insn_end = -1

    def text(self) -> str:
        return "".join(self.parts)
