"""The exploration's shared context (:class:`Env`), its errors, and branch pushing."""

from __future__ import annotations

import errno as E

from ..isa import opcodes as op
from ..isa.insn import Insn
from . import context as ctxdesc
from .cfg import Cfg
from .log import Log
from .regstate import NOT_INIT, Reg, fmt_reg
from .stack import fmt_slots
from .stack_liveness import StackLiveness
from .state import Checkpoint, State

MAX_BPF_STACK = 512
MAX_VAR_OFF = 1 << 29
MAX_PACKET_OFF = 0xFFFF
MAX_JMP_SEQ = 8192

_ALU_STR = {op.ADD: "+=", op.SUB: "-=", op.MUL: "*=", op.DIV: "/=", op.OR: "|=", op.AND: "&=",
            op.LSH: "<<=", op.RSH: ">>=", op.NEG: "neg", op.MOD: "%=", op.XOR: "^=", op.MOV: "=",
            op.ARSH: "s>>=", op.END: "endian"}
_REV = {op.JEQ: op.JNE, op.JNE: op.JEQ, op.JGT: op.JLE, op.JLE: op.JGT, op.JGE: op.JLT,
        op.JLT: op.JGE, op.JSGT: op.JSLE, op.JSLE: op.JSGT, op.JSGE: op.JSLT, op.JSLT: op.JSGE,
        op.JSET: -op.JSET}
_SWAP = {op.JGT: op.JLT, op.JLT: op.JGT, op.JGE: op.JLE, op.JLE: op.JGE, op.JSGT: op.JSLT,
         op.JSLT: op.JSGT, op.JSGE: op.JSLE, op.JSLE: op.JSGE, op.JEQ: op.JEQ, op.JNE: op.JNE}


class VerifyError(Exception):
    """An unsafe or malformed program; ``logged`` means the text is already in the log."""

    def __init__(self, msg: str, errno_: int = E.EACCES, logged: bool = False):
        super().__init__(msg)
        self.msg = msg
        self.errno = errno_
        self.logged = logged


class PathDone(Exception):
    """The current path reached its end (exit of the main program, or pruned)."""


