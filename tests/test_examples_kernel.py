"""Each example program on the same packets in the host kernel (BPF_PROG_TEST_RUN) and in pybpf.

The object is read once by our loader; the kernel gets it through raw
bpf() (tests/kernel_objects.py), pybpf through ``load()``.  Per frame the
return values and the packets after the run must agree, and so must every
map at the end.  Per-CPU maps are left out of the map comparison: which
CPU the kernel runs a test on is not ours to choose.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import pytest

from kernel_oracle import kernel_available
from pybpf.events.pcap import read_packets

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "data" / "sample.pcap"

pytestmark = pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available")


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


common = _module("examples_common", EXAMPLES / "common.py")
xdp_run = _module("examples_xdp_run", EXAMPLES / "xdp_filter" / "run.py")


@pytest.fixture(autouse=True)
def bpffs(monkeypatch):
    d = tempfile.mkdtemp(prefix="pybpf-exk-", dir="/dev/shm")
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def frames():
    return [p.data for p in read_packets(SAMPLE)]


def _setup(example: str, kobj, obj) -> None:
    """The same map contents on both sides before the run."""
    if example == "xdp_filter":
        for p in xdp_run.BLOCKED:
            key = xdp_run.prefix_key(p)
            kobj.update("blocked", key, bytes(8))
            obj.maps["blocked"][key] = 0


CASES = [("sockex1", "count_bytes"), ("sockex2", "flow_dissector"), ("sockex3", "dissect"),
         ("xdp_filter", "xdp_filter"), ("tc_classifier", "classify")]


@pytest.mark.parametrize("example,prog", CASES)
def test_same_verdicts_packets_and_maps(example, prog):
    from kernel_objects import PERCPU_TYPES, KernelObject
    from pybpf.object import load

    path = EXAMPLES / example / "prog.o"
    with KernelObject(str(path)) as k, load(path) as obj:
        _setup(example, k, obj)
        for i, f in enumerate(frames()):
            kret, kout = k.run(prog, f)
            r = common.run_frame(obj.programs[prog], f)
            assert r.retval == kret, f"frame {i}: pybpf returned {r.retval}, the kernel {kret}"
            assert r.data_out == kout, f"frame {i}: packets differ after the run"
        for name, m in k.spec.maps.items():
            if m.type in PERCPU_TYPES or m.type == 3:     # per-CPU; prog array ids differ
                continue
            kernel_map = k.dump(name)
            ours = dict(obj.maps[name].items())
            assert ours == kernel_map, f"map '{name}' differs"
