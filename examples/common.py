"""What the examples' run.py scripts share: the bundled capture, running a program, printing.

Programs run through BPF_PROG_TEST_RUN, as the kernel's bpftool would run
them (the differential test checks that both agree): XDP and tc programs
see the whole Ethernet frame, a socket filter sees the packet from its
network header on and gets the MAC header back zeroed.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SAMPLE = HERE / "data" / "sample.pcap"

IP_PROTOCOLS = {0: "HOPOPT", 1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 41: "IPv6", 43: "IPv6-Route",
                44: "IPv6-Frag", 47: "GRE", 50: "ESP", 51: "AH", 58: "ICMPv6", 59: "IPv6-NoNxt",
                60: "IPv6-Opts", 132: "SCTP"}


def arguments(script: str, doc: str | None, argv=None, out: bool = False):
    """A run.py's command line: [--object prog.o] [--pcap capture] (and --out for some)."""
    import argparse
    ap = argparse.ArgumentParser(prog=f"{Path(script).parent.name}/run.py",
                                 description=(doc or "").strip().splitlines()[0] if doc else None)
    ap.add_argument("--object", type=Path, default=Path(script).resolve().parent / "prog.o",
                    help="the object file (default: prog.o beside run.py)")
    ap.add_argument("--pcap", type=Path, default=SAMPLE,
                    help="the capture to replay (default: data/sample.pcap)")
    if out:
        ap.add_argument("--out", type=Path, help="write the frames the program let through here")
    return ap.parse_args(argv)


def guarded(main, *args, **kw):
    """Run main; a pybpf or OS error becomes one line on stderr and exit status 1."""
    from pybpf.errors import PybpfError
    try:
        return main(*args, **kw)
    except (PybpfError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def frames(pcap: Path | str = SAMPLE):
    from pybpf.events.pcap import read_packets
    for p in read_packets(pcap):
        yield p.data


def run_frame(prog, frame: bytes):
    """BPF_PROG_TEST_RUN of a loaded program on one Ethernet frame: ``.retval``, ``.data_out``."""
    from pybpf.runtime.testrun import test_run
    return test_run(prog, frame)


def run_capture(prog, pcap: Path | str = SAMPLE) -> list:
    """Run a loaded program over every frame of a capture; the results in order."""
    from pybpf.errors import PybpfError
    out = []
    for i, f in enumerate(frames(pcap)):
        try:
            out.append(run_frame(prog, f))
        except OSError as e:            # e.g. a runt frame: BPF_PROG_TEST_RUN says EINVAL
            raise PybpfError(f"{pcap}: frame {i} ({len(f)} bytes): test run failed: {e}") from None
    return out


def addr(raw16: bytes) -> str:
    """A 16-byte flow address: IPv6, or IPv4 when it is ::ffff:a.b.c.d."""
    a = ipaddress.IPv6Address(raw16)
    return str(a.ipv4_mapped) if a.ipv4_mapped else str(a)


def proto_name(n: int) -> str:
    return IP_PROTOCOLS.get(n, str(n))


def table(rows: list[tuple], header: tuple) -> str:
    rows = [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(header)]
    fmt = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(tuple("-" * w for w in widths))] + [fmt(r) for r in rows])


def decode_flows(m) -> dict[tuple, tuple[int, int]]:
    """(src, dst, proto, sport, dport) -> (packets, bytes) from a sockex2/sockex3 flows map."""
    out = {}
    for k, v in m.items():
        sport, dport, proto = struct.unpack_from("<HHB", k, 32)
        out[(addr(k[:16]), addr(k[16:32]), proto, sport, dport)] = struct.unpack("<QQ", v)
    return out


def print_flows(flows: dict) -> None:
    rows = [(src, dst, proto_name(proto), sport, dport, pk, by)
            for (src, dst, proto, sport, dport), (pk, by) in
            sorted(flows.items(), key=lambda kv: (-kv[1][1], kv[0]))]
    print(table(rows, ("source", "destination", "proto", "sport", "dport", "packets", "bytes")))
    print(f"{len(flows)} flows, {sum(p for p, _ in flows.values())} packets, "
          f"{sum(b for _, b in flows.values())} bytes")
