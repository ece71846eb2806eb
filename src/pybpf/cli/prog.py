"""``pybpf prog ...``: bpftool's program commands, in bpftool's words and argument order.

    pybpf prog load FILE PATH [type TYPE] [map {idx IDX | name NAME} MAP]... [license LICENSE]
                    [name NAME] [unprivileged] [-d | --log-level N]
    pybpf prog show|list [PROG]       PROG := id ID | pinned FILE | name NAME | tag TAG
    pybpf prog dump xlated PROG [opcodes]
    pybpf prog pin PROG FILE
    MAP := id ID | pinned FILE | name NAME

FILE is assembler text (either syntax) or raw instructions (``.bin``); a
clang-compiled ELF object (``.o``) is read by pybpf.loader.  In assembler or
raw code, ``r1 = map_idx(N) ll`` refers to the map given as ``map idx N``.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import click

from .maps import CliError, _Args, _emit, _json_opts, _num, _open_map

_CTX = {"ignore_unknown_options": True}


def _open_prog(args: _Args):
    """PROG := id ID | pinned FILE | name NAME | tag TAG."""
    from .. import kobj
    from ..prog import Program, ProgLoadError
    how = args.next("PROG (id ID | pinned FILE | name NAME | tag TAG)")
    if how == "pinned":
        path = args.next("pinned FILE")
        try:
            return Program.from_pinned(path)
        except ProgLoadError as e:
            raise CliError(f"{path}: {e.message}") from None
        except OSError as e:
            raise CliError(f"bpf obj get ({path}): {os.strerror(e.errno)}") from None
    if how == "id":
        pid = _num(args.next("id ID"), "id")
        try:
            return Program.from_id(pid)
        except OSError as e:
            raise CliError(f"get by id ({pid}): {os.strerror(e.errno)}") from None
    if how in ("name", "tag"):
        want = args.next(f"{how} {how.upper()}").lower() if how == "tag" else args.next("name NAME")
        found = [h for h in kobj.live_objects() if h["kind"] == "prog"
                 and (h["name"] == want if how == "name" else h["fields"].get("tag") == want)]
        if not found:
            raise CliError(f"no program with {how} {want}")
        if len(found) > 1:
            raise CliError(f"several programs with {how} {want}: use id "
                           f"({', '.join(str(h['id']) for h in found)})")
        return Program.from_id(found[0]["id"])
    raise CliError(f"expected 'id', 'pinned', 'name' or 'tag', got {how!r}")


# -- load ------------------------------------------------------------------------

def _read_code(path: str):
    """(kind, data): "elf" with the bytes, "bin" with raw instructions, "asm" with text."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CliError(f"{path}: {e.strerror}") from None
    if data[:4] == b"\x7fELF":
        return "elf", data
    if path.endswith(".bin") or (data and b"\0" in data):
        if len(data) % 8:
            raise CliError(f"{path}: {len(data)} bytes is not a whole number of 8-byte instructions")
        return "bin", data
    try:
        return "asm", data.decode()
    except UnicodeDecodeError:
        raise CliError(f"{path}: neither assembler text (not UTF-8) nor an ELF object") from None


def _btf_opts(spec, pdef) -> dict:
    """The object's BTF and the program's func_info/line_info, as libbpf passes them
    (left out, as libbpf does, when the kernel side would refuse the BTF)."""
    from ..syscall.btf import check_btf
    data = spec.btf_for_kernel
    if not data or not (pdef.func_info or pdef.line_info):
        return {}
    try:
        check_btf(data)
    except OSError:
        return {}
    return {"btf": data, "func_info": pdef.func_info_bytes(), "line_info": pdef.line_info_bytes()}


