"""tc_classifier: run the tc classifier over the bundled capture, print classes and drops.

    python examples/tc_classifier/run.py [--object prog.o] [--pcap capture.pcap]
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

from pybpf.object import load  # noqa: E402

CLASSES = ["control", "interactive", "web", "bulk"]
DSCP = [48, 46, 18, 8]
TC_ACT = {0: "TC_ACT_OK", 2: "TC_ACT_SHOT"}


def main(argv=None) -> dict:
    args = common.arguments(__file__, __doc__, argv)
    with load(args.object) as obj:
        results = common.run_capture(obj.programs["classify"], args.pcap)
        classes = {CLASSES[int.from_bytes(k, "little")]: struct.unpack("<QQ", v)
                   for k, v in obj.maps["classes"].items()}
        drops = int.from_bytes(obj.maps["ttl_drops"][0], "little")
    print(common.table([(c, DSCP[i], *classes[c]) for i, c in enumerate(CLASSES)],
                       ("class", "dscp", "packets", "bytes")))
    verdicts: dict[str, int] = {}
    for r in results:
        name = TC_ACT.get(r.retval, str(r.retval))
        verdicts[name] = verdicts.get(name, 0) + 1
    print(f"\nverdicts: {verdicts}; dropped for TTL <= 1: {drops}")
    return {"classes": classes, "drops": drops, "results": results}


if __name__ == "__main__":
    common.guarded(main)
