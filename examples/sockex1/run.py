"""sockex1: load prog.o, run the socket filter over the bundled capture, print bytes per protocol.

    python examples/sockex1/run.py [--object prog.o] [--pcap capture.pcap]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from pybpf.object import load  # noqa: E402


def main(argv=None) -> dict[int, int]:
    args = common.arguments(__file__, __doc__, argv)
    with load(args.object) as obj:
        common.run_capture(obj.programs["count_bytes"], args.pcap)
        counts = {int.from_bytes(k, "little"): int.from_bytes(v, "little")
                  for k, v in obj.maps["proto_bytes"].items() if any(v)}
    print(common.table([(common.proto_name(p), p, n) for p, n in sorted(counts.items())],
                       ("protocol", "number", "bytes")))
    return counts


if __name__ == "__main__":
    common.guarded(main)