def _load_elf(data: bytes, path: str, ptype, map_refs: dict, license, name, opts):
    """The first program of a clang-compiled object, its maps created (or reused: map name NAME ...)."""
    from .. import loader
    from ..map import Map
    from ..prog import Program
    try:
        spec = loader.read_object(path)
    except loader.ElfError as e:
        raise CliError(str(e)) from None
    progs = [p for p in spec.programs.values() if p.autoload] or list(spec.programs.values())
    if not progs:
        raise CliError(f"{path}: no programs in the object")
    pdef = progs[0]
    fds: dict[str, int] = {}
    made = []
    try:
        for i, mdef in enumerate(spec.maps.values()):
            given = map_refs.get(("name", mdef.name)) or map_refs.get(("idx", i))
            if given is not None:
                fds[mdef.name] = given.fd
                continue
            if mdef.inner is not None or mdef.init_slots:
                raise CliError(f"map {mdef.name}: map-in-map and prog-array slots need `map name "
                               f"{mdef.name} pinned FILE`")
            safe = mdef.name[:15] if all(c.isalnum() or c in "_." for c in mdef.name) else ""
            m = Map.create(mdef.type, mdef.key_size, mdef.value_size, mdef.max_entries,
                           mdef.map_flags, safe)
            made.append(m)
            if mdef.data:
                m[0] = bytes(mdef.data).ljust(mdef.value_size, b"\0")
            fds[mdef.name] = m.fd
        unknown = [k for k in map_refs if k[0] == "name" and k[1] not in spec.maps]
        if unknown:
            raise CliError(f"{path}: no map named {unknown[0][1]}")
        try:
            insns = loader.resolve(spec, fds, [pdef.name])[pdef.name]
        except loader.ElfError as e:
            raise CliError(str(e)) from None
        return Program.load(insns, ptype if ptype is not None else pdef.prog_type,
                            license=license or spec.license or "", name=name or pdef.name[:15],
                            expected_attach_type=pdef.expected_attach_type, **_btf_opts(spec, pdef),
                            **opts)
    finally:
        for m in made:
            m.close()


@click.group("prog")
def prog_group() -> None:
    """Load, inspect and pin BPF programs (bpftool prog ...)."""


@prog_group.command("load", context_settings=_CTX)
@click.argument("words", nargs=-1)
@click.option("-d", "--debug", is_flag=True, help="print the verifier log (log level 1 unless --log-level)")
@click.option("--log-level", type=int, default=None, help="verifier log level (1, 2, 4 = stats)")
@_json_opts
def load(words, debug, log_level, as_json, pretty):
    """prog load FILE PATH [type TYPE] [map {idx IDX | name NAME} MAP]... [license LIC] [name NAME] [unprivileged]"""
    from ..prog import Program, ProgLoadError
    args = _Args(words)
    path = args.next("FILE")
    pin_path = args.next("PATH")
    ptype = None
    license = None
    name = ""
    privileged = True
    map_refs: dict = {}
    try:
        while args.more():
            word = args.next("keyword")
            if word == "type":
                ptype = args.next("type TYPE")
            elif word == "map":
                how = args.next("map idx IDX | map name NAME")
                if how == "idx":
                    key = ("idx", _num(args.next("idx IDX"), "idx"))
                elif how == "name":
                    key = ("name", args.next("name NAME"))
                else:
                    raise CliError(f"expected 'idx' or 'name' after 'map', got {how!r}")
                if key in map_refs:
                    raise CliError(f"map {key[0]} {key[1]} given twice")
                map_refs[key] = _open_map(args)
            elif word == "license":
                license = args.next("license LICENSE")
            elif word == "name":
                name = args.next("name NAME")
            elif word == "unprivileged":
                privileged = False
            elif word in ("offload_dev", "xdpmeta_dev"):
                raise CliError("device offload is not supported")
            else:
                raise CliError(f"unknown arg {word}")
        kind, data = _read_code(path)
        level = log_level if log_level is not None else (1 if debug else 0)
        opts = {"log_level": level, "privileged": privileged}
        try:
            if kind == "elf":
                prog = _load_elf(data, path, ptype, map_refs, license, name, opts)
            else:
                if ptype is None:
                    raise CliError(f"{path} is not an ELF object: give the program type (type TYPE)")
                names = [k for k in map_refs if k[0] == "name"]
                if names:
                    raise CliError(f"map name {names[0][1]}: maps of assembler or raw code are given "
                                   "by index (map idx N)")
                n = max((k[1] for k in map_refs), default=-1) + 1
                missing = [i for i in range(n) if ("idx", i) not in map_refs]
                if missing:
                    raise CliError(f"map idx {missing[0]} not given (indexes 0..{n - 1} are used)")
                maps = [map_refs[("idx", i)] for i in range(n)]
                code = data
                if kind == "asm":       # assembled here so that errors name the file and line
                    from ..asm import assemble
                    code = assemble(data, source=path)
                prog = Program.load(code, ptype, license=license if license is not None else "GPL",
                                    name=name, maps=maps, **opts)
        except ProgLoadError as e:
            if debug or level:
                click.echo(e.log.rstrip("\n"), err=True)
            raise CliError(f"failed to load program: {e.strerror}") from None
        with prog:
            if debug or level:
                click.echo(prog.log.rstrip("\n"), err=True)
            try:
                prog.pin(pin_path)
            except OSError as e:
                raise CliError(f"can't pin the object ({pin_path}): {os.strerror(e.errno)}") from None
            if as_json or pretty:
                _emit(_entry(prog), True, pretty)
    finally:
        for m in map_refs.values():
            m.close()


