"""The runtime: contexts in the verifier's runtime layout, verdicts, runs, repeat, faults, threads."""

from __future__ import annotations

import threading

import pytest
from runtime_util import asm

from pybpf.runtime import ExecProgram, SkBuff, XdpBuff, run, run_kprobe, run_skb, run_xdp, verdicts
from pybpf.runtime.contexts import pt_regs
from pybpf.verifier.context import PT_REGS, SK_BUFF
from pybpf.vm import VmError

SOCKET_FILTER, KPROBE, SCHED_CLS, SCHED_ACT, XDP = 1, 2, 3, 4, 6
OFF = {f.name: f for f in SK_BUFF}
FRAME = bytes(range(60))


@pytest.fixture(autouse=True)
def _private_trace_pipe(monkeypatch):
    """trace_printk lines of these tests stay in the process (not in the user's trace pipe)."""
    import pybpf.runtime.core
    monkeypatch.setattr(pybpf.runtime.core, "trace_pipe_enabled", False)


def prog(text, prog_type, verify=True):
    return ExecProgram.from_insns(asm(text), prog_type, verify=verify)


def _field_prog(name):
    f = OFF[name]
    size = {1: "u8", 2: "u16", 4: "u32", 8: "u64"}[f.size]
    return f"r0 = *({size} *)(r1 + {f.off})\nexit"


@pytest.mark.parametrize("name,value", [
    ("pkt_type", 3), ("mark", 0xABCDEF), ("queue_mapping", 2), ("protocol", 0xDD86), ("vlan_present", 1),
    ("vlan_tci", 0x123), ("vlan_proto", 0x0081), ("priority", 6), ("ingress_ifindex", 4), ("ifindex", 5),
    ("tc_index", 9), ("cb[2]", 0xCAFE), ("hash", 0x12345678), ("tc_classid", 0x10002), ("napi_id", 0),
    ("tstamp", 1 << 40), ("wire_len", 1500), ("gso_segs", 3), ("gso_size", 1400), ("hwtstamp", 1 << 41)])
def test_skb_fields_reach_the_program(name, value):
    kw = {name: value} if not name.startswith("cb[") else {"cb": [0, 0, value, 0, 0]}
    r = run_skb(prog(_field_prog(name), SCHED_CLS), SkBuff(FRAME, **kw))
    assert r.r0 == value


def test_skb_len_and_data_pointers():
    text = """
r2 = *(u32 *)(r1 + 76)
r3 = *(u32 *)(r1 + 80)
r0 = r3
r0 -= r2
r4 = *(u32 *)(r1 + 0)
r0 <<= 16
r0 |= r4
exit"""
    r = run_skb(prog(text, SCHED_CLS), FRAME)
    assert r.r0 == (60 << 16) | 60
    r = run_skb(prog("r0 = *(u32 *)(r1 + 0)\nexit", SOCKET_FILTER), SkBuff(FRAME, l2=False))
    assert r.r0 == 46


def test_skb_writes_come_back():
    text = f"""
r2 = 11
*(u32 *)(r1 + {OFF['mark'].off}) = r2
r2 = 12
*(u32 *)(r1 + {OFF['priority'].off}) = r2
r2 = 13
*(u32 *)(r1 + {OFF['cb[4]'].off}) = r2
r2 = 14
*(u32 *)(r1 + {OFF['tc_classid'].off}) = r2
r0 = 0
exit"""
    skb = SkBuff(FRAME)
    run_skb(prog(text, SCHED_CLS), skb)
    assert (skb.mark, skb.priority, skb.cb[4], skb.tc_classid) == (11, 12, 13, 14)


def test_packet_write_through_direct_access():
    text = """
r2 = *(u32 *)(r1 + 76)
r3 = *(u32 *)(r1 + 80)
r4 = r2
r4 += 2
if r4 > r3 goto +2
r5 = 0x7777
*(u16 *)(r2 + 0) = r5
r0 = -1
exit"""
    r = run_skb(prog(text, SCHED_CLS), FRAME)
    assert r.data[:2] == b"\x77\x77" and r.data[2:] == FRAME[2:]
    assert (r.verdict, r.fate) == ("TC_ACT_UNSPEC", "pass")


def test_xdp_context():
    text = """
r2 = *(u32 *)(r1 + 0)
r3 = *(u32 *)(r1 + 4)
r4 = *(u32 *)(r1 + 8)
r0 = r3
r0 -= r4
r5 = *(u32 *)(r1 + 12)
r0 <<= 8
r0 |= r5
r5 = *(u32 *)(r1 + 16)
r0 <<= 8
r0 |= r5
exit"""
    r = run_xdp(prog(text, XDP), XdpBuff(FRAME, meta=b"\1\2\3\4", ingress_ifindex=7, rx_queue_index=3))
    assert r.r0 == (64 << 16) | (7 << 8) | 3
    assert r.meta == b"\1\2\3\4" and r.data == FRAME


def test_kprobe_pt_regs():
    off = {f.name: f.off for f in PT_REGS}
    text = f"""
r0 = *(u64 *)(r1 + {off['di']})
r2 = *(u64 *)(r1 + {off['r9']})
r0 += r2
r2 = *(u64 *)(r1 + {off['ip']})
r0 += r2
exit"""
    p = prog(text, KPROBE)
    assert run_kprobe(p, 5, 0, 0, 0, 0, 100, regs={"ip": 1000}).r0 == 1105
    assert len(pt_regs()) == 168
    with pytest.raises(ValueError):
        pt_regs({"eax": 1})


