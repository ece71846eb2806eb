"""Builds every example's prog.c into the prog.o committed beside it.

    python examples/build.py [NAME ...]        (default: every example)

The objects are committed so that the examples run without a compiler;
tests/test_examples_build.py rebuilds them and checks that the instructions
still match, so the sources and objects cannot drift apart.  Paths in the
debug information are relative ("prog.c"), so the bytes do not depend on
where the tree is checked out.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLANG = os.environ.get("CLANG", "/usr/lib/llvm-19/bin/clang")
EXAMPLES = ["sockex1", "sockex2", "sockex3", "tracex", "xdp_filter", "tc_classifier"]


def command(name: str, out: str = "prog.o") -> list[str]:
    arch = {"x86_64": "x86", "aarch64": "arm64"}.get(platform.machine(), "x86")
    multiarch = f"/usr/include/{platform.machine()}-linux-gnu"
    return [CLANG, "-O2", "-g", "-target", "bpf", f"-D__TARGET_ARCH_{arch}", "-I", multiarch,
            "-Wall", "-Werror", "-fdebug-compilation-dir=.",
            "-c", "prog.c", "-o", out]


def build(name: str, out: str | None = None) -> Path:
    """Compile examples/NAME/prog.c to out (default: examples/NAME/prog.o)."""
    target = Path(out) if out else HERE / name / "prog.o"
    res = subprocess.run(command(name, str(target.resolve())), cwd=HERE / name,
                         capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"{name}: clang failed:\n{res.stderr}")
    return target


if __name__ == "__main__":
    for n in sys.argv[1:] or EXAMPLES:
        print(f"built {build(n)}")
