"""Differential test of the unprivileged verifier: corpus programs are loaded into the host
kernel by a child process without any capability (uid/gid 65534) and must get the same
verdict, errno and error line from pybpf's ``privileged=False`` mode.

(a) every ``@unpriv`` corpus case; (b) every privileged case, re-verified as unprivileged.
Unprivileged bpf() is enabled for the session by the ``unpriv_bpf`` fixture (root only; the
sysctl is put back afterwards).
"""

import dataclasses
import errno
import os
import re

import pytest

from kernel_unpriv import run_unprivileged, unpriv_bpf, unpriv_prog_load  # noqa: F401 (fixture)
from pybpf.isa.insn import encode
from verifier_cases.btfblob import kernel_btf_load, kernel_load
from verifier_cases.kernel_maps import kernel_maps
from test_verifier_kernel import _normalise
from verifier_cases.corpus import assemble_case, case_btf, load_all, params, verify_case

pytestmark = pytest.mark.kernel

CASES = load_all()
UNPRIV = [c for c in CASES if not c.privileged]
PRIV = [c for c in CASES if c.privileged]

# Privileged cases whose unprivileged verdict differs from Linux's, with the reason.
UNPRIV_DIFFERENCES: dict[str, str] = {}


def kernel_unpriv_verdict(case, log_level=1):
    """(loaded, errno, log) of the case loaded by an unprivileged process."""
    insns = assemble_case(case)
    with kernel_maps(case, insns) as patched:        # created here, as root; the child inherits them
        blob, recs = case_btf(case, insns)
        if blob is None:
            return unpriv_prog_load(encode(patched), case.prog_type, license=case.license,
                                    log_level=log_level)
        btf_fd, err, blog = kernel_btf_load(blob)   # BTF_LOAD needs CAP_BPF: done as root
        if btf_fd < 0:
            pytest.skip(f"kernel refused the test BTF (errno {err}): {blog}")
        try:
            return run_unprivileged(lambda: kernel_load(encode(patched), case.prog_type, blob, recs,
                                                        license=case.license, log_level=log_level,
                                                        btf_fd=btf_fd))
        finally:
            os.close(btf_fd)


def _error_line(klog: str) -> str:
    lines = [x for x in klog.splitlines() if x.strip() and not x.startswith("processed ")]
    loop = [x for x in lines if x.startswith("infinite loop detected")]
    return loop[0] if loop else (lines[-1] if lines else "")


def _compare(case, ours, ok, err, klog):
    assert ours.ok == ok, (f"pybpf {'accepts' if ours.ok else 'rejects'}, kernel "
                           f"{'accepts' if ok else 'rejects'} (errno {err})\n--- kernel log:\n{klog}\n"
                           f"--- pybpf log:\n{ours.log}")
    if not ok and err != errno.ENOSPC:
        assert ours.errno == err, f"errno {ours.errno} != kernel {err}\n{klog}\n---\n{ours.log}"
        kernel_error = _error_line(klog)
        if kernel_error:        # program types refused before verification have no log
            assert kernel_error in ours.log.splitlines(), f"kernel says {kernel_error!r}\n---\n{ours.log}"


@pytest.mark.parametrize("case", params(UNPRIV))
def test_unpriv_case_same_as_kernel(case, unpriv_bpf):
    if case.kernel:
        pytest.skip(f"deliberate difference: {case.kernel}")
    ok, err, klog = kernel_unpriv_verdict(case)
    _compare(case, verify_case(case, 1), ok, err, klog)


@pytest.mark.parametrize("case", params(PRIV))
def test_priv_case_as_unpriv_same_as_kernel(case, unpriv_bpf):
    if case.kernel:
        pytest.skip(f"deliberate difference: {case.kernel}")
    if case.id in UNPRIV_DIFFERENCES:
        pytest.skip(UNPRIV_DIFFERENCES[case.id])
    ucase = dataclasses.replace(case, privileged=False)
    ok, err, klog = kernel_unpriv_verdict(ucase)
    _compare(ucase, verify_case(ucase, 1), ok, err, klog)


def _normalise_unpriv(log: str) -> list[str]:
    """Level-1 log lines, with what pybpf deliberately prints differently made equal:
    - Linux hides map addresses from unprivileged loaders (``(18) r1 = 0x0``); pybpf prints
      the fd.
    """
    log = re.sub(r"\(18\) (r\d+) = 0x0( +;)", r"(18) \1 = map[fd:0]\2", log)
    return _normalise(log)


@pytest.mark.parametrize("case", params(UNPRIV))
def test_unpriv_level1_log_same_as_kernel(case, unpriv_bpf):
    """The whole level-1 log of an unprivileged load is Linux's, up to _normalise_unpriv."""
    if case.kernel:
        pytest.skip(f"deliberate difference: {case.kernel}")
    _, _, klog = kernel_unpriv_verdict(case)
    assert _normalise_unpriv(verify_case(case, 1).log) == _normalise_unpriv(klog)
