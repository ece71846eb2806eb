"""Reader of the verifier corpus (``*.cases`` files in this directory).

Format: a case starts with ``== name``; ``@key value`` lines set its attributes,
every other non-empty line is program text in the assembler's LLVM syntax
(``#`` starts a comment).  Attributes:

- ``@prog socket_filter|sched_cls|sched_act|xdp|kprobe|tracepoint`` (default socket_filter)
- ``@map FD TYPE KEY_SIZE VALUE_SIZE MAX_ENTRIES [FLAGS] [inner TYPE KEY VALUE ENTRIES]``: a map
  the program reaches with ``map_fd(FD)`` / ``map_value(FD, OFF)``; TYPE is a name (hash, array,
  prog_array, perf_event_array, percpu_hash, percpu_array, lru_hash, array_of_maps,
  hash_of_maps, queue, stack, ringbuf) or a number; ``inner`` gives a map-in-map's inner template
- ``@license STRING`` (default GPL); ``@unpriv`` verifies as an unprivileged loader
- ``@expect accept|reject``; ``@error TEXT``: a line the log must contain (rejects);
  ``@errno NAME`` (default EACCES for rejects; ENOTSUPP = Linux's internal 524)
- ``.insn CODE DST SRC OFF IMM`` writes one raw slot (for malformed encodings the
  assembler refuses to produce)
- ``@funcs LINKAGE...``: the program comes with BTF func_info, one FUNC per subprogram in
  order (``global``/``static``; see btfblob.py); ``@func_info OFF:TYPE_ID ...`` replaces the
  records computed from the subprograms (for malformed func_info)
- ``@slow``: the case takes seconds (e.g. runs into the 1M instruction limit); it runs
  only with ``--runslow``
- ``@kernel REASON``: the host kernel is known to decide differently (a deliberate
  difference, with its reason); the differential test skips the comparison
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.asm import assemble
from pybpf.isa.insn import Insn
from pybpf.verifier import MapInfo, progtypes

HERE = Path(__file__).parent

MAP_TYPES = {"hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5,
             "percpu_array": 6, "lru_hash": 9, "array_of_maps": 12, "hash_of_maps": 13, "queue": 22,
             "stack": 23, "ringbuf": 27}


@dataclass
class Case:
    name: str
    source: str
    line: int
    prog_type: int = progtypes.SOCKET_FILTER
    maps: dict = field(default_factory=dict)
    license: str = "GPL"
    privileged: bool = True
    expect: str = ""
    error: str = ""
    errno: int = 0
    kernel: str = ""
    slow: bool = False
    text: str = ""
    funcs: list = field(default_factory=list)
    func_info: list | None = None

    @property
    def id(self) -> str:
        return f"{Path(self.source).stem}:{self.name}"


def _map_type(word: str) -> int:
    mt = MAP_TYPES.get(word)
    return int(word, 0) if mt is None else mt


def _parse_map(words, where):
    inner = None
    if "inner" in words:
        i = words.index("inner")
        words, iw = words[:i], words[i + 1:]
        if len(iw) != 4:
            raise ValueError(f"{where}: inner TYPE KEY VALUE ENTRIES")
        inner = MapInfo(_map_type(iw[0]), *(int(w, 0) for w in iw[1:]))
    if len(words) not in (5, 6):
        raise ValueError(f"{where}: @map FD TYPE KEY VALUE ENTRIES [FLAGS] [inner TYPE KEY VALUE ENTRIES]")
    fd = int(words[0])
    nums = [int(w, 0) for w in words[2:]]
    flags = nums[3] if len(nums) == 4 else 0
    return fd, MapInfo(_map_type(words[1]), nums[0], nums[1], nums[2], flags, inner)


def parse(text: str, source: str) -> list[Case]:
    cases: list[Case] = []
    cur: Case | None = None
    body: list[str] = []

    def close():
        if cur is None:
            return
        cur.text = "\n".join(body) + "\n"
        if cur.expect not in ("accept", "reject"):
            raise ValueError(f"{source}:{cur.line}: case {cur.name} lacks @expect accept|reject")
        if cur.expect == "reject" and not cur.error:
            raise ValueError(f"{source}:{cur.line}: rejected case {cur.name} lacks @error")
        if cur.expect == "reject" and not cur.errno:
            cur.errno = errno.EACCES
        cases.append(cur)

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("=="):
            close()
            cur = Case(line[2:].strip(), source, n)
            body = []
            continue
        if not line or cur is None:
            continue
        if line.startswith("@"):
            key, _, val = line[1:].partition(" ")
            val = val.strip()
            where = f"{source}:{n}"
            if key == "prog":
                cur.prog_type = progtypes.BY_NAME[val]
            elif key == "map":
                fd, mi = _parse_map(val.split(), where)
                cur.maps[fd] = mi
            elif key == "license":
                cur.license = val
            elif key == "unpriv":
                cur.privileged = False
            elif key == "expect":
                cur.expect = val
            elif key == "error":
                cur.error = val
            elif key == "errno":
                cur.errno = 524 if val == "ENOTSUPP" else getattr(errno, val)   # kernel-internal
            elif key == "slow":
                cur.slow = True
            elif key == "kernel":
                cur.kernel = val
            elif key == "funcs":
                cur.funcs = val.split()
            elif key == "func_info":
                cur.func_info = [tuple(int(x, 0) for x in w.split(":")) for w in val.split()]
            else:
                raise ValueError(f"{where}: unknown attribute @{key}")
            continue
        body.append(raw)
    close()
    return cases


def params(cases):
    """pytest parameters for ``cases``, with the ``slow`` mark where a case asks for it."""
    import pytest
    return [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in cases]


def load_all() -> list[Case]:
    out = []
    for p in sorted(HERE.glob("*.cases")):
        out.extend(parse(p.read_text(), p.name))
    names = [c.id for c in out]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise ValueError(f"duplicate case names: {sorted(dup)}")
    return out


_MARK = 0x7EAD0000


def assemble_case(case: Case) -> list[Insn]:
    """The case's program as slots; ``.insn`` lines become exactly the raw slot they give."""
    raw: list[Insn] = []
    lines = []
    for line in case.text.splitlines():
        parts = line.split("#")[0].split()
        if parts and parts[0] == ".insn":
            code, dst, src, off, imm = (int(x.rstrip(","), 0) for x in parts[1:6])
            lines.append(f"  r9 = {_MARK + len(raw)}")
            raw.append(Insn(code, dst, src, off, imm))
        else:
            lines.append(line)
    insns = assemble("\n".join(lines), source=case.id, syntax="llvm")
    out = []
    for ins in insns:
        if ins.code == 0xB7 and ins.dst == 9 and _MARK <= ins.imm < _MARK + len(raw):
            ins = raw[ins.imm - _MARK]
        out.append(ins)
    return out


def case_btf(case: Case, insns: list[Insn]):
    """(BTF blob, func_info records) for a case with ``@funcs``, else (None, None)."""
    if not case.funcs:
        return None, None
    from pybpf.isa import opcodes as op
    from .btfblob import FIRST_FUNC_ID, build
    starts = {0}
    for i, ins in enumerate(insns):
        if (ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL) or \
                (ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC):
            starts.add(i + ins.imm + 1)
    recs = case.func_info
    if recs is None:
        recs = [(s, FIRST_FUNC_ID + k) for k, s in enumerate(sorted(starts))]
    return build(case.funcs), recs


def verify_case(case: Case, log_level: int = 1, insns=None):
    from pybpf.verifier import verify
    insns = insns if insns is not None else assemble_case(case)
    blob, recs = case_btf(case, insns)
    return verify(insns, prog_type=case.prog_type, maps=case.maps, license=case.license,
                  log_level=log_level, privileged=case.privileged, func_info=recs, btf=blob)
