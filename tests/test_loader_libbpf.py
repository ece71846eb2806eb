"""Differential test against libbpf itself (the reference loader), through ctypes.

libbpf opens and loads the object into the host kernel; we then ask it for the
final instructions of every program (after its relocation and call linking)
and compare them with ``resolve(read_object(...), <libbpf's map fds>)``.
Skipped where libbpf.so.1 or the kernel's bpf() is not available.
"""

from __future__ import annotations

import ctypes
import random

import pytest

from kernel_oracle import kernel_available
from test_loader_support import compile_c, have_clang
from pybpf.isa.insn import decode
from pybpf.loader import read_object, resolve


def _libbpf():
    try:
        lb = ctypes.CDLL("libbpf.so.1")
    except OSError:
        return None
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    for fn, res, args in (
            ("bpf_object__open_file", vp, [cp, vp]), ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_object__close", None, [vp]), ("bpf_object__next_program", vp, [vp, vp]),
            ("bpf_object__next_map", vp, [vp, vp]), ("bpf_program__name", cp, [vp]),
            ("bpf_program__insns", vp, [vp]), ("bpf_program__insn_cnt", ctypes.c_size_t, [vp]),
            ("bpf_map__name", cp, [vp]), ("bpf_map__fd", ctypes.c_int, [vp]),
            ("bpf_map__set_pin_path", ctypes.c_int, [vp, cp]),
            ("libbpf_set_print", vp, [vp])):
        f = getattr(lb, fn)
        f.restype, f.argtypes = res, args
    lb.libbpf_set_print(None)     # keep libbpf's warnings out of the test output
    return lb


LIBBPF = _libbpf()

pytestmark = [
    pytest.mark.skipif(not have_clang(), reason="clang 19 not installed"),
    pytest.mark.skipif(LIBBPF is None, reason="libbpf.so.1 not installed"),
    pytest.mark.skipif(not kernel_available(), reason="host kernel bpf() not available"),
]


def _libbpf_load(path):
    lb = LIBBPF
    obj = lb.bpf_object__open_file(str(path).encode(), None)
    assert obj, "libbpf could not open the object"
    try:
        m = None
        while m := lb.bpf_object__next_map(obj, m):
            lb.bpf_map__set_pin_path(m, None)      # never pin on the host
        assert lb.bpf_object__load(obj) == 0, "libbpf could not load the object"
        fds = {}
        while m := lb.bpf_object__next_map(obj, m):
            fds[lb.bpf_map__name(m).decode()] = lb.bpf_map__fd(m)
        progs = {}
        p = None
        while p := lb.bpf_object__next_program(obj, p):
            n = lb.bpf_program__insn_cnt(p)
            progs[lb.bpf_program__name(p).decode()] = decode(
                ctypes.string_at(lb.bpf_program__insns(p), 8 * n), check=False)
        return fds, progs
    finally:
        lb.bpf_object__close(obj)


@pytest.mark.parametrize("src", ["loader_btf_maps.c", "loader_calls.c", "loader_globals.c",
                                 "loader_strings.c"])
def test_same_instructions_as_libbpf(tmp_path, src):
    path = compile_c(src, tmp_path)
    fds, theirs = _libbpf_load(path)
    spec = read_object(path)
    assert set(spec.maps) == set(fds)
    ours = resolve(spec, fds)
    assert set(ours) == set(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name


def _random_call_graph(seed: int) -> str:
    """Many programs sharing static and global subprograms through a random call DAG.

    Functions sit on levels 0..5 and only call lower levels, so no chain is
    deeper than the kernel's 8 frames.
    """
    rng = random.Random(seed)
    lines = ["#include <linux/bpf.h>", "#include <bpf/bpf_helpers.h>", "int g[16];",
             "static const int k[4] = {1, 2, 3, 5};"]
    levels: list[list[str]] = []
    for level in range(6):
        names = []
        for i in range(rng.randint(2, 6)):
            name = f"f{level}_{i}"
            lower = [n for lv in levels for n in lv]
            calls = rng.sample(lower, min(len(lower), rng.randint(0, 2)))
            body = " + ".join([f"{c}(x + {j})" for j, c in enumerate(calls)] or ["0"])
            static = "static " if rng.random() < 0.5 else ""
            lines.append(f"{static}__attribute__((noinline)) int {name}(int x) "
                         f"{{ g[x & 15] += {i}; return {body} + x * k[x & 3]; }}")
            names.append(name)
        levels.append(names)
    every = [n for lv in levels for n in lv]
    for p in range(rng.randint(3, 12)):
        callees = rng.sample(every, rng.randint(1, 3))
        body = " + ".join(f"{c}(skb->len)" for c in callees)
        lines.append(f'SEC("{rng.choice(["socket", "tc"])}") int p{p}(struct __sk_buff *skb) '
                     f"{{ return {body}; }}")
    lines.append('char _license[] SEC("license") = "GPL";')
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(6))
def test_same_call_layout_as_libbpf_on_random_call_graphs(tmp_path, seed):
    path = compile_c(_random_call_graph(seed), tmp_path, name=f"graph{seed}")
    fds, theirs = _libbpf_load(path)
    ours = resolve(read_object(path), fds)
    assert set(ours) == set(theirs)
    for name in ours:
        assert ours[name] == theirs[name], name
