"""`pybpf map ...` in bpftool's words: create, show, dump, lookup, update, delete, getnext, pin."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
from click.testing import CliRunner

from pybpf.cli import main
from pybpf.map import Map


@pytest.fixture(autouse=True)
def bpffs(monkeypatch):
    d = tempfile.mkdtemp(prefix="pybpf-cli-", dir="/dev/shm")
    monkeypatch.setenv("PYBPF_FS", d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def cli(*args, ok=True):
    r = CliRunner().invoke(main, ["map", *args])
    if ok:
        assert r.exit_code == 0, (r.output, r.exception)
    return r


def test_create_show_dump(bpffs):
    cli("create", "/sys/fs/bpf/counts", "type", "hash", "key", "4", "value", "8", "entries", "1024",
        "name", "counts")
    assert os.path.isfile(os.path.join(bpffs, "counts"))
    out = cli("show").output
    lines = out.splitlines()
    assert lines[0].endswith(": hash  name counts  flags 0x0")
    assert lines[1] == "\tkey 4B  value 8B  max_entries 1024  memlock " + lines[1].split("memlock ")[1]
    assert lines[2] == "\tpinned /sys/fs/bpf/counts"
    j = json.loads(cli("show", "--json").output)
    assert j[0]["type"] == "hash" and j[0]["bytes_key"] == 4 and j[0]["pinned"] == ["/sys/fs/bpf/counts"]
    one = json.loads(cli("show", "pinned", "/sys/fs/bpf/counts", "-j").output)
    assert one["name"] == "counts" and one["max_entries"] == 1024
    cli("update", "pinned", "/sys/fs/bpf/counts", "key", "hex", "01", "00", "00", "00", "value", "hex",
        "2a", "00", "00", "00", "00", "00", "00", "00")
    cli("update", "pinned", "/sys/fs/bpf/counts", "key", "2", "0", "0", "0", "value", "0x10", "0", "0",
        "0", "0", "0", "0", "0")
    out = cli("dump", "pinned", "/sys/fs/bpf/counts").output.splitlines()
    assert sorted(out[:-1]) == ["key: 01 00 00 00  value: 2a 00 00 00 00 00 00 00",
                                "key: 02 00 00 00  value: 10 00 00 00 00 00 00 00"]
    assert out[-1] == "Found 2 elements"
    dj = json.loads(cli("dump", "pinned", "/sys/fs/bpf/counts", "--json").output)
    assert {"key": ["0x01", "0x00", "0x00", "0x00"],
            "value": ["0x2a"] + ["0x00"] * 7} in dj


def test_lookup_getnext_delete(bpffs):
    cli("create", "/sys/fs/bpf/m", "type", "hash", "key", "4", "value", "4", "entries", "8")
    cli("update", "pinned", "/sys/fs/bpf/m", "key", "hex", "01000000", "value", "hex", "05000000")
    assert cli("lookup", "pinned", "/sys/fs/bpf/m", "key", "1", "0", "0", "0").output.strip() == \
        "key: 01 00 00 00  value: 05 00 00 00"
    j = json.loads(cli("lookup", "pinned", "/sys/fs/bpf/m", "key", "1", "0", "0", "0", "-j").output)
    assert j == {"key": ["0x01", "0x00", "0x00", "0x00"], "value": ["0x05", "0x00", "0x00", "0x00"]}
    assert "Not found" in cli("lookup", "pinned", "/sys/fs/bpf/m", "key", "9", "0", "0", "0").output
    out = cli("getnext", "pinned", "/sys/fs/bpf/m").output
    assert out.splitlines()[-1] == "01 00 00 00"
    r = cli("getnext", "pinned", "/sys/fs/bpf/m", "key", "1", "0", "0", "0", ok=False)
    assert r.exit_code == 1 and "can't get next key" in r.output
    cli("delete", "pinned", "/sys/fs/bpf/m", "key", "1", "0", "0", "0")
    r = cli("delete", "pinned", "/sys/fs/bpf/m", "key", "1", "0", "0", "0", ok=False)
    assert r.exit_code == 1 and "No such file or directory" in r.output


def test_update_flags_and_pin(bpffs):
    cli("create", "/sys/fs/bpf/a", "type", "array", "key", "4", "value", "4", "entries", "2")
    r = cli("update", "pinned", "/sys/fs/bpf/a", "key", "0", "0", "0", "0", "value", "1", "0", "0", "0",
            "noexist", ok=False)
    assert r.exit_code == 1 and "File exists" in r.output
    cli("pin", "pinned", "/sys/fs/bpf/a", "/sys/fs/bpf/b")
    with Map.from_pinned("/sys/fs/bpf/a") as a, Map.from_pinned("/sys/fs/bpf/b") as b:
        assert a.id == b.id
    mid = Map.from_pinned("/sys/fs/bpf/a").id
    assert "key: 00 00 00 00" in cli("dump", "id", str(mid)).output


def test_percpu_dump(bpffs):
    from pybpf.maps import ncpus
    cli("create", "/sys/fs/bpf/pc", "type", "percpu_array", "key", "4", "value", "4", "entries", "1")
    out = cli("dump", "pinned", "/sys/fs/bpf/pc").output
    assert "value (CPU 00): 00 00 00 00" in out
    j = json.loads(cli("dump", "pinned", "/sys/fs/bpf/pc", "-j").output)
    assert len(j[0]["values"]) == ncpus()


@pytest.mark.parametrize("args,msg", [
    (["create", "/sys/fs/bpf/x", "type", "hash", "key", "4", "value", "8"], "entries not specified"),
    (["create", "/sys/fs/bpf/x", "type", "hash", "key", "0", "value", "8", "entries", "4"], "Invalid argument"),
    (["create", "/sys/fs/bpf/x", "type", "hashy", "key", "4", "value", "8", "entries", "4"], "unknown map type"),
    (["create", "/tmp/x", "type", "hash", "key", "4", "value", "8", "entries", "4"], "Operation not permitted"),
    (["dump", "pinned", "/sys/fs/bpf/missing"], "No such file or directory"),
    (["dump", "wrong"], "expected 'id', 'pinned' or 'name'"),
    (["lookup", "pinned", "/sys/fs/bpf/h", "key", "1", "2"], "key expected 4 bytes got 2"),
    (["lookup", "pinned", "/sys/fs/bpf/h", "key", "zz", "0", "0", "0"], "error parsing byte: zz"),
    (["lookup", "pinned", "/sys/fs/bpf/h", "key", "300", "0", "0", "0"], "error parsing byte"),
    (["update", "pinned", "/sys/fs/bpf/h", "key", "1", "0", "0", "0"], "did not find value"),
])
def test_errors_are_one_line(args, msg):
    cli("create", "/sys/fs/bpf/h", "type", "hash", "key", "4", "value", "4", "entries", "4")
    r = cli(*args, ok=False)
    assert r.exit_code == 1
    assert msg in r.output
    assert "Traceback" not in r.output


def test_executable_end_to_end(bpffs):
    env = dict(os.environ, PYBPF_FS=bpffs)
    exe = shutil.which("pybpf")
    if exe is None:
        pytest.skip("pybpf executable not installed")
    run = lambda *a: subprocess.run([exe, "map", *a], env=env, capture_output=True, text=True, timeout=60)
    r = run("create", "/sys/fs/bpf/e", "type", "array", "key", "4", "value", "8", "entries", "4")
    assert r.returncode == 0, r.stderr
    r = run("update", "pinned", "/sys/fs/bpf/e", "key", "1", "0", "0", "0", "value", "hex",
            "c8", "01", "00", "00", "00", "00", "00", "00")
    assert r.returncode == 0, r.stderr
    r = run("lookup", "pinned", "/sys/fs/bpf/e", "key", "1", "0", "0", "0", "--json")
    assert json.loads(r.stdout)["value"][:2] == ["0xc8", "0x01"]
    r = run("dump", "pinned", "/sys/fs/bpf/nope")
    assert r.returncode == 1 and r.stderr.startswith("pybpf: error:") and len(r.stderr.splitlines()) == 1