class Env:
    """Everything one verification shares across paths: the program, its maps, the options,
    the log, the stored states per instruction, the pending branches and the statistics."""

    def __init__(self, insns: list[Insn], cfg: Cfg, *, prog_type: int, maps, license_gpl: bool,
                 privileged: bool, expected_attach_type: int, log: Log, max_insns: int):
        self.insns = insns
        self.n = len(insns)
        self.cfg = cfg
        self.prog_type = prog_type
        self.maps = maps
        self.gpl = license_gpl
        self.priv = privileged
        self.eat = expected_attach_type
        self.log = log
        self.max_insns = max_insns
        self.id_gen = 0
        self.processed = 0
        self.explored: dict[int, list[Checkpoint]] = {}
        self.pending: list = []
        self.total_states = 0
        self.cur_states = 0
        self.peak_states = 0
        self.max_states_per_insn = 0
        self.scc_visits: dict = {}       # loop call chain -> scc.Visit
        self.num_backedges = 0           # back-edge states kept by open loop visits
        self.buckets: dict[int, int] = {}  # stored states per bucket of Linux's state table
        self.jmps = 0
        self.prev_jmps = 0
        self.prev_insns = 0
        self.stack_depth = [0] * len(cfg.subprog_starts)
        self.ctx_rewrites: dict[int, ctxdesc.Access] = {}
        self.helpers_used: set[int] = set()
        self.maps_used: set[int] = set()
        self.scratched: set[int] = set()
        self.scratched_slots: set[int] = set()
        self.map_refs = {}
        self.has_tail_call = False
        self.idx = 0
        self.checked: set[int] = set()
        self.func_linkage: list[int] | None = None     # per subprogram, from BTF func_info
        self.func_types: list[int] = []                # per subprogram, its BTF FUNC type id
        self.btf = None
        self.globals: dict[int, object] = {}           # funcinfo.GlobalFunc per global subprogram
        self.globals_called: set[int] = set()          # global subprograms to verify on their own
        self._pkt_changers: set[int] | None = None
        self.insn_errors: list | None = None           # check_insn() of each slot, if known
        # Linux prints its precision backtracking at level 2, for privileged loads only
        self.bt_log = bool(log.level & 2) and privileged
        self.bt_marked: dict[int, Reg] = {}     # stored registers the logged walks marked precise
        self.insn_texts: dict[int, str] = {}    # ' before N: (07) r0 += 1' of the logged walks
        # unprivileged: per instruction, the Spectre mask its ADD/SUB needs (sanitize.py)
        self.alu_aux: dict[int, tuple] = {}
        # Linux 6.18's call-chain stack liveness: which stack slots pruning compares
        self.stack_lv = StackLiveness(self)
        self.to_clean: dict[int, list] = {}     # per instruction, its done states not fixed yet

    # ---- small utilities -------------------------------------------------------------------
    def global_func(self, sub: int):
        g = self.globals.get(sub)
        if g is None:
            from .funcinfo import global_func
            g = self.globals[sub] = global_func(self.btf, self.func_types[sub], self.prog_type)
        return g

    def cfg_changes_pkt(self, sub: int) -> bool:
        """Does subprogram ``sub``, or one it calls, call a helper that changes packet data?"""
        if self._pkt_changers is None:
            from . import helpers as H
            starts = self.cfg.subprog_starts
            ends = starts[1:] + [self.n]
            direct, calls = set(), {k: set() for k in range(len(starts))}
            for k, (a, b) in enumerate(zip(starts, ends)):
                for i in range(a, b):
                    ins = self.insns[i]
                    if ins.code != op.OP_CALL:
                        continue
                    if ins.src == op.PSEUDO_CALL:
                        calls[k].add(starts.index(i + ins.imm + 1))
                    elif ins.src == 0 and H.changes_pkt_data(ins.imm):
                        direct.add(k)
            changed = True
            while changed:
                changed = False
                for k, callees in calls.items():
                    if k not in direct and callees & direct:
                        direct.add(k)
                        changed = True
            self._pkt_changers = direct
        return sub in self._pkt_changers

    def new_id(self) -> int:
        self.id_gen += 1
        return self.id_gen

    def fail(self, msg: str, errno_: int = E.EACCES):
        raise VerifyError(msg, errno_)

    def reg_str(self, st: State, regs=None, all_=False) -> str:
        f = st.cur
        parts = []
        if f.frameno:
            parts.append(f" frame{f.frameno}:")
        unpriv = not self.priv
        regs = f.regs
        for i in (range(11) if all_ else sorted(self.scratched)):
            r = regs[i]
            if r.type != NOT_INIT:
                parts.append(f" R{i}={fmt_reg(r, f.frameno, unpriv)}")
        only = None if all_ else self.scratched_slots
        parts.extend(" " + s for s in fmt_slots(f, only, lambda r: fmt_reg(r, f.frameno, unpriv)))
        if st.refs:
            parts.append(" refs=" + ",".join(str(rid) for rid, _ in st.refs))
        if f.in_callback:
            parts.append(" cb")
        return "".join(parts)

    # ---- register access checks -----------------------------------------------------------
    def read_reg(self, st: State, regno: int) -> Reg:
        r = st.cur.regs[regno]
        self.scratched.add(regno)
        if r.type == NOT_INIT:
            self.fail(f"R{regno} !read_ok")
        return r

    def check_write(self, regno: int) -> None:
        self.scratched.add(regno)
        if regno == 10:
            self.fail("frame pointer is read only")

    def is_pointer_value(self, r: Reg) -> bool:
        return not self.priv and r.is_pointer






def push_branch(env: Env, st: State, idx: int, prev: int) -> None:
    if st.parent is not None:
        st.parent.branches += 1
    env.pending.append((st, idx, prev, env.log.pos()))
    if len(env.pending) > MAX_JMP_SEQ:
        env.fail(f"The sequence of {len(env.pending)} jumps is too complex.", E.E2BIG)


