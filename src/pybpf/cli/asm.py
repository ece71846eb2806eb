"""``pybpf asm`` and ``pybpf disasm``: text <-> raw ``struct bpf_insn`` bytes."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ..errors import PybpfError

_HEX_TEXT = re.compile(rb"^[0-9a-fA-F\s]*$")


def _read_text(path: str) -> tuple[str, str]:
    if path == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        data = Path(path).read_bytes()
        name = path
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as e:
        raise PybpfError(f"{name}: not UTF-8 text (byte {e.start}); is it a raw program? "
                         "use 'pybpf disasm'") from None


@click.command("asm")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("-o", "--output", "out", default=None,
              help="Output file (default: FILE with suffix .bin; '-' = stdout).")
@click.option("--syntax", type=click.Choice(["auto", "llvm", "conformance"]), default="auto",
              show_default=True, help="Input syntax.")
@click.option("--hex", "as_hex", is_flag=True, help="Print one 16-hex-digit slot per line instead.")
def asm_cmd(file: str, out: str | None, syntax: str, as_hex: bool) -> None:
    """Assemble FILE into raw eBPF instruction bytes."""
    from ..asm import assemble
    from ..isa import encode

    text, name = _read_text(file)
    insns = assemble(text, source=name, syntax=syntax)
    data = encode(insns)
    if as_hex:
        lines = "".join(data[k:k + 8].hex() + "\n" for k in range(0, len(data), 8))
        if out in (None, "-"):
            click.echo(lines, nl=False)
        else:
            Path(out).write_text(lines)
        return
    if out == "-" or (out is None and file == "-"):
        stream = click.get_binary_stream("stdout")
        stream.write(data)
        stream.flush()
        return
    target = Path(out) if out is not None else Path(file).with_suffix(".bin")
    if out is None and target == Path(file):
        raise PybpfError(f"{file}: refusing to overwrite the input; give -o OUT")
    target.write_bytes(data)
    click.echo(f"{target}: {len(insns)} instruction slots ({len(data)} bytes)", err=True)


def _load_bytes(file: str) -> bytes:
    data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    if data and _HEX_TEXT.match(data):
        digits = re.sub(rb"\s+", b"", data)
        if len(digits) % 2:
            raise PybpfError(f"{file}: hex text has an odd number of digits ({len(digits)})")
        return bytes.fromhex(digits.decode())
    return data


@click.command("disasm")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--style", type=click.Choice(["llvm", "pybpf", "kernel", "conformance"]), default="llvm",
              show_default=True, help="Output style (pybpf = llvm + lossless extensions).")
def disasm_cmd(file: str, style: str) -> None:
    """Disassemble FILE: raw instruction bytes or hex text."""
    from ..asm import disassemble
    from ..isa import decode

    insns = decode(_load_bytes(file))
    width = len(str(max(len(insns) - 1, 0)))
    for idx, text in enumerate(disassemble(insns, style=style)):
        if text:
            click.echo(f"{idx:>{width + 2}}: {text}")


commands = [asm_cmd, disasm_cmd]
