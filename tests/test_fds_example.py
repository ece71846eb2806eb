"""The fds_example seed scenario, each step in a separate process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "examples" / "fds_example" / "fds_example.py"


@pytest.fixture
def env():
    d = tempfile.mkdtemp(prefix="pybpf-fdsex-", dir="/dev/shm")
    e = dict(os.environ, PYBPF_FS=d)
    yield e
    shutil.rmtree(d, ignore_errors=True)


def step(env, *args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=60, **kw)


def test_fds_example(env):
    pin = "/sys/fs/bpf/fds_example"
    r = step(env, "create", pin)
    assert r.returncode == 0, r.stderr
    assert os.path.isfile(os.path.join(env["PYBPF_FS"], "fds_example"))
    r = step(env, "read", pin)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "read 123 = 456"
    holder = subprocess.Popen([sys.executable, str(SCRIPT), "hold", pin], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert holder.stdout.readline().strip() == "holding 456"
    r = step(env, "unlink", pin)
    assert r.returncode == 0, r.stderr
    r = step(env, "read", pin)
    assert r.returncode == 1 and "No such file" in r.stderr
    out, err = holder.communicate("go\n", timeout=60)
    assert holder.returncode == 0, err
    assert out.splitlines() == ["pin exists: False", "still using fd: 123 = 457, 7 = 700"]


def test_usage_and_errors(env):
    assert step(env).returncode == 2
    r = step(env, "read", "/sys/fs/bpf/missing")
    assert r.returncode == 1 and "No such file or directory" in r.stderr
