"""pybpf.load(): maps created or reused from pins, global data, map-in-map and prog array slots,
programs verified, errors that name the program and its source line, nothing left on failure."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from pybpf import kobj
from pybpf.errors import PybpfError
from pybpf.loader import ElfError
from pybpf.object import BpfObject, NotInObject, ObjectLoadError, load, verifier_message

HERE = Path(__file__).resolve().parent
CLANG = "/usr/lib/llvm-19/bin/clang"
SOCKET_FILTER, XDP = 1, 6


pytestmark = pytest.mark.usefixtures("bpffs")   # a fresh BPF fs root per test (conftest)


@pytest.fixture(scope="module")
def objs(tmp_path_factory):
    """The tests/c/objload_*.c objects, built once (and one without line info)."""
    if not os.access(CLANG, os.X_OK):
        pytest.skip("clang 19 not installed")
    out = tmp_path_factory.mktemp("objload")
    built = {}
    for src in sorted((HERE / "c").glob("objload_*.c")):
        name = src.stem.removeprefix("objload_")
        dst = out / f"{name}.o"
        subprocess.run([CLANG, "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c",
                        str(src), "-o", str(dst)], check=True, capture_output=True)
        built[name] = dst
        if src.stem == "objload_bad":
            # BTF-defined maps need .BTF, but the line info (.BTF.ext) can go
            noline = out / "bad_noline.o"
            subprocess.run([str(Path(CLANG).with_name("llvm-objcopy")), "--remove-section=.BTF.ext",
                            str(built["bad"]), str(noline)], check=True, capture_output=True)
            built["bad_noline"] = noline
    return built


def open_fds() -> set[str]:
    """This process's fds, after the object layer opened what it keeps open for good."""
    from pybpf.map import Map
    Map.create("array", 4, 4, 1).close()
    return set(os.listdir("/proc/self/fd"))


def run_socket(prog, frame: bytes):
    from pybpf.runtime import ExecProgram, SkBuff, run_skb
    return run_skb(ExecProgram.from_object(kobj.obj_from_fd(prog.fd)), SkBuff(frame, l2=False))


FRAME = bytes(12) + b"\x08\x00" + bytes(50)      # 50 bytes after the Ethernet header


# -- what a load gives ---------------------------------------------------------------------

def test_maps_programs_and_globals(objs):
    with load(objs["pinned"]) as obj:
        assert isinstance(obj, BpfObject) and obj.license == "Dual BSD/GPL"
        assert set(obj.programs) == {"count"}
        assert {"shared_counts", "outer", "first", "second"} <= set(obj.maps)
        data = next(n for n in obj.maps if n.endswith(".data"))
        rodata = next(n for n in obj.maps if n.endswith(".rodata"))
        bss = next(n for n in obj.maps if n.endswith(".bss"))
        assert int.from_bytes(obj.maps[data][0], "little") == 1000          # runs = 1000
        assert int.from_bytes(obj.maps[rodata][0], "little") == 7           # step = 7
        assert obj.maps[bss][0] == bytes(4)
        prog = obj.programs["count"]
        assert prog.type == SOCKET_FILTER and prog.name == "count"
        for _ in range(3):
            assert run_socket(prog, FRAME).retval == 0
        assert int.from_bytes(obj.maps[data][0], "little") == 1000 + 3 * 7
        assert int.from_bytes(obj.maps[bss][0], "little") == 50              # last_len
        assert obj.maps["shared_counts"][50] == (3).to_bytes(8, "little")


def test_map_in_map_slots_hold_the_objects_maps(objs):
    with load(objs["pinned"]) as obj:
        outer = obj.maps["outer"]
        assert outer.type_name == "array_of_maps"
        assert outer[0] == obj.maps["first"].id.to_bytes(4, "little")
        assert outer[1] == obj.maps["second"].id.to_bytes(4, "little")


def test_prog_array_filled_and_optional_programs_skipped(objs):
    with load(objs["optional"]) as obj:
        assert set(obj.programs) == {"first"}             # SEC("?xdp") is not autoloaded
        jumps = obj.maps["jumps"]
        assert jumps[0] == obj.programs["first"].id.to_bytes(4, "little")
        assert 1 not in dict((int.from_bytes(k, "little"), v) for k, v in jumps.items())
        assert obj.programs["first"].type == XDP


def test_sockex3_stages_are_loaded_into_its_prog_array():
    with load(HERE.parent / "examples" / "sockex3" / "prog.o") as obj:
        ids = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in obj.maps["stages"].items()}
        names = {p.id: n for n, p in obj.programs.items()}
        assert {i: names[pid] for i, pid in ids.items()} == \
            {1: "parse_vlan", 2: "parse_ipv4", 3: "parse_ipv6", 4: "parse_ports", 5: "count"}


def test_missing_names_are_pybpf_errors(objs):
    with load(objs["optional"]) as obj:
        with pytest.raises(NotInObject, match=r"no loaded program 'later' \(has: first\)"):
            obj.programs["later"]
        with pytest.raises(KeyError, match="no map 'nope'"):
            obj.maps["nope"]


