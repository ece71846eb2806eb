"""The object reader on real clang 19 objects: maps, globals, programs, calls, relocations.

Differential checks: instruction bytes and relocations against llvm-objdump 19,
and the host kernel accepting (and correctly running) what we read and linked.
"""

from __future__ import annotations

import ctypes
import os
import re
import struct

import pytest

from kernel_oracle import kernel_available, sys_bpf
from test_loader_support import (KernelObject, _u32, _u64, compile_c, have_clang, objdump)
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, decode, imm64
from pybpf.loader import ElfError, read_object, resolve
from pybpf.loader.spec import (BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, KIND_BSS, KIND_DATA,
                               KIND_LEGACY, KIND_RODATA, PIN_BY_NAME, PIN_NONE, RELOC_MAP_FD,
                               RELOC_MAP_VALUE)

pytestmark = pytest.mark.skipif(not have_clang(), reason="clang 19 not installed")

SOURCES = ["loader_btf_maps.c", "loader_legacy.c", "loader_globals.c", "loader_calls.c",
           "loader_sections.c", "loader_strings.c"]


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("loader_objs")
    cache = {}

    def get(src: str, **defines) -> str:
        key = (src, tuple(sorted(defines.items())))
        if key not in cache:
            cache[key] = compile_c(src, out, defines={k: str(v) for k, v in defines.items()})
        return cache[key]
    return get


# --- maps --------------------------------------------------------------------------------------

def test_btf_maps_attributes(build):
    spec = read_object(build("loader_btf_maps.c"))
    m = spec.maps
    h = m["pinned_hash"]
    assert (h.type, h.key_size, h.value_size, h.max_entries) == (1, 4, 16, 128)
    assert h.map_flags == 1 and h.pinning == PIN_BY_NAME
    assert h.key_type == "__u32" and h.value_type == "struct pair"
    assert h.pin_path() == "/sys/fs/bpf/pinned_hash"
    assert h.pin_path("/mnt/bpf/") == "/mnt/bpf/pinned_hash"
    a = m["sized_array"]
    assert (a.type, a.key_size, a.value_size, a.max_entries, a.pinning) == (2, 4, 16, 8, PIN_NONE)
    assert a.key_type is None and a.pin_path() is None
    p = m["percpu"]
    assert (p.type, p.key_size, p.value_size, p.max_entries) == (6, 4, 8, 4)
    assert p.value_type == "long"
    r = m["events"]
    assert (r.type, r.key_size, r.value_size, r.max_entries) == (27, 0, 0, 4096)
    o = m["outer"]
    assert (o.type, o.key_size, o.value_size, o.max_entries) == (12, 4, 4, 3)
    assert o.inner is not None and o.inner.name == "outer.inner"
    assert (o.inner.type, o.inner.key_size, o.inner.value_size, o.inner.max_entries) == (2, 4, 8, 2)
    assert o.init_slots == {0: "inner_a", 2: "inner_b"}
    j = m["jumps"]
    assert (j.type, j.key_size, j.value_size) == (3, 4, 4)
    assert j.init_slots == {1: "tail_target"}
    assert all(x.kind == "btf" and x.section == ".maps" for x in m.values())
    assert spec.license == "Dual BSD/GPL" and spec.kern_version == 0


@pytest.mark.parametrize("words", [4, 5, 6, 7])
def test_legacy_maps_every_size(build, words):
    spec = read_object(build("loader_legacy.c", MAPDEF_WORDS=words))
    c, t = spec.maps["counters"], spec.maps["table"]
    assert (c.type, c.key_size, c.value_size, c.max_entries, c.map_flags) == (2, 4, 8, 16, 0)
    assert (t.type, t.key_size, t.value_size, t.max_entries) == (1, 8, 4, 1024)
    assert t.map_flags == (1 if words > 4 else 0)
    assert c.kind == KIND_LEGACY and c.section == "maps"
    assert t.section_offset == 4 * words
    if words > 5:
        outer = spec.maps["outer"]
        assert outer.type == 12 and outer.inner is not None
        assert (outer.inner.type, outer.inner.key_size, outer.inner.value_size) == (2, 4, 8)
    else:
        assert "outer" not in spec.maps
    assert spec.license == "GPL" and spec.kern_version == 0x050A00
    prog = spec.programs["count"]
    assert [(r.map, r.kind) for r in prog.relocs] == [("counters", RELOC_MAP_FD),
                                                      ("table", RELOC_MAP_FD)]


