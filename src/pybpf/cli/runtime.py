"""``pybpf run`` (replay a capture through a program) and ``pybpf trace`` (read the trace pipe).

    pybpf run OBJ [PROGRAM] --pcap FILE [--out FILE] [--type TYPE] [--hist MAP]...
    pybpf trace [--no-follow]
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

import click

from ..errors import PybpfError
from ..verifier.progtypes import SCHED_ACT, SCHED_CLS, SOCKET_FILTER, XDP

NET_TYPES = {"socket_filter": SOCKET_FILTER, "sched_cls": SCHED_CLS, "sched_act": SCHED_ACT, "xdp": XDP}
TYPE_NAMES = {v: k for k, v in NET_TYPES.items()}
PROGRESS_MIN_BYTES = 1 << 20        # show a progress bar past this much capture
XDP_LINEAR = 4096 - 256 - 320       # the linear part of an XDP frame (page - headroom - shinfo)


class RunCliError(PybpfError):
    pass


# -- loading ----------------------------------------------------------------------------

def _is_elf(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def load_target(path: Path, program: str | None, prog_type: str | None):
    """(Program, {name: Map}, closer) for an ELF object or an assembler/raw program."""
    if _is_elf(path):
        from ..object import load
        obj = load(path)
        progs = {n: p for n, p in obj.programs.items() if p.type in TYPE_NAMES}
        names = ", ".join(obj.programs) or "none"     # (closing the object empties it)
        if program is not None:
            if program not in obj.programs:
                obj.close()
                raise RunCliError(f"{path}: no program '{program}' (has: {names})")
            prog = obj.programs[program]
            if prog.type not in TYPE_NAMES:
                obj.close()
                raise RunCliError(f"{path}: program '{program}' is a {prog.type_name} program; "
                                  f"captures can drive socket_filter, sched_cls, sched_act and xdp")
        elif not progs:
            obj.close()
            raise RunCliError(f"{path}: no socket_filter, sched_cls, sched_act or xdp program "
                              f"(has: {names})")
        elif len(progs) > 1:
            obj.close()
            raise RunCliError(f"{path}: several packet programs ({', '.join(progs)}): name one")
        else:
            prog = next(iter(progs.values()))
        maps = dict(obj.maps)
        return prog, maps, obj.close, _btf_types(obj, maps)
    if prog_type is None:
        raise RunCliError(f"{path}: not an ELF object: give the program type with --type "
                          f"({', '.join(NET_TYPES)})")
    from ..cli.run import load_program
    from ..prog import Program
    insns, _mem = load_program(path)
    prog = Program.load(insns, NET_TYPES[prog_type])
    return prog, {}, prog.close, {}


def _btf_types(obj, maps) -> dict:
    """{map name: (btf, key type id, value type id)} for the maps whose types the object's BTF
    gives (its copy with section sizes filled in, so that globals show by name)."""
    spec = obj.spec
    if spec.btf is None:
        return {}
    btf = spec.btf
    if spec.btf_for_kernel:
        from ..loader.btf import Btf
        from ..loader.errors import ElfError
        try:
            btf = Btf(spec.btf_for_kernel)
        except ElfError:        # the original BTF still names every map's types
            btf = spec.btf
    out = {}
    for name in maps:
        d = spec.maps.get(name)
        if d is not None and (d.key_type_id or d.value_type_id):
            out[name] = (btf, d.key_type_id, d.value_type_id)
    return out


# -- printing maps -----------------------------------------------------------------------

def _num(raw: bytes) -> str:
    if len(raw) in (1, 2, 4, 8):
        return str(int.from_bytes(raw, "little"))
    return raw.hex(" ")


def _stars(val: int, val_max: int, width: int) -> str:
    if val_max <= 0:
        return ""
    # as many stars as whole fractions of the widest bar, as BCC draws them
    return "*" * min(width, int(width * val / val_max + 1e-9))


def log2_hist(vals: list[int], val_type: str = "value") -> list[str]:
    """Lines of a log2 histogram in BCC's print_log2_hist layout (slot i: [2^(i-1), 2^i-1])."""
    idx_max = max((i for i, v in enumerate(vals) if v > 0), default=-1)
    val_max = max(vals, default=0)
    if idx_max <= 32:
        header, width, lo_w = f"     {val_type:<19} : count     distribution", 40, 10
    else:
        header, width, lo_w = f"               {val_type:<29} : count     distribution", 20, 20
    lines = [header] if idx_max > 0 else []
    for i in range(1, idx_max + 1):
        low, high = (1 << i) >> 1, (1 << i) - 1
        if low == high:
            low -= 1
        v = vals[i]
        lines.append(f"{low:>{lo_w}} -> {high:<{lo_w}} : {v:<8} |{_stars(v, val_max, width):<{width}}|")
    return lines


