"""C programs compiled by clang 19 (legacy ``-mcpu=v1`` and modern ``-mcpu=v3`` code, loops
included) must be accepted by pybpf's verifier, and by the host kernel where it is available."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kernel_oracle import kernel_available, kernel_map_create, kernel_prog_load
from pybpf.isa.insn import encode
from pybpf.loader import read_object, resolve
from pybpf.verifier import MapInfo, verify
from verifier_cases.btfblob import kernel_load

CLANG = "/usr/lib/llvm-19/bin/clang"
SRC = Path(__file__).parent / "verifier_cases" / "c"
SOURCES = sorted(SRC.glob("*.c"))


def compile_c(src: Path, cpu: str, out_dir: Path) -> Path:
    if not os.path.exists(CLANG):
        pytest.skip("clang 19 not installed")
    out = out_dir / f"{src.stem}.{cpu}.o"
    cmd = [CLANG, "-O2", "-g", "-target", "bpf", f"-mcpu={cpu}", "-I/usr/include/x86_64-linux-gnu",
           "-c", str(src), "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return out


def load_programs(obj: Path):
    """(name, prog_type, insns, maps, license) for every program, map fds numbered from 3."""
    spec = read_object(str(obj))
    fds = {name: 3 + i for i, name in enumerate(spec.maps)}
    maps = {fds[n]: MapInfo(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
            for n, m in spec.maps.items()}
    progs = resolve(spec, fds)
    for name, insns in progs.items():
        yield name, spec.programs[name].prog_type, insns, maps, spec.license, spec


def btf_args(spec, name):
    """verify()'s func_info/btf keywords for a program that has BTF func_info (callbacks)."""
    prog = spec.programs[name]
    if not prog.func_info or spec.btf is None:
        return {}
    return {"func_info": prog.func_info_bytes(), "btf": spec.btf}


@pytest.fixture(scope="module")
def objdir(tmp_path_factory):
    return tmp_path_factory.mktemp("verifier_c")


@pytest.mark.parametrize("cpu", ["v1", "v3"])
@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_clang_program_accepted(src, cpu, objdir):
    obj = compile_c(src, cpu, objdir)
    n = 0
    for name, ptype, insns, maps, lic, spec in load_programs(obj):
        res = verify(insns, prog_type=ptype, maps=maps, license=lic, log_level=1, **btf_args(spec, name))
        assert res.ok, f"{src.name} ({cpu}) program {name} rejected:\n{res.log}"
        n += 1
    assert n


@pytest.mark.parametrize("cpu", ["v1", "v3"])
@pytest.mark.parametrize("src", SOURCES, ids=[s.stem for s in SOURCES])
def test_clang_program_accepted_by_kernel_too(src, cpu, objdir):
    if not kernel_available():
        pytest.skip("host kernel bpf() not available")
    obj = compile_c(src, cpu, objdir)
    spec = read_object(str(obj))
    kfds = {}
    try:
        for n, m in spec.maps.items():
            fd, err = kernel_map_create(m.type, m.key_size, m.value_size, m.max_entries, m.map_flags)
            assert fd >= 0, (n, err)
            kfds[n] = fd
        for name, insns in resolve(spec, kfds).items():
            prog = spec.programs[name]
            if prog.func_info and spec.btf_for_kernel is not None:
                recs = [(f.insn, f.type_id) for f in prog.func_info]
                pfd, err, log = kernel_load(encode(insns), prog.prog_type, spec.btf_for_kernel, recs,
                                            license=spec.license, log_level=1)
            else:
                pfd, err, log = kernel_prog_load(encode(insns), prog.prog_type,
                                                 license=spec.license, log_level=1)
            assert pfd >= 0, f"kernel rejects {name}: errno {err}\n{log}"
            os.close(pfd)
    finally:
        for fd in kfds.values():
            os.close(fd)


def test_verified_bpf_loop_program_runs(objdir):
    """The callback program the verifier proved safe computes what C says, in the runtime."""
    from pybpf.runtime import ExecProgram, run_skb
    obj = compile_c(SRC / "callbacks.c", "v3", objdir)
    spec = read_object(str(obj))
    fds = {name: 3 + i for i, name in enumerate(spec.maps)}
    prog = spec.programs["loop_sum"]
    res = verify(resolve(spec, fds)["loop_sum"], prog_type=prog.prog_type, license=spec.license,
                 **btf_args(spec, "loop_sum"))
    assert res.ok, res.log
    ep = ExecProgram.from_insns(res.insns_rewritten, prog.prog_type, verify=False)
    for n in (0, 5, 60, 150):            # sum of the indexes below min(len, 100)
        assert run_skb(ep, bytes(n)).retval == sum(range(min(n, 100))) & 0xFFFF
