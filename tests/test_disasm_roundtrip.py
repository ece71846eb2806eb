"""assemble(disassemble(x)) == x for every valid program, in every style that keeps the bits."""

from __future__ import annotations

from hypothesis import given, settings

from asm_strategies import enumerate_encodings, is_llvm_lossless, programs
from pybpf.asm import assemble, disassemble, format_insn
from pybpf.isa import opcodes as op
from pybpf.isa.insn import Insn, ldimm64


def roundtrip(insns, style):
    syntax = "conformance" if style == "conformance" else "llvm"
    return assemble("\n".join(disassemble(insns, style=style)), source=style, syntax=syntax)


@settings(max_examples=300, deadline=None)
@given(programs())
def test_pybpf_style_roundtrip(insns):
    assert roundtrip(insns, "pybpf") == insns


@settings(max_examples=300, deadline=None)
@given(programs())
def test_kernel_style_roundtrip(insns):
    assert roundtrip(insns, "kernel") == insns


@settings(max_examples=300, deadline=None)
@given(programs())
def test_conformance_style_roundtrip(insns):
    assert roundtrip(insns, "conformance") == insns


@settings(max_examples=300, deadline=None)
@given(programs())
def test_llvm_style_roundtrip_when_lossless(insns):
    if is_llvm_lossless(insns):
        assert roundtrip(insns, "llvm") == insns
    else:
        assert roundtrip(insns, "pybpf") == insns


def test_roundtrip_every_enumerated_encoding():
    insns = [s for g in enumerate_encodings() for s in g]
    assert roundtrip(insns, "pybpf") == insns
    assert roundtrip(insns, "kernel") == insns
    assert roundtrip(insns, "conformance") == insns


def test_llvm_style_loses_only_the_documented_bits():
    lossy = [*ldimm64(1, 5 | (7 << 32), op.PSEUDO_MAP_FD), Insn(op.OP_CALL, 0, op.PSEUDO_CALL, 0, 3),
             Insn(op.OP_CALL, 0, op.PSEUDO_KFUNC_CALL, 0, 3), Insn(0x50, 0, 1, 0, 4)]
    assert disassemble(lossy, style="llvm") == ["ld_pseudo\tr1, 0x1, 0x5", "", "call 0x3", "call 0x3",
                                                "r0 = *(u8 *)skb[r1]"]
    assert disassemble(lossy, style="pybpf") == ["r1 = map_fd(0x5, 0x7) ll", "", "call pc+0x3",
                                                 "call kfunc 0x3", "r0 = *(u8 *)skb[r1 + 0x4]"]
    assert roundtrip(lossy, "pybpf") == lossy


def test_disassemble_and_format_insn_agree_slot_by_slot():
    insns = [*ldimm64(1, 1), Insn(0x95), *ldimm64(2, 2, op.PSEUDO_MAP_VALUE), Insn(0x95)]
    texts = disassemble(insns)
    assert texts[1] == "" and texts[4] == ""
    for style in ("llvm", "pybpf", "kernel", "conformance"):
        assert [format_insn(insns, i, style=style) for i in range(len(insns))] == disassemble(insns, style=style)
