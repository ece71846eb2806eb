"""The fast engine: a whole program translated once into Python source.

Each subprogram becomes one Python function whose registers are local
variables; its basic blocks sit in a ``while True`` loop dispatching on the
block's start pc (a binary decision tree, so the cost grows with log(blocks)).
Instruction semantics are pasted in from :mod:`pybpf.vm.semantics`, so
CPython folds immediates into constants.  Memory accesses are inlined range
checks against the two hot regions (the current frame's stack and the
program's input memory / context) and fall back to the fully checked
:class:`~pybpf.vm.memory.Memory` for everything else.  A block that ends by
jumping back to its own start (the usual tight loop) becomes an inner
``while`` loop that never leaves the block.

The generated source depends only on the instructions, so it is cached per
program; what changes between runs (region addresses, helpers) is bound by
a small factory each run.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..isa import encode
from ..isa import opcodes as op
from . import semantics as sem
from .program import Block, Function, functions, is_cond_jump, is_local_call, jump_target

if TYPE_CHECKING:
    from .machine import VM

SS = op.STACK_SIZE
_ATOMIC_NAME = {op.ADD: "add", op.OR: "or", op.AND: "and", op.XOR: "xor"}
_SIZES = (1, 2, 4, 8)

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()


def compile_program(vm: "VM"):
    """A factory ``make(env) -> entry(r1, r2, r3, r4, r5, depth, n) -> (r0, n)``."""
    consts = tuple(sorted((pc, v) for pc, v in vm.constants.items()))
    shape = (CHUNK_BLOCKS, MAX_BLOCK)
    key = (encode(vm.insns), consts, shape)
    with _cache_lock:
        make = _cache.get(key)
    if make is None:
        src = generate(vm, *shape)
        namespace = dict(sem.RUNTIME, UNPACK=sem.UNPACK, PACK=sem.PACK)
        exec(compile(src, "<pybpf program>", "exec"), namespace)  # noqa: S102 - our generated code
        make = namespace["make"]
        make.source = src
        with _cache_lock:
            if len(_cache) > 512:
                _cache.clear()
            _cache[key] = make
    return make


def source_of(vm: "VM") -> str:
    return compile_program(vm).source


def _r(i: int) -> str:
    return f"r{i}"


_REGS = "r0, r1, r2, r3, r4, r5, r6, r7, r8, r9"
# Large subprograms are split into Python functions ("chunks") of at most this
# many blocks, and blocks into at most this many instructions: CPython's
# compile time grows faster than linearly with the size of one function.
CHUNK_BLOCKS = 200
MAX_BLOCK = 400


class _Gen:
    def __init__(self, vm: "VM", chunk_blocks: int = CHUNK_BLOCKS, max_block: int = MAX_BLOCK) -> None:
        self.vm = vm
        self.insns = vm.insns
        self.lines: list[str] = []
        self.chunk_blocks = chunk_blocks
        self.max_block = max_block
        self.chunk: set[int] | None = None     # block starts of the chunk being generated

    def goto(self, target: int) -> list[str]:
        if self.chunk is None or target in self.chunk:
            return [f"b = {target}", "continue"]
        return [f"return {target}, {_REGS}, n"]   # leave the chunk; the driver dispatches

    def ret(self) -> list[str]:
        return ["return r0, n"] if self.chunk is None else [f"return -1, {_REGS}, n"]

    # -- one instruction -----------------------------------------------------

    def insn(self, pc: int, out: list[str]) -> None:
        ins = self.insns[pc]
        code = ins.code
        cls = code & 7
        if cls in (op.ALU, op.ALU64):
            o = code & 0xF0
            if code & op.X and o != op.END:
                s = _r(ins.src)
            else:
                s = str(sem.imm_operand(cls, ins.imm))
            tmpl = sem.alu_template(cls, o, ins.off, ins.imm, code & op.X)
            expr = sem.subst(tmpl, _r(ins.dst), s)
            if expr != _r(ins.dst):
                out.append(f"{_r(ins.dst)} = {expr}")
        elif cls == op.LDX:
            size = op.SIZE_BYTES[code & 0x18]
            signed = (code & 0xE0) == op.MEMSX
            self.load(pc, ins.dst, ins.src, ins.off, size, signed, out)
        elif cls in (op.ST, op.STX) and (code & 0xE0) == op.MEM:
            size = op.SIZE_BYTES[code & 0x18]
            if cls == op.STX:
                value = _r(ins.src) if size == 8 else f"({_r(ins.src)} & {sem.SIZE_MASK[size]:#x})"
            else:
                value = str(sem.stored_value(ins.imm, size))
            self.store(pc, ins.dst, ins.off, size, value, out)
        elif cls == op.STX:
            self.atomic(pc, ins, out)
        elif code == op.LD_IMM64:
            value = self.vm.constants[pc]
            if value is None:
                out.append(f"UNRESOLVED({pc})")
            else:
                out.append(f"{_r(ins.dst)} = {value:#x}")
        elif cls == op.LD:
            size = op.SIZE_BYTES[code & 0x18]
            off = str(ins.imm) if (code & 0xE0) == op.ABS else f"{_r(ins.src)} + {ins.imm}"
            out.append(f"r0 = LDPKT({off}, {size}, {pc}, n)")
        else:
            raise AssertionError(f"not a straight-line instruction at {pc}")

    def _addr(self, base: int, off: int) -> str:
        return _r(base) if off == 0 else f"{_r(base)} + {off}" if off > 0 else f"{_r(base)} - {-off}"

    def load(self, pc: int, dst: int, base: int, off: int, size: int, signed: bool,
             out: list[str]) -> None:
        u = f"U{size}{'s' if signed else ''}"
        fix = " & 0xFFFFFFFFFFFFFFFF" if signed else ""
        d = _r(dst)
        if base == op.MAX_REG:
            if -SS <= off and off + size <= 0:
                out.append(f"{d} = {u}(SV, {SS + off})[0]{fix}")
            else:
                out.append(f"FRAMEFAULT(r10 + {off}, {size}, 'load', {pc})")
            return
        # Pointers in registers other than r10 mostly point into the input or
        # context, so that region is tried first.
        out.append(f"a = {self._addr(base, off)}")
        out.append(f"if HL <= a <= HE{size}: {d} = {u}(HV, a - HL)[0]{fix}")
        out.append(f"elif SL <= a <= SE{size}: {d} = {u}(SV, a - SL)[0]{fix}")
        out.append(f"else: {d} = LOAD(a, {size}, {signed}, {pc})")

    def store(self, pc: int, base: int, off: int, size: int, value: str, out: list[str]) -> None:
        if base == op.MAX_REG:
            if -SS <= off and off + size <= 0:
                out.append(f"P{size}(SV, {SS + off}, {value})")
            else:
                out.append(f"FRAMEFAULT(r10 + {off}, {size}, 'store', {pc})")
            return
        out.append(f"a = {self._addr(base, off)}")
        out.append(f"if HL <= a <= HW{size}: P{size}(HV, a - HL, {value})")
        out.append(f"elif SL <= a <= SE{size}: P{size}(SV, a - SL, {value})")
        out.append(f"else: STORE(a, {size}, {value}, {pc})")

    def atomic(self, pc: int, ins, out: list[str]) -> None:
        size = op.SIZE_BYTES[ins.code & 0x18]
        if ins.dst == op.MAX_REG and not (-SS <= ins.off and ins.off + size <= 0):
            out.append(f"FRAMEFAULT(r10 + {ins.off}, {size}, 'atomic access', {pc})")
            return
        a = self._addr(ins.dst, ins.off)
        s = _r(ins.src)
        kind = ins.imm
        if kind == op.CMPXCHG:
            out.append(f"r0 = CMPXCHG({a}, {size}, r0, {s}, {pc})")
            return
        name = "xchg" if kind == op.XCHG else _ATOMIC_NAME[kind & ~op.FETCH]
        call = f"ATOMIC({a}, {size}, {name!r}, {s}, {pc})"
        out.append(f"{s} = {call}" if kind & op.FETCH else call)

    # -- blocks and functions ------------------------------------------------

    def block_body(self, fn: Function, blk: Block) -> tuple[list[str], str | None]:
        """Statements of ``blk`` and the condition of a self-loop (or None)."""
        out: list[str] = []
        count = len(blk.pcs)
        out.append(f"n += {count}")
        out.append(f"if n > LIMIT: BUDGET({blk.start})")
        for pc in blk.pcs[:-1]:
            self.insn(pc, out)
        last_pc = blk.last
        last = self.insns[last_pc]
        code = last.code
        o = code & 0xF0
        cls = code & 7
        ends = []
        loop_cond = None
        nxt = last_pc + (2 if last.is_ldimm64 else 1)
        fallthrough = True
        if code == op.OP_EXIT:
            ends.extend(self.ret())
            fallthrough = False
        elif code in (op.OP_JA, op.OP_JA32):
            target = jump_target(last, last_pc)
            if target == blk.start:
                loop_cond = "True"
            else:
                ends.extend(self.goto(target))
            fallthrough = False
        elif is_cond_jump(last):
            target = jump_target(last, last_pc)
            s = _r(last.src) if code & op.X else str(sem.imm_operand(cls, last.imm))
            cond = sem.subst(sem.cond_template(cls, o), _r(last.dst), s)
            if target == blk.start:
                loop_cond = cond
                fallthrough = False
            else:
                ends.append(f"if {cond}:")
                ends.extend("    " + x for x in self.goto(target))
        elif code in (op.OP_CALL, op.OP_CALLX):
            if is_local_call(last):
                target = jump_target(last, last_pc)
                ends.append(f"if depth >= {op.MAX_CALL_FRAMES - 1}: TOODEEP({last_pc})")
                ends.append(f"r0, n = f_{target}(r1, r2, r3, r4, r5, depth + 1, n)")
            elif last.src == op.PSEUDO_KFUNC_CALL:
                ends.append(f"r0 = KFUNC({last.imm}, r1, r2, r3, r4, r5, {last_pc}, n)")
            else:
                hid = _r(last.dst) if code & op.X else str(last.imm)
                ends.append(f"r0 = HELPER({hid}, r1, r2, r3, r4, r5, {last_pc}, n)")
        else:
            self.insn(last_pc, out)
        if fallthrough:
            if nxt in fn.blocks:
                ends.extend(self.goto(nxt))
            else:
                ends.append(f"FELL({last_pc})")
        return out + ends, loop_cond

    def function(self, fn: Function) -> None:
        L = self.lines
        L.append(f"    def f_{fn.entry}(r1, r2, r3, r4, r5, depth, n):")
        body = []
        body.append("r0 = r6 = r7 = r8 = r9 = a = 0")
        body.append("SV = SVIEWS[depth]; SL = SBASES[depth]; r10 = SL + 512")
        for k in _SIZES:
            body.append(f"SE{k} = SL + {SS - k}")
        starts = sorted(fn.blocks)
        if len(starts) <= self.chunk_blocks:
            body.append(f"b = {fn.entry}")
            body.append("while True:")
            body.extend(self.dispatch(fn, starts, "    "))
        else:
            chunks = [starts[i:i + self.chunk_blocks] for i in range(0, len(starts), self.chunk_blocks)]
            for k, chunk in enumerate(chunks):
                self.chunk = set(chunk)
                body.append(f"def c_{k}(b, {_REGS}, n):")
                body.append("    a = 0")
                body.append("    while True:")
                body.extend(self.dispatch(fn, chunk, "        "))
            self.chunk = None
            body.append(f"b = {fn.entry}")
            body.append("while True:")
            body.extend(self.chunk_dispatch([c[0] for c in chunks], 0, len(chunks), "    "))
            body.append("    if b < 0: return r0, n")
        L.extend("        " + line for line in body)

    def chunk_dispatch(self, firsts: list[int], lo: int, hi: int, indent: str) -> list[str]:
        """Binary decision tree calling the chunk that holds block ``b``."""
        if hi - lo == 1:
            return [f"{indent}b, {_REGS}, n = c_{lo}(b, {_REGS}, n)"]
        mid = (lo + hi) // 2
        return ([f"{indent}if b < {firsts[mid]}:"]
                + self.chunk_dispatch(firsts, lo, mid, indent + "    ")
                + [f"{indent}else:"]
                + self.chunk_dispatch(firsts, mid, hi, indent + "    "))

    def dispatch(self, fn: Function, starts: list[int], indent: str) -> list[str]:
        """Binary decision tree on ``b`` over the block starts."""
        if len(starts) <= 3:
            out = []
            for i, start in enumerate(starts):
                if i == len(starts) - 1:
                    out.extend(self.block_code(fn, fn.blocks[start], indent))
                else:
                    out.append(f"{indent}if b == {start}:")
                    out.extend(self.block_code(fn, fn.blocks[start], indent + "    "))
            return out
        mid = len(starts) // 2
        out = [f"{indent}if b < {starts[mid]}:"]
        out.extend(self.dispatch(fn, starts[:mid], indent + "    "))
        out.append(f"{indent}else:")
        out.extend(self.dispatch(fn, starts[mid:], indent + "    "))
        return out

    def block_code(self, fn: Function, blk: Block, indent: str) -> list[str]:
        stmts, loop_cond = self.block_body(fn, blk)
        if loop_cond is None:
            return [indent + s for s in stmts]
        # A block jumping back to its own start: stay in an inner loop.
        out = [f"{indent}while True:"]
        out.extend(f"{indent}    {s}" for s in stmts)
        if loop_cond == "True":
            out.append(f"{indent}    continue")
            return out
        out.append(f"{indent}    if {loop_cond}: continue")
        out.append(f"{indent}    break")
        nxt = blk.last + 1
        if nxt in fn.blocks:
            out.extend(indent + x for x in self.goto(nxt))
        else:
            out.append(f"{indent}FELL({blk.last})")
        return out

    def generate(self) -> str:
        funcs = functions(self.insns, self.max_block)
        L = self.lines
        L.append("def make(ENV):")
        L.append("    LIMIT = ENV.limit")
        L.append("    LOAD = ENV.load; STORE = ENV.store; FRAMEFAULT = ENV.frame_fault")
        L.append("    ATOMIC = ENV.atomic; CMPXCHG = ENV.cmpxchg")
        L.append("    HELPER = ENV.helper; KFUNC = ENV.kfunc; LDPKT = ENV.ld_packet")
        L.append("    BUDGET = ENV.budget; FELL = ENV.fell; TOODEEP = ENV.too_deep")
        L.append("    UNRESOLVED = ENV.unresolved")
        L.append("    SVIEWS = ENV.stack_views; SBASES = ENV.stack_bases")
        L.append("    HOT = ENV.hot")
        L.append("    if HOT is not None and HOT.size:")
        L.append("        HL = HOT.base; HV = HOT.view")
        for k in _SIZES:
            L.append(f"        HE{k} = HL + HOT.size - {k}")
            L.append(f"        HW{k} = HE{k} if HOT.writable else -1")
        L.append("    else:")
        L.append("        HL = 1; HV = None")
        L.append("        " + "; ".join(f"HE{k} = HW{k} = -1" for k in _SIZES))
        for k in _SIZES:
            L.append(f"    U{k} = UNPACK[({k}, False)]; P{k} = PACK[{k}]")
        for k in (1, 2, 4):
            L.append(f"    U{k}s = UNPACK[({k}, True)]")
        for entry in sorted(funcs):
            self.function(funcs[entry])
        L.append("    return f_0")
        return "\n".join(L) + "\n"


def generate(vm: "VM", chunk_blocks: int = CHUNK_BLOCKS, max_block: int = MAX_BLOCK) -> str:
    return _Gen(vm, chunk_blocks, max_block).generate()
