"""The llvm style is exactly what LLVM 19's llvm-objdump prints (differential tests)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asm_llvm_oracle as oracle
from asm_strategies import enumerate_encodings, is_llvm_lossless, programs
from pybpf.asm import assemble, disassemble
from pybpf.isa import check_program
from pybpf.isa import opcodes as op
from pybpf.isa.insn import decode

pytestmark = pytest.mark.skipif(not oracle.available(), reason="LLVM 19 llvm-objdump/llvm-mc not installed")

SUITE = Path(__file__).resolve().parents[2] / "shared/conformance/tests"


def assert_same_as_objdump(insns):
    ref = oracle.objdump(insns)
    ours = disassemble(insns, style="llvm")
    assert len(ours) == len(insns)
    mismatches = []
    for i, text in enumerate(ours):
        if text == "":
            assert i not in ref, f"slot {i}: objdump printed {ref[i]!r} for a second LD_IMM64 slot"
            continue
        if ref.get(i) != text:
            mismatches.append(f"slot {i} {insns[i]!r}: objdump {ref.get(i)!r}, ours {text!r}")
    assert not mismatches, "\n".join(mismatches[:20])


def test_every_encoding_enumerated():
    groups = list(enumerate_encodings())
    assert len(groups) > 5000
    insns = [s for g in groups for s in g]
    check_program(insns)
    assert_same_as_objdump(insns)


@pytest.mark.skipif(not SUITE.is_dir(), reason="conformance suite not present")
def test_every_conformance_program():
    insns = []
    for path in sorted(SUITE.glob("*.data")):
        text = path.read_text().split("-- asm\n", 1)[1].split("\n-- ", 1)[0]
        insns += assemble(text, source=path.name, syntax="conformance")
    assert_same_as_objdump(insns)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(programs(max_insns=40), min_size=20, max_size=40))
def test_random_programs_batched(batch):
    # one object per batch of programs keeps llvm-objdump runs few
    assert_same_as_objdump([s for p in batch for s in p])


def test_objdump_text_reassembles_with_llvm_mc_to_the_same_bytes():
    """Our llvm text is not only what objdump prints: llvm-mc reads it back to the same encoding."""
    groups = [g for g in enumerate_encodings() if is_llvm_lossless(g)
              # llvm-mc 19 only parses gotol targets that fit 16 bits (an LLVM limitation)
              and not (g[0].code == op.OP_JA32 and not -0x8000 <= g[0].imm <= 0x7FFF)]
    insns = [s for g in groups for s in g]
    text = "\n".join(t for t in disassemble(insns, style="llvm") if t)
    assert decode(oracle.llvm_mc_assemble(text), check=False) == insns


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(programs(max_insns=40), min_size=20, max_size=40))
def test_random_programs_batched_long(batch):
    assert_same_as_objdump([s for p in batch for s in p])


def test_we_assemble_raw_objdump_listings():
    """llvm-objdump's own output (index column, <sym+off> notes and all) reads back."""
    groups = [g for g in enumerate_encodings() if is_llvm_lossless(g)]
    insns = [s for g in groups for s in g]
    ref = oracle.objdump_listing(insns)
    assert assemble(ref, source="objdump", syntax="llvm") == insns
