"""The examples: each run.py loads its committed object, runs it over the bundled capture and
must leave exactly the numbers worked out independently from the packets (examples_expected)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import examples_expected as E
from pybpf.events.pcap import read_packets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SAMPLE = EXAMPLES / "data" / "sample.pcap"


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod          # as a script's __main__ is: kprobes find functions there
    spec.loader.exec_module(mod)
    return mod


def run_example(name: str, *argv: str):
    return _module(f"example_{name}", EXAMPLES / name / "run.py").main(list(argv))


@pytest.fixture(autouse=True)
def bpffs(monkeypatch):
    d = tempfile.mkdtemp(prefix="pybpf-ex-", dir="/dev/shm")
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def frames():
    return [p.data for p in read_packets(SAMPLE)]


# -- the capture -------------------------------------------------------------------------

def test_sample_is_what_the_generator_writes(tmp_path):
    gen = _module("gen_sample", EXAMPLES / "data" / "gen_sample.py")
    out = tmp_path / "s.pcap"
    assert gen.write(out) == 200
    assert out.read_bytes() == SAMPLE.read_bytes()


def _l4_ok(proto: int, src: bytes, dst: bytes, seg: bytes, v6: bool) -> bool:
    if proto == 1 or proto == 2:
        return E.csum(seg) == 0
    ph = (src + dst + struct.pack("!IxxxB", len(seg), proto)) if v6 else \
        (src + dst + struct.pack("!xBH", proto, len(seg)))
    return E.csum(ph + seg) == 0


def test_sample_mix_and_checksums(frames):
    kinds = {"v4": 0, "v6": 0, "vlan": 0, "frag": 0, "tcp": 0, "udp": 0, "icmp": 0, "icmp6": 0, "arp": 0}
    flows = set()
    for f in frames:
        p = E.parse(f)
        kinds["vlan"] += p.ethertype == 0x8100
        kinds["arp"] += p.l3type == 0x0806
        if p.version == 4:
            kinds["v4"] += 1
            hdr = f[p.l3:p.l3 + p.ihl * 4]
            assert E.csum(hdr) == 0, "IPv4 header checksum"
            tot = int.from_bytes(f[p.l3 + 2:p.l3 + 4], "big")
            assert p.l3 + tot == len(f)
            if p.frag_off & 0x3FFF and p.frag_off & 0x4000 == 0:
                kinds["frag"] += 1
                continue
            seg = f[p.l3 + p.ihl * 4:]
            assert _l4_ok(p.proto, f[p.l3 + 12:p.l3 + 16], f[p.l3 + 16:p.l3 + 20], seg, False)
        elif p.version == 6:
            kinds["v6"] += 1
            assert int.from_bytes(f[p.l3 + 4:p.l3 + 6], "big") == len(f) - p.l3 - 40
            if p.first_proto == 44:
                kinds["frag"] += 1
                continue
            assert _l4_ok(p.proto, p.src, p.dst, f[p.l4:], True)
        else:
            continue
        kinds[{6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}.get(p.proto, "v4")] += p.proto in (6, 17, 1, 58)
        flows.add(E.flow_key(f))
    assert len(frames) == 200
    assert all(kinds.values()), kinds
    assert kinds["frag"] == 5 and kinds["vlan"] == 6
    assert len(flows) > 30


# -- each example ------------------------------------------------------------------------

def test_sockex1_bytes_per_protocol(frames, capsys):
    counts = run_example("sockex1")
    assert counts == E.proto_bytes(frames)
    out = capsys.readouterr().out
    assert "TCP" in out and str(counts[6]) in out


def test_sockex2_flows(frames, capsys):
    flows = run_example("sockex2")
    assert flows == E.flows(frames)
    assert f"{len(flows)} flows" in capsys.readouterr().out


def test_sockex3_tail_calls_give_sockex2_flows(frames, capsys):
    flows = run_example("sockex3")
    assert flows == E.flows(frames)
    out = capsys.readouterr().out
    assert "stages: [1] parse_vlan, [2] parse_ipv4, [3] parse_ipv6, [4] parse_ports, [5] count" in out


def test_xdp_filter(frames, tmp_path, capsys):
    mod = _module("example_xdp", EXAMPLES / "xdp_filter" / "run.py")
    res = mod.main(["--out", str(tmp_path / "out.pcap")])
    want, hits = E.xdp_filter(frames, mod.BLOCKED)
    assert [(r.retval, r.data_out) for r in res["results"]] == want
    assert res["hits"] == hits
    names = {1: "XDP_DROP", 2: "XDP_PASS", 3: "XDP_TX"}
    for v, n in names.items():
        assert res["verdicts"][n] == sum(1 for w, _ in want if w == v)
    passed = [f for w, f in want if w in (2, 3)]
    assert [p.data for p in read_packets(tmp_path / "out.pcap")] == passed


def test_tc_classifier(frames, capsys):
    res = run_example("tc_classifier")
    want, classes, drops = E.tc_classifier(frames)
    assert [(r.retval, r.data_out) for r in res["results"]] == want
    names = ["control", "interactive", "web", "bulk"]
    assert {names[c]: v for c, v in classes.items()} == res["classes"]
    assert res["drops"] == drops == 3
    # every rewritten IPv4 header still checks
    for verdict, f in want:
        p = E.parse(f)
        if verdict == 0 and p.version == 4:
            assert E.csum(f[p.l3:p.l3 + p.ihl * 4]) == 0


def test_tracex_histogram(capsys):
    res = run_example("tracex", "--calls", "500")
    assert res["hist"] == {s: res["hist"].get(s, 0) for s in range(65)}
    want = E.log2_hist(res["sizes"])
    assert {k: v for k, v in res["hist"].items() if v} == want
    assert res["globals"] == {"calls": 500, "total_bytes": sum(res["sizes"])}
    assert "distribution" in capsys.readouterr().out


# -- as a user runs them -------------------------------------------------------------------

def _script(name: str, *args: str, env_fs: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYBPF_FS=env_fs)
    return subprocess.run([sys.executable, str(EXAMPLES / name / "run.py"), *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_script_runs_from_anywhere(bpffs, tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / "sockex1" / "run.py")], cwd=tmp_path,
                       capture_output=True, text=True, env=dict(os.environ, PYBPF_FS=bpffs), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ICMPv6" in r.stdout and "Traceback" not in r.stderr


def test_script_bad_inputs_are_one_line_errors(bpffs, tmp_path):
    r = _script("sockex2", "--object", str(tmp_path / "missing.o"), env_fs=bpffs)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "missing.o" in r.stderr
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    r = _script("tc_classifier", "--pcap", str(bad), env_fs=bpffs)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "bad.pcap" in r.stderr
    r = _script("sockex1", "--object", str(EXAMPLES / "tc_classifier" / "prog.o"), env_fs=bpffs)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no loaded program 'count_bytes' (has: classify)" in r.stderr
    from pybpf.events.pcap import PcapWriter
    runt = tmp_path / "runt.pcap"
    with PcapWriter(runt) as w:
        w.write(bytes(64))
        w.write(bytes(8))
    r = _script("sockex1", "--pcap", str(runt), env_fs=bpffs)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "frame 1 (8 bytes): test run failed" in r.stderr


def test_readme_main_job_shows_struct_values_by_field(frames):
    """`pybpf run` on the tc classifier: the struct class_stats values print by field name."""
    from click.testing import CliRunner
    from pybpf.cli.runtime import run_cmd
    res = CliRunner().invoke(run_cmd, [str(EXAMPLES / "tc_classifier" / "prog.o"), "--pcap", str(SAMPLE)])
    assert res.exit_code == 0, res.output
    _, classes, drops = E.tc_classifier(frames)
    for c, (packets, nbytes) in classes.items():
        assert f"    {c}  {{packets: {packets}, bytes: {nbytes}}}" in res.output
    assert f"    0  {drops}" in res.output
