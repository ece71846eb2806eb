"""The verify() contract: a pure function that never raises on a bad program, Linux's errnos,
log levels, and the rewrite of context accesses to the runtime layout."""

from __future__ import annotations

import errno
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf.asm import assemble
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, decode
from pybpf.verifier import MapInfo, VerifyResult, context, progtypes, verify
from pybpf.verifier import tnum
from pybpf.verifier.log import format_insn


def v(text, **kw):
    kw.setdefault("prog_type", progtypes.SOCKET_FILTER)
    return verify(assemble(text), **kw)


def test_accept_result_fields():
    r = v("r0 = *(u32 *)(r1 + 0)\nexit", log_level=4)
    assert isinstance(r, VerifyResult) and r.ok and r.errno == 0 and bool(r)
    assert r.processed == 2
    assert r.subprog_starts == [0]
    assert "verification time" in r.log and "stack depth 0" in r.log
    assert r.log.splitlines()[-1].startswith("processed 2 insns (limit 1000000) max_states_per_insn")


def test_log_level_0_is_empty_and_level_1_success_only_stats():
    assert v("r0 = 0\nexit").log == ""
    lines = v("r0 = 0\nexit", log_level=1).log.splitlines()
    assert len(lines) == 1 and lines[0].startswith("processed 2 insns")


def test_log_level_2_prints_every_insn():
    log = v("r6 = r1\nr0 = 0\nr1 += 2\nexit", log_level=2).log
    assert log.splitlines()[:10] == [
        "func#0 @0",
        "Live regs before insn:",
        "      0: .1........ (bf) r6 = r1",
        "      1: .1........ (b7) r0 = 0",
        "      2: 01........ (07) r1 += 2",
        "      3: 0......... (95) exit",
        "0: R1=ctx() R10=fp0",
        "0: (bf) r6 = r1                       ; R1=ctx() R6=ctx()",
        "1: (b7) r0 = 0                        ; R0=0",
        "2: (07) r1 += 2                       ; R1=ctx(off=2)",
    ]


def test_error_is_last_before_stats():
    r = v("r6 = r2\nexit", log_level=1)
    assert not r.ok and r.errno == errno.EACCES
    assert r.log.splitlines()[-2] == "R2 !read_ok"
    assert r.error == "R2 !read_ok"


def test_errnos_of_whole_program_checks():
    assert verify([], prog_type=1).errno == errno.EINVAL
    big = [Insn(op.ALU64 | op.MOV | op.K, 0)] * 4097 + [Insn(op.OP_EXIT)]
    assert verify(big, prog_type=1, privileged=False).errno == errno.E2BIG
    assert verify([Insn(op.OP_EXIT)], prog_type=999).errno == errno.EINVAL
    assert verify([Insn(op.OP_EXIT)], prog_type=progtypes.XDP, privileged=False).errno == errno.EPERM


def test_bad_map_fd_is_ebadf():
    r = v("r1 = map_fd(5) ll\nr0 = 0\nexit", maps={4: MapInfo(2, 4, 8, 1)}, log_level=1)
    assert r.errno == errno.EBADF and "fd 5 is not pointing to valid bpf_map" in r.log


def test_complexity_limit_is_e2big():
    r = v("r0 = 0\nl: r0 += 1\nif r0 != 0 goto l\nexit", max_insns=5000, log_level=1)
    assert r.errno == errno.E2BIG
    assert "BPF program is too large. Processed 5001 insn" in r.log.splitlines()


def test_ctx_rewrite_to_runtime_layout():
    r = v("r2 = *(u32 *)(r1 + 76)\nr3 = *(u32 *)(r1 + 80)\nr0 = *(u16 *)(r1 + 8)\nr0 = 0\nexit",
          prog_type=progtypes.SCHED_CLS)
    assert r.ok
    layout = context.RUNTIME[progtypes.SCHED_CLS].fields
    data, data_end = r.insns_rewritten[0], r.insns_rewritten[1]
    assert (data.off, data.code & 0x18) == (layout["data"][0], op.DW)
    assert (data_end.off, data_end.code & 0x18) == (layout["data_end"][0], op.DW)
    mark = r.insns_rewritten[2]
    assert (mark.off, mark.code & 0x18) == (8, op.H)


