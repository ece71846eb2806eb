"""Malformed or unsupported objects: one clear ElfError naming what and where."""

from __future__ import annotations

import struct

import pytest

from test_loader_support import compile_c, have_clang
from pybpf.errors import PybpfError
from pybpf.loader import ElfError, read_object
from pybpf.loader.elf import parse_elf

pytestmark = pytest.mark.skipif(not have_clang(), reason="clang 19 not installed")

HDR = "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"


@pytest.fixture(scope="module")
def calls_obj(tmp_path_factory):
    return compile_c("loader_calls.c", tmp_path_factory.mktemp("err"))


@pytest.fixture(scope="module")
def maps_obj(tmp_path_factory):
    return compile_c("loader_btf_maps.c", tmp_path_factory.mktemp("err"))


def _fail(src, tmp_path, *, name="bad", **kw) -> ElfError:
    path = compile_c(src, tmp_path, name=name, **kw)
    with pytest.raises(ElfError) as ei:
        read_object(path)
    assert isinstance(ei.value, PybpfError)
    assert str(path) in str(ei.value)
    return ei.value


def _read_bytes_fail(data: bytes) -> ElfError:
    with pytest.raises(ElfError) as ei:
        read_object(data, name="patched.o")
    assert str(ei.value).startswith("patched.o: ")
    return ei.value


def _section(data: bytes, name: str):
    obj = parse_elf(data, "x")
    sec = obj.section_by_name(name)
    shoff = struct.unpack_from("<Q", data, 40)[0]
    hdr = shoff + sec.index * 64
    offset = struct.unpack_from("<Q", data, hdr + 24)[0]
    return sec, hdr, offset


def _symbol_entry(data: bytes, name: str) -> int:
    obj = parse_elf(data, "x")
    sym = next(s for s in obj.symbols if s.name == name)
    _, _, symtab_off = _section(data, ".symtab")
    return symtab_off + 24 * sym.index


# --- identity of the file ----------------------------------------------------------------------

@pytest.mark.parametrize("data, msg", [
    (b"", "not an ELF file"),
    (b"hello world, not an object", "not an ELF file"),
    (b"\x7fELF\x02\x01\x01", "truncated ELF header"),
])
def test_not_an_object(data, msg):
    assert msg in str(_read_bytes_fail(data))


def test_missing_file(tmp_path):
    with pytest.raises(ElfError, match="cannot read"):
        read_object(tmp_path / "nope.o")
    with pytest.raises(ElfError, match="cannot read"):
        read_object(tmp_path)


@pytest.mark.parametrize("offset, fmt, value, msg", [
    (4, "B", 1, "not a 64-bit ELF object"),
    (5, "B", 2, "big-endian"),
    (5, "B", 7, "unknown byte order"),
    (16, "<H", 2, "not a relocatable object"),
    (18, "<H", 62, "wrong machine 62"),
    (58, "<H", 40, "bad section header size 40"),
    (62, "<H", 999, "section name table index 999 out of range"),
])
def test_bad_header_fields(calls_obj, offset, fmt, value, msg):
    data = bytearray(calls_obj.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    assert msg in str(_read_bytes_fail(bytes(data)))


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.999])
def test_truncated_object(calls_obj, cut):
    data = calls_obj.read_bytes()
    e = _read_bytes_fail(data[:int(len(data) * cut)])
    assert "truncated" in str(e) or "beyond the end" in str(e)