def _is_hist(name: str, m, forced: set[str]) -> bool:
    if name in forced:
        return True
    s = m.spec
    return (("hist" in name.lower() or "dist" in name.lower()) and s.key_size in (4, 8)
            and s.value_size == 8 and s.map_type in (1, 2, 5, 6))


def print_map(name: str, m, forced: set[str], echo=click.echo, types=None) -> None:
    """A map's entries as a table; with ``types`` (btf, key type id, value type id) keys and
    values are shown by their C types."""
    from ..syscall import constants as C
    s = m.spec
    header = f"map {name} ({m.type_name}, key {s.key_size}, value {s.value_size}, max {s.max_entries})"
    if s.map_type in (C.BPF_MAP_TYPE_PROG_ARRAY, C.BPF_MAP_TYPE_PERF_EVENT_ARRAY,
                      C.BPF_MAP_TYPE_RINGBUF, C.BPF_MAP_TYPE_ARRAY_OF_MAPS, C.BPF_MAP_TYPE_HASH_OF_MAPS):
        echo(f"{header}: not printable")
        return
    try:
        items = m.items()
    except OSError as e:
        echo(f"{header}: cannot read ({e.strerror})")
        return
    if _is_hist(name, m, forced):
        vals = [0] * 65
        for k, v in items:
            slot = int.from_bytes(k, "little")
            total = sum(int.from_bytes(x, "little") for x in v) if isinstance(v, list) else int.from_bytes(v, "little")
            if 0 <= slot < 65:
                vals[slot] += total
        echo(f"{header}:")
        for line in log2_hist(vals, "value"):
            echo(line)
        return
    if s.map_type in (2, 6):        # arrays: only the non-zero slots, as a table would be mostly zeros
        items = [(k, v) for k, v in items if any(v if isinstance(v, bytes) else b"".join(v))]
    echo(f"{header}: {len(items)} entr{'y' if len(items) == 1 else 'ies'}")
    if not items:
        return
    fk = fv = _num
    if types is not None:
        from ..loader.btf_format import format_value
        btf, ktid, vtid = types
        if ktid:
            fk = lambda raw: format_value(btf, ktid, raw)      # noqa: E731
        if vtid:
            fv = lambda raw: format_value(btf, vtid, raw)      # noqa: E731
    rows = []
    for k, v in items:
        val = " ".join(fv(x) for x in v) if isinstance(v, list) else fv(v)
        rows.append((fk(k), val))
    kw = max(len("key"), *(len(r[0]) for r in rows))
    echo(f"  {'key':>{kw}}  value")
    for k, v in sorted(rows, key=lambda r: (len(r[0]), r[0])):
        echo(f"  {k:>{kw}}  {v}")


# -- replay -------------------------------------------------------------------------------

def replay(prog, packets, *, out=None, ifindex: int = 1, on_packet=None, socket: str = "dgram"):
    """Run every packet through prog; returns Counter of verdict names and of fates.

    ``socket``: what a socket filter sees: "dgram" the packet from the network header (a
    SOCK_DGRAM packet socket, as BPF_PROG_TEST_RUN shows it), "raw" the whole frame
    (SOCK_RAW).  Its return value then cuts what is captured from that point on.
    """
    from ..runtime import ExecProgram, SkBuff, XdpBuff, run_skb, run_xdp
    from ..runtime.skb import eth_pkt_type
    ep = ExecProgram.from_object(prog._obj)
    verdicts, fates = collections.Counter(), collections.Counter()
    for pkt in packets:
        if on_packet is not None:
            on_packet(pkt)
        if pkt.linktype != 1:
            verdicts["skipped (not Ethernet)"] += 1
            continue
        data = pkt.data
        if ep.prog_type == XDP:
            # past one page a frame is multi-buffer: the rest travels in fragments
            xdp = XdpBuff(data[:XDP_LINEAR], ingress_ifindex=ifindex, frags=data[XDP_LINEAR:])
            res = run_xdp(ep, xdp)
            outp = xdp.data + xdp.frags_bytes
        else:
            l2 = ep.prog_type != SOCKET_FILTER or socket == "raw"
            if not l2 and len(data) < 14:
                verdicts["skipped (shorter than an Ethernet header)"] += 1
                continue
            skb = SkBuff(data, l2=l2, pkt_type=eth_pkt_type(data, data[:6], b"\xff" * 6),
                         ifindex=ifindex, ingress_ifindex=ifindex, tstamp=pkt.timestamp_ns,
                         wire_len=pkt.orig_len - (0 if l2 else 14))
            res = run_skb(ep, skb)
            outp = res.data
        # on the wire the packet is as long as the program left it; a socket filter's
        # return value only shortens what is captured
        wire = max(len(outp), pkt.orig_len - len(data) + len(outp))
        if ep.prog_type == SOCKET_FILTER:
            outp = outp[:res.retval + (0 if socket == "raw" else 14)]
        verdicts[res.verdict] += 1
        fates[res.fate] += 1
        if out is not None and res.fate == "pass":
            out.write(outp, pkt.timestamp_ns, wire)
    return verdicts, fates


