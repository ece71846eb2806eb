"""`pybpf prog load|show|dump|pin`: bpftool's words, pins across processes, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from pybpf import kobj
from pybpf.cli import main
from pybpf.isa import Insn, encode

CLANG = "/usr/lib/llvm-19/bin/clang"


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


def cli(*args, ok=True):
    r = CliRunner().invoke(main, list(args))
    if ok:
        assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    return r


def write(tmp_path, name: str, text: str | bytes) -> str:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(textwrap.dedent(text))
    return str(p)


MAP_PROG = """\
    r1 = map_idx(0) ll
    r0 = 0
    exit
"""


def test_load_show_dump_pin(tmp_path, bpffs):
    cli("map", "create", "/sys/fs/bpf/m", "type", "array", "key", "4", "value", "8", "entries", "1",
        "name", "counts")
    src = write(tmp_path, "p.s", MAP_PROG)
    cli("prog", "load", src, "/sys/fs/bpf/p", "type", "xdp", "map", "idx", "0", "pinned", "/sys/fs/bpf/m",
        "name", "xdp_main")
    r = cli("prog", "show", "pinned", "/sys/fs/bpf/p", "-j")
    e = json.loads(r.output)
    mid = json.loads(cli("map", "show", "pinned", "/sys/fs/bpf/m", "-j").output)["id"]
    assert e["type"] == "xdp" and e["name"] == "xdp_main" and e["map_ids"] == [mid]
    assert e["bytes_xlated"] == 32 and e["gpl_compatible"] and len(e["tag"]) == 16
    assert e["pinned"] == ["/sys/fs/bpf/p"]
    text = cli("prog", "show").output
    assert f"{e['id']}: xdp  name xdp_main  tag {e['tag']}  gpl" in text
    assert f"map_ids {mid}" in text and "xlated 32B  not jited" in text
    dump = cli("prog", "dump", "xlated", "pinned", "/sys/fs/bpf/p").output.splitlines()
    assert dump == [f"   0: (18) r1 = map[id:{mid}]", "   2: (b7) r0 = 0", "   3: (95) exit"]
    cli("prog", "pin", "id", str(e["id"]), "/sys/fs/bpf/p2")
    assert json.loads(cli("prog", "show", "pinned", "/sys/fs/bpf/p2", "-j").output)["id"] == e["id"]
    assert json.loads(cli("prog", "show", "name", "xdp_main", "-j").output)["id"] == e["id"]
    assert json.loads(cli("prog", "show", "tag", e["tag"], "-j").output)["id"] == e["id"]


def test_load_raw_bin(tmp_path):
    path = write(tmp_path, "p.bin", encode([Insn(0xB7, 0, 0, 0, 2), Insn(0x95, 0, 0, 0, 0)]))
    cli("prog", "load", path, "/sys/fs/bpf/raw", "type", "socket_filter", "license", "MIT")
    e = json.loads(cli("prog", "show", "pinned", "/sys/fs/bpf/raw", "-j").output)
    assert e["type"] == "socket_filter" and not e["gpl_compatible"]


@pytest.mark.parametrize("args,msg", [
    (["type", "xdp"], "R0 !read_ok (insn 0)"),
    ([], "give the program type"),
    (["type", "nosuchtype"], "unknown program type"),
    (["type", "xdp", "map", "idx", "0", "pinned", "/sys/fs/bpf/none"], "bpf obj get"),
    (["type", "xdp", "bogus"], "unknown arg bogus"),
    (["type", "xdp", "unprivileged"], "Operation not permitted"),
])
def test_load_errors(tmp_path, args, msg):
    src = write(tmp_path, "bad.s", "exit\n")
    r = cli("prog", "load", src, "/sys/fs/bpf/x", *args, ok=False)
    assert r.exit_code == 1 and msg in r.output
    assert r.output.count("\n") <= 1 and r.output.startswith("pybpf: error:")


def test_load_error_with_log(tmp_path):
    src = write(tmp_path, "bad.s", "exit\n")
    r = cli("prog", "load", src, "/sys/fs/bpf/x", "type", "xdp", "-d", ok=False)
    assert "0: (95) exit" in r.output and "pybpf: error: failed to load program: Permission denied: " \
        "R0 !read_ok (insn 0)" in r.output


def test_missing_map_index(tmp_path):
    src = write(tmp_path, "p.s", MAP_PROG)
    r = cli("prog", "load", src, "/sys/fs/bpf/x", "type", "xdp", ok=False)
    assert "map index 0 is past the end of fd_array" in r.output


def test_asm_syntax_error_names_file_and_line(tmp_path):
    src = write(tmp_path, "syn.s", "r0 = 0\nr0 = frobnicate\nexit\n")
    r = cli("prog", "load", src, "/sys/fs/bpf/x", "type", "xdp", ok=False)
    assert "syn.s:2:" in r.output


def test_pin_and_show_across_processes(tmp_path, bpffs):
    """A process loads and pins, then exits; another finds it by path; its map outlives every fd."""
    env = dict(os.environ, PYBPF_FS=bpffs)
    loader = textwrap.dedent("""
        from pybpf.map import Map
        from pybpf.prog import Program
        m = Map.create("array", 4, 8, 1, name="shared")
        m[0] = (77).to_bytes(8, "little")
        p = Program.load("r1 = map_idx(0) ll\\nr0 = 0\\nexit", "socket_filter", maps=[m], name="cross")
        p.pin("/sys/fs/bpf/cross")
        print(m.id)
    """)
    r = subprocess.run([sys.executable, "-c", loader], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    mid = int(r.stdout)
    show = subprocess.run([sys.executable, "-c", "from pybpf.cli import main; main()", "prog", "show",
                           "pinned", "/sys/fs/bpf/cross", "-j"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert show.returncode == 0, show.stderr
    e = json.loads(show.stdout)
    assert e["name"] == "cross" and e["map_ids"] == [mid]
    reader = textwrap.dedent(f"""
        from pybpf.prog import Program
        with Program.from_pinned("/sys/fs/bpf/cross") as p:
            with p.maps()[{mid}] as m:
                print(int.from_bytes(m[0], "little"))
    """)
    r = subprocess.run([sys.executable, "-c", reader], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "77"


@pytest.mark.skipif(not os.path.exists(CLANG), reason="clang 19 not installed")
def test_load_elf_object(tmp_path):
    c = write(tmp_path, "x.c", """\
        #include <linux/bpf.h>
        #include <bpf/bpf_helpers.h>
        struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, __u64);
                 __uint(max_entries, 1); } hits SEC(".maps");
        SEC("xdp") int count(struct xdp_md *ctx) {
            __u32 k = 0; __u64 *v = bpf_map_lookup_elem(&hits, &k);
            if (v) __sync_fetch_and_add(v, 1);
            return XDP_PASS;
        }
        char LICENSE[] SEC("license") = "GPL";
    """)
    obj = str(tmp_path / "x.o")
    r = subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", c, "-o", obj], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = cli("prog", "load", obj, "/sys/fs/bpf/elf", ok=False)
    assert res.exit_code == 0, res.output
    e = json.loads(cli("prog", "show", "pinned", "/sys/fs/bpf/elf", "-j").output)
    assert e["type"] == "xdp" and e["name"] == "count" and len(e["map_ids"]) == 1
    maps = [h for h in kobj.live_objects() if h["kind"] == "map"]
    assert [h["name"] for h in maps] == ["hits"]


def test_dump_jited_is_a_clear_error(tmp_path):
    src = write(tmp_path, "ok.s", "r0 = 0\nexit\n")
    cli("prog", "load", src, "/sys/fs/bpf/ok", "type", "socket_filter")
    r = cli("prog", "dump", "jited", "pinned", "/sys/fs/bpf/ok", ok=False)
    assert "does not JIT" in r.output


def test_show_unknown_pin(tmp_path):
    r = cli("prog", "show", "pinned", "/sys/fs/bpf/nothing", ok=False)
    assert "bpf obj get (/sys/fs/bpf/nothing)" in r.output


def test_show_of_a_map_pin_is_an_error(tmp_path):
    cli("map", "create", "/sys/fs/bpf/m", "type", "array", "key", "4", "value", "8", "entries", "1")
    r = cli("prog", "show", "pinned", "/sys/fs/bpf/m", ok=False)
    assert "not a program" in r.output


def test_dump_xlated_json(tmp_path):
    cli("map", "create", "/sys/fs/bpf/jm", "type", "array", "key", "4", "value", "8", "entries", "1")
    src = write(tmp_path, "v.s", "r1 = map_idx_value(0, 4) ll\nr0 = 0\nexit\n")
    cli("prog", "load", src, "/sys/fs/bpf/jp", "type", "socket_filter", "map", "idx", "0", "pinned",
        "/sys/fs/bpf/jm")
    mid = json.loads(cli("map", "show", "pinned", "/sys/fs/bpf/jm", "-j").output)["id"]
    items = json.loads(cli("prog", "dump", "xlated", "pinned", "/sys/fs/bpf/jp", "-j", "opcodes").output)
    assert [i["disasm"] for i in items] == [f"(18) r1 = map[id:{mid}][0]+4", "(b7) r0 = 0", "(95) exit"]
    assert items[1]["opcodes"]["code"] == "0xb7"


def test_prog_run_like_bpftool(tmp_path):
    prog = write(tmp_path, "len.s", "r0 = *(u32 *)(r1 + 0)\nexit\n")   # skb->len
    pin = os.path.join(os.environ["PYBPF_FS"], "len")
    cli("prog", "load", prog, pin, "type", "socket_filter")
    pkt = tmp_path / "pkt"
    pkt.write_bytes(bytes(range(64)))
    out = tmp_path / "out"
    r = cli("prog", "run", "pinned", pin, "data_in", str(pkt), "data_out", str(out), "repeat", "3")
    # socket filters see the packet from the network header on: 64 - 14 bytes
    assert r.output.startswith("Return value: 50, duration (average): ")
    assert out.read_bytes()[14:] == bytes(range(14, 64))
    j = json.loads(cli("prog", "run", "pinned", pin, "data_in", str(pkt), "-j").output)
    assert j["retval"] == 50 and j["duration"] >= 0
    bad = cli("prog", "run", "pinned", pin, ok=False)
    assert "expected data_in FILE" in bad.output
    bad = cli("prog", "run", "pinned", pin, "data_in", str(tmp_path / "missing"), ok=False)
    assert "data_in" in bad.output and "No such file" in bad.output
    bad = cli("prog", "run", "pinned", pin, "data_in", str(pkt), "bogus", "1", ok=False)
    assert "unknown keyword 'bogus'" in bad.output