# -- show / dump / pin -----------------------------------------------------------

def _entry(prog, pinned: list[str] | None = None) -> dict:
    e = prog.info()
    out = {"id": e["id"], "type": e["type"]}
    if e["name"]:
        out["name"] = e["name"]
    out.update({"tag": e["tag"], "gpl_compatible": e["gpl_compatible"], "loaded_at": e["loaded_at"],
                "uid": e["uid"], "bytes_xlated": e["bytes_xlated"], "jited": False,
                "bytes_memlock": 4096 + len(prog.insns) * 16, "verified_insns": e["verified_insns"]})
    if e["map_ids"]:
        out["map_ids"] = e["map_ids"]
    if e.get("btf_id"):
        out["btf_id"] = e["btf_id"]
    out["pinned"] = pinned or []
    return out


def _print_entries(entries: list[dict]) -> None:
    for e in entries:
        name = f"  name {e['name']}" if "name" in e else ""
        gpl = "  gpl" if e["gpl_compatible"] else ""
        when = datetime.fromtimestamp(e["loaded_at"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")
        click.echo(f"{e['id']}: {e['type']}{name}  tag {e['tag']}{gpl}")
        click.echo(f"\tloaded_at {when}  uid {e['uid']}")
        maps = f"  map_ids {','.join(str(i) for i in e['map_ids'])}" if "map_ids" in e else ""
        click.echo(f"\txlated {e['bytes_xlated']}B  not jited  memlock {e['bytes_memlock']}B{maps}")
        if "btf_id" in e:
            click.echo(f"\tbtf_id {e['btf_id']}")
        click.echo(f"\tverified_insns {e['verified_insns']}")
        for p in e["pinned"]:
            click.echo(f"\tpinned {p}")


@prog_group.command("show", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def show(words, as_json, pretty):
    """prog show [PROG]: every live program (pinned, held, or open in a process), by id."""
    from .. import kobj
    from ..prog import Program
    kobj.gc()
    objs = [h for h in kobj.live_objects() if h["kind"] == "prog"]
    if words:
        args = _Args(words)
        p = _open_prog(args)
        args.done()
        with p:
            objs = [h for h in objs if h["id"] == p.id]
    entries = []
    for h in objs:
        try:
            fd = os.open(h["open_path"], os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue        # gone meanwhile
        with Program(fd) as p:
            entries.append(_entry(p, h.get("pinned", [])))
    if as_json or pretty:
        _emit(entries[0] if words and entries else entries, True, pretty)
    else:
        _print_entries(entries)


prog_group.add_command(click.Command("list", callback=show.callback, params=show.params,
                                     context_settings=_CTX, help="Same as show."))


def xlated_insns(prog) -> list[tuple[int, str, bytes]]:
    """(index, kernel-style text, encoding) per instruction, maps shown as map[id:N] like bpftool."""
    from ..asm import disassemble
    from ..isa import opcodes as op
    from ..isa.insn import encode
    xl = prog.xlated
    text = disassemble(xl, style="kernel")
    out = []
    for i, (ins, line) in enumerate(zip(xl, text)):
        if not line:
            continue
        wide = ins.code == op.LD_IMM64 and i + 1 < len(xl)
        if wide and ins.src == op.PSEUDO_MAP_FD:
            line = f"({ins.code:02x}) r{ins.dst} = map[id:{ins.imm & 0xFFFFFFFF}]"
        elif wide and ins.src == op.PSEUDO_MAP_VALUE:
            line = f"({ins.code:02x}) r{ins.dst} = map[id:{ins.imm & 0xFFFFFFFF}][0]+{xl[i + 1].imm}"
        out.append((i, line, encode(xl[i:i + (2 if wide else 1)])))
    return out


def _source_lines(prog) -> dict:
    """insn index -> (file, line, col, source) of the program's line_info, {} without BTF."""
    from ..prog.image import held_btf, source_lines
    try:
        return source_lines(prog.image, held_btf(prog._obj))
    except OSError:
        return {}


@prog_group.command("dump", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def dump(words, as_json, pretty):
    """prog dump xlated PROG [opcodes]"""
    args = _Args(words)
    what = args.next("xlated")
    if what == "jited":
        raise CliError("pybpf does not JIT programs: no jited image (use dump xlated)")
    if what != "xlated":
        raise CliError(f"expected 'xlated', got {what!r}")
    p = _open_prog(args)
    opcodes = False
    if args.peek() == "opcodes":
        args.next("opcodes")
        opcodes = True
    args.done()
    with p:
        rows = xlated_insns(p)
        src = _source_lines(p)
    if as_json or pretty:
        items = []
        for i, line, raw in rows:
            e = {"src": src[i][3].lstrip()} if i in src else {}
            e["disasm"] = line
            if opcodes:
                e["opcodes"] = {"code": f"0x{raw[0]:02x}", "src_reg": f"0x{raw[1] >> 4:x}",
                                "dst_reg": f"0x{raw[1] & 15:x}", "off": raw[2:4].hex(),
                                "imm": raw[4:8].hex() if len(raw) == 8 else raw[4:8].hex() + raw[12:16].hex()}
            items.append(e)
        _emit(items, True, pretty)
        return
    for i, line, raw in rows:
        if i in src:
            click.echo(f"; {src[i][3].lstrip()}")     # bpftool's source-line comment, from line_info
        click.echo(f"{i:4d}: {line}")
        if opcodes:
            click.echo("       " + " ".join(f"{b:02x}" for b in raw))


@prog_group.command("pin", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def pin(words, as_json, pretty):
    """prog pin PROG FILE"""
    args = _Args(words)
    p = _open_prog(args)
    path = args.next("FILE")
    args.done()
    with p:
        try:
            p.pin(path)
        except OSError as e:
            raise CliError(f"can't pin the object ({path}): {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


# -- run -------------------------------------------------------------------------

_RUN_WORDS = ("data_in", "data_out", "data_size_out", "ctx_in", "ctx_out", "ctx_size_out", "repeat")


def _read_input(path: str, what: str) -> bytes:
    if path == "-":
        return click.get_binary_stream("stdin").read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CliError(f"{what} {path}: {e.strerror}") from None


def _write_output(path: str, data: bytes, what: str) -> None:
    if path == "-":
        for off in range(0, len(data), 16):
            click.echo(" ".join(f"{b:02x}" for b in data[off:off + 16]))
        return
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        raise CliError(f"{what} {path}: {e.strerror}") from None


@prog_group.command("run", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def run(words, as_json, pretty):
    """prog run PROG data_in FILE [data_out FILE [data_size_out L]] [ctx_in FILE [ctx_out FILE
    [ctx_size_out M]]] [repeat N]   (FILE '-' is standard input or output)"""
    from ..runtime import test_run
    args = _Args(words)
    p = _open_prog(args)
    opts: dict[str, str] = {}
    while args.more():
        key = args.next("keyword")
        if key not in _RUN_WORDS:
            raise CliError(f"unknown keyword {key!r} (expected one of {', '.join(_RUN_WORDS)})")
        if key in opts:
            raise CliError(f"{key} given twice")
        opts[key] = args.next(f"{key} value")
    if "data_in" not in opts:
        raise CliError("expected data_in FILE")
    with p:
        data = _read_input(opts["data_in"], "data_in")
        ctx = _read_input(opts["ctx_in"], "ctx_in") if "ctx_in" in opts else None
        sizes = {k: _num(opts[k], k) for k in ("data_size_out", "ctx_size_out", "repeat") if k in opts}
        try:
            res = test_run(p, data, ctx=ctx, repeat=sizes.get("repeat", 1),
                           data_size_out=sizes.get("data_size_out"), ctx_size_out=sizes.get("ctx_size_out"))
        except OSError as e:
            raise CliError(f"failed to run program: {os.strerror(e.errno)}"
                           + (f" ({e.strerror})" if e.strerror and e.strerror != os.strerror(e.errno) else "")) from None
    if "data_out" in opts:
        _write_output(opts["data_out"], res.data_out, "data_out")
    if "ctx_out" in opts and res.ctx_out is not None:
        _write_output(opts["ctx_out"], res.ctx_out, "ctx_out")
    if as_json or pretty:
        _emit({"retval": res.retval, "duration": res.duration}, True, pretty)
    else:
        avg = " (average)" if sizes.get("repeat", 1) > 1 else ""
        click.echo(f"Return value: {res.retval}, duration{avg}: {res.duration}ns")


commands = [prog_group]
