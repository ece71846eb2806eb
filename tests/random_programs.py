"""Random BPF program generators shared by the verifier's random tests: the soundness test
(accepted programs must run memory-safely in pybpf's VM) and the differential test against the
host kernel's verifier (tests/test_verifier_random_kernel.py).
"""

from __future__ import annotations

import random

from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, ldimm64
from pybpf.verifier import MapInfo

MAP_FD = 7
MAP = MapInfo(2, 4, 16, 4)          # array: key u32, value 16 bytes, 4 entries
SIZES = [op.B, op.H, op.W, op.DW]
ALU_OPS = [op.ADD, op.SUB, op.MUL, op.DIV, op.OR, op.AND, op.LSH, op.RSH, op.MOD, op.XOR, op.ARSH]
JMP_OPS = [op.JEQ, op.JGT, op.JGE, op.JSET, op.JNE, op.JSGT, op.JSGE, op.JLT, op.JLE, op.JSLT, op.JSLE]


# Context offsets the generators read, by program type (the first list is pt_regs, kprobe's).
CTX_OFFSETS = {
    "kprobe": ([0, 4, 8, 16, 104, 112, 160, 164, 168, -8], (-4, 172)),
    "socket": ([0, 4, 8, 16, 48, 52, 64, 68, 76, 92, -4], (-4, 100)),
}


def _gen_program(rng: random.Random, ctx: str = "kprobe") -> list[Insn]:
    """A random straight-line-with-forward-branches program over ctx, stack and one array map."""
    ctx_offs, ctx_range = CTX_OFFSETS[ctx]
    body: list[list[Insn]] = []
    regs = [0, 2, 3, 4, 5, 7, 8, 9]
    n = rng.randint(4, 28)
    for _ in range(n):
        k = rng.random()
        d = rng.choice(regs)
        s = rng.choice(regs + [10, 6])
        if k < 0.15:
            body.append([Insn(op.ALU64 | op.MOV | op.K, d, 0, 0, rng.choice([0, 1, 4, 8, -8, 16, 255, rng.randint(-600, 600)]))])
        elif k < 0.25:
            body.append([Insn(op.ALU64 | op.MOV | op.X, d, s)])
        elif k < 0.42:
            o = rng.choice(ALU_OPS)
            cls = rng.choice([op.ALU64, op.ALU64, op.ALU])
            if rng.random() < 0.5:
                imm = rng.choice([1, 2, 3, 7, 8, 15, 0xFF, -1, -8, rng.randint(-100, 100)])
                if o in (op.LSH, op.RSH, op.ARSH):
                    imm = rng.randint(0, 31)
                if o in (op.DIV, op.MOD) and imm == 0:
                    imm = 1
                body.append([Insn(cls | o | op.K, d, 0, 0, imm)])
            else:
                body.append([Insn(cls | o | op.X, d, rng.choice(regs))])
        elif k < 0.52:
            size = rng.choice(SIZES)
            off = rng.choice(ctx_offs + [rng.randint(*ctx_range)])
            body.append([Insn(op.LDX | op.MEM | size, d, 6, off)])
        elif k < 0.62:
            size = rng.choice(SIZES)
            off = rng.choice([-8, -16, -24, -4, -512, -520, 0, rng.randint(-64, 4)])
            if rng.random() < 0.5:
                body.append([Insn(op.STX | op.MEM | size, 10, rng.choice(regs + [6]), off)])
            else:
                body.append([Insn(op.ST | op.MEM | size, 10, 0, off, rng.randint(-5, 5))])
        elif k < 0.7:
            size = rng.choice(SIZES)
            body.append([Insn(op.LDX | op.MEM | size, d, 10, rng.choice([-8, -16, -4, -24, -32]))])
        elif k < 0.78:
            # pointer-based access through an arbitrary register
            size = rng.choice(SIZES)
            base = rng.choice(regs)
            off = rng.randint(-16, 16)
            if rng.random() < 0.5:
                body.append([Insn(op.LDX | op.MEM | size, d, base, off)])
            else:
                body.append([Insn(op.STX | op.MEM | size, base, rng.choice(regs), off)])
        elif k < 0.84:
            # r0 = lookup(map, &key on stack)
            key = rng.choice([0, 1, 3, 4, 9])
            seq = [Insn(op.ST | op.MEM | op.W, 10, 0, -4, key),
                   Insn(op.ALU64 | op.MOV | op.X, 2, 10), Insn(op.ALU64 | op.ADD | op.K, 2, 0, 0, -4),
                   *ldimm64(1, MAP_FD, op.PSEUDO_MAP_FD), Insn(op.OP_CALL, 0, 0, 0, 1)]
            if rng.random() < 0.8:
                seq.append(Insn(op.JMP | op.JEQ | op.K, 0, 0, rng.randint(1, 3), 0))
            seq.extend(Insn(op.ALU64 | op.MOV | op.K, r, 0, 0, rng.randint(0, 16)) for r in (2, 3, 4, 5))
            body.append(seq)
        elif k < 0.92:
            o = rng.choice(JMP_OPS)
            cls = rng.choice([op.JMP, op.JMP32])
            if rng.random() < 0.5:
                body.append([Insn(cls | o | op.K, d, 0, rng.randint(1, 4), rng.choice([0, 1, 8, 16, 56, 255, -1]))])
            else:
                body.append([Insn(cls | o | op.X, d, rng.choice(regs), rng.randint(1, 4))])
        else:
            # bounded index into the map value or stack
            body.append([Insn(op.ALU64 | op.AND | op.K, d, 0, 0, rng.choice([7, 15, 8, 12])),
                         Insn(op.ALU64 | op.ADD | op.X, rng.choice(regs), d)])
    prog = [Insn(op.ALU64 | op.MOV | op.X, 6, 1)]
    prog += [Insn(op.ALU64 | op.MOV | op.K, r, 0, 0, rng.randint(-4, 64)) for r in regs]
    for chunk in body:
        prog.extend(chunk)
    prog.append(Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 0))
    prog.append(Insn(op.OP_EXIT))
    # Keep jumps in range: clamp each target onto the final exit sequence.
    out = []
    for i, ins in enumerate(prog):
        if ins.cls in (op.JMP, op.JMP32) and ins.code & 0xF0 not in (op.CALL, op.EXIT):
            t = i + ins.off + 1
            if t >= len(prog) - 1:
                t = len(prog) - 2
            if prog[t].code == 0 and prog[t - 1].code == op.LD_IMM64:
                t += 1
            ins = Insn(ins.code, ins.dst, ins.src, t - i - 1, ins.imm)
        out.append(ins)
    return out