def test_kernel_style_insn_text():
    prog = assemble("r1 = 0x123456789 ll\n*(u32 *)(r10 - 4) = r1\nif w1 s> 3 goto +0\n"
                    "r0 = atomic_fetch_add((u64 *)(r10 - 8), r0)\ncall 1\nexit")
    assert format_insn(prog, 0) == "(18) r1 = 0x123456789"
    assert format_insn(prog, 2) == "(63) *(u32 *)(r10 -4) = r1"
    assert format_insn(prog, 3) == "(66) if w1 s> 0x3 goto pc+0"
    assert format_insn(prog, 4) == "(db) r0 = atomic64_fetch_add((u64 *)(r10 -8), r0)"
    assert format_insn(prog, 5) == "(85) call bpf_map_lookup_elem#1"


def test_tnum_basics():
    assert tnum.add(tnum.const(3), tnum.const(4)) == (7, 0)
    assert tnum.contains(tnum.range_(0, 255), tnum.const(200))
    assert not tnum.contains(tnum.const(1), tnum.UNKNOWN)
    assert tnum.and_(tnum.UNKNOWN, tnum.const(0xF0)) == (0, 0xF0)


@settings(max_examples=400, deadline=None)
@given(st.binary(min_size=8, max_size=8 * 24).filter(lambda b: len(b) % 8 == 0),
       st.sampled_from(sorted(progtypes.SUPPORTED)), st.booleans(), st.integers(0, 7))
def test_never_raises_on_arbitrary_bytes(data, prog_type, privileged, log_level):
    insns = decode(data, check=False)
    r = verify(insns, prog_type=prog_type, maps={3: MapInfo(1, 4, 8, 4)}, privileged=privileged,
               log_level=log_level, license="GPL", max_insns=20000)
    assert isinstance(r, VerifyResult)
    assert r.ok or r.errno in (errno.EINVAL, errno.EACCES, errno.E2BIG, errno.EBADF, errno.EPERM,
                               errno.EPROTO)


def test_never_raises_on_mutated_corpus_programs():
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from verifier_cases.corpus import assemble_case, load_all
    rng = random.Random(4)
    cases = [c for c in load_all() if not c.slow]
    for _ in range(600):
        c = rng.choice(cases)
        insns = list(assemble_case(c))
        i = rng.randrange(len(insns))
        x = insns[i]
        field = rng.choice(["code", "dst", "src", "off", "imm"])
        vals = dict(code=x.code, dst=x.dst, src=x.src, off=x.off, imm=x.imm)
        vals[field] = {"code": rng.randrange(256), "dst": rng.randrange(16), "src": rng.randrange(16),
                       "off": rng.randrange(-40, 40), "imm": rng.choice([0, 1, -1, 8, 1 << 31 - 1, -(1 << 31)])}[field]
        insns[i] = Insn(**vals)
        r = verify(insns, prog_type=c.prog_type, maps=c.maps, license=c.license, log_level=rng.choice([0, 1, 2]),
                   max_insns=20000)
        assert isinstance(r, VerifyResult)


def test_fit_log_rotating_and_fixed():
    from pybpf.verifier import LOG_FIXED, fit_log
    log = "0123456789"
    assert fit_log(log, 64, 1) == (b"0123456789\0", False)
    assert fit_log(log, 5, 1) == (b"6789\0", True)
    assert fit_log(log, 5, 1 | LOG_FIXED) == (b"0123\0", True)


