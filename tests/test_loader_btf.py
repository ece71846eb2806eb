"""The BTF reader: every kind, sizes and names, .BTF.ext records, and malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel_oracle import kernel_available
from pybpf.loader import ElfError
from pybpf.loader import btf as B
from pybpf.loader.btf import Btf, parse_btf_ext


class Builder:
    """Writes a BTF blob type by type (ids are handed out in order from 1)."""

    def __init__(self):
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.n = 0

    def s(self, text: str) -> int:
        if not text:
            return 0
        found = self.strings.find(text.encode() + b"\0")
        if found > 0 and self.strings[found - 1] == 0:
            return found
        off = len(self.strings)
        self.strings += text.encode() + b"\0"
        return off

    def add(self, kind: int, name: str, vlen: int, size_or_type: int, extra: bytes = b"",
            kflag: int = 0) -> int:
        self.types += struct.pack("<III", self.s(name), (kflag << 31) | (kind << 24) | vlen,
                                  size_or_type) + extra
        self.n += 1
        return self.n

    def blob(self, *, magic=B.BTF_MAGIC, version=1) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, version, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strings))
        return hdr + bytes(self.types) + bytes(self.strings)


def full_builder() -> tuple[Builder, dict[str, int]]:
    b = Builder()
    ids = {}
    ids["int"] = b.add(B.KIND_INT, "int", 0, 4, struct.pack("<I", (1 << 24) | 32))
    ids["ptr"] = b.add(B.KIND_PTR, "", 0, ids["int"])
    ids["arr"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", ids["int"], ids["int"], 6))
    ids["struct"] = b.add(B.KIND_STRUCT, "pair", 2, 16,
                          struct.pack("<III", b.s("a"), ids["int"], 0) +
                          struct.pack("<III", b.s("b"), ids["ptr"], 64))
    ids["union"] = b.add(B.KIND_UNION, "u", 1, 4, struct.pack("<III", b.s("x"), ids["int"], 0))
    ids["enum"] = b.add(B.KIND_ENUM, "color", 2, 4,
                        struct.pack("<Ii", b.s("RED"), 0) + struct.pack("<Ii", b.s("BLUE"), -1),
                        kflag=1)
    ids["fwd"] = b.add(B.KIND_FWD, "opaque", 0, 0)
    ids["typedef"] = b.add(B.KIND_TYPEDEF, "myint", 0, ids["int"])
    ids["volatile"] = b.add(B.KIND_VOLATILE, "", 0, ids["typedef"])
    ids["const"] = b.add(B.KIND_CONST, "", 0, ids["volatile"])
    ids["restrict"] = b.add(B.KIND_RESTRICT, "", 0, ids["ptr"])
    ids["proto"] = b.add(B.KIND_FUNC_PROTO, "", 1, ids["int"],
                         struct.pack("<II", b.s("ctx"), ids["ptr"]))
    ids["func"] = b.add(B.KIND_FUNC, "main", 1, ids["proto"])
    ids["var"] = b.add(B.KIND_VAR, "counter", 0, ids["const"], struct.pack("<I", 1))
    ids["datasec"] = b.add(B.KIND_DATASEC, ".data", 1, 4, struct.pack("<III", ids["var"], 0, 4))
    ids["float"] = b.add(B.KIND_FLOAT, "double", 0, 8)
    ids["decl_tag"] = b.add(B.KIND_DECL_TAG, "tag", 0, ids["struct"], struct.pack("<i", 1))
    ids["type_tag"] = b.add(B.KIND_TYPE_TAG, "user", 0, ids["int"])
    ids["enum64"] = b.add(B.KIND_ENUM64, "big", 1, 8,
                          struct.pack("<III", b.s("HUGE"), 0xFFFFFFFF, 0xFFFFFFFF), kflag=0)
    ids["arr2"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", ids["arr"], ids["int"], 3))
    return b, ids


def test_every_kind_parses():
    b, ids = full_builder()
    btf = Btf(b.blob())
    assert len(btf) == len(ids) + 1
    kinds = {btf.get(i).kind for i in ids.values()}
    assert kinds == set(range(1, 20))
    st_ = btf.get(ids["struct"])
    assert [(m.name, m.type, m.offset) for m in st_.members] == [("a", 1, 0), ("b", 2, 64)]
    assert btf.get(ids["enum"]).values == [("RED", 0), ("BLUE", -1)]
    assert btf.get(ids["enum64"]).values == [("HUGE", 2**64 - 1)]
    assert btf.get(ids["int"]).bits == 32 and btf.get(ids["int"]).encoding == 1
    assert btf.get(ids["arr"]).nelems == 6
    assert btf.get(ids["var"]).linkage == 1
    assert btf.get(ids["decl_tag"]).component_idx == 1
    assert btf.get(ids["datasec"]).members[0].size == 4
    assert btf.find("pair", B.KIND_STRUCT).id == ids["struct"]
    assert btf.find("pair", B.KIND_UNION) is None


@pytest.mark.parametrize("key, size", [
    ("int", 4), ("ptr", 8), ("arr", 24), ("struct", 16), ("union", 4), ("enum", 4),
    ("typedef", 4), ("const", 4), ("restrict", 8), ("var", 4), ("datasec", 4), ("float", 8),
    ("type_tag", 4), ("enum64", 8), ("arr2", 72),
])
def test_sizes(key, size):
    b, ids = full_builder()
    assert Btf(b.blob()).size_of(ids[key]) == size


@pytest.mark.parametrize("key, name", [
    ("int", "int"), ("ptr", "int *"), ("arr", "int[6]"), ("struct", "struct pair"),
    ("union", "union u"), ("enum", "enum color"), ("fwd", "struct opaque"), ("typedef", "myint"),
    ("const", "const volatile myint"), ("arr2", "int[6][3]"), ("float", "double"),
])
def test_type_names(key, name):
    b, ids = full_builder()
    assert Btf(b.blob()).type_name(ids[key]) == name


@pytest.mark.parametrize("key", ["fwd", "func", "proto", "decl_tag"])
def test_sizeless_types_are_errors(key):
    b, ids = full_builder()
    with pytest.raises(ElfError, match="has no size"):
        Btf(b.blob()).size_of(ids[key])


@pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available")
def test_kernel_accepts_the_test_blob():
    """Our builder writes real BTF: the kernel's own checker agrees."""
    from test_loader_support import kernel_btf_load
    import os
    b, _ = full_builder()
    fd, err, log = kernel_btf_load(b.blob())
    assert fd >= 0, log
    os.close(fd)