def test_global_data_maps(build):
    spec = read_object(build("loader_globals.c"))
    d, ro, bss = spec.maps["loader_g.data"], spec.maps["loader_g.rodata"], spec.maps["loader_g.bss"]
    assert d.kind == KIND_DATA and ro.kind == KIND_RODATA and bss.kind == KIND_BSS
    for m in (d, ro, bss):
        assert (m.type, m.key_size, m.max_entries) == (2, 4, 1)
        assert m.map_flags & BPF_F_MMAPABLE
        assert m.value_size == len(m.data)
    assert ro.map_flags & BPF_F_RDONLY_PROG and ro.frozen
    assert not d.frozen and not d.map_flags & BPF_F_RDONLY_PROG
    assert struct.unpack_from("<i", d.data, d.variables["counter"][0])[0] == 41
    assert struct.unpack_from("<q", d.data, d.variables["hidden"][0])[0] == -2
    assert struct.unpack_from("<I", ro.data, ro.variables["threshold"][0])[0] == 1000
    off, size = ro.variables["tag"]
    assert ro.data[off:off + size] == b"pybpf\0\0\0"
    assert bss.data == bytes(bss.value_size) and set(bss.variables) == {"hits", "misses"}
    custom = spec.maps[".data.custom"]
    assert struct.unpack("<i", custom.data)[0] == 0x1234
    assert d.value_type == ".data" and d.value_type_id > 0
    # every global access becomes a map-value reference at the variable's offset
    relocs = spec.programs["globals"].relocs
    assert all(r.kind == RELOC_MAP_VALUE for r in relocs)
    targets = {(r.map, r.offset) for r in relocs}
    expect = {("loader_g.data", d.variables["counter"][0]), ("loader_g.data", d.variables["hidden"][0]),
              (".data.custom", 0), ("loader_g.rodata", ro.variables["threshold"][0]),
              ("loader_g.rodata", ro.variables["tag"][0]), ("loader_g.bss", bss.variables["hits"][0]),
              ("loader_g.bss", bss.variables["misses"][0])}
    assert targets == expect


@pytest.mark.parametrize("path_name, given, prefix", [
    ("loader_globals.o", None, "loader_g"),
    ("x.bpf.o", None, "x"),
    ("averyveryverylongname.bpf.o", None, "averyver"),
    ("whatever.o", "obj", "obj"),
])
def test_global_map_names_follow_libbpf(build, tmp_path, path_name, given, prefix):
    data = open(build("loader_globals.c"), "rb").read()
    path = tmp_path / path_name
    path.write_bytes(data)
    spec = read_object(path, name=given)
    names = set(spec.maps)
    assert {f"{prefix}.data", f"{prefix}.rodata", f"{prefix}.bss", ".data.custom"} == names
    assert all(len(n) <= 15 for n in names)


def test_string_literals_and_merged_constants(build):
    spec = read_object(build("loader_strings.c"))
    assert set(spec.maps) == {"loader_s.rodata", "loader_s.bss", ".rodata.str1.1", ".rodata.cst16"}
    strs = spec.maps[".rodata.str1.1"]
    assert strs.data == b"hello from pybpf\0" and strs.frozen
    assert struct.unpack("<4i", spec.maps[".rodata.cst16"].data) == (3, 1, 4, 1)
    fmt = spec.maps["loader_s.rodata"]
    offsets = {r.offset for r in spec.programs["strings"].relocs if r.map == fmt.name}
    assert {fmt.data[o:].split(b"\0")[0] for o in offsets} == {b"len=%d", b"mark=%d table=%d"}


