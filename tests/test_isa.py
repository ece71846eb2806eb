"""Encoding rules of the instruction set: exact round trips and the kernel-like rejections."""

import struct

import pytest
from hypothesis import given, strategies as st

from pybpf.errors import InsnError
from pybpf.isa import Insn, check_insn, decode, encode, imm64, ldimm64
from pybpf.isa import opcodes as op


def raw(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def test_layout_is_struct_bpf_insn():
    # code, dst:4 (low nibble), src:4 (high nibble), s16 off, s32 imm, little-endian
    assert Insn(0xBF, dst=6, src=1).pack() == bytes([0xBF, 0x16, 0, 0, 0, 0, 0, 0])
    assert Insn(0x07, dst=1, imm=-8).pack() == bytes([0x07, 0x01, 0, 0, 0xF8, 0xFF, 0xFF, 0xFF])
    assert Insn(0x05, off=-1).pack() == bytes([0x05, 0, 0xFF, 0xFF, 0, 0, 0, 0])


def test_ldimm64_two_slots():
    lo, hi = ldimm64(1, 0x1122334455667788)
    prog = decode(encode([lo, hi, Insn(op.OP_EXIT)]))
    assert len(prog) == 3 and prog[1].code == 0
    assert imm64(prog, 0) == 0x1122334455667788
    assert imm64(list(ldimm64(0, -1)), 0) == (1 << 64) - 1


def test_truncated_ldimm64_names_index():
    with pytest.raises(InsnError) as e:
        decode(raw(0xB7) + raw(0x18, dst=1, imm=5))
    assert e.value.index == 1 and "truncated" in str(e.value)


def test_ldimm64_second_slot_reserved():
    with pytest.raises(InsnError) as e:
        decode(raw(0x18, dst=1) + raw(0x00, dst=2) + raw(0x95))
    assert e.value.index == 1


def test_length_not_multiple_of_8():
    with pytest.raises(InsnError, match="not a multiple of 8"):
        decode(raw(0x95) + b"\x00\x01")


@pytest.mark.parametrize("blob,needle", [
    (raw(0xFF), "unknown opcode ff"),
    (raw(0x8F), "BPF_NEG uses reserved"),     # neg has no X form
    (raw(0xE7), "unknown opcode e7"),          # no ALU op 0xe0
    (raw(0xE5), "unknown opcode e5"),          # jump op 0xe0
    (raw(0x07, src=1, imm=1), "reserved"),     # K form with src set
    (raw(0x0F, imm=1), "reserved"),            # X form with imm set
    (raw(0x95, imm=1), "BPF_EXIT uses reserved"),
    (raw(0x96), "unknown opcode 96"),          # exit is JMP-only
    (raw(0x86), "unknown opcode 86"),          # call is JMP-only
    (raw(0xD4, imm=17), "BPF_END uses reserved"),
    (raw(0xDF, imm=16), "unknown opcode df"),  # ALU64 END exists only in K form (bswap)
    (raw(0x84, imm=3), "BPF_NEG uses reserved"),
    (raw(0xBF, src=1, off=7), "BPF_MOV uses reserved"),
    (raw(0xBC, src=1, off=32), "BPF_MOV uses reserved"),  # movsx32 only in ALU64
    (raw(0x3F, src=1, off=2), "BPF_ALU uses reserved"),   # sdiv offset must be 0 or 1
    (raw(0x61, dst=1, src=2, imm=1), "BPF_LDX uses reserved"),
    (raw(0x99, dst=1, src=2), "unknown opcode 99"),       # MEMSX of DW does not exist
    (raw(0x62, dst=1, src=2, imm=1), "BPF_ST uses reserved"),
    (raw(0xDB, dst=1, src=2, imm=0x02), "invalid atomic opcode"),
    (raw(0xD3, dst=1, src=2, imm=0x00), "invalid atomic operand size"),
    (raw(0x18, dst=1, src=7), "unknown pseudo source 7"),
    (raw(0x38, dst=0), "reserved"),            # LD_ABS of DW
    (raw(0x05, imm=3), "BPF_JA uses reserved"),
    (raw(0x06, off=3), "BPF_JA uses reserved"),
    (raw(0xB7, dst=11), "R11 is invalid"),
    (raw(0x85, src=3), "BPF_CALL uses reserved"),
])
def test_malformed_rejected(blob, needle):
    with pytest.raises(InsnError) as e:
        decode(raw(0xB7) + blob + raw(0x95))
    assert e.value.index == 1
    assert needle in str(e.value)
    assert str(e.value).startswith("insn 1: ")


@pytest.mark.parametrize("blob", [
    raw(0x3F, dst=1, src=2, off=1),  # sdiv
    raw(0x9C, dst=1, src=2, off=1),  # smod32
    raw(0xBF, dst=1, src=2, off=32),  # movsx r1 = (s32)r2
    raw(0xBC, dst=1, src=2, off=16),  # movsx w1 = (s16)w2
    raw(0xD7, dst=1, imm=64),        # bswap64
    raw(0xDC, dst=1, imm=16),        # be16
    raw(0x91, dst=1, src=2, off=-4),  # ldxsb
    raw(0xDB, dst=1, src=2, imm=0xF1),  # cmpxchg64
    raw(0xC3, dst=1, src=2, imm=0xE1),  # xchg32
    raw(0x06, imm=-2),               # gotol
    raw(0x8D, dst=2),                # callx r2
    raw(0x85, src=1, imm=-3),        # local call
    raw(0x30, imm=4), raw(0x50, src=3, imm=4),  # ld_abs / ld_ind
])
def test_valid_v4_encodings_accepted(blob):
    assert check_insn(decode(blob, check=False)[0]) is None


@given(st.binary(min_size=0, max_size=64).map(lambda b: b[: len(b) // 8 * 8]))
def test_decode_encode_is_exact_or_named_error(data):
    try:
        insns = decode(data)
    except InsnError as e:
        assert 0 <= e.index <= len(data) // 8
        return
    assert encode(insns) == data