def test_loops_and_bad_ids_are_errors_not_hangs():
    b = Builder()
    b.add(B.KIND_TYPEDEF, "a", 0, 2)
    b.add(B.KIND_TYPEDEF, "b", 0, 1)
    b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", 3, 1, 2))
    btf = Btf(b.blob())
    with pytest.raises(ElfError, match="longer than 32"):
        btf.size_of(1)
    with pytest.raises(ElfError, match="longer than 32"):
        btf.size_of(3)
    assert "..." in btf.type_name(3) or btf.type_name(3)
    with pytest.raises(ElfError, match="type id 99 out of range"):
        btf.get(99)


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d[:10], "truncated header"),
    (lambda d: b"\x00\x00" + d[2:], "bad magic"),
    (lambda d: b"\xeb\x9f" + d[2:], "big-endian BTF"),
    (lambda d: d[:2] + b"\x02" + d[3:], "unsupported version 2"),
    (lambda d: d[:4] + struct.pack("<I", 8) + d[8:], "bad header length 8"),
    (lambda d: d[:12] + struct.pack("<I", 10**6) + d[16:], "beyond the"),
    (lambda d: d[:8] + struct.pack("<I", 2) + d[12:], "not 4-byte aligned"),
])
def test_header_errors(mutate, msg):
    b, _ = full_builder()
    with pytest.raises(ElfError) as ei:
        Btf(mutate(b.blob()), file="x.o")
    assert str(ei.value).startswith("x.o: section '.BTF': ") and msg in str(ei.value)


def test_type_errors():
    b = Builder()
    b.add(25, "weird", 0, 0)
    with pytest.raises(ElfError, match="type id 1: unknown kind 25"):
        Btf(b.blob())
    b = Builder()
    b.add(B.KIND_STRUCT, "s", 3, 4, b"\0" * 12)      # says 3 members, holds 1
    with pytest.raises(ElfError, match=r"type id 1 \(STRUCT 's'\): truncated"):
        Btf(b.blob())
    b = Builder()
    b.types += struct.pack("<III", 999, B.KIND_INT << 24, 4) + b"\0" * 4
    with pytest.raises(ElfError, match="string offset 999 beyond"):
        Btf(b.blob())


def _ext(func_recs, line_recs, strings: Builder, rec_f=8, rec_l=16):
    sec = strings.s("xdp")
    f = struct.pack("<I", rec_f)
    if func_recs:
        f += struct.pack("<II", sec, len(func_recs)) + b"".join(
            struct.pack("<II", *r) + b"\0" * (rec_f - 8) for r in func_recs)
    ln = struct.pack("<I", rec_l)
    if line_recs:
        ln += struct.pack("<II", sec, len(line_recs)) + b"".join(
            struct.pack("<IIII", *r) + b"\0" * (rec_l - 16) for r in line_recs)
    hdr = struct.pack("<HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, len(f), len(f), len(ln))
    return hdr + f + ln


def test_btf_ext_records():
    b, ids = full_builder()
    fname, src = b.s("prog.c"), b.s("return 0;")
    ext = _ext([(0, ids["func"])], [(0, fname, src, (7 << 10) | 3), (16, fname, src, 8 << 10)], b)
    btf = Btf(b.blob())
    e = parse_btf_ext(ext, btf)
    assert [(f.insn_off, f.name) for f in e.funcs["xdp"]] == [(0, "main")]
    assert [(x.insn_off, x.file, x.source, x.line, x.col) for x in e.lines["xdp"]] == [
        (0, "prog.c", "return 0;", 7, 3), (16, "prog.c", "return 0;", 8, 0)]
    # bigger records (a newer producer) are read by their known prefix
    e = parse_btf_ext(_ext([(0, ids["func"])], [], b, rec_f=12), btf)
    assert e.funcs["xdp"][0].type_id == ids["func"]


@pytest.mark.parametrize("cut, msg", [(10, "truncated header"), (30, "beyond the end")])
def test_btf_ext_errors(cut, msg):
    b, ids = full_builder()
    ext = _ext([(0, ids["func"])], [], b)
    with pytest.raises(ElfError, match=msg) as ei:
        parse_btf_ext(ext[:cut], Btf(b.blob()), file="y.o")
    assert "section '.BTF.ext'" in str(ei.value)
    bad = _ext([(0, 4242)], [], b)
    with pytest.raises(ElfError, match="type id 4242 out of range"):
        parse_btf_ext(bad, Btf(b.blob()))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 2**16))
def test_random_type_sections(noise, split):
    """Arbitrary type bytes: ElfError or types whose every query answers or raises ElfError."""
    b, _ = full_builder()
    cut = split % (len(b.types) + 1)
    b.types = bytearray(b.types[:cut] + noise)
    try:
        btf = Btf(b.blob())
    except ElfError:
        return
    for tid in range(1, len(btf)):
        for query in (btf.type_name, btf.size_of, btf.skip_modifiers):
            try:
                query(tid)
            except ElfError:
                pass