def test_kprobe_ctx_is_read_only_at_runtime():
    # unverified program: the runtime itself refuses the write
    p = prog("r2 = 1\n*(u64 *)(r1 + 0) = r2\nr0 = 0\nexit", KPROBE, verify=False)
    with pytest.raises(VmError, match="read-only"):
        run_kprobe(p)


@pytest.mark.parametrize("prog_type,ret,name,fate", [
    (XDP, 0, "XDP_ABORTED", "drop"), (XDP, 1, "XDP_DROP", "drop"), (XDP, 2, "XDP_PASS", "pass"),
    (XDP, 3, "XDP_TX", "tx"), (XDP, 4, "XDP_REDIRECT", "redirect"), (XDP, 9, None, "drop"),
    (SCHED_CLS, 0, "TC_ACT_OK", "pass"), (SCHED_CLS, 2, "TC_ACT_SHOT", "drop"),
    (SCHED_ACT, 4, "TC_ACT_STOLEN", "drop"), (SCHED_CLS, 7, "TC_ACT_REDIRECT", "redirect"),
    (SOCKET_FILTER, 0, "drop", "drop"), (SOCKET_FILTER, 0xFFFF, "accept", "pass"),
    (SOCKET_FILTER, 20, "accept 20 bytes", "pass")])
def test_verdicts(prog_type, ret, name, fate):
    r = run(prog(f"r0 = {ret}\nexit", prog_type), FRAME)
    assert r.fate == fate
    if name:
        assert r.verdict == name
    assert verdicts.fate(prog_type, ret) == fate


def test_repeat_accumulates_like_linux():
    # adjust_head(-4) each run: the frame grows by 4 per repetition (the same xdp_buff is reused)
    p = prog("r2 = -4\ncall 44\nr0 = 2\nexit", XDP)
    r = run_xdp(p, FRAME, repeat=5)
    assert len(r.data) == 80 and r.duration_ns >= 0 and r.insns == 20


def test_fault_is_reported_not_crashing():
    p = prog("r2 = 0x1000\nr0 = *(u64 *)(r2 + 0)\nexit", XDP, verify=False)
    with pytest.raises(VmError, match="out-of-bounds load"):
        run_xdp(p, FRAME)
    # the runtime is still usable and cleaned up after the fault
    assert run_xdp(prog("r0 = 2\nexit", XDP), FRAME).verdict == "XDP_PASS"


def test_verifier_rejects_bad_program():
    from pybpf.runtime.core import RunError
    with pytest.raises(RunError, match="verifier rejected"):
        prog("r0 = *(u64 *)(r1 + 1000)\nexit", XDP)


def test_threads_have_their_own_runtime():
    p = prog("r6 = r1\nr2 = -4\ncall 44\nr0 = *(u32 *)(r6 + 4)\nr1 = *(u32 *)(r6 + 0)\nr0 -= r1\nexit", XDP)
    out, errs = [], []

    def work():
        try:
            for _ in range(50):
                out.append(run_xdp(p, FRAME).retval)
        except Exception as e:      # noqa: BLE001
            errs.append(e)
    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errs and out == [64] * 200


def test_ld_abs_on_socket_filter_views():
    p = prog("r6 = r1\nr0 = *(u16 *)skb[12]\nexit", SOCKET_FILTER)
    frame = b"\0" * 12 + b"\x08\x00" + bytes(40)
    assert run_skb(p, frame).r0 == 0x0800                          # packet socket: from L2
    assert run_skb(p, SkBuff(frame, l2=False)).r0 == 0             # test run: from L3
    short = prog("r6 = r1\nr0 = *(u32 *)skb[100]\nexit", SOCKET_FILTER)
    assert run_skb(short, frame).r0 == 0                           # out of range: program ends with 0


def test_skb_vlan_push_pop_model():
    text = """
r6 = r1
r2 = 0x0081
r3 = 5
call 18
r1 = r6
r2 = 0x0081
r3 = 6
call 18
r0 = 0
exit"""
    frame = b"\xaa" * 6 + b"\xbb" * 6 + b"\x08\x00" + bytes(20)
    r = run_skb(prog(text, SCHED_CLS), frame)
    # the first tag went into the packet, the second is the accelerated one
    assert r.data == b"\xaa" * 6 + b"\xbb" * 6 + b"\x81\x00\x00\x05" + b"\x08\x00" + bytes(20)
    assert (r.skb.vlan_present, r.skb.vlan_tci, r.skb.vlan_proto) == (1, 6, 0x0081)
    assert r.skb.protocol == 0x0081
    pop = prog("r6 = r1\ncall 19\nr1 = r6\ncall 19\nr0 = 0\nexit", SCHED_CLS)
    r2 = run_skb(pop, r.skb)
    assert r2.data == frame and r2.skb.vlan_present == 0 and r2.skb.protocol == 0x0008


@pytest.mark.parametrize("helper", [9, 10, 11, 17, 18, 19, 20, 21, 24, 26, 44, 65])
def test_helper_on_the_wrong_context_is_a_clean_error(helper):
    """Unverified code calling a packet helper from a kprobe: a VmError naming it, no traceback."""
    p = prog(f"r2 = 0\nr3 = 0\nr4 = 0\nr5 = 0\ncall {helper}\nexit", KPROBE, verify=False)
    with pytest.raises(VmError, match="needs an"):
        run_kprobe(p)


def test_unknown_map_pointer_is_a_clean_error():
    p = prog("r1 = r10\nr2 = r10\ncall 1\nexit", KPROBE, verify=False)
    with pytest.raises(VmError, match="not a map pointer"):
        run_kprobe(p)
