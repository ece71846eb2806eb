"""The ``pybpf`` command line: one click group, each command family in its own module."""

from __future__ import annotations

import sys

import click

from ..errors import PybpfError


class _Group(click.Group):
    """Turns every pybpf error into one clear line and exit status 1, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PybpfError as e:
            click.echo(f"pybpf: error: {e}", err=True)
            sys.exit(1)
        except OSError as e:
            click.echo(f"pybpf: error: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""), err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pybpf")
def main() -> None:
    """pybpf: eBPF assembler, verifier, maps and runtime in userspace Python."""


def _register() -> None:
    from . import asm, conformance, maps, prog, run, runtime

    for module in (asm, run, conformance, maps, prog, runtime):
        for command in module.commands:
            main.add_command(command)


_register()
