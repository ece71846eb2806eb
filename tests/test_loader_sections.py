"""Program type from section name, and our enum values against linux/bpf.h."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pybpf.loader import classify
from pybpf.loader.sections import ATTACH_TYPES, PROG_TYPES, SECTION_DEFS

HEADER = Path("/usr/include/linux/bpf.h")


def _enum(name: str) -> dict[str, int]:
    text = HEADER.read_text()
    body = re.search(r"enum %s \{(.*?)\};" % name, text, re.S).group(1)
    body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
    body = re.sub(r"//[^\n]*", "", body)
    out, value = {}, -1
    for item in (x.strip() for x in body.split(",")):
        if not item:
            continue
        if "=" in item:
            key, val = (x.strip() for x in item.split("="))
            value = out[val] if val in out else int(val, 0)
        else:
            key, value = item, value + 1
        out[key] = value
    return out


@pytest.mark.skipif(not HEADER.exists(), reason="linux/bpf.h not installed")
def test_enum_values_match_the_uapi_header():
    progs = _enum("bpf_prog_type")
    attach = _enum("bpf_attach_type")
    for name, v in PROG_TYPES.items():
        if f"BPF_PROG_TYPE_{name}" in progs:
            assert progs[f"BPF_PROG_TYPE_{name}"] == v, name
    for name, v in ATTACH_TYPES.items():
        if f"BPF_{name}" in attach:
            assert attach[f"BPF_{name}"] == v, name
    # the installed header may be older than our table, never newer
    assert len(progs) <= len(PROG_TYPES) + 1
    assert {k for k in attach if not k.startswith("__")} <= {f"BPF_{k}" for k in ATTACH_TYPES}


P, A = PROG_TYPES, ATTACH_TYPES


@pytest.mark.parametrize("section, prog_type, attach, target, sleepable", [
    ("socket", P["SOCKET_FILTER"], 0, None, False),
    ("kprobe/__x64_sys_bpf", P["KPROBE"], 0, "__x64_sys_bpf", False),
    ("kprobe", P["KPROBE"], 0, None, False),
    ("kretprobe/vfs_read", P["KPROBE"], 0, "vfs_read", False),
    ("uprobe.s//bin/sh:main", P["KPROBE"], 0, "/bin/sh:main", True),
    ("kprobe.multi/vfs_*", P["KPROBE"], A["TRACE_KPROBE_MULTI"], "vfs_*", False),
    ("tracepoint/sched/sched_switch", P["TRACEPOINT"], 0, "sched/sched_switch", False),
    ("tp/irq/irq_handler_entry", P["TRACEPOINT"], 0, "irq/irq_handler_entry", False),
    ("raw_tracepoint/sys_enter", P["RAW_TRACEPOINT"], 0, "sys_enter", False),
    ("raw_tp.w/sys_enter", P["RAW_TRACEPOINT_WRITABLE"], 0, "sys_enter", False),
    ("tc", P["SCHED_CLS"], 0, None, False),
    ("tc/ingress", P["SCHED_CLS"], A["TCX_INGRESS"], None, False),
    ("tcx/egress", P["SCHED_CLS"], A["TCX_EGRESS"], None, False),
    ("classifier", P["SCHED_CLS"], 0, None, False),
    ("action", P["SCHED_ACT"], 0, None, False),
    ("xdp", P["XDP"], A["XDP"], None, False),
    ("xdp.frags", P["XDP"], A["XDP"], None, False),
    ("xdp/devmap", P["XDP"], A["XDP_DEVMAP"], None, False),
    ("perf_event", P["PERF_EVENT"], 0, None, False),
    ("cgroup_skb/ingress", P["CGROUP_SKB"], A["CGROUP_INET_INGRESS"], None, False),
    ("cgroup_skb/egress", P["CGROUP_SKB"], A["CGROUP_INET_EGRESS"], None, False),
    ("cgroup/sock_create", P["CGROUP_SOCK"], A["CGROUP_INET_SOCK_CREATE"], None, False),
    ("cgroup/connect6", P["CGROUP_SOCK_ADDR"], A["CGROUP_INET6_CONNECT"], None, False),
    ("cgroup/sysctl", P["CGROUP_SYSCTL"], A["CGROUP_SYSCTL"], None, False),
    ("cgroup/dev", P["CGROUP_DEVICE"], A["CGROUP_DEVICE"], None, False),
    ("sk_skb/stream_parser", P["SK_SKB"], A["SK_SKB_STREAM_PARSER"], None, False),
    ("sk_msg", P["SK_MSG"], A["SK_MSG_VERDICT"], None, False),
    ("sockops", P["SOCK_OPS"], A["CGROUP_SOCK_OPS"], None, False),
    ("lwt_xmit", P["LWT_XMIT"], 0, None, False),
    ("flow_dissector", P["FLOW_DISSECTOR"], A["FLOW_DISSECTOR"], None, False),
    ("fentry/tcp_connect", P["TRACING"], A["TRACE_FENTRY"], "tcp_connect", False),
    ("fexit.s/do_sys_open", P["TRACING"], A["TRACE_FEXIT"], "do_sys_open", True),
    ("tp_btf/sched_wakeup", P["TRACING"], A["TRACE_RAW_TP"], "sched_wakeup", False),
    ("iter/task", P["TRACING"], A["TRACE_ITER"], "task", False),
    ("lsm/file_open", P["LSM"], A["LSM_MAC"], "file_open", False),
    ("freplace/handler", P["EXT"], 0, "handler", False),
    ("struct_ops/init", P["STRUCT_OPS"], 0, "init", False),
    ("syscall", P["SYSCALL"], 0, None, True),
    ("sk_lookup", P["SK_LOOKUP"], A["SK_LOOKUP"], None, False),
    ("netfilter", P["NETFILTER"], A["NETFILTER"], None, False),
    # libbpf < 1.0 prefix matching (iproute2 objects)
    ("classifier/ingress_fw", P["SCHED_CLS"], 0, "ingress_fw", False),
    ("socket1", P["SOCKET_FILTER"], 0, None, False),
    ("xdp_prog", P["XDP"], A["XDP"], None, False),
    ("tracepointx", P["TRACEPOINT"], 0, None, False),
])
def test_classify(section, prog_type, attach, target, sleepable):
    k = classify(section)
    assert (k.prog_type, k.expected_attach_type, k.attach_to, k.sleepable) == \
        (prog_type, attach, target, sleepable)


@pytest.mark.parametrize("section", ["mystery", "", ".text.hot", "license"])
def test_unknown_sections(section):
    k = classify(section)
    assert (k.prog_type, k.expected_attach_type, k.matched) == (0, 0, None)


def test_table_has_no_shadowed_entries():
    """A pattern listed after one that always wins over it would be dead."""
    seen = set()
    for d in SECTION_DEFS:
        probe = d.pattern.rstrip("+")
        assert classify(probe).matched == d.pattern, d.pattern
        assert d.pattern not in seen
        seen.add(d.pattern)
