"""sockex3: the flow dissector as tail-called stages; prints the same flows as sockex2.

    python examples/sockex3/run.py [--object prog.o] [--pcap capture.pcap]

The object fills its PROG_ARRAY "stages" itself (load() puts the programs
in); the entry program is "dissect".
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from pybpf.object import load  # noqa: E402


def main(argv=None) -> dict:
    args = common.arguments(__file__, __doc__, argv)
    with load(args.object) as obj:
        stages = obj.maps["stages"]
        # A prog array slot reads back as the id of the program in it (ENOENT if empty).
        slots = {int.from_bytes(k, "little"): int.from_bytes(v, "little") for k, v in stages.items()}
        names = {p.id: n for n, p in obj.programs.items()}
        print("stages: " + ", ".join(f"[{i}] {names.get(pid, pid)}" for i, pid in sorted(slots.items())))
        common.run_capture(obj.programs["dissect"], args.pcap)
        flows = common.decode_flows(obj.maps["flows"])
    common.print_flows(flows)
    return flows


if __name__ == "__main__":
    common.guarded(main)
