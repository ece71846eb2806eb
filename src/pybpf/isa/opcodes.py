"""Numeric constants of the eBPF instruction set (RFC 9669, linux/bpf.h).

Names follow the uapi header so that code reads like the specification.
"""

# Instruction classes: the low three bits of the opcode.
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = range(8)
CLASS_NAMES = ("ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64")

# Load/store sizes (bits 3-4) and modes (bits 5-7).
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {W: 4, H: 2, B: 1, DW: 8}
SIZE_OF_BYTES = {4: W, 2: H, 1: B, 8: DW}
IMM, ABS, IND, MEM, MEMSX, ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0

# Source operand bit of ALU and JMP opcodes.
K, X = 0x00, 0x08

# ALU operations (bits 4-7).
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
NEG, MOD, XOR, MOV, ARSH, END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
ALU_OPS = (ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV, ARSH, END)
ALU_NAMES = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and",
             LSH: "lsh", RSH: "rsh", NEG: "neg", MOD: "mod", XOR: "xor", MOV: "mov",
             ARSH: "arsh", END: "end"}
# BPF_END direction lives in the source bit: TO_LE (K) or TO_BE (X); in ALU64 it is bswap.
TO_LE, TO_BE = K, X

# Jump operations (bits 4-7).
JA, JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70
CALL, EXIT, JLT, JLE, JSLT, JSLE = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0
COND_JUMPS = (JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE)
JMP_NAMES = {JA: "ja", JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset", JNE: "jne",
             JSGT: "jsgt", JSGE: "jsge", CALL: "call", EXIT: "exit", JLT: "jlt",
             JLE: "jle", JSLT: "jslt", JSLE: "jsle"}

# Atomic operations: the imm field of STX|ATOMIC.
FETCH = 0x01
XCHG = 0xE0 | FETCH
CMPXCHG = 0xF0 | FETCH
ATOMIC_OPS = (ADD, OR, AND, XOR, ADD | FETCH, OR | FETCH, AND | FETCH, XOR | FETCH, XCHG, CMPXCHG)

# Pseudo sources of LD_IMM64 (src_reg of the first slot).
PSEUDO_NONE = 0
PSEUDO_MAP_FD = 1
PSEUDO_MAP_VALUE = 2
PSEUDO_BTF_ID = 3
PSEUDO_FUNC = 4
PSEUDO_MAP_IDX = 5
PSEUDO_MAP_IDX_VALUE = 6
LD_IMM64_PSEUDOS = range(7)

# Pseudo sources of CALL (src_reg).
CALL_HELPER = 0
PSEUDO_CALL = 1       # bpf-to-bpf call, imm is the pc-relative target
PSEUDO_KFUNC_CALL = 2

# Whole opcodes used often enough to deserve names.
LD_IMM64 = LD | IMM | DW          # 0x18
OP_EXIT = JMP | EXIT              # 0x95
OP_CALL = JMP | CALL              # 0x85
OP_CALLX = JMP | CALL | X         # 0x8d
OP_JA = JMP | JA                  # 0x05
OP_JA32 = JMP32 | JA              # 0x06, "gotol": the offset is in imm

MAX_REG = 10                      # r0..r10, r10 is the read-only frame pointer
STACK_SIZE = 512                  # bytes per frame
MAX_CALL_FRAMES = 8


def opclass(code: int) -> int:
    return code & 0x07


def size_of(code: int) -> int:
    return code & 0x18


def mode_of(code: int) -> int:
    return code & 0xE0


def op_of(code: int) -> int:
    return code & 0xF0


def src_bit(code: int) -> int:
    return code & 0x08
