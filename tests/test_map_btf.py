"""Maps with BTF: Map.create(btf=...), the type ids and the BTF a map holds, pybpf.load()
passing the object's BTF, and `pybpf map dump/lookup/show` printing values by type as
bpftool does (its btf_dumper tree, its json_writer layout)."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import struct
import subprocess

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

import pybpf
from pybpf import kobj
from pybpf.cli import main
from pybpf.loader.btf import Btf
from pybpf.loader.btf_format import JsonWriter, Obj, Raw, format_value, value_tree
from pybpf.map import Map
from pybpf.syscall.btf import btf_load

from btf_map_blobs import BLOB, IDS as I

pytestmark = pytest.mark.usefixtures("bpffs")
CLANG = "/usr/lib/llvm-19/bin/clang"
BTF = Btf(BLOB)


def cli(*args, ok=True):
    r = CliRunner().invoke(main, ["map", *args])
    if ok:
        assert r.exit_code == 0, (r.output, r.exception)
    return r


@pytest.fixture
def btf_fd():
    fd, _ = btf_load(BLOB)
    yield fd
    os.close(fd)


def _rec(name=b"bob", color=40, ptr=0xDEAD):
    return (name.ljust(16, b"\0") + bytes([1, 2, 3, 4, 5, 255]) + struct.pack("<h", -5) + b"\x01"
            + b"A" + b"\0\0" + struct.pack("<I", color)
            + struct.pack("<I", 5 | 17 << 3 | (-3 & 0xF) << 8) + struct.pack("<I", 0x01020304)
            + struct.pack("<Q", ptr) + b"\0" * 16)


# -- Map API -------------------------------------------------------------------------------

def test_map_with_btf_reports_ids_and_btf(btf_fd):
    with Map.create("hash", 4, 64, 8, btf=btf_fd, btf_key_type_id=I["u32"],
                    btf_value_type_id=I["rec"]) as m:
        assert (m.btf_key_type_id, m.btf_value_type_id) == (I["u32"], I["rec"])
        assert m.btf_id and m.info()["btf_id"] == m.btf_id
        assert m.btf().type_name(m.btf_value_type_id) == "struct rec"
        fd = m.btf_fd()
        try:
            assert kobj.obj_from_fd(fd).id == m.btf_id
        finally:
            os.close(fd)


def test_map_without_btf_has_none():
    with Map.create("array", 4, 8, 2) as m:
        assert (m.btf_id, m.btf_key_type_id, m.btf_value_type_id) == (0, 0, 0)
        assert m.btf() is None and m.btf_fd() is None and "btf_id" not in m.info()


def test_map_keeps_btf_after_its_fd_is_closed(bpffs):
    fd, _ = btf_load(BLOB)
    m = Map.create("array", 4, 8, 2, btf=fd, btf_key_type_id=I["u32"], btf_value_type_id=I["u64"])
    os.close(fd)
    kobj.gc()
    m.pin("/sys/fs/bpf/m")
    m.close()
    kobj.gc()
    with Map.from_pinned("/sys/fs/bpf/m") as again:
        assert again.btf().type_name(again.btf_value_type_id) == "long long unsigned int"


@pytest.mark.parametrize("kw, code, words", [
    (dict(btf_key_type_id=I["u32"], btf_value_type_id=I["pair"]), errno.EINVAL, "has size 8"),
    (dict(btf_key_type_id=I["u64"], btf_value_type_id=I["rec"]), errno.EINVAL, "key_size"),
    (dict(btf_key_type_id=999, btf_value_type_id=I["rec"]), errno.EINVAL, "not a type with a size"),
    (dict(btf_key_type_id=I["func"], btf_value_type_id=I["rec"]), errno.EINVAL, "not a type"),
    (dict(btf_key_type_id=I["u32"], btf_value_type_id=0), errno.EINVAL, "without btf_value_type_id"),
])
def test_bad_type_ids_are_errnos(btf_fd, kw, code, words):
    with pytest.raises(OSError) as e:
        Map.create("hash", 4, 64, 8, btf=btf_fd, **kw)
    assert e.value.errno == code and words in str(e.value)


def test_btf_that_is_not_a_btf_object():
    with Map.create("array", 4, 4, 1) as other:
        with pytest.raises(OSError) as e:
            Map.create("hash", 4, 8, 8, btf=other, btf_key_type_id=I["u32"], btf_value_type_id=I["u64"])
        assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        Map.create("hash", 4, 8, 8, btf_key_type_id=I["u32"], btf_value_type_id=I["u64"])
    assert e.value.errno == errno.EBADF


def test_array_key_must_be_u32(btf_fd):
    with pytest.raises(OSError) as e:
        Map.create("array", 4, 8, 2, btf=btf_fd, btf_key_type_id=I["enum"], btf_value_type_id=I["u64"])
    assert e.value.errno == errno.EINVAL and "32-bit integer" in str(e.value)


def test_bpf_info_reports_btf(btf_fd):
    with Map.create("hash", 4, 8, 8, btf=btf_fd, btf_key_type_id=I["u32_t"],
                    btf_value_type_id=I["pair"]) as m:
        buf = ctypes.create_string_buffer(104)
        attr = (ctypes.c_uint64 * 2)(m.fd | 104 << 32, ctypes.addressof(buf))
        pybpf.bpf(15, attr, 16)
        assert struct.unpack_from("<3I", buf.raw, 64) == (m.btf_id, I["u32_t"], I["pair"])


# -- the tree bpftool's btf_dumper gives ------------------------------------------------------

def test_value_tree_struct_of_every_kind():
    plain = value_tree(BTF, I["rec"], _rec(), plain=True)
    assert isinstance(plain, Obj)
    d = dict(plain)
    assert d["name"] == "bob" and d["addr"] == [1, 2, 3, 4, 5, 255] and d["delta"] == -5
    assert d["ok"] is True and d["c"] == "A" and d["color"] == "BLUE"
    assert dict(d["f"]) == {"a": "0x5", "b": "0x11", "neg": "0xd"}
    assert isinstance(dict(d["f"])["a"], Raw)
    assert dict(d["un"]) == {"word": 0x01020304, "bytes": [4, 3, 2, 1]}
    assert d["ptr"] == "0xdead" and isinstance(d["ptr"], Raw)
    j = dict(value_tree(BTF, I["rec"], _rec(), plain=False))
    assert j["ptr"] == 0xDEAD and j["f"] == Obj([("a", "0x5"), ("b", "0x11"), ("neg", "0xd")])
    assert not isinstance(dict(j["f"])["a"], Raw)


def test_value_tree_scalars():
    assert value_tree(BTF, I["rec"], _rec(ptr=0), plain=True)[-1] == ("ptr", "(nil)")
    assert value_tree(BTF, I["rec"], _rec(color=7), plain=True)[5] == ("color", 7)
    assert value_tree(BTF, I["u128"], (1 << 100 | 5).to_bytes(16, "little"), plain=True) == \
        "0x10000000000000000000000005"
    assert value_tree(BTF, I["u128"], (9).to_bytes(16, "little"), plain=False) == "0x9"
    assert value_tree(BTF, I["enum64"], b"\xff" * 8, plain=True) == "HUGE"
    assert value_tree(BTF, I["enum64"], b"\xfe" + b"\xff" * 7, plain=True) == -2
    assert value_tree(BTF, I["ch"], b"\x07", plain=True) == Raw("0x7")
    assert value_tree(BTF, I["ch"], b"\x07", plain=False) == "\x07"
    assert value_tree(BTF, I["s64"], struct.pack("<q", -1), plain=True) == -1
    assert value_tree(BTF, I["u24"], b"\x01\x02\x03\x00", plain=True) == Raw("0x30201")


def test_value_tree_char_arrays():
    # text when NUL-terminated and printable, else the bytes as numbers (char is signed)
    assert value_tree(BTF, I["name"], b"hi\0".ljust(16, b"\0"), plain=True) == "hi"
    assert value_tree(BTF, I["name"], b"x" * 16, plain=True) == [120] * 16
    assert value_tree(BTF, I["name"], b"\xff" + b"\0" * 15, plain=True) == [-1] + [0] * 15


def test_value_tree_globals_and_typedefs():
    raw = struct.pack("<QI", 7, 9) + b"\0" * 4
    assert value_tree(BTF, I["datasec"], raw, plain=True) == \
        Obj([(".data", [Obj([("counter", 7)]), Obj([("limit", 9)])])])
    assert value_tree(BTF, I["const_u32"], b"\1\0\0\0", plain=True) == 1


def test_value_tree_bytes_the_type_does_not_describe_are_hex():
    assert value_tree(BTF, I["pair"], b"\1\2", plain=True) == [Raw("0x01"), Raw("0x02")]
    assert value_tree(BTF, 0, b"\1", plain=False) == ["0x01"]
    assert value_tree(BTF, 10**6, b"", plain=True) == []
    assert value_tree(BTF, I["func"], b"\1\2\3\4", plain=True)[0] == "0x01"


@settings(max_examples=200, deadline=None)
@given(tid=st.integers(0, len(I) + 2), data=st.binary(max_size=80), plain=st.booleans())
def test_value_tree_never_raises(tid, data, plain):
    w = JsonWriter(pretty=plain)
    w.value(value_tree(BTF, tid, data, plain=plain))
    text = w.text()
    if not plain:
        json.loads(text)


def test_run_text_unchanged():
    # pybpf run's text form is not the bpftool tree
    assert format_value(BTF, I["pair"], struct.pack("<II", 18, 1724)) == "{packets: 18, bytes: 1724}"


def test_json_writer_layout_is_bpftools():
    w = JsonWriter(pretty=True)
    w.value([Obj([("key", 0), ("value", Obj([("a", [1, 2]), ("b", Obj())]))]),
             Obj([("key", 1), ("value", "x\"y")])])
    assert w.text() == ('[{\n        "key": 0,\n        "value": {\n            "a": [1,2\n'
                        '            ],\n            "b": {}\n        }\n    },{\n'
                        '        "key": 1,\n        "value": "x\\"y"\n    }\n]\n')
    w = JsonWriter(pretty=False)
    w.value([Obj([("key", 0), ("value", [1])])])
    assert w.text() == '[{"key":0,"value":[1]}]\n'
    w = JsonWriter(pretty=True)
    w.value([])
    assert w.text() == "[]\n"


# -- the CLI --------------------------------------------------------------------------------

def _pinned(btf_fd, map_type="hash", key=(4, "u32"), value=(8, "pair"), entries=4):
    m = Map.create(map_type, key[0], value[0], entries, btf=btf_fd, btf_key_type_id=I[key[1]] if key[1] else 0,
                   btf_value_type_id=I[value[1]])
    m.pin("/sys/fs/bpf/m")
    return m


def test_cli_dump_plain_by_type(btf_fd):
    with _pinned(btf_fd) as m:
        m[3] = struct.pack("<II", 18, 1724)
        m[5] = struct.pack("<II", 1, 2)
        out = cli("dump", "pinned", "/sys/fs/bpf/m").output
    first, second = ('{\n        "key": 3,\n        "value": {\n            "packets": 18,\n'
                     '            "bytes": 1724\n        }\n    }',
                     '{\n        "key": 5,\n        "value": {\n            "packets": 1,\n'
                     '            "bytes": 2\n        }\n    }')
    assert out in (f"[{first},{second}\n]\n", f"[{second},{first}\n]\n")


def test_cli_dump_json_has_formatted(btf_fd):
    with _pinned(btf_fd) as m:
        m[3] = struct.pack("<II", 18, 1724)
        out = cli("dump", "pinned", "/sys/fs/bpf/m", "-j").output
        pretty = cli("dump", "pinned", "/sys/fs/bpf/m", "-p").output
    assert out == ('[{"key":["0x03","0x00","0x00","0x00"],"value":["0x12","0x00","0x00","0x00",'
                   '"0xbc","0x06","0x00","0x00"],"formatted":{"key":3,"value":{"packets":18,"bytes":1724}}}]\n')
    assert json.loads(pretty) == json.loads(out) and "\n" in pretty.strip()


def test_cli_dump_empty_and_struct_with_text(btf_fd):
    with _pinned(btf_fd, value=(64, "rec")) as m:
        assert cli("dump", "pinned", "/sys/fs/bpf/m").output == "[]\n"
        m[1] = _rec(name=b"hello")
        out = cli("dump", "pinned", "/sys/fs/bpf/m").output
        j = json.loads(cli("dump", "pinned", "/sys/fs/bpf/m", "-j").output)
    assert '"name": "hello",' in out and '"color": "BLUE",' in out and '"ptr": 0xdead' in out
    assert '"a": 0x5,' in out
    f = j[0]["formatted"]["value"]
    assert f["name"] == "hello" and f["ptr"] == 0xDEAD and f["f"] == {"a": "0x5", "b": "0x11", "neg": "0xd"}


def test_cli_dump_percpu_and_keyless_global(btf_fd):
    with _pinned(btf_fd, "percpu_array", value=(8, "u64"), entries=1) as m:
        n = pybpf.maps.ncpus()
        m[0] = list(range(n))
        j = json.loads(cli("dump", "pinned", "/sys/fs/bpf/m", "-j").output)
        out = cli("dump", "pinned", "/sys/fs/bpf/m").output
    assert j[0]["formatted"] == {"key": 0, "values": [{"cpu": i, "value": i} for i in range(n)]}
    assert out.startswith('[{\n        "key": 0,\n        "values": [{\n                "cpu": 0,\n'
                          '                "value": 0\n            },{')
    os.unlink(os.path.join(os.environ["PYBPF_FS"], "m"))
    with _pinned(btf_fd, "array", key=(4, None), value=(16, "datasec"), entries=1) as m:
        m[0] = struct.pack("<QI", 7, 9) + b"\0" * 4
        out = cli("dump", "pinned", "/sys/fs/bpf/m").output
    assert out == ('[{\n        "value": {\n            ".data": [{\n                    "counter": 7\n'
                   '                },{\n                    "limit": 9\n                }\n'
                   '            ]\n        }\n    }\n]\n')


def test_cli_lookup_by_type(btf_fd):
    with _pinned(btf_fd, "array") as m:
        m[2] = struct.pack("<II", 3, 4)
        out = cli("lookup", "pinned", "/sys/fs/bpf/m", "key", "2", "0", "0", "0").output
        j = json.loads(cli("lookup", "pinned", "/sys/fs/bpf/m", "key", "2", "0", "0", "0", "-j").output)
    assert out == '{\n    "key": 2,\n    "value": {\n        "packets": 3,\n        "bytes": 4\n    }\n}\n'
    assert j["formatted"] == {"key": 2, "value": {"packets": 3, "bytes": 4}}
    assert j["key"] == ["0x02", "0x00", "0x00", "0x00"]


def test_cli_show_btf_id(btf_fd):
    with _pinned(btf_fd) as m:
        out = cli("show", "pinned", "/sys/fs/bpf/m").output
        j = json.loads(cli("show", "pinned", "/sys/fs/bpf/m", "-j").output)
        assert out.splitlines()[-1] == f"\tbtf_id {m.btf_id}"
        assert j["btf_id"] == m.btf_id and list(j)[-2:] == ["btf_id", "pinned"]


def test_cli_dump_without_btf_unchanged():
    with Map.create("array", 4, 4, 1) as m:
        m.pin("/sys/fs/bpf/plain")
        assert cli("dump", "pinned", "/sys/fs/bpf/plain").output == \
            "key: 00 00 00 00  value: 00 00 00 00\nFound 1 element\n"


# -- pybpf.load --------------------------------------------------------------------------------

SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
struct stats { __u64 packets; __u64 bytes; char label[8]; };
struct locked { struct bpf_spin_lock lock; __u32 v; };
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, struct stats);
         __uint(max_entries, 8); __uint(pinning, LIBBPF_PIN_BY_NAME); } stats SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_ARRAY); __type(key, __u32); __type(value, struct locked);
         __uint(max_entries, 1); } locks SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY); __uint(key_size, 4); __uint(value_size, 4); } events SEC(".maps");
__u64 hits = 3;
SEC("socket") int prog(void *ctx) {
    __u32 k = 0;
    struct stats *s = bpf_map_lookup_elem(&stats, &k);
    if (s) s->packets++;
    return hits;
}
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def obj_path(tmp_path_factory):
    if not os.access(CLANG, os.X_OK):
        pytest.skip("clang 19 not installed")
    d = tmp_path_factory.mktemp("mapbtf")
    (d / "t.c").write_text(SRC)
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    str(d / "t.c"), "-o", str(d / "t.o")], check=True)
    return str(d / "t.o")


def test_load_passes_btf_and_dump_prints_field_names(obj_path):
    with pybpf.load(obj_path) as obj:
        stats = obj.maps["stats"]
        btf = stats.btf()
        assert btf.type_name(stats.btf_value_type_id) == "struct stats"
        assert btf.type_name(stats.btf_key_type_id) == "__u32"
        assert stats.btf_id == kobj.obj_from_fd(obj.btf_fd).id
        stats[0] = struct.pack("<QQ", 5, 600) + b"eth0\0\0\0\0"
        # the .bss/.data global section: key-less, its DATASEC as value
        data = [m for n, m in obj.maps.items() if n.endswith(".data")][0]
        assert data.btf_key_type_id == 0 and btf.get(data.btf_value_type_id).name == ".data"
        # libbpf creates fd maps without BTF, and retries without it where it is refused
        assert obj.maps["events"].btf_id == 0
        assert obj.maps["locks"].btf_id == 0 and "bpf_spin_lock" in obj.map_btf_errors["locks"]
        out = cli("dump", "pinned", "/sys/fs/bpf/stats").output
        assert out == ('[{\n        "key": 0,\n        "value": {\n            "packets": 5,\n'
                       '            "bytes": 600,\n            "label": "eth0"\n        }\n    }\n]\n')
        r = CliRunner().invoke(main, ["map", "dump", "id", str(data.id)])
        assert '"hits": 3' in r.output


def test_load_without_btf_when_btf_is_refused(obj_path, monkeypatch):
    from pybpf import object as O
    from pybpf.syscall import btf as SB

    def refuse(data, **kw):
        raise SB.BtfError(errno.EINVAL, "refused")
    monkeypatch.setattr(SB, "btf_load", refuse)
    with O.load(obj_path) as obj:
        assert obj.btf_fd == -1 and obj.btf_error
        assert all(m.btf_id == 0 for m in obj.maps.values())


# -- bad input: errnos and one-line CLI errors --------------------------------------------------

def test_garbage_btf_and_ids_never_traceback(btf_fd):
    with pytest.raises(OSError) as e:
        btf_load(b"\x9f\xeb\x01\x00garbage")
    assert e.value.errno == errno.EINVAL
    for kid, vid in ((0xFFFFFFFF, 1), (1, 0xFFFFFFFF), (I["fwd"], I["u64"]), (I["u32"], I["decl_tag"])):
        with pytest.raises(OSError) as e:
            Map.create("hash", 4, 8, 4, btf=btf_fd, btf_key_type_id=kid, btf_value_type_id=vid)
        assert e.value.errno == errno.EINVAL
    r = cli("dump", "pinned", "/sys/fs/bpf/nothing", ok=False)
    assert r.exit_code == 1 and len(r.output.strip().splitlines()) == 1