@click.command("run")
@click.argument("obj", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("program", required=False)
@click.option("--pcap", "pcap", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="capture (pcap or pcapng) whose packets are fed to the program")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="write the packets the program passes (as it left them) to this pcap")
@click.option("--type", "prog_type", type=click.Choice(list(NET_TYPES)),
              help="program type, for assembler (.s) or raw (.bin) programs")
@click.option("--ifindex", default=1, show_default=True, help="interface index the packets arrive on")
@click.option("--socket", "socket_kind", type=click.Choice(["dgram", "raw"]), default="dgram", show_default=True,
              help="socket filters: see packets from the network header (dgram, as test runs) or "
                   "from the Ethernet header (raw)")
@click.option("--hist", "hists", multiple=True, help="print this map as a log2 histogram (repeatable)")
@click.option("--trace/--no-trace", default=False, help="also print bpf_trace_printk lines here")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on long captures, on a terminal)")
def run_cmd(obj, program, pcap, out, prog_type, ifindex, socket_kind, hists, trace, progress):
    """Replay a capture through a program: verdict counts and maps at the end."""
    from ..events.pcap import PcapWriter, read_packets
    from ..runtime import trace_listeners
    prog, maps, close, types = load_target(obj, program, prog_type)
    listener = None
    if trace:
        def listener(line):
            click.echo(line, err=True)
        trace_listeners.append(listener)
    writer = PcapWriter(out) if out is not None else None
    size = os.path.getsize(pcap)
    show = progress if progress is not None else (size >= PROGRESS_MIN_BYTES and sys.stderr.isatty())
    try:
        if show:
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn
            with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                          TimeRemainingColumn(), transient=True,
                          console=__import__("rich.console").console.Console(stderr=True)) as bar:
                task = bar.add_task(f"{pcap.name}", total=size)
                verdicts, fates = replay(prog, read_packets(pcap), out=writer, ifindex=ifindex,
                                         socket=socket_kind,
                                         on_packet=lambda p: bar.advance(task, len(p.data) + 16))
        else:
            verdicts, fates = replay(prog, read_packets(pcap), out=writer, ifindex=ifindex,
                                     socket=socket_kind)
    finally:
        if writer is not None:
            writer.close()
        if listener is not None:
            trace_listeners.remove(listener)
    try:
        total = sum(verdicts.values())
        click.echo(f"{total} packet{'s' if total != 1 else ''} through {prog.name or 'program'} "
                   f"({TYPE_NAMES.get(prog.type, prog.type)})")
        w = max((len(v) for v in verdicts), default=7)
        for v, n in sorted(verdicts.items(), key=lambda x: -x[1]):
            click.echo(f"  {v:<{w}}  {n}")
        if out is not None:
            click.echo(f"{fates.get('pass', 0)} packets written to {out}")
        for name, m in maps.items():
            click.echo("")
            print_map(name, m, set(hists), types=types.get(name))
        unknown = set(hists) - set(maps)
        if unknown:
            raise RunCliError(f"--hist: no map {', '.join(sorted(unknown))} (has: {', '.join(maps) or 'none'})")
    finally:
        close()


@click.command("trace")
@click.option("--follow/--no-follow", default=True, help="keep reading (default) or print what is buffered and exit")
def trace_cmd(follow):
    """Print bpf_trace_printk output, as `cat /sys/kernel/tracing/trace_pipe`."""
    from ..helpers import trace as tp
    if not follow:
        for line in tp.read_lines():
            click.echo(line)
        return
    try:
        for line in tp.follow():
            click.echo(line)
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass


commands = [run_cmd, trace_cmd]