def test_close_releases_every_fd(objs):
    before = open_fds()
    obj = load(objs["pinned"])
    assert len(open_fds() - before) >= len(obj.maps) + len(obj.programs)
    obj.close()
    obj.close()                      # idempotent
    assert open_fds() - before == set()


def test_log_level_keeps_the_verifier_log(objs):
    with load(objs["pinned"], log_level=1) as obj:
        assert "processed" in obj.programs["count"].log
    with load(objs["pinned"]) as obj:
        assert obj.programs["count"].log == ""


# -- LIBBPF_PIN_BY_NAME ---------------------------------------------------------------------

def test_pin_by_name_pins_then_reuses(objs, bpffs):
    with load(objs["pinned"]) as a:
        assert a.pinned == {"shared_counts": "/sys/fs/bpf/shared_counts"} and a.reused == set()
        assert os.path.exists(os.path.join(bpffs, "shared_counts"))
        run_socket(a.programs["count"], FRAME)
        first_id = a.maps["shared_counts"].id
    # the pin keeps the map (and its contents) alive for the next load
    with load(objs["pinned"]) as b:
        assert b.reused == {"shared_counts"} and b.pinned == {}
        assert b.maps["shared_counts"].id == first_id
        assert b.maps["shared_counts"][50] == (1).to_bytes(8, "little")
        run_socket(b.programs["count"], FRAME)
        assert b.maps["shared_counts"][50] == (2).to_bytes(8, "little")


def test_pin_root_directory_is_created(objs, bpffs):
    with load(objs["pinned"], pin_root="/sys/fs/bpf/app/v1") as obj:
        assert obj.pinned["shared_counts"] == "/sys/fs/bpf/app/v1/shared_counts"
        assert os.path.exists(os.path.join(bpffs, "app", "v1", "shared_counts"))


def test_incompatible_pin_is_an_error_naming_the_map(objs, bpffs):
    with load(objs["pinned"]):
        pass
    before = open_fds()
    with pytest.raises(ObjectLoadError) as e:
        load(objs["mismatch"])
    msg = str(e.value)
    assert "map 'shared_counts'" in msg and "max_entries is 64 there but 128 in the object" in msg
    assert e.value.map == "shared_counts" and e.value.errno == errno.EINVAL
    assert open_fds() - before == set()
    with load(objs["pinned"]) as again:          # the pinned map is untouched
        assert again.reused == {"shared_counts"}


def test_pinned_path_that_is_not_a_map(objs, bpffs):
    from pybpf.prog import Program
    with Program.load("r0 = 0\nexit", "socket_filter") as p:
        p.pin("/sys/fs/bpf/shared_counts")
    with pytest.raises(ObjectLoadError, match="map 'shared_counts'.*not a map"):
        load(objs["pinned"])


# -- failures ------------------------------------------------------------------------------

def test_verifier_error_names_program_and_source_line(objs):
    with pytest.raises(ObjectLoadError) as e:
        load(objs["bad"])
    err = e.value
    assert err.program == "forgot_null_check" and err.errno == errno.EACCES
    assert err.line is not None and err.line.line == 37 and err.line.file.endswith("objload_bad.c")
    assert str(err).startswith(f"{objs['bad']}: program 'forgot_null_check': ")
    assert "objload_bad.c:37: return *v;: R0 invalid mem access 'map_value_or_null'" in str(err)
    assert isinstance(err, PybpfError)


@pytest.mark.parametrize("log_level", [0, 1, 2])
def test_verifier_error_in_a_callee_names_the_callee_line(objs, log_level):
    with pytest.raises(ObjectLoadError) as e:
        load(objs["subprog"], log_level=log_level)
    assert e.value.program == "entry" and e.value.line.line == 16
    assert "objload_subprog.c:16: return *v + 1;: R0 invalid mem access 'map_value_or_null'" in str(e.value)
    assert bool(e.value.log) == bool(log_level)


def test_verifier_error_without_line_info_names_the_insn(objs):
    with pytest.raises(ObjectLoadError) as e:
        load(objs["bad_noline"])
    assert e.value.line is None and e.value.index is not None
    assert f"program 'forgot_null_check': insn {e.value.index}: R0 invalid mem access" in str(e.value)


def test_failed_load_leaves_nothing_behind(objs, bpffs):
    before = open_fds()
    with pytest.raises(ObjectLoadError):
        load(objs["bad"])
    assert open_fds() - before == set()
    # the map it pinned for LIBBPF_PIN_BY_NAME is unpinned again, its objects freed
    assert not os.path.exists(os.path.join(bpffs, "bad_counts"))
    kobj.sweep()
    assert not any(o.kind == "prog" for o in kobj.live_objects())


def test_unprivileged_load_of_xdp_is_refused(objs):
    with pytest.raises(ObjectLoadError) as e:
        load(objs["optional"], privileged=False)
    assert e.value.program == "first" and e.value.errno == errno.EPERM


