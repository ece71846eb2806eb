"""Global functions (clang's non-static ``__noinline`` functions, with BTF func_info): verified
once on their own for any arguments their prototype allows, and at each call only the arguments
are checked (Linux: do_check_subprogs, btf_check_subprog_call).  Each program of
verifier_cases/c_verdicts/globals.c has its verdict here; where the host kernel's bpf() works,
the kernel gives the same verdict, errno and level-1 log."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

import pytest

from kernel_oracle import kernel_available, kernel_map_create
from pybpf.isa.insn import encode
from pybpf.loader import read_object, resolve
from pybpf.verifier import MapInfo, verify
from test_verifier_c import compile_c
from verifier_cases.btfblob import kernel_load

SRC = Path(__file__).parent / "verifier_cases" / "c_verdicts" / "globals.c"

ACCEPT = None
# program -> None (accepted) or (errno, the log's last line before the statistics)
EXPECTED = {
    "scalar_arg": ACCEPT,
    "stack_and_map_value": ACCEPT,
    "map_value_or_null": ACCEPT,
    "callee_misses_null_check": (errno.EACCES, "R1 invalid mem access 'mem_or_null'"),
    "nonnull_tag": ACCEPT,
    "nonnull_tag_gets_maybe_null": (errno.EINVAL, "Caller passes invalid args into func#1 ('first_nonnull')"),
    "void_return": (errno.EINVAL, "Caller passes invalid args into func#1 ('store')"),
    "void_pointer_arg": (errno.EINVAL, "Caller passes invalid args into func#1 ('any_ptr')"),
    "ctx_arg": ACCEPT,
    "ctx_tag": ACCEPT,
    "wrong_ctx_type": (errno.EINVAL, "Caller passes invalid args into func#1 ('skb_len')"),
    "skb_ctx": ACCEPT,
    "packet_arg": ACCEPT,
    "packet_arg_too_short": (errno.EINVAL, "Caller passes invalid args into func#1 ('read8')"),
    "scalar_for_pointer": (errno.EINVAL, "Caller passes invalid args into func#1 ('read8')"),
    "global_calls_global": ACCEPT,
    "packet_changed_by_callee": (errno.EACCES, "R6 invalid mem access 'scalar'"),
    "pointer_return": ACCEPT,
    "result_is_unknown": (errno.EACCES, "invalid unbounded variable-offset read from stack R2"),
    "stack_address_returned": (errno.EINVAL,
                               "Caller passes invalid args into func#1 ('ret_stack_ptr_as_int')"),
}
# the reason printed just before "Caller passes invalid args"
REASONS = {
    "nonnull_tag_gets_maybe_null": "arg#0 is expected to be non-NULL",
    "void_return": "Global function store() doesn't return scalar. Only those are supported.",
    "void_pointer_arg": "arg#0 reference type('UNKNOWN ') size cannot be determined: -22",
    "wrong_ctx_type": "R1 type=ctx expected=fp",
    "packet_arg_too_short": "R1 offset is outside of the packet",
    "scalar_for_pointer": "R1 type=scalar expected=fp",
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return read_object(str(compile_c(SRC, "v3", tmp_path_factory.mktemp("globals"))))


def _ours(spec, name, level=1):
    fds = {n: 3 + i for i, n in enumerate(spec.maps)}
    maps = {fds[n]: MapInfo(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
            for n, m in spec.maps.items()}
    prog = spec.programs[name]
    return verify(resolve(spec, fds, [name])[name], prog_type=prog.prog_type, maps=maps,
                  license=spec.license, log_level=level, func_info=prog.func_info_bytes(), btf=spec.btf)


def _last(log: str) -> str:
    lines = [x for x in log.splitlines() if x and not x.startswith(("processed ", "verification time"))]
    return lines[-1] if lines else ""


def _normalise(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        if line.startswith("processed "):
            continue
        out.append(re.sub(r"\(18\) (r\d+) = (0xffff[0-9a-f]+|map\[fd:\d+\]) +;", r"(18) \1 = <map> ;", line))
    return out


def test_every_program_has_a_verdict(spec):
    assert sorted(spec.programs) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict(spec, name):
    res = _ours(spec, name)
    want = EXPECTED[name]
    if want is ACCEPT:
        assert res.ok, res.log
        return
    assert (res.errno, _last(res.log)) == want, res.log
    if name in REASONS:
        lines = res.log.splitlines()
        assert lines[lines.index(want[1]) - 1] == REASONS[name]


def test_globals_are_verified_once_with_their_prototype(spec):
    """The level-2 log shows each global function verified on its own, after the caller."""
    log = _ours(spec, "stack_and_map_value", 2).log
    assert log.count("Func#1 ('sum_pair') is global and assumed valid.") == 2
    assert log.count("Validating sum_pair() func#1...") == 1
    assert "R1=mem_or_null(id=" in log.split("Validating sum_pair() func#1...")[1]
    nested = _ours(spec, "global_calls_global", 1).log
    assert "Func#3 ('classify') is safe for any args that match its prototype" in nested


def test_callers_do_not_see_the_callee_result(spec):
    """An inlined walk would know classify() returns 0..2; a global's result is any scalar."""
    res = _ours(spec, "result_is_unknown", 2)
    assert "R0=scalar()" in res.log


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_same_as_kernel(spec, name):
    if not kernel_available():
        pytest.skip("host kernel bpf() not available")
    kfds = {}
    try:
        for n, m in spec.maps.items():
            fd, err = kernel_map_create(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
            assert fd >= 0, (n, err)
            kfds[n] = fd
        prog = spec.programs[name]
        code = encode(resolve(spec, kfds, [name])[name])
        recs = [(f.insn, f.type_id) for f in prog.func_info]
        pfd, err, klog = kernel_load(code, prog.prog_type, spec.btf_for_kernel, recs,
                                     license=spec.license, log_level=1)
        if pfd >= 0:
            os.close(pfd)
    finally:
        for mfd in kfds.values():
            os.close(mfd)
    ours = _ours(spec, name)
    assert (ours.ok, ours.errno if not ours.ok else 0) == (pfd >= 0, err if pfd < 0 else 0), klog
    assert _normalise(ours.log) == _normalise(klog)


@pytest.mark.usefixtures("bpffs")
def test_accepted_programs_run(tmp_path):
    """The global functions the verifier proved safe compute what the C says, in the runtime
    (and ``pybpf.load(programs=...)`` leaves the rejected programs of the object out)."""
    import pybpf
    from pybpf.runtime.testrun import test_run
    obj = compile_c(SRC, "v3", tmp_path)
    wanted = sorted(n for n, v in EXPECTED.items() if v is ACCEPT)
    with pybpf.load(obj, programs=wanted) as o:
        assert sorted(o.programs) == wanted
        o.maps["arr"][0] = (5).to_bytes(4, "little") + (6).to_bytes(4, "little")
        pkt = bytes(range(1, 61))

        def run(name, data=pkt):
            return test_run(o.programs[name], data).retval

        assert run("global_calls_global") == 16 + 0          # sum_pair({7, 9}) + classify(9)
        assert run("stack_and_map_value") == 3 + 11          # {1, 2} and arr[0] = {5, 6}
        assert run("map_value_or_null") == 11                # rx_queue_index 0: arr[0]
        assert run("packet_arg") == int.from_bytes(pkt[:4], "little")   # (int) of the first u64
        assert run("scalar_arg", bytes(60)) == 0 and run("scalar_arg", bytes(500)) == 1
        assert run("ctx_arg", bytes(77)) == 77
        assert run("skb_ctx", bytes(100)) == 100 - 14       # a socket filter sees the frame past ETH
    with pytest.raises(pybpf.object.ObjectLoadError, match="no program named 'nope'"):
        pybpf.load(obj, programs=["nope"])
