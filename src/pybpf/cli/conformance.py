"""``pybpf conformance`` (run a directory of .data tests) and the bpf_conformance plugin."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("conformance")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--engine", type=click.Choice(["fast", "reference"]), default="fast",
              help="Interpreter engine to test.")
@click.option("-v", "--verbose", is_flag=True, help="Also list the tests that pass.")
def conformance_cmd(path, engine, verbose):
    """Run the eBPF conformance tests (.data files) in PATH and compare r0."""
    from ..conformance import run_dir

    report = run_dir(path, engine=engine)
    for o in report.outcomes:
        if not o.passed:
            click.echo(f"FAIL {o.name}: {o.reason}")
        elif verbose:
            click.echo(f"PASS {o.name}")
    click.echo(report.summary())
    if report.failed or not report.outcomes:
        if not report.outcomes:
            click.echo(f"pybpf: error: no .data files in {path}", err=True)
        sys.exit(1)


@click.command("conformance-plugin")
@click.argument("memory", required=False, default="")
def plugin_cmd(memory):
    """Plugin for the bpf_conformance runner.

    Reads the program as hex bytes on stdin, takes the input memory as hex
    bytes (e.g. "aa bb 11"), runs it and prints r0 in hex.
    """
    from ..conformance import run_plugin
    from ..errors import PybpfError

    try:
        r0 = run_plugin(sys.stdin.read(), memory)
    except PybpfError as e:
        click.echo(f"pybpf: error: {e}", err=True)
        sys.exit(1)
    click.echo(f"{r0:x}")


commands = [conformance_cmd, plugin_cmd]