def test_no_symbol_table(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    _, hdr, _ = _section(bytes(data), ".symtab")
    struct.pack_into("<I", data, hdr + 4, 1)       # .symtab becomes PROGBITS
    e = _read_bytes_fail(bytes(data))
    assert "section '.rel" in str(e) and "does not name a symbol table" in str(e)
    shoff = struct.unpack_from("<Q", data, 40)[0]
    for s in parse_elf(calls_obj.read_bytes(), "x").sections:
        if s.type == 9:                             # and every relocation section disappears
            struct.pack_into("<I", data, shoff + 64 * s.index + 4, 0)
    assert "no symbol table (.symtab): stripped object?" in str(_read_bytes_fail(bytes(data)))


# --- relocations -------------------------------------------------------------------------------

def _patch_reloc(data: bytes, relsec: str, index: int, *, offset=None, sym=None, rtype=None):
    data = bytearray(data)
    _, _, off = _section(bytes(data), relsec)
    entry = off + 16 * index
    r_off, info = struct.unpack_from("<QQ", data, entry)
    if offset is not None:
        r_off = offset
    s, t = info >> 32, info & 0xFFFFFFFF
    if sym is not None:
        s = sym
    if rtype is not None:
        t = rtype
    struct.pack_into("<QQ", data, entry, r_off, (s << 32) | t)
    return bytes(data)


def test_unknown_relocation_type(calls_obj):
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", 0, rtype=77))
    assert "section 'tc'" in str(e) and "relocation #0 in '.reltc'" in str(e)
    assert "unknown relocation type 77" in str(e)


def test_data_relocation_type_in_code(calls_obj):
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", 0, rtype=2))
    assert "R_BPF_64_ABS64 is a data relocation" in str(e)


def test_relocation_symbol_out_of_range(calls_obj):
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", 1, sym=100000))
    assert "symbol index 100000 out of range" in str(e) and "relocation #1" in str(e)


def test_relocation_misaligned(calls_obj):
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", 0, offset=3))
    assert "not the start of an instruction" in str(e)


def test_relocation_on_wrong_instruction(calls_obj):
    obj = parse_elf(calls_obj.read_bytes(), "x")
    _, rels = obj.relocs[obj.section_by_name("tc").index]
    call = next(r for r in rels if r.type == 10)
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", call.index,
                                      offset=call.offset + 8))
    assert "is not a bpf-to-bpf call" in str(e)
    ld = next(r for r in rels if r.type == 1)
    e = _read_bytes_fail(_patch_reloc(calls_obj.read_bytes(), ".reltc", ld.index,
                                      offset=ld.offset + 16))
    assert "is not a 64-bit immediate load" in str(e)


