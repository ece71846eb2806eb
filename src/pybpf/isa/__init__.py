"""The eBPF instruction set: opcodes, the decoded instruction, encode/decode and encoding checks."""

from . import opcodes
from .insn import INSN_SIZE, Insn, check_insn, check_program, decode, encode, imm64, ldimm64

__all__ = ["opcodes", "Insn", "INSN_SIZE", "decode", "encode", "check_program", "check_insn",
           "imm64", "ldimm64"]