def gen_packet_program(rng: random.Random) -> list[Insn]:
    """Random XDP code around direct packet access: pointer moves, bounds checks, loads, stores."""
    X = op.X
    prog = [Insn(op.LDX | op.MEM | op.W, 2, 1, 0),      # r2 = data
            Insn(op.LDX | op.MEM | op.W, 3, 1, 4),      # r3 = data_end
            Insn(op.ALU64 | op.MOV | op.X, 4, 2)]
    for r in (0, 5, 6, 7):
        prog.append(Insn(op.ALU64 | op.MOV | op.K, r, 0, 0, rng.randint(0, 20)))
    for _ in range(rng.randint(3, 16)):
        k = rng.random()
        p = rng.choice([2, 4, 6])
        if k < 0.2:
            prog.append(Insn(op.ALU64 | op.MOV | op.X, rng.choice([4, 6]), rng.choice([2, 4])))
        elif k < 0.35:
            prog.append(Insn(op.ALU64 | op.ADD | op.K, p, 0, 0, rng.choice([1, 2, 4, 8, 14, 20, -1, -4])))
        elif k < 0.45:
            # variable offset from packet bytes, masked or not
            prog.append(Insn(op.LDX | op.MEM | op.B, 7, rng.choice([2, 4]), rng.randint(0, 4)))
            if rng.random() < 0.7:
                prog.append(Insn(op.ALU64 | op.AND | op.K, 7, 0, 0, rng.choice([3, 7, 15, 0xff])))
            prog.append(Insn(op.ALU64 | op.ADD | op.X, p, 7))
        elif k < 0.7:
            # bounds check: if pX + n > data_end goto exit
            n = rng.choice([1, 2, 4, 8, 14, 20])
            prog.append(Insn(op.ALU64 | op.MOV | op.X, 5, p))
            prog.append(Insn(op.ALU64 | op.ADD | op.K, 5, 0, 0, n))
            jop = rng.choice([op.JGT, op.JGE, op.JLT, op.JLE])
            if jop in (op.JGT, op.JGE):
                prog.append(Insn(op.JMP | jop | X, 5, 3, 10_000))     # exit target fixed below
            else:
                prog.append(Insn(op.JMP | jop | X, 3, 5, 10_000))
        elif k < 0.88:
            size = rng.choice(SIZES)
            prog.append(Insn(op.LDX | op.MEM | size, 0, p, rng.randint(-2, 20)))
        else:
            size = rng.choice(SIZES)
            prog.append(Insn(op.STX | op.MEM | size, p, 0, rng.randint(-2, 20)))
    prog.append(Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 2))
    prog.append(Insn(op.OP_EXIT))
    end = len(prog) - 2
    return [Insn(i.code, i.dst, i.src, end - n - 1, i.imm) if i.off == 10_000 else i
            for n, i in enumerate(prog)]