ULONG_MAP = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#define __ulong(name, val) enum { ___pybpf_##name = val } name
struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__type(value, __u32);
	__uint(max_entries, 64);
	__ulong(map_extra, 3);
} bloom SEC(".maps");
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(max_entries, 2);
} perf SEC(".maps");
SEC("xdp") int p(void *ctx) { return 2; }
"""


def test_ulong_attributes_and_defaults(tmp_path):
    spec = read_object(compile_c(ULONG_MAP, tmp_path, name="ulong"))
    b = spec.maps["bloom"]
    assert (b.type, b.key_size, b.value_size, b.max_entries, b.map_extra) == (30, 0, 4, 64, 3)
    p = spec.maps["perf"]
    assert (p.key_size, p.value_size) == (4, 4)      # libbpf's defaults for perf event arrays
    assert spec.license == "" and spec.kern_version == 0


def test_read_from_bytes(build):
    data = open(build("loader_globals.c"), "rb").read()
    a = read_object(data, name="mem")
    b = read_object(build("loader_globals.c"))
    assert a.path is None and "mem.data" in a.maps
    assert a.programs["globals"].insns == b.programs["globals"].insns


# --- programs and sections ---------------------------------------------------------------------

EXPECTED_SECTIONS = {
    "p_socket": (1, 0, None), "p_kprobe": (2, 0, "do_unlinkat"),
    "p_kretprobe": (2, 0, "do_unlinkat"), "p_uprobe": (2, 0, "bin:func"),
    "p_tracepoint": (5, 0, "syscalls/sys_enter_openat"), "p_tp": (5, 0, "sched/sched_switch"),
    "p_raw_tracepoint": (17, 0, "sys_enter"), "p_raw_tp": (17, 0, "sys_exit"),
    "p_tc": (3, 0, None), "p_classifier": (3, 0, None), "p_action": (4, 0, None),
    "p_xdp": (6, 37, None), "p_perf_event": (7, 0, None), "p_cg_ingress": (8, 0, None),
    "p_cg_egress": (8, 1, None), "p_connect4": (18, 10, None), "p_sockops": (13, 3, None),
    "p_fentry": (26, 24, "do_unlinkat"), "p_lsm_s": (29, 27, "file_open"),
    "p_tc_legacy": (3, 0, "classifier"), "p_unknown": (0, 0, None),
}


def test_program_types_from_sections(build):
    spec = read_object(build("loader_sections.c"))
    got = {n: (p.prog_type, p.expected_attach_type, p.attach_to) for n, p in spec.programs.items()}
    assert got == EXPECTED_SECTIONS
    assert spec.programs["p_lsm_s"].sleepable and not spec.programs["p_fentry"].sleepable


def test_several_programs_per_section_and_object(build):
    spec = read_object(build("loader_calls.c"))
    assert [n for n, p in spec.programs.items() if p.section == "tc"] == ["first", "second", "third"]
    assert spec.programs["only_xdp"].section == "xdp"
    assert spec.subprograms == ["global_sub", "middle", "leaf", "cb"]
    assert spec.kern_version == 0x060C00 and spec.license == "GPL"


def _call_graph(prog):
    """Follow the linked calls: {caller function: {callee function}} by name."""
    starts = {0: prog.name, **{v: k for k, v in prog.subprograms.items()}}
    bounds = sorted(starts)
    def owner(i):
        return starts[max(b for b in bounds if b <= i)]
    graph = {}
    for i, ins in enumerate(prog.insns):
        is_call = ins.code == op.OP_CALL and ins.src == op.PSEUDO_CALL
        is_func = ins.code == op.LD_IMM64 and ins.src == op.PSEUDO_FUNC
        if is_call or is_func:
            tgt = i + ins.imm + 1
            assert tgt in starts, f"insn {i} of {prog.name} targets {tgt}, not a function start"
            graph.setdefault(owner(i), set()).add(starts[tgt])
    return graph


def test_bpf_to_bpf_calls_are_appended_and_fixed(build):
    spec = read_object(build("loader_calls.c"))
    first, second, third = (spec.programs[n] for n in ("first", "second", "third"))
    assert list(first.subprograms) == ["global_sub", "middle", "leaf"]
    assert _call_graph(first) == {"first": {"global_sub"}, "global_sub": {"middle"},
                                  "middle": {"leaf"}}
    assert list(second.subprograms) == ["leaf"]
    assert _call_graph(second) == {"second": {"leaf"}}
    assert set(third.subprograms) == {"cb", "middle", "leaf"}
    assert _call_graph(third) == {"third": {"cb", "middle"}, "middle": {"leaf"}}
    # every copy of 'leaf' reads 'scale' through its own map-value reference
    for p in (first, second, third):
        leaf = p.subprograms["leaf"]
        assert [r for r in p.relocs if r.insn >= leaf] == [
            r for r in p.relocs if r.map == "loader_c.data"]
    # the callback is referenced by address (BPF_PSEUDO_FUNC)
    funcs = [i for i, x in enumerate(third.insns) if x.code == op.LD_IMM64 and x.src == op.PSEUDO_FUNC]
    assert len(funcs) == 1 and funcs[0] + third.insns[funcs[0]].imm + 1 == third.subprograms["cb"]


def test_linked_copies_match_the_section_code(build):
    """Each appended function is a verbatim copy of its .text code except the fixed slots."""
    path = build("loader_calls.c")
    spec = read_object(path)
    from pybpf.loader.elf import parse_elf
    obj = parse_elf(open(path, "rb").read(), str(path))
    text = decode(obj.section_by_name(".text").data, check=False)
    syms = {s.name: s for s in obj.symbols if s.type == 2}
    for prog in spec.programs.values():
        patched = {r.insn for r in prog.relocs} | {
            i for i, x in enumerate(prog.insns) if x.src in (op.PSEUDO_CALL, op.PSEUDO_FUNC)
            and x.code in (op.OP_CALL, op.LD_IMM64)}
        for name, base in prog.subprograms.items():
            s = syms[name]
            body = text[s.value // 8:(s.value + s.size) // 8]
            for k, ins in enumerate(body):
                if base + k not in patched and base + k - 1 not in patched:
                    assert prog.insns[base + k] == ins


# --- differential: llvm-objdump ----------------------------------------------------------------

_LINE = re.compile(r"^\s*(\d+):\t((?:[0-9a-f]{2} ?)+)")
_REL = re.compile(r"^\s*([0-9a-f]+):\s+(R_BPF_\w+)\s+(\S+)")
_SEC = re.compile(r"^Disassembly of section (.+):$")


def _objdump_sections(text):
    out = {}
    cur = None
    for line in text.splitlines():
        m = _SEC.match(line)
        if m:
            cur = out.setdefault(m.group(1), {"bytes": {}, "relocs": {}})
            continue
        if cur is None:
            continue
        m = _LINE.match(line)
        if m:
            cur["bytes"][int(m.group(1))] = bytes.fromhex(m.group(2).replace(" ", ""))
            continue
        m = _REL.match(line)
        if m:
            cur["relocs"][int(m.group(1), 16) // 8] = (m.group(2), m.group(3))
    return out


@pytest.mark.parametrize("src", SOURCES)
def test_matches_llvm_objdump(build, src):
    path = build(src)
    spec = read_object(path)
    dump = _objdump_sections(objdump(path))
    for prog in spec.programs.values():
        sec = dump[prog.section]
        start = prog.section_offset // 8
        relocated = {i - start for i in sec["relocs"]}
        for k in range(prog.size // 8):
            slot = start + k
            if slot in sec["bytes"]:
                want = sec["bytes"][slot]
                got = prog.insns[k].pack() + (prog.insns[k + 1].pack() if len(want) == 16 else b"")
                if k in relocated or (prog.insns[k].code == op.OP_CALL
                                      and prog.insns[k].src == op.PSEUDO_CALL):
                    assert got[0] == want[0]     # same opcode; offsets/imm are ours to fix
                else:
                    assert got == want, (prog.name, k)
        by_insn = {r.insn: r for r in prog.relocs}
        for slot, (rtype, sym) in sec["relocs"].items():
            k = slot - start
            if not 0 <= k < prog.size // 8:
                continue
            if rtype == "R_BPF_64_32":
                assert prog.insns[k].src == op.PSEUDO_CALL
                continue
            ins = prog.insns[k]
            if ins.src == op.PSEUDO_FUNC:
                continue
            r = by_insn[k]
            if r.kind == RELOC_MAP_FD:
                assert r.map == sym
            else:
                m = spec.maps[r.map]
                assert sym == m.section or sym in m.variables


# --- resolve() ---------------------------------------------------------------------------------

def test_resolve_patches_fds_and_offsets(build):
    spec = read_object(build("loader_globals.c"))
    fds = {name: 100 + i for i, name in enumerate(spec.maps)}
    out = resolve(spec, fds)["globals"]
    prog = spec.programs["globals"]
    assert len(out) == len(prog.insns)
    for r in prog.relocs:
        first, second = out[r.insn], out[r.insn + 1]
        assert first.code == op.LD_IMM64 and first.dst == prog.insns[r.insn].dst
        assert first.imm == fds[r.map]
        assert first.src == (op.PSEUDO_MAP_VALUE if r.kind == RELOC_MAP_VALUE else op.PSEUDO_MAP_FD)
        assert second == Insn(0, 0, 0, 0, r.offset if r.kind == RELOC_MAP_VALUE else 0)
    # untouched elsewhere, and the spec itself is not modified
    patched = {r.insn for r in prog.relocs} | {r.insn + 1 for r in prog.relocs}
    assert all(out[i] == prog.insns[i] for i in range(len(out)) if i not in patched)
    assert all(prog.insns[r.insn].src == 0 for r in prog.relocs)
    with pytest.raises(ElfError, match="map 'loader_g.bss' has no file descriptor"):
        resolve(spec, {k: v for k, v in fds.items() if k != "loader_g.bss"})


def test_legacy_resolve_map_fd(build):
    spec = read_object(build("loader_legacy.c"))
    out = resolve(spec, {"counters": 7, "table": 9})["count"]
    r = spec.programs["count"].relocs[0]
    assert (out[r.insn].src, out[r.insn].imm, imm64(out, r.insn)) == (op.PSEUDO_MAP_FD, 7, 7)


def test_co_re_relocations_are_recorded_and_refused(build):
    spec = read_object(build("loader_core.c"))
    k = spec.programs["k"]
    assert not k.autoload and spec.programs["plain"].autoload
    assert (k.prog_type, k.attach_to, k.section) == (2, "x", "?kprobe/x")
    [c] = k.core_relocs
    assert (c.type_name, c.access, c.kind) == ("struct task_struct", "0:1", 0)
    assert k.insns[c.insn].code & 0x07 in (op.LDX, op.ALU64, op.ALU)   # the access itself
    with pytest.raises(ElfError, match=r"symbol 'k': insn \d+: CO-RE relocation \(field byte "
                                       r"offset of 'struct task_struct', access 0:1\)"):
        resolve(spec, {})
    assert set(resolve(spec, {}, programs=["plain"])) == {"plain"}
    with pytest.raises(ElfError, match="symbol 'nope': no such program"):
        resolve(spec, {}, programs=["nope"])


# --- line info ---------------------------------------------------------------------------------

def test_line_info_points_at_the_source(build):
    spec = read_object(build("loader_btf_maps.c"))
    prog = spec.programs["use_maps"]
    r = prog.relocs[0]
    li = prog.source_of(r.insn)
    assert li is not None and li.file.endswith("loader_btf_maps.c")
    assert "pinned_hash" in li.source and li.line > 0
    assert prog.func_info[0].name == "use_maps" and prog.func_info[0].insn == 0
    calls = read_object(build("loader_calls.c")).programs["first"]
    names = {f.name: f.insn for f in calls.func_info}
    assert names == {"first": 0, **calls.subprograms}
    li = calls.source_of(calls.subprograms["leaf"])
    assert li is not None and "leaf" in li.source or "scale" in li.source


# --- machine, byte order -----------------------------------------------------------------------

def test_em_none_objects_read_like_em_bpf(build):
    data = bytearray(open(build("loader_calls.c"), "rb").read())
    assert struct.unpack_from("<H", data, 18)[0] == 247
    a = read_object(bytes(data), name="x")
    struct.pack_into("<H", data, 18, 0)
    b = read_object(bytes(data), name="x")
    assert b.machine == 0 and a.machine == 247
    assert {n: p.insns for n, p in a.programs.items()} == {n: p.insns for n, p in b.programs.items()}
    assert {n: (m.type, m.value_size, m.data) for n, m in a.maps.items()} == \
        {n: (m.type, m.value_size, m.data) for n, m in b.maps.items()}


def test_big_endian_object_is_rejected(tmp_path):
    path = compile_c("loader_legacy.c", tmp_path, extra=("-target", "bpfeb"))
    with pytest.raises(ElfError, match="big-endian"):
        read_object(path)


# --- differential: the host kernel loads and runs what we read -------------------------------

kernel = pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available")

BPF_MAP_LOOKUP_ELEM, BPF_PROG_TEST_RUN = 1, 10


def _lookup(fd: int, key: bytes, size: int) -> bytes:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(size)
    attr = bytearray(32)
    _u32(attr, 0, fd)
    _u64(attr, 8, ctypes.addressof(k))
    _u64(attr, 16, ctypes.addressof(v))
    ret, err = sys_bpf(BPF_MAP_LOOKUP_ELEM, attr)
    assert ret == 0, os.strerror(err)
    return v.raw


def _test_run(fd: int, packet: bytes) -> int:
    buf = ctypes.create_string_buffer(packet, len(packet))
    out = ctypes.create_string_buffer(len(packet) + 256)
    attr = bytearray(80)
    _u32(attr, 0, fd)
    _u32(attr, 8, len(packet))
    _u32(attr, 12, len(out))
    _u64(attr, 16, ctypes.addressof(buf))
    _u64(attr, 24, ctypes.addressof(out))
    _u32(attr, 32, 1)
    ret, err = sys_bpf(BPF_PROG_TEST_RUN, attr)
    assert ret == 0, os.strerror(err)
    return int.from_bytes(attr[4:8], "little")


# Programs the kernel refuses for reasons outside the object reader: attach
# targets (BTF ids), a section name no loader knows, and a callback, which the
# kernel only accepts together with BTF func_info.
KERNEL_REFUSES = {"p_fentry", "p_lsm_s", "p_unknown", "third"}


@kernel
@pytest.mark.parametrize("src", SOURCES)
def test_kernel_accepts_every_program(build, src):
    ko = KernelObject(read_object(build(src)))
    try:
        assert set(ko.errors) <= KERNEL_REFUSES, {k: v[1][-400:] for k, v in ko.errors.items()}
        assert set(ko.prog_fds) | set(ko.errors) == set(ko.spec.programs)
    finally:
        ko.close()


@kernel
@pytest.mark.parametrize("src", ["loader_btf_maps.c", "loader_calls.c", "loader_globals.c",
                                 "loader_strings.c"])
def test_kernel_accepts_btf_func_and_line_info(build, src):
    """With our fixed-up BTF (map key/value type ids, per-program func_info and line_info)
    the kernel takes everything, even the bpf_loop callback."""
    ko = KernelObject(read_object(build(src)), with_btf=True)
    try:
        assert not ko.errors, {k: v[1][-600:] for k, v in ko.errors.items()}
        assert set(ko.prog_fds) == set(ko.spec.programs)
    finally:
        ko.close()


@kernel
@pytest.mark.parametrize("words", [4, 6, 7])
def test_kernel_accepts_legacy_maps_of_every_size(build, words):
    ko = KernelObject(read_object(build("loader_legacy.c", MAPDEF_WORDS=words)))
    try:
        assert set(ko.prog_fds) == {"count"}, ko.errors
        if words > 5:     # the map-in-map was created from its inner template
            assert "outer" in ko.map_fds
    finally:
        ko.close()


@kernel
def test_kernel_runs_globals_at_the_right_offsets(build):
    ko = KernelObject(read_object(build("loader_globals.c")))
    try:
        fd = ko.prog_fds["globals"]
        small, big = bytes(64), bytes(1200)
        assert _test_run(fd, small) == 1            # XDP_DROP: 64 <= 1000 + 'y'
        assert _test_run(fd, big) == 2              # XDP_PASS
        assert _test_run(fd, big) == 2
        spec = ko.spec
        bss = spec.maps["loader_g.bss"]
        raw = _lookup(ko.map_fds["loader_g.bss"], bytes(4), bss.value_size)
        hits = struct.unpack_from("<Q", raw, bss.variables["hits"][0])[0]
        misses = struct.unpack_from("<I", raw, bss.variables["misses"][0])[0]
        assert (hits, misses) == (2, 1)
        d = spec.maps["loader_g.data"]
        raw = _lookup(ko.map_fds["loader_g.data"], bytes(4), d.value_size)
        assert struct.unpack_from("<i", raw, d.variables["counter"][0])[0] == 44
        assert struct.unpack_from("<q", raw, d.variables["hidden"][0])[0] == -5
        raw = _lookup(ko.map_fds[".data.custom"], bytes(4), 4)
        assert struct.unpack("<i", raw)[0] == 0x1234 ^ 1
    finally:
        ko.close()


@kernel
def test_kernel_runs_linked_calls(build):
    ko = KernelObject(read_object(build("loader_calls.c")), with_btf=True)
    try:
        def leaf(x):
            return x * 3 + 1

        def global_sub(x):
            return sum(leaf(i) + leaf(i + 1) for i in range(x & 15))
        for n in (14, 21, 60, 77):
            assert _test_run(ko.prog_fds["first"], bytes(n)) == (global_sub(n) & 1)
        assert _test_run(ko.prog_fds["second"], bytes(20)) == leaf(0)
        # bpf_loop ran the callback 8 times: sum = 0 + 1 + ... + 7
        assert _test_run(ko.prog_fds["third"], bytes(20)) == leaf(28) + leaf(29)
    finally:
        ko.close()


@kernel
def test_kernel_map_in_map_and_tail_call_slots(build):
    ko = KernelObject(read_object(build("loader_btf_maps.c")))
    try:
        assert _test_run(ko.prog_fds["use_maps"], bytes(64)) == 1      # tail call into slot 1
        raw = _lookup(ko.map_fds["inner_a"], bytes(4), 8)              # outer[0] is inner_a
        assert struct.unpack("<Q", raw)[0] == 1
        raw = _lookup(ko.map_fds["sized_array"], bytes(4), 16)
        assert struct.unpack_from("<Q", raw)[0] == 3
    finally:
        ko.close()
