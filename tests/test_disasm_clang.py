"""Real compiler output: clang 19 objects disassembled by us and by llvm-objdump 19 agree."""

from __future__ import annotations

import re
import subprocess

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

import asm_llvm_oracle as oracle
from pybpf.asm import assemble, disassemble
from pybpf.isa import decode

CLANG = oracle.LLVM_BIN / "clang"

pytestmark = pytest.mark.skipif(not (oracle.available() and CLANG.exists()), reason="clang/llvm-objdump 19 not installed")

# Self-contained (no system headers) so that it compiles wherever clang 19 does.
SOURCE = r"""
typedef unsigned long long u64; typedef long long s64; typedef unsigned int u32;
typedef int s32; typedef short s16; typedef unsigned short u16; typedef signed char s8; typedef unsigned char u8;

static void *(*lookup)(void *map, const void *key) = (void *)1;
static u64 (*ktime)(void) = (void *)5;

u64 table[16];
s32 counters[4];

#if __BPF_CPU_VERSION__ >= 4
#define SDIV(a, b) ((s64)(a) / (b))
#define SMOD(a, b) ((a) % (b))
#else   /* signed division needs cpu v4 */
#define SDIV(a, b) ((u64)(a) / (b))
#define SMOD(a, b) ((u16)(a) % (b))
#endif

static __attribute__((noinline)) u64 mix(u64 a, s32 b, s16 c) {
    return (a * 31) ^ (a >> 7) ^ SDIV(b, 3) ^ (s8)a ^ SMOD(c, 5) ^ __builtin_bswap32((u32)a);
}

static __attribute__((noinline)) s64 walk(const s8 *p, int n) {
    s64 acc = 0;
    for (int i = 0; i < n && i < 16; i++)
        acc = acc * 7 + p[i] - (acc >> 3);
    return acc;
}

__attribute__((section("xdp"))) int prog(u32 *ctx) {
    u32 k = ctx[3] & 3;
    u64 *v = lookup(table, &k);
    if (!v)
        return 1;
    __sync_fetch_and_add(v, 1);
    u64 got = __sync_fetch_and_or(v, 4);
    u32 old32 = __sync_val_compare_and_swap((u32 *)&counters[k], 5, 7);
    u64 old = __sync_lock_test_and_set(v + 1, ktime());
    __sync_fetch_and_xor(&counters[1], (s32)got);
    u64 x = mix(*v, (s32)old, (s16)old32) + __builtin_bswap64(old) + walk((const s8 *)ctx, ctx[0]);
    switch (x % 7) {
    case 0: return 2;
    case 1: return (s32)(x >> 40);
    case 3: return (s16)x;
    default: return (x % 13) > 6 ? 2 : 1;
    }
}
"""

_SECTION = re.compile(r"^Disassembly of section (.+):$")


def _objdump_by_section(obj) -> dict[str, dict[int, str]]:
    out = subprocess.run([str(oracle.OBJDUMP), "-d", "--no-show-raw-insn", "--mcpu=v4", str(obj)],
                         check=True, capture_output=True, text=True).stdout
    sections: dict[str, dict[int, str]] = {}
    current = None
    for line in out.splitlines():
        m = _SECTION.match(line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        m = re.match(r"^\s*(\d+):\t(.*)$", line)
        if m and current is not None:
            current[int(m.group(1))] = re.sub(r" <[^<>]*>$", "", m.group(2))
    return sections


@pytest.mark.parametrize("cpu", ["v3", "v4"])  # v1/v2 lack the 32-bit atomics used below
def test_clang_object_matches_objdump(tmp_path, cpu):
    src = tmp_path / "p.c"
    src.write_text(SOURCE)
    obj = tmp_path / "p.o"
    subprocess.run([str(CLANG), "-O2", "-target", "bpf", f"-mcpu={cpu}", "-c", str(src), "-o", str(obj)],
                   check=True, capture_output=True)
    ref = _objdump_by_section(obj)
    checked = 0
    with open(obj, "rb") as f:
        for section in ELFFile(f).iter_sections():
            if not section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR or not section.data_size:
                continue
            insns = decode(section.data())
            ours = disassemble(insns, style="llvm")
            expected = ref[section.name]
            for i, text in enumerate(ours):
                if text:
                    assert text == expected[i], f"{section.name} slot {i}"
                    checked += 1
            # and the pybpf text of compiler output reads back bit for bit
            assert assemble("\n".join(disassemble(insns, style="pybpf")), syntax="llvm") == insns
    assert checked > 40