_gen_packet_program = gen_packet_program


def gen_program(rng: random.Random, prog_type: int) -> list[Insn]:
    """A random program over ctx, stack and the array map ``MAP`` for kprobe or socket filter:
    half of them from the soundness test's generator, half from :func:`gen_wide_program`."""
    from pybpf.verifier import progtypes
    ctx = "kprobe" if prog_type == progtypes.KPROBE else "socket"
    if rng.random() < 0.5:
        return _gen_program(rng, ctx)
    return gen_wide_program(rng, ctx)


# --- a wider generator, for the differential test against the kernel ------------------------
# It reaches more of the verifier: bounded loops (constant and unknown bounds), bpf-to-bpf
# calls, more helpers, pointer spills and fills, 32-bit ALU and JMP32, sign extension,
# signed division, byte swaps, atomics on the stack, signed/unsigned compares of one register.
# r9 is the loop counter: only constants and loop updates write it, so that every loop ends.

_HELPERS_ANY = [7, 8, 5]        # get_prandom_u32, get_smp_processor_id, ktime_get_ns


def _reinit(rng, regs=(1, 2, 3, 4, 5)) -> list[Insn]:
    return [Insn(op.ALU64 | op.MOV | op.K, r, 0, 0, rng.randint(0, 16)) for r in regs]


def _map_key(key: int) -> list[Insn]:
    return [Insn(op.ST | op.MEM | op.W, 10, 0, -4, key),
            Insn(op.ALU64 | op.MOV | op.X, 2, 10), Insn(op.ALU64 | op.ADD | op.K, 2, 0, 0, -4),
            *ldimm64(1, MAP_FD, op.PSEUDO_MAP_FD)]


