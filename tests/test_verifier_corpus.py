"""Every corpus case (tests/verifier_cases/*.cases) gets the verdict, errno and log line it expects."""

import pytest

from verifier_cases.corpus import load_all, params, verify_case

CASES = load_all()


def run_case(case, log_level=1):
    return verify_case(case, log_level)


def test_corpus_size():
    assert len(CASES) >= 300


@pytest.mark.parametrize("case", params(CASES))
def test_case(case):
    res = run_case(case)
    if case.expect == "accept":
        assert res.ok, f"expected accept, got errno {res.errno}:\n{res.log}"
        return
    assert not res.ok, f"expected reject with {case.error!r}, got accept:\n{res.log}"
    lines = res.log.splitlines()
    assert case.error in lines, f"expected log line {case.error!r}:\n{res.log}"
    assert res.errno == case.errno, f"errno {res.errno} != {case.errno}:\n{res.log}"
