"""sockex2: load prog.o, run the flow dissector over the bundled capture, print the flows.

    python examples/sockex2/run.py [--object prog.o] [--pcap capture.pcap]
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
        common.run_capture(obj.programs["flow_dissector"], args.pcap)
        flows = common.decode_flows(obj.maps["flows"])
    common.print_flows(flows)
    return flows


if __name__ == "__main__":
    common.guarded(main)