def _wide_chunk(rng: random.Random, ctx: str, regs: list[int], depth: int) -> list[Insn]:
    ctx_offs, ctx_range = CTX_OFFSETS[ctx]
    d = rng.choice(regs)
    s = rng.choice(regs)
    k = rng.random()
    if k < 0.12:        # 32-bit and signed ALU
        o = rng.choice(ALU_OPS)
        cls = rng.choice([op.ALU, op.ALU64])
        off = 1 if o in (op.DIV, op.MOD) and rng.random() < 0.5 else 0
        if rng.random() < 0.5:
            imm = rng.choice([1, 3, 7, 0xFF, 0xFFFF, -1, -7, 0x7FFFFFFF, -0x80000000, rng.randint(-50, 50)])
            if o in (op.LSH, op.RSH, op.ARSH):
                imm = rng.randint(0, 31 if cls == op.ALU else 63)
            if o in (op.DIV, op.MOD) and imm == 0:
                imm = 3
            return [Insn(cls | o | op.K, d, 0, off, imm)]
        return [Insn(cls | o | op.X, d, s, off)]
    if k < 0.18:        # sign extension, negation, byte swap
        c = rng.random()
        if c < 0.4:
            return [Insn(rng.choice([op.ALU64, op.ALU]) | op.MOV | op.X, d, s, rng.choice([8, 16, 32]))]
        if c < 0.6:
            return [Insn(rng.choice([op.ALU64, op.ALU]) | op.NEG, d)]
        if c < 0.8:
            return [Insn(op.ALU | op.END | rng.choice([op.TO_LE, op.TO_BE]), d, 0, 0, rng.choice([16, 32, 64]))]
        return [Insn(op.ALU64 | op.END, d, 0, 0, rng.choice([16, 32, 64]))]
    if k < 0.26:        # one register compared signed then unsigned (or the reverse)
        o1 = rng.choice([op.JSGT, op.JSGE, op.JSLT, op.JSLE])
        o2 = rng.choice([op.JGT, op.JGE, op.JLT, op.JLE, op.JSET, op.JNE, op.JEQ])
        if rng.random() < 0.5:
            o1, o2 = o2, o1
        c1, c2 = rng.choice([op.JMP, op.JMP32]), rng.choice([op.JMP, op.JMP32])
        v = lambda: rng.choice([0, 1, 7, 8, 255, -1, -8, 0x7FFFFFFF, rng.randint(-300, 300)])
        out = [Insn(op.LDX | op.MEM | rng.choice([op.B, op.H, op.W, op.DW]), d, 6, rng.choice(ctx_offs[:4]))]
        out.append(Insn(c1 | o1 | op.K, d, 0, rng.randint(1, 4), v()))
        if rng.random() < 0.5:
            out.append(Insn(c2 | o2 | op.X, d, s, rng.randint(1, 4)))
        else:
            out.append(Insn(c2 | o2 | op.K, d, 0, rng.randint(1, 4), v()))
        return out
    if k < 0.34:        # spill a pointer or scalar, fill it back
        src = rng.choice([6, 10, 0, d])
        off = rng.choice([-8, -16, -24, -32, -12])
        out = []
        if src == 10:
            out.append(Insn(op.ALU64 | op.MOV | op.X, d, 10))
            out.append(Insn(op.ALU64 | op.ADD | op.K, d, 0, 0, rng.choice([-8, -16, -32])))
            src = d
        out.append(Insn(op.STX | op.MEM | rng.choice([op.DW, op.DW, op.W]), 10, src, off))
        if rng.random() < 0.7:
            out.append(Insn(op.LDX | op.MEM | rng.choice([op.DW, op.DW, op.W, op.B]), rng.choice(regs), 10, off))
        return out
    if k < 0.40:        # atomics on the stack
        aop = rng.choice(op.ATOMIC_OPS)
        size = rng.choice([op.W, op.DW])
        off = rng.choice([-8, -16, -24])
        out = []
        if rng.random() < 0.7:
            out.append(Insn(op.ST | op.MEM | op.DW, 10, 0, off, rng.randint(0, 9)))
        out.append(Insn(op.STX | op.ATOMIC | size, 10, s, off, aop))
        return out
    if k < 0.52:        # helpers
        c = rng.random()
        if c < 0.4:
            out = [Insn(op.OP_CALL, 0, 0, 0, rng.choice(_HELPERS_ANY))]
        elif c < 0.7:
            out = _map_key(rng.choice([0, 2, 5])) + [Insn(op.OP_CALL, 0, 0, 0, 1)]
            if rng.random() < 0.8:
                out.append(Insn(op.JMP | op.JEQ | op.K, 0, 0, rng.randint(1, 3), 0))
                out.append(Insn(op.LDX | op.MEM | rng.choice(SIZES), rng.choice(regs), 0, rng.choice([0, 4, 8, 12, 15])))
                if rng.random() < 0.5:
                    out.append(Insn(op.ALU64 | op.MOV | op.X, rng.choice(regs), 0))
        elif c < 0.85:      # map_update_elem(map, &key, &value on stack, 0)
            out = [Insn(op.ST | op.MEM | op.DW, 10, 0, -24, 1), Insn(op.ST | op.MEM | op.DW, 10, 0, -16, 2)] \
                if rng.random() < 0.7 else []
            out += _map_key(rng.choice([0, 1, 7]))
            out += [Insn(op.ALU64 | op.MOV | op.X, 3, 10), Insn(op.ALU64 | op.ADD | op.K, 3, 0, 0, -24),
                    Insn(op.ALU64 | op.MOV | op.K, 4, 0, 0, 0), Insn(op.OP_CALL, 0, 0, 0, 2)]
        elif ctx == "kprobe":   # probe_read_kernel(fp-16, n, unsafe ptr)
            out = [Insn(op.ALU64 | op.MOV | op.X, 1, 10), Insn(op.ALU64 | op.ADD | op.K, 1, 0, 0, -16),
                   Insn(op.ALU64 | op.MOV | op.K, 2, 0, 0, rng.choice([1, 8, 16, 17, 0])),
                   Insn(op.LDX | op.MEM | op.DW, 3, 6, rng.choice([0, 8, 112])),
                   Insn(op.OP_CALL, 0, 0, 0, 113)]
        else:                   # skb_load_bytes(ctx, off, fp-16, n)
            out = [Insn(op.ALU64 | op.MOV | op.X, 1, 6), Insn(op.ALU64 | op.MOV | op.K, 2, 0, 0, rng.randint(0, 20)),
                   Insn(op.ALU64 | op.MOV | op.X, 3, 10), Insn(op.ALU64 | op.ADD | op.K, 3, 0, 0, -16),
                   Insn(op.ALU64 | op.MOV | op.K, 4, 0, 0, rng.choice([1, 4, 8, 16, 17])),
                   Insn(op.OP_CALL, 0, 0, 0, 26)]
        return out + _reinit(rng, rng.choice([(1, 2, 3, 4, 5), (2, 3, 4, 5), (2, 3)]))
    if k < 0.60 and depth == 0:     # a bounded loop
        n = rng.choice([2, 3, 5, 8, 16])
        body = [x for _ in range(rng.randint(1, 3)) for x in _wide_chunk(rng, ctx, regs, 1)
                if x.code & 0x07 not in (op.JMP, op.JMP32) and x.code not in (op.LD_IMM64, 0) and x.dst != 9]
        if rng.random() < 0.7:
            head = [Insn(op.ALU64 | op.MOV | op.K, 9, 0, 0, 0)]
            tail = [Insn(op.ALU64 | op.ADD | op.K, 9, 0, 0, 1),
                    Insn(op.JMP | rng.choice([op.JLT, op.JSLT, op.JNE]) | op.K, 9, 0, 0, n)]
        else:           # unknown start, counted down
            head = [Insn(op.LDX | op.MEM | op.B, 9, 6, rng.choice(ctx_offs[:4])),
                    Insn(op.ALU64 | op.AND | op.K, 9, 0, 0, n - 1 if n > 2 else 3)]
            tail = [Insn(op.ALU64 | op.SUB | op.K, 9, 0, 0, 1),
                    Insn(rng.choice([op.JMP, op.JMP32]) | rng.choice([op.JSGT, op.JGT]) | op.K, 9, 0, 0, 0)]
        jmp = tail[-1]
        tail[-1] = Insn(jmp.code, jmp.dst, jmp.src, -(len(body) + len(tail)), jmp.imm)
        return head + body + tail
    if k < 0.68:        # a bpf-to-bpf call (target patched by the caller); args from regs
        out = []
        if rng.random() < 0.5:
            out += [Insn(op.ST | op.MEM | op.DW, 10, 0, -8, rng.randint(0, 9)),
                     Insn(op.ALU64 | op.MOV | op.X, 1, 10), Insn(op.ALU64 | op.ADD | op.K, 1, 0, 0, -8)]
        else:
            out.append(Insn(op.ALU64 | op.MOV | op.X, 1, rng.choice(regs + [6])))
        out.append(Insn(op.ALU64 | op.MOV | op.X, 2, rng.choice(regs)))
        out.append(Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, -(1 << 20)))      # marker
        return out + _reinit(rng, (2, 3, 4, 5))
    return []


