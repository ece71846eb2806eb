"""``pybpf exec``: assemble or decode a program and run it in the interpreter."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import click

from ..errors import PybpfError
from ..isa import decode



def _parse_mem(text: str) -> bytes:
    from ..conformance import ConformanceError, parse_hex_bytes

    try:
        return parse_hex_bytes(text, "--mem")
    except ConformanceError as e:
        raise PybpfError(str(e)) from None


def load_program(path: Path, syntax: str = "auto"):
    """(insns, memory from the file or None) for a .bin, .data or assembler text file."""
    if path.suffix == ".bin":
        return decode(path.read_bytes()), None
    if path.suffix == ".o":
        raise PybpfError(f"{path}: ELF objects cannot be run by exec "
                         f"(give assembler text, a .data test or raw .bin instructions)")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise PybpfError(f"{path}: not a text file (raw instructions need a .bin suffix)") from None
    if path.suffix == ".data":
        from ..conformance import assemble_case, parse

        case = parse(text, str(path))
        return assemble_case(case), case.mem
    from ..asm import assemble

    return assemble(text, source=str(path), syntax=syntax), None


EXAMPLES = {
    "checksum": "Internet checksum of a 20-byte IPv4 header",
    "fibonacci": "fib(90) in a loop, LLVM assembler syntax",
}


def _example(name: str):
    from ..asm import assemble
    from ..conformance import parse_hex_bytes

    base = resources.files("pybpf") / "examples"
    text = (base / f"{name}.s").read_text()
    mem = parse_hex_bytes((base / f"{name}.mem").read_text())
    return assemble(text, source=f"examples/{name}.s"), mem


@click.command("exec")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--mem", "mem_hex", metavar="HEX", help='Input memory as hex bytes, e.g. "aa bb 11".')
@click.option("--mem-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Input memory from a binary file.")
@click.option("--trace/--no-trace", default=None,
              help="Print every executed instruction and the registers it changed "
                   "(default: on for the bundled example, off otherwise).")
@click.option("--max-insns", type=click.IntRange(min=1), default=None,
              help="Instruction budget (default 1000000).")
@click.option("--engine", type=click.Choice(["fast", "reference"]), default=None,
              help="Interpreter engine (default: fast, reference for very large programs; "
                   "tracing always uses the reference engine).")
@click.option("--syntax", type=click.Choice(["auto", "llvm", "conformance"]), default="auto",
              help="Assembler syntax of FILE.")
@click.option("--example", type=click.Choice(sorted(EXAMPLES)), default="checksum",
              help="Bundled example to run when no FILE is given.")
def exec_cmd(file, mem_hex, mem_file, trace, max_insns, engine, syntax, example):
    """Run FILE (.bin raw instructions, .data conformance test, or assembler text).

    Without FILE, runs a bundled example (--example; by default an Internet
    checksum over an IPv4 header) with the trace on.  r1 holds the input
    memory's address, r2 its length.
    """
    from ..vm import DEFAULT_MAX_INSNS, VM, VmError
    from ..conformance import HELPERS

    if file is None:
        insns, mem = _example(example)
        click.echo(f"Running the bundled example examples/{example}.s ({EXAMPLES[example]})")
        if trace is None:
            trace = True
    else:
        insns, mem = load_program(file, syntax)
    if mem_hex is not None:
        mem = _parse_mem(mem_hex)
    if mem_file is not None:
        mem = mem_file.read_bytes()
    vm = VM(insns, helpers=HELPERS, max_insns=max_insns or DEFAULT_MAX_INSNS)
    try:
        result = vm.run(mem, trace=bool(trace), engine=engine)
    except VmError as e:
        for line in e.trace:
            click.echo(line)
        raise
    for line in result.trace:
        click.echo(line)
    click.echo(f"r0 = {result.r0:#x} ({result.r0})")
    click.echo(f"{result.insns_executed} instructions executed")


commands = [exec_cmd]