def test_call_to_the_middle_of_a_function(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    obj = parse_elf(bytes(data), "x")
    _, rels = obj.relocs[obj.section_by_name("tc").index]
    call = next(r for r in rels if r.type == 10)
    _, _, tc_off = _section(bytes(data), "tc")
    imm_at = tc_off + call.offset + 4
    struct.pack_into("<i", data, imm_at, struct.unpack_from("<i", data, imm_at)[0] + 1)
    e = _read_bytes_fail(bytes(data))
    assert "not the start of a function" in str(e) and "section 'tc'" in str(e)


def test_extern_variable(tmp_path):
    e = _fail(HDR + "extern int LINUX_KERNEL_VERSION __kconfig;\n"
              'SEC("xdp") int p(void *c) { return LINUX_KERNEL_VERSION; }\n', tmp_path)
    assert "extern variable" in str(e) and "LINUX_KERNEL_VERSION" in str(e)


def test_reference_to_a_section_that_is_no_map(tmp_path):
    e = _fail('#define SEC(n) __attribute__((section(n), used))\n'
              'int odd SEC("mysec") = 3;\nSEC("xdp") int p(void *c) { return odd; }\n', tmp_path)
    assert "section 'xdp'" in str(e) and "symbol 'odd'" in str(e)
    assert "'mysec', which holds neither maps, global data nor code" in str(e)


# --- code --------------------------------------------------------------------------------------

def test_bad_instruction_is_named(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    _, _, off = _section(bytes(data), "xdp")
    data[off] = 0xFF
    e = _read_bytes_fail(bytes(data))
    assert "section 'xdp'" in str(e) and "symbol 'only_xdp'" in str(e) and "insn 0" in str(e)


def test_function_of_odd_size(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    struct.pack_into("<Q", data, _symbol_entry(bytes(data), "only_xdp") + 16, 12)
    e = _read_bytes_fail(bytes(data))
    assert "symbol 'only_xdp'" in str(e) and "whole 8-byte instructions" in str(e)


def test_function_beyond_its_section(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    struct.pack_into("<Q", data, _symbol_entry(bytes(data), "only_xdp") + 16, 800)
    assert "crosses the end" in str(_read_bytes_fail(bytes(data)))


# --- maps --------------------------------------------------------------------------------------

LEGACY = ('#define SEC(n) __attribute__((section(n), used))\n'
          'struct def { unsigned int f[%d]; };\n'
          'struct def SEC("maps") a = {{ %s }};\n'
          'SEC("socket") int p(void *c) { return 0; }\n')


def test_legacy_map_definition_too_small(tmp_path):
    e = _fail(LEGACY % (3, "2, 4, 4"), tmp_path)
    assert "section 'maps'" in str(e) and "12 bytes are too small" in str(e)


def test_legacy_map_definition_with_unknown_tail(tmp_path):
    e = _fail(LEGACY % (9, "2, 4, 4, 1, 0, 0, 0, 0, 5"), tmp_path)
    assert "symbol 'a'" in str(e) and "non-zero bytes after the 28" in str(e)


def test_legacy_map_definition_with_zero_tail_is_fine(tmp_path):
    path = compile_c(LEGACY % (9, "2, 4, 4, 1"), tmp_path, name="ok")
    m = read_object(path).maps["a"]
    assert (m.type, m.key_size, m.value_size, m.max_entries) == (2, 4, 4, 1)


BTF_MAP = HDR + 'struct { %s } m SEC(".maps");\nSEC("xdp") int p(void *c) { return 0; }\n'


@pytest.mark.parametrize("body, msg", [
    ("__uint(type, 2); __uint(frobnicate, 1);", "unknown attribute 'frobnicate'"),
    ("__uint(type, 1); __uint(pinning, 2);", "unsupported pinning 2"),
    ("__uint(type, 1); __uint(key_size, 8); __type(key, int);", "conflicting key size 8 != 4"),
    ("__uint(type, 1); __uint(value_size, 2); __type(value, long);", "conflicting value size 2 != 8"),
    ("int type;", "attribute 'type' must be __uint()"),
    ("__uint(type, 1); int key;", "attribute 'key' must be __type()"),
    ("__uint(type, 2); __array(values, struct { __uint(type, 2); });",
     "'values' of maps needs map type 12 or 13, not 2"),
])
def test_btf_map_definition_errors(tmp_path, body, msg):
    e = _fail(BTF_MAP % body, tmp_path)
    assert "section '.maps'" in str(e) and "symbol 'm'" in str(e) and msg in str(e)


def test_btf_map_that_is_no_struct(tmp_path):
    e = _fail(HDR + 'int m SEC(".maps");\nSEC("xdp") int p(void *c) { return 0; }\n', tmp_path)
    assert "symbol 'm'" in str(e) and "must be a struct" in str(e)


def test_btf_maps_without_btf(tmp_path):
    src = BTF_MAP % "__uint(type, 2); __uint(max_entries, 1);"
    path = compile_c(src, tmp_path, name="nobtf")
    nog = tmp_path / "nog.o"
    import subprocess
    from test_loader_support import CLANG, MULTIARCH
    subprocess.run([str(CLANG), f"-I{MULTIARCH}", "-O2", "-target", "bpf", "-c",
                    str(path.with_suffix(".c")), "-o", str(nog)], check=True)
    with pytest.raises(ElfError, match=r"section '\.maps': BTF-defined maps need the \.BTF"):
        read_object(nog)


def test_version_section_of_wrong_size(tmp_path):
    e = _fail('#define SEC(n) __attribute__((section(n), used))\n'
              'char v[3] SEC("version") = "ab";\nSEC("xdp") int p(void *c) { return 0; }\n',
              tmp_path)
    assert "section 'version'" in str(e) and "not 3 bytes" in str(e)


def test_corrupt_btf(maps_obj):
    data = bytearray(maps_obj.read_bytes())
    _, _, off = _section(bytes(data), ".BTF")
    bad = bytearray(data)
    bad[off:off + 2] = b"\x00\x00"
    assert "section '.BTF': bad magic" in str(_read_bytes_fail(bytes(bad)))
    bad = bytearray(data)
    struct.pack_into("<I", bad, off + 12, 10**6)   # type_len
    assert "section '.BTF'" in str(_read_bytes_fail(bytes(bad)))


def test_map_slot_relocation_outside_values(maps_obj):
    data = maps_obj.read_bytes()
    e = _read_bytes_fail(_patch_reloc(data, ".rel.maps", 0, offset=0))
    assert "section '.maps'" in str(e) and "not inside the 'values' of a map" in str(e)


def test_struct_ops_section_is_refused(tmp_path):
    e = _fail('#define SEC(n) __attribute__((section(n), used))\n'
              'struct ops { int (*init)(void); int x; };\n'
              'struct ops my_ops SEC(".struct_ops.link") = { .x = 1 };\n'
              'SEC("xdp") int p(void *c) { return 0; }\n', tmp_path)
    assert "section '.struct_ops.link': struct_ops maps are not supported" in str(e)


def test_names_with_control_characters_stay_on_one_line(calls_obj):
    data = bytearray(calls_obj.read_bytes())
    _, _, strtab = _section(bytes(data), ".strtab")
    obj = parse_elf(bytes(data), "x")
    name_at = data.find(b"only_xdp\0", strtab)
    data[name_at + 4] = 0x0A                        # "only\nxdp"
    struct.pack_into("<Q", data, _symbol_entry(calls_obj.read_bytes(), "only_xdp") + 16, 12)
    e = _read_bytes_fail(bytes(data))
    assert "\n" not in str(e) and "symbol 'only\\nxdp'" in str(e)
    assert obj.section_by_name("xdp") is not None