def _subprog(rng: random.Random) -> list[Insn]:
    """A static subprogram: r1 is a stack pointer or anything, r2 a scalar or anything."""
    out = [Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, rng.randint(0, 3))]
    for _ in range(rng.randint(1, 6)):
        k = rng.random()
        if k < 0.3:
            out.append(Insn(op.LDX | op.MEM | rng.choice(SIZES), 0, 1, rng.choice([0, 4, -8, 8])))
        elif k < 0.5:
            out.append(Insn(rng.choice([op.ALU, op.ALU64]) | rng.choice(ALU_OPS) | op.X, 0, 2))
        elif k < 0.65:
            out.append(Insn(op.STX | op.MEM | op.DW, 10, rng.choice([1, 2]), -8))
            out.append(Insn(op.LDX | op.MEM | op.DW, 3, 10, -8))
        elif k < 0.8:
            out.append(Insn(op.JMP | rng.choice(JMP_OPS) | op.K, 2, 0, 1, rng.choice([0, 4, 100])))
            out.append(Insn(op.ALU64 | op.MOV | op.X, 0, 2))
        else:
            out.append(Insn(op.STX | op.MEM | op.W, 1, 2, 0))
    out.append(Insn(op.OP_EXIT))
    return out


def gen_wide_program(rng: random.Random, ctx: str = "kprobe") -> list[Insn]:
    """A random program from the base generator's chunks and :func:`_wide_chunk`'s."""
    regs = [0, 2, 3, 4, 5, 7, 8]
    base = _gen_program(rng, ctx)
    # The base program's body (its prologue of 9 and its exit of 2 dropped), r9 writes kept
    # out of it, interleaved with wide chunks.
    body = [i for i in base[9:-2] if not (i.dst == 9 and i.code & 0x07 in (op.ALU, op.ALU64, op.LDX))
            and not (i.code & 0x07 == op.LDX and i.src not in (0, 6, 10) and rng.random() < 0.8)
            and not (i.code & 0x07 == op.STX and i.dst not in (0, 10) and rng.random() < 0.8)]
    chunks: list[list[Insn]] = []
    pos = 0
    while pos < len(body):
        step = rng.randint(1, 4)
        piece = body[pos:pos + step]
        # never cut an LD_IMM64 in two
        while piece and piece[-1].code == op.LD_IMM64 and pos + len(piece) < len(body):
            piece.append(body[pos + len(piece)])
        pos += len(piece)
        chunks.append([Insn(i.code, i.dst, i.src, 10_000 if i.off and i.code & 0x07 in (op.JMP, op.JMP32)
                            and i.code & 0xF0 not in (op.CALL, op.EXIT) else i.off, i.imm) for i in piece])
        if rng.random() < 0.6:
            chunks.append(_wide_chunk(rng, ctx, regs, 0))
    prog = [Insn(op.ALU64 | op.MOV | op.X, 6, 1)]
    prog += [Insn(op.ALU64 | op.MOV | op.K, r, 0, 0, rng.randint(-4, 64)) for r in regs + [9]]
    for c in chunks:
        prog.extend(c)
    prog.append(Insn(op.ALU64 | op.MOV | op.K, 0, 0, 0, 0))
    prog.append(Insn(op.OP_EXIT))
    # Forward jumps of the base body (marked 10_000) get a random short distance, kept on
    # the main program and off an LD_IMM64's second slot.
    end = len(prog) - 2
    out = []
    for i, ins in enumerate(prog):
        if ins.off == 10_000:
            t = min(i + 1 + rng.randint(1, 4), end)
            if prog[t].code == 0 and prog[t - 1].code == op.LD_IMM64:
                t += 1
            ins = Insn(ins.code, ins.dst, ins.src, t - i - 1, ins.imm)
        out.append(ins)
    if any(i.src == op.PSEUDO_CALL and i.code == op.OP_CALL for i in out):
        start = len(out)
        out += _subprog(rng)
        out = [Insn(i.code, i.dst, i.src, i.off, start - n - 1)
               if i.code == op.OP_CALL and i.src == op.PSEUDO_CALL else i for n, i in enumerate(out)]
    return out
