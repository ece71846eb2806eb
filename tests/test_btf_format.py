"""Map keys and values shown through the object's BTF: every kind a C program declares."""

import os
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from pybpf.loader import read_object
from pybpf.loader.btf import Btf
from pybpf.loader.btf_format import format_value

CLANG = "/usr/lib/llvm-19/bin/clang"
SRC = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <stdbool.h>
enum color { RED = 1, GREEN = 2, BLUE = 40 };
struct flags { unsigned int a:3, b:5; int neg:4; };
union u { __u32 word; __u8 bytes[4]; };
struct rec {
    char name[8];
    __u8 addr[16];
    __s16 delta;
    bool ok;
    enum color c;
    struct flags f;
    union u un;
    __u64 *ptr;
    __u32 small[3];
    float ratio;
    __u32 many[40];
};
struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, __u32); __type(value, struct rec); __uint(max_entries, 4); } recs SEC(".maps");
int counter = 7;
const volatile char greeting[6] = "hello";
SEC("socket") int prog(void *ctx) { return counter + greeting[0]; }
char _license[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def obj(tmp_path_factory):
    if not os.path.exists(CLANG):
        pytest.skip("clang 19 not installed")
    d = tmp_path_factory.mktemp("btf")
    (d / "t.c").write_text(SRC)
    subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                    str(d / "t.c"), "-o", str(d / "t.o")], check=True)
    return read_object(str(d / "t.o"))


def _rec(name=b"bob", many=range(40)):
    return (name.ljust(8, b"\0") + bytes(range(16)) + struct.pack("<h", -5) + b"\x01\0"
            + struct.pack("<I", 40) + struct.pack("<I", 5 | 17 << 3 | (-3 & 0xF) << 8)
            + struct.pack("<I", 0x01020304) + struct.pack("<Q", 0xDEADBEEF) + struct.pack("<3I", 1, 2, 3)
            + struct.pack("<f", 0.5) + struct.pack("<40I", *many) + b"\0" * 4)


def test_struct_with_every_kind(obj):
    d = obj.maps["recs"]
    text = format_value(obj.btf, d.value_type_id, _rec())
    assert text.startswith(
        "{name: 'bob', addr: 000102030405060708090a0b0c0d0e0f, delta: -5, ok: true, c: BLUE, "
        "f: {a: 5, b: 17, neg: -3}, un: {word: 16909060, bytes: [4, 3, 2, 1]}, ptr: 0xdeadbeef, "
        "small: [1, 2, 3], ratio: 0.5, many: [0, 1, 2")
    # long arrays are cut, saying how much was left out
    assert text.endswith("31, ... 8 more]}")
    assert format_value(obj.btf, d.key_type_id, struct.pack("<I", 4000000000)) == "4000000000"


def test_char_arrays_that_are_not_text_show_as_bytes(obj):
    d = obj.maps["recs"]
    assert "name: 626f6200ff000000" in format_value(obj.btf, d.value_type_id, _rec(b"bob\0\xff"))


def test_globals_show_by_variable_name(obj):
    btf = Btf(obj.btf_for_kernel)
    data, rodata = obj.maps["t.data"], obj.maps["t.rodata"]
    assert format_value(btf, data.value_type_id, struct.pack("<i", -7)) == "{counter: -7}"
    assert format_value(btf, rodata.value_type_id, b"hello\0") == "{greeting: 'hello'}"


def test_bytes_the_type_does_not_describe_show_as_hex(obj):
    d = obj.maps["recs"]
    assert format_value(obj.btf, d.value_type_id, b"\x01\x02") == "01 02"
    assert format_value(obj.btf, 10 ** 6, b"\xab") == "ab"


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_bytes_as_any_type_give_text(obj, data):
    tid = data.draw(st.integers(0, len(obj.btf.types) + 2))
    raw = data.draw(st.binary(max_size=300))
    assert isinstance(format_value(obj.btf, tid, raw), str)
