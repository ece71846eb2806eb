"""xdp_filter: block two prefixes, run the XDP program over the bundled capture, print its maps.

    python examples/xdp_filter/run.py [--object prog.o] [--pcap capture.pcap] [--out passed.pcap]

The blocklist (an LPM trie) is filled from Python before the run; the
per-verdict counters are the program's global array `verdicts` (in the
object's .bss map).  With --out, the frames the program passed or sent back
(XDP_TX, the rewritten echo replies) are written to a capture.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from pybpf.object import load  # noqa: E402

BLOCKED = ["93.184.216.0/24", "2001:db8:feed::/48"]
VERDICTS = ["XDP_ABORTED", "XDP_DROP", "XDP_PASS", "XDP_TX", "XDP_REDIRECT"]


def prefix_key(text: str) -> bytes:
    """The trie key: prefix length over 128 bits, then the address (IPv4 as ::ffff:a.b.c.d)."""
    net = ipaddress.ip_network(text)
    if net.version == 4:
        return (96 + net.prefixlen).to_bytes(4, "little") + \
            ipaddress.IPv6Address(f"::ffff:{net.network_address}").packed
    return net.prefixlen.to_bytes(4, "little") + net.network_address.packed


def block(obj, prefixes=BLOCKED) -> None:
    for p in prefixes:
        obj.maps["blocked"][prefix_key(p)] = 0


def read_verdicts(obj) -> dict[str, int]:
    raw = obj.maps["prog.bss"][0]
    off, size = obj.spec.maps["prog.bss"].variables["verdicts"]
    return {VERDICTS[i]: int.from_bytes(raw[off + 8 * i:off + 8 * i + 8], "little")
            for i in range(size // 8)}


def main(argv=None) -> dict:
    args = common.arguments(__file__, __doc__, argv, out=True)
    with load(args.object) as obj:
        block(obj)
        results = common.run_capture(obj.programs["xdp_filter"], args.pcap)
        verdicts = read_verdicts(obj)
        hits = {p: int.from_bytes(obj.maps["blocked"][prefix_key(p)], "little") for p in BLOCKED}
    print(common.table(list(verdicts.items()), ("verdict", "packets")))
    print()
    print(common.table(list(hits.items()), ("blocked prefix", "dropped")))
    if args.out:
        from pybpf.events.pcap import PcapWriter
        with PcapWriter(args.out) as w:
            for r in results:
                if r.retval in (2, 3):
                    w.write(r.data_out)
        print(f"\npassed and answered frames written to {args.out}")
    return {"verdicts": verdicts, "hits": hits, "results": results}


if __name__ == "__main__":
    common.guarded(main)
