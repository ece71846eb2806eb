"""Damaged objects: every byte flip or truncation of a real object gives ElfError or a valid spec.

Mutations are aimed at the parts the reader interprets (ELF and section
headers, symbols, relocations, code, map definitions, BTF) as well as
anywhere in the file; never another exception, never a hang.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_loader_support import compile_c, have_clang
from pybpf.isa.insn import Insn
from pybpf.loader import ElfError, ObjectSpec, read_object, resolve
from pybpf.loader.elf import parse_elf

pytestmark = pytest.mark.skipif(not have_clang(), reason="clang 19 not installed")

SOURCES = ("loader_btf_maps.c", "loader_calls.c", "loader_globals.c", "loader_legacy.c",
           "loader_strings.c", "loader_core.c")
INTERESTING = (".symtab", ".strtab", ".BTF", ".BTF.ext", ".maps", "maps", "license", "version",
               ".data", ".rodata", ".bss")


def _regions(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges the reader interprets: headers and the sections it reads."""
    obj = parse_elf(data, "x")
    shoff = struct.unpack_from("<Q", data, 40)[0]
    out = [(0, 64), (shoff, shoff + 64 * len(obj.sections))]
    for s in obj.sections:
        off = struct.unpack_from("<Q", data, shoff + 64 * s.index + 24)[0]
        if s.size and (s.name in INTERESTING or s.is_exec or s.type == 9) and s.type != 8:
            out.append((off, off + s.size))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz")
    objs = []
    for src in SOURCES:
        data = compile_c(src, out).read_bytes()
        objs.append((data, _regions(data)))
    return objs


def _check(data: bytes) -> None:
    try:
        spec = read_object(data, name="fuzz.o")
    except ElfError as e:
        msg = str(e)
        assert msg.startswith("fuzz.o: ") and "\n" not in msg.strip()
        return
    _valid(spec)


def _valid(spec: ObjectSpec) -> None:
    """What a spec we return must satisfy, however odd its input."""
    for m in spec.maps.values():
        assert isinstance(m.type, int) and m.key_size >= 0 and m.value_size >= 0
        for target in m.init_slots.values():
            assert target in spec.maps or target in spec.programs
    for p in spec.programs.values():
        assert all(isinstance(i, Insn) for i in p.insns)
        for r in p.relocs:
            assert r.map in spec.maps and 0 <= r.insn < len(p.insns) - 1
        for start in p.subprograms.values():
            assert 0 < start < len(p.insns)
    fine = [n for n, p in spec.programs.items() if not p.core_relocs]
    resolve(spec, {name: 3 for name in spec.maps}, programs=fine)


mutation = st.tuples(st.integers(0, 2**32), st.integers(0, 255), st.booleans())


def _mutate(data: bytes, regions, picks, targeted: bool) -> bytes:
    d = bytearray(data)
    for where, value, xor in picks:
        if targeted:
            lo, hi = regions[where % len(regions)]
            i = lo + (where >> 8) % max(1, hi - lo)
        else:
            i = where % len(d)
        d[i] = d[i] ^ (1 << (value % 8)) if xor else value
    return bytes(d)


def _fuzz_flips(corpus, which, picks, targeted):
    data, regions = corpus[which % len(corpus)]
    _check(_mutate(data, regions, picks, targeted))


FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=6000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                HealthCheck.function_scoped_fixture])


@FAST
@given(which=st.integers(0, len(SOURCES) - 1), picks=st.lists(mutation, min_size=1, max_size=6),
       targeted=st.booleans())
def test_byte_flips(corpus, which, picks, targeted):
    _fuzz_flips(corpus, which, picks, targeted)


@FAST
@given(which=st.integers(0, len(SOURCES) - 1), cut=st.integers(0, 2**32))
def test_truncations(corpus, which, cut):
    data, _ = corpus[which % len(corpus)]
    _check(data[:cut % (len(data) + 1)])


@FAST
@given(which=st.integers(0, len(SOURCES) - 1), at=st.integers(0, 2**32), word=st.sampled_from(
    [0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1, 2**40]))
def test_header_words(corpus, which, at, word):
    """Plausible-looking but wrong numbers in every 8-byte field of the section headers."""
    data, _ = corpus[which % len(corpus)]
    shoff = struct.unpack_from("<Q", data, 40)[0]
    n = (len(data) - shoff) // 8
    d = bytearray(data)
    struct.pack_into("<Q", d, shoff + 8 * (at % n), word)
    _check(bytes(d))


@pytest.mark.slow
@SLOW
@given(which=st.integers(0, len(SOURCES) - 1), picks=st.lists(mutation, min_size=1, max_size=12),
       targeted=st.booleans())
def test_byte_flips_long(corpus, which, picks, targeted):
    _fuzz_flips(corpus, which, picks, targeted)


def test_unmodified_corpus_reads(corpus):
    for data, _ in corpus:
        _valid(read_object(data, name="fuzz.o"))
