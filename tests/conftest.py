import pytest


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run long fuzz and soak tests (marker 'slow')")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long run: use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def bpffs(monkeypatch):
    """A fresh, empty BPF file system root (PYBPF_FS) for one test."""
    import os
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="pybpf-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)