def test_fit_log_matches_kernel():
    from kernel_oracle import kernel_available, kernel_prog_load
    from pybpf.isa.insn import encode
    from pybpf.verifier import fit_log
    if not kernel_available():
        import pytest
        pytest.skip("no kernel bpf()")
    prog = assemble("r0 = *(u32 *)(r1 + 0)\nr2 = r0\nexit")
    for level in (1, 2, 2 | 8):
        fd, err, klog = kernel_prog_load(encode(prog), 1, log_level=level, log_size=40)
        assert fd < 0 and err == errno.ENOSPC
        ours = verify(prog, prog_type=1, log_level=level).log
        data, trunc = fit_log(ours, 40, level)
        assert trunc
        if level == 1:    # the level-1 log is only the stats line: identical text
            assert data[:-1].decode() == klog


# ---- BTF func_info (callbacks) -------------------------------------------------------------

_LOOP = """
  r1 = 4
  r2 = func(0x6) ll
  r3 = 0
  r4 = 0
  call bpf_loop
  r0 = 0
  exit
  r0 = 1
  exit
"""


def _btf(*links):
    from verifier_cases.btfblob import build
    return build(list(links))


def test_func_info_forms_are_equivalent():
    from pybpf.loader.btf import Btf
    import struct
    blob = _btf("global", "static")
    recs = [(0, 5), (8, 6)]
    raw = b"".join(struct.pack("<II", *r) for r in recs)
    results = [v(_LOOP, func_info=fi, btf=b) for fi in (recs, raw) for b in (blob, Btf(blob))]
    assert all(r.ok for r in results), [r.log for r in results]
    assert len({r.processed for r in results}) == 1


def test_func_info_errors_are_results_not_exceptions():
    blob = _btf("global", "static")
    r = v(_LOOP, func_info=[(0, 5), (8, 6)])             # no BTF
    assert not r.ok and r.errno == errno.EINVAL and "BTF" in r.error
    r = v(_LOOP, func_info=[(0, 5), (8, 6)], btf=b"\x00" * 10)
    assert not r.ok and r.errno == errno.EINVAL and "invalid BTF" in r.error
    r = v(_LOOP, func_info=b"\x00" * 12, btf=blob)
    assert not r.ok and r.errno == errno.EINVAL
    r = v(_LOOP, func_info=[(0, 5), (8, 99)], btf=blob)
    assert not r.ok and r.error == "invalid type id 99 in func info"


def test_callback_without_func_info_is_rejected():
    r = v(_LOOP)
    assert not r.ok and r.errno == errno.EINVAL and r.error == "missing btf func_info"


def test_tracepoint_ctx_is_not_rewritten():
    r = verify(assemble("r0 = *(u32 *)(r1 + 12)\nexit"), prog_type=progtypes.TRACEPOINT)
    assert r.ok
    assert r.insns_rewritten[0] == assemble("r0 = *(u32 *)(r1 + 12)\nexit")[0]


def test_level2_log_keeps_its_end_as_linux_rotating_buffer():
    """A level-2 log keeps only its end past its bound (Linux's rotating log buffer); the size
    of the whole log still gives log_true_size."""
    from pybpf.prog import logbuf
    from pybpf.verifier.log import Log
    lines = [f"{i}: (07) r0 += 1\n" for i in range(5000)]
    full = "".join(lines)
    log = Log(2, keep=1000)
    for line in lines:
        log.write(line)
    text = log.text()
    assert log.size == len(full) and 1000 <= len(text) < len(full)
    assert full.endswith(text) and log.dropped == len(full) - len(text)
    data, true_size, over = logbuf.finalize(text, 2, 500, log.dropped)
    assert true_size == len(full) + 1 and data == full[-499:].encode() + b"\0" and over
    for level in (1, 2 | 8):        # level 1 is rolled back, BPF_LOG_FIXED keeps the start
        log = Log(level, keep=1000)
        for line in lines:
            log.write(line)
        assert log.text() == full and not log.dropped
