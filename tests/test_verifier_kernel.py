"""Differential test: every corpus program is loaded into the host kernel too (same program
type, same maps) and must get the same accept/reject verdict from both verifiers.

Deliberate differences are marked in the corpus itself with ``@kernel <reason>``; the
comparison is skipped for them (and listed in the skip reason).  Unprivileged cases are
skipped: the test process is root and the kernel would verify them as privileged.
"""

import errno
import os
import re

import pytest

from kernel_oracle import kernel_prog_load, require_kernel
from pybpf.isa.insn import encode
from verifier_cases.btfblob import kernel_load
from verifier_cases.kernel_maps import kernel_maps
from verifier_cases.corpus import assemble_case, case_btf, load_all, params, verify_case

CASES = load_all()


def kernel_verdict(case, log_level=1):
    insns = assemble_case(case)
    with kernel_maps(case, insns) as patched:
        blob, recs = case_btf(case, insns)
        if blob is not None:
            pfd, err, log = kernel_load(encode(patched), case.prog_type, blob, recs,
                                        license=case.license, log_level=log_level)
        else:
            pfd, err, log = kernel_prog_load(encode(patched), case.prog_type, license=case.license,
                                             log_level=log_level)
        if pfd >= 0:
            os.close(pfd)
        return pfd >= 0, err, log


@pytest.mark.parametrize("case", params(CASES))
def test_same_verdict_as_kernel(case):
    require_kernel()
    if not case.privileged:
        pytest.skip("unprivileged case: this process is root, the kernel would verify it privileged")
    if case.kernel:
        pytest.skip(f"deliberate difference: {case.kernel}")
    ok, err, klog = kernel_verdict(case)
    ours = verify_case(case, 1)
    assert ours.ok == ok, (f"pybpf {'accepts' if ours.ok else 'rejects'}, kernel "
                           f"{'accepts' if ok else 'rejects'} (errno {err})\n--- kernel log:\n{klog}\n"
                           f"--- pybpf log:\n{ours.log}")
    if not ok and err != errno.ENOSPC:
        # Same errno, and the kernel's last message is a line of ours.
        assert ours.errno == err, f"errno {ours.errno} != kernel {err}\n{klog}\n---\n{ours.log}"
        lines = [x for x in klog.splitlines() if x.strip() and not x.startswith("processed ")]
        # After "infinite loop detected" Linux dumps both states, with precision marks
        # pybpf does not track: compare the verdict line itself.
        loop = [x for x in lines if x.startswith("infinite loop detected")]
        kernel_error = loop[0] if loop else lines[-1]
        assert kernel_error in ours.log.splitlines(), f"kernel says {kernel_error!r}\n---\n{ours.log}"


def _live_block(log: str) -> list[str] | None:
    if "Live regs before insn:" not in log:
        return None
    out = []
    for line in log.split("Live regs before insn:\n", 1)[1].splitlines():
        if not re.match(r"^[ 0-9]{7}: [.0-9]{10} ", line):
            break
        # map loads print the kernel's map address; pybpf prints the fd
        out.append(re.sub(r"\(18\) (r\d+) = .*", r"(18) \1 = <map>", line) if " (18) " in line else line)
    return out


@pytest.mark.parametrize("case", params(CASES))
def test_same_live_registers_as_kernel(case):
    """Level 2 opens with the registers live before each instruction: same as Linux 6.18."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    _, _, klog = kernel_verdict(case, log_level=2)
    expected = _live_block(klog)
    if expected is None:
        pytest.skip("this kernel does not print the live registers")
    ours = verify_case(case, 2)
    assert _live_block(ours.log) == expected


# Level-1 logs that differ from Linux 6.18's, with the reason.
LOG_DIFFERENCES: dict[str, str] = {}


def _normalise(log: str) -> list[str]:
    out = []
    for line in log.splitlines():
        if line.startswith(("processed ", "verification time", "stack depth")):
            continue
        # map loads print the kernel's map address; pybpf prints the fd
        line = re.sub(r"\(18\) (r\d+) = (0xffff[0-9a-f]+|map\[fd:\d+\](\[0\]\+\d+)?) +;", r"(18) \1 = <map> ;", line)
        line = re.sub(r"\(18\) (r\d+) = (0xffff[0-9a-f]+|map\[fd:\d+\](\[0\]\+\d+)?)$", r"(18) \1 = <map>", line)
        out.append(line)
    return out


@pytest.mark.parametrize("case", params(CASES))
def test_same_level1_log_as_kernel(case):
    """The whole level-1 log is Linux's, line for line (map addresses aside)."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    if case.id in LOG_DIFFERENCES:
        pytest.skip(LOG_DIFFERENCES[case.id])
    _, _, klog = kernel_verdict(case, log_level=1)
    assert _normalise(verify_case(case, 1).log) == _normalise(klog)


def _stats_line(log: str) -> str:
    return next((x for x in log.splitlines() if x.startswith("processed ")), "")


@pytest.mark.parametrize("case", params(CASES))
def test_same_statistics_as_kernel(case):
    """The closing statistics ('processed N insns ... total_states T peak_states P') are
    Linux's: the same states are stored, pruned and dropped at the same points."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    _, err, klog = kernel_verdict(case, log_level=1)
    if err == errno.ENOSPC:
        pytest.skip("the kernel's log outgrew its buffer")
    assert _stats_line(verify_case(case, 1).log) == _stats_line(klog)


# Level-2 logs that differ from Linux 6.18's, by category (the reason is the skip message).
LOG2_DIFFERENCES: dict[str, str] = {
}


@pytest.mark.parametrize("case", params(CASES))
def test_same_level2_log_as_kernel(case):
    """The whole level-2 log is Linux's too, precision backtracking (mark_precise) included."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    if case.id in LOG2_DIFFERENCES:
        pytest.skip(LOG2_DIFFERENCES[case.id])
    _, err, klog = kernel_verdict(case, log_level=2)
    ours = _normalise(verify_case(case, 2).log)
    if err == errno.ENOSPC:
        # The kernel kept only the end of a log that outgrew its buffer (and says ENOSPC even
        # where the verdict is a rejection): that end, its cut first line aside, is ours.
        theirs = _normalise(klog)[1:]
        assert len(theirs) > 1000 and ours[-len(theirs):] == theirs
    else:
        assert ours == _normalise(klog)


_LIVE_STACK_LINE = re.compile(r"\([\d,]+\) (frame \d+ insn \d+ |live stack update done)")


@pytest.mark.parametrize("case", params(CASES))
def test_same_stack_liveness_as_kernel(case):
    """Linux 6.18's call-chain stack liveness lines ('(0) frame 0 insn 1 +live -8', 'live stack
    update done in N iterations') are pybpf's too, also where other parts of the log differ."""
    require_kernel()
    if not case.privileged or case.kernel:
        pytest.skip("not comparable with the kernel (see the corpus entry)")
    _, _, klog = kernel_verdict(case, log_level=2)
    ours = verify_case(case, 2).log
    pick = lambda log: [line for line in log.splitlines() if _LIVE_STACK_LINE.match(line)]
    assert pick(ours) == pick(klog)