def test_malformed_objects_are_elf_errors(tmp_path, objs):
    trunc = tmp_path / "trunc.o"
    trunc.write_bytes(objs["pinned"].read_bytes()[:200])
    with pytest.raises(ElfError) as e:
        load(trunc)
    assert str(trunc) in str(e.value)
    with pytest.raises(ElfError):
        load(tmp_path / "absent.o")


def test_verifier_message_skips_statistics():
    log = "0: (b7) r0 = 0\nR1 !read_ok\nprocessed 2 insns (limit 1000000) max_states_per_insn 0\n"
    assert verifier_message(log) == "R1 !read_ok"
    assert verifier_message("") == ""


# -- general rules ---------------------------------------------------------------------------

from hypothesis import HealthCheck, assume, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pybpf.loader import MapDef, ObjectSpec, PIN_BY_NAME  # noqa: E402
from pybpf.map import Map  # noqa: E402
from pybpf.object import load_spec  # noqa: E402

_ATTRS = st.fixed_dictionaries({
    "type": st.sampled_from([1, 9]),                 # hash, lru_hash
    "key_size": st.sampled_from([4, 8, 16]),
    "value_size": st.sampled_from([8, 24]),
    "max_entries": st.sampled_from([16, 64]),
    "map_flags": st.sampled_from([0, 1]),            # BPF_F_NO_PREALLOC
})


_SAME = {"type": 1, "key_size": 8, "value_size": 24, "max_entries": 64, "map_flags": 1}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pinned=_ATTRS, wanted=_ATTRS)
@example(pinned=_SAME, wanted=_SAME)
def test_pinned_map_reused_exactly_when_compatible(bpffs, pinned, wanted):
    """libbpf's rule: reuse iff type, key/value sizes, max_entries and flags all match."""
    # LRU maps take no BPF_F_NO_PREALLOC
    assume(not (wanted["type"] == 9 and wanted["map_flags"] or pinned["type"] == 9 and pinned["map_flags"]))
    path = os.path.join(bpffs, "m")
    if os.path.exists(path):
        os.unlink(path)
    with Map.create(pinned["type"], pinned["key_size"], pinned["value_size"], pinned["max_entries"],
                    pinned["map_flags"], "m") as m:
        m.pin("/sys/fs/bpf/m")
        mid = m.id
    spec = ObjectSpec("gen", "gen.o", {"m": MapDef("m", pinning=PIN_BY_NAME, **wanted)}, {})
    before = open_fds()
    if pinned == wanted:
        with load_spec(spec) as obj:
            assert obj.reused == {"m"} and obj.maps["m"].id == mid
    else:
        with pytest.raises(ObjectLoadError) as e:
            load_spec(spec)
        first = next(k for k in ("type", "key_size", "value_size", "max_entries", "map_flags")
                     if pinned[k] != wanted[k])
        assert f"map 'm': pinned map /sys/fs/bpf/m cannot be reused: {first} is" in str(e.value)
    assert open_fds() - before == set()


# -- the kernel agrees on what loads ------------------------------------------------------------

@pytest.mark.parametrize("name,ok", [("pinned", True), ("optional", True), ("bad", False)])
def test_kernel_accepts_and_rejects_the_same_objects(objs, name, ok):
    from kernel_oracle import require_kernel
    require_kernel()
    from kernel_objects import KernelError, KernelObject
    try:
        KernelObject(str(objs[name])).close()
        kernel_ok = True
    except KernelError as e:
        kernel_ok = False
        assert "Permission denied" in str(e) and "invalid mem access 'map_value_or_null'" in str(e)
    assert kernel_ok == ok
    try:
        load(objs[name]).close()
        ours = True
    except ObjectLoadError as e:
        ours = False
        assert e.errno == errno.EACCES
    assert ours == kernel_ok


def test_map_that_cannot_be_created_is_named_with_the_reason():
    spec = ObjectSpec("gen", "gen.o", {
        "ok": MapDef("ok", 2, 4, 8, 4),
        "tx": MapDef("tx", 14, 4, 4, 4),              # devmap: no devices in pybpf
    }, {})
    before = open_fds()
    with pytest.raises(ObjectLoadError) as e:
        load_spec(spec)
    assert str(e.value).startswith("gen.o: map 'tx': cannot create it (Invalid argument")
    assert "type devmap (14)" in str(e.value) and e.value.errno == errno.EINVAL
    assert open_fds() - before == set()
    spec.maps["tx"] = MapDef("tx", 1, 4, 4, 0)
    with pytest.raises(ObjectLoadError, match="map 'tx': cannot create it.*max_entries 0"):
        load_spec(spec)


def test_perf_event_array_without_size_gets_one_slot_per_cpu():
    from pybpf.maps import ncpus
    spec = ObjectSpec("gen", "gen.o", {"events": MapDef("events", 4, 4, 4, 0)}, {})
    with load_spec(spec) as obj:
        assert obj.maps["events"].max_entries == ncpus()
