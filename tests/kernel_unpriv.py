"""The host kernel as an *unprivileged* loader's oracle.

Linux refuses unprivileged bpf() while ``kernel.unprivileged_bpf_disabled`` is 1 or 2.  In
our own VM root may turn 2 into 0 (1 is sticky); :func:`unpriv_bpf` does that for one test
session and always puts the old value back (fixture finalizer, and atexit should the session
die first).  :func:`unpriv_prog_load` runs BPF_PROG_LOAD in a forked child that has dropped to
nobody/nogroup with no capabilities; maps are created by the parent beforehand, so the child
inherits their fds.
"""

from __future__ import annotations

import atexit
import json
import os

import pytest

from kernel_oracle import kernel_available, kernel_prog_load

SYSCTL = "/proc/sys/kernel/unprivileged_bpf_disabled"
NOBODY = 65534

_saved: str | None = None       # the value to restore; None while we changed nothing
_refused: str | None = None     # why unprivileged bpf() cannot be enabled here


def _read() -> str:
    with open(SYSCTL) as f:
        return f.read().strip()


def _restore() -> None:
    global _saved
    if _saved is None:
        return
    try:
        with open(SYSCTL, "w") as f:
            f.write(_saved)
    except OSError:
        pass        # nothing more we can do at exit; the value is printed by the skip reason
    _saved = None


def enable() -> str | None:
    """Allow unprivileged bpf() until :func:`_restore`; returns why not, or None."""
    global _saved, _refused
    if _saved is not None:
        return None
    if _refused is not None:
        return _refused
    if not kernel_available():
        _refused = "host kernel bpf() not available"
    elif os.geteuid() != 0:
        _refused = "not root: cannot change " + SYSCTL
    else:
        try:
            cur = _read()
        except OSError as e:
            cur, _refused = "", f"cannot read {SYSCTL}: {e}"
        if _refused is None and cur != "2":
            # 1 cannot be undone; 0 may be another session's temporary change we must not rely on
            _refused = f"{SYSCTL} is {cur!r}, not 2: not changing it"
        elif _refused is None and not os.access(SYSCTL, os.W_OK):
            _refused = f"{SYSCTL} is not writable"
        if _refused is None:
            atexit.register(_restore)
            try:
                with open(SYSCTL, "w") as f:
                    f.write("0")
                _saved = cur
            except OSError as e:
                _refused = f"cannot write 0 to {SYSCTL}: {e}"
    return _refused


@pytest.fixture(scope="session")
def unpriv_bpf():
    """Session fixture: unprivileged bpf() is allowed while tests that use it run."""
    reason = enable()
    if reason is not None:
        pytest.skip(reason)
    yield
    _restore()


def _drop_privileges() -> None:
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)     # leaving uid 0 clears every capability set
    with open("/proc/self/status") as f:
        caps = {k: v.strip() for k, _, v in (line.partition(":") for line in f)}
    if int(caps.get("CapEff", "1"), 16) != 0:
        raise RuntimeError(f"child still has capabilities: CapEff {caps.get('CapEff')}")


def run_unprivileged(load) -> tuple[bool, int, str]:
    """Run ``load()`` -> (fd, errno, log) in a child without privileges.

    Returns (loaded, errno, log); the child's program fd dies with the child.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                    # child: must never return into pytest
        status = 1
        try:
            os.close(r)
            try:
                _drop_privileges()
                fd, err, log = load()
                msg = {"ok": fd >= 0, "errno": err, "log": log}
            except BaseException as e:              # report, never unwind into the test runner
                msg = {"error": f"{type(e).__name__}: {e}"}
            data = json.dumps(msg).encode()
            while data:
                data = data[os.write(w, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    chunks = []
    try:
        while True:
            b = os.read(r, 1 << 16)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        _, st = os.waitpid(pid, 0)
    if not chunks:
        raise RuntimeError(f"unprivileged loader child died (status {st:#x})")
    msg = json.loads(b"".join(chunks))
    if "error" in msg:
        raise RuntimeError("unprivileged loader child: " + msg["error"])
    return msg["ok"], msg["errno"], msg["log"]


def unpriv_prog_load(code: bytes, prog_type: int, *, license: str = "GPL",
                     log_level: int = 1) -> tuple[bool, int, str]:
    """BPF_PROG_LOAD as nobody without capabilities: (loaded, errno, log)."""
    return run_unprivileged(lambda: kernel_prog_load(code, prog_type, license=license,
                                                     log_level=log_level))
