"""``pybpf map ...``: bpftool's map commands, in bpftool's words and argument order.

    pybpf map create FILE type TYPE key KEY_SIZE value VALUE_SIZE entries MAX [name NAME]
                     [flags FLAGS] [inner_map MAP]
    pybpf map show|list [MAP]         MAP := id ID | pinned FILE | name NAME
    pybpf map dump MAP
    pybpf map lookup|getnext MAP [key DATA]
    pybpf map update MAP [key DATA] [value VALUE] [any|exist|noexist]
    pybpf map delete MAP key DATA
    pybpf map pin MAP FILE
    pybpf map push|enqueue MAP value VALUE      pybpf map pop|dequeue|peek MAP
    DATA := [hex] BYTES (one byte per word, C notation; with `hex`, hex digits)
"""

from __future__ import annotations

import errno
import json
import os

import click

from ..errors import PybpfError


class CliError(PybpfError):
    pass


def _json_opts(f):
    f = click.option("-j", "--json", "as_json", is_flag=True, help="JSON output, like bpftool -j")(f)
    f = click.option("-p", "--pretty", is_flag=True, help="pretty-printed JSON (implies --json)")(f)
    return f


_CTX = {"ignore_unknown_options": True}


def _emit(obj, as_json: bool, pretty: bool) -> None:
    if pretty:
        click.echo(json.dumps(obj, indent=4))
    else:
        click.echo(json.dumps(obj, separators=(",", ":")))


class _Args:
    """bpftool-style word list, consumed left to right."""

    def __init__(self, words):
        self.words = list(words)

    def more(self) -> bool:
        return bool(self.words)

    def peek(self) -> str | None:
        return self.words[0] if self.words else None

    def next(self, what: str) -> str:
        if not self.words:
            raise CliError(f"expected {what}")
        return self.words.pop(0)

    def done(self) -> None:
        if self.words:
            raise CliError(f"unexpected argument {self.words[0]!r}")


def _num(word: str, what: str) -> int:
    try:
        return int(word, 0)
    except ValueError:
        raise CliError(f"{what}: {word!r} is not a number") from None


def _bytes(args: _Args, size: int | None, what: str) -> bytes:
    """DATA := [hex] BYTES, up to the next keyword; exactly `size` bytes when size is known."""
    words = []
    is_hex = False
    if args.peek() == "hex":
        args.next("hex")
        is_hex = True
    stop = {"key", "value", "any", "exist", "noexist", "hex"}
    while args.more() and args.peek() not in stop and (size is None or len(words) < size):
        w = args.next(what)
        if is_hex:
            w = w.removeprefix("0x")
            if len(w) > 2 and len(w) % 2 == 0:   # accept "01000000" as well as "01 00 00 00"
                words.extend(w[i:i + 2] for i in range(0, len(w), 2))
                continue
            try:
                v = int(w, 16)
            except ValueError:
                raise CliError(f"error parsing byte: {w}") from None
        else:
            try:
                v = int(w, 0)
            except ValueError:
                raise CliError(f"error parsing byte: {w}") from None
        if not 0 <= v <= 255:
            raise CliError(f"error parsing byte: {w} (not 0..255)")
        words.append(f"{v:02x}")
    data = bytes.fromhex("".join(words))
    if size is not None and len(data) != size:
        raise CliError(f"{what} expected {size} bytes got {len(data)}")
    return data


def _hexs(b: bytes) -> str:
    return " ".join(f"{x:02x}" for x in b)


def _jhex(b: bytes) -> list[str]:
    return [f"0x{x:02x}" for x in b]


def _open_map(args: _Args):
    """MAP := id ID | pinned FILE | name NAME."""
    from ..map import Map, MapError
    from .. import kobj
    how = args.next("MAP (id ID | pinned FILE | name NAME)")
    if how == "pinned":
        path = args.next("pinned FILE")
        try:
            return Map.from_pinned(path)
        except MapError:
            raise
        except OSError as e:
            raise CliError(f"bpf obj get ({path}): {e.strerror}") from None
    if how == "id":
        mid = _num(args.next("id ID"), "id")
        try:
            return Map.from_id(mid)
        except OSError as e:
            raise CliError(f"get map by id ({mid}): {os.strerror(e.errno)}") from None
    if how == "name":
        name = args.next("name NAME")
        found = [h for h in kobj.live_objects() if h["kind"] == "map" and h["name"] == name]
        if not found:
            raise CliError(f"no map with name {name}")
        if len(found) > 1:
            raise CliError(f"several maps named {name}: use id ({', '.join(str(h['id']) for h in found)})")
        return Map.from_id(found[0]["id"])
    raise CliError(f"expected 'id', 'pinned' or 'name', got {how!r}")


def _map_entry(h: dict) -> dict:
    from ..syscall import constants as C
    f = h["fields"]
    e = {"id": h["id"], "type": C.MAP_TYPE_NAMES.get(f["map_type"], f["map_type"])}
    if h["name"]:
        e["name"] = h["name"]
    e.update({"flags": f["map_flags"], "bytes_key": f["key_size"], "bytes_value": f["value_size"],
              "max_entries": f["max_entries"], "bytes_memlock": h["payload_size"] + 4096,
              "frozen": 0})
    if f.get("btf_id"):
        e["btf_id"] = f["btf_id"]
    e["pinned"] = h.get("pinned", [])
    return e


def _print_show(entries: list[dict], as_json: bool, pretty: bool) -> None:
    if as_json or pretty:
        _emit(entries, True, pretty)
        return
    for e in entries:
        name = f"  name {e['name']}" if "name" in e else ""
        click.echo(f"{e['id']}: {e['type']}{name}  flags 0x{e['flags']:x}")
        click.echo(f"\tkey {e['bytes_key']}B  value {e['bytes_value']}B  max_entries "
                   f"{e['max_entries']}  memlock {e['bytes_memlock']}B")
        for p in e["pinned"]:
            click.echo(f"\tpinned {p}")
        if "btf_id" in e:
            click.echo(f"\tbtf_id {e['btf_id']}")


@click.group("map")
def map_group() -> None:
    """Create, inspect and change BPF maps (bpftool map ...)."""


@map_group.command("create", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def create(words, as_json, pretty):
    """map create FILE type TYPE key KEY_SIZE value VALUE_SIZE entries MAX [name NAME] [flags F] [inner_map MAP]"""
    from ..map import Map
    args = _Args(words)
    path = args.next("FILE")
    opts: dict = {}
    inner = None
    while args.more():
        word = args.next("keyword")
        if word in ("type", "key", "value", "entries", "name", "flags", "extra", "offload_dev"):
            if word in opts:
                raise CliError(f"{word} already specified")
            opts[word] = args.next(f"{word} value")
        elif word == "inner_map":
            inner = _open_map(args)
        else:
            raise CliError(f"unknown arg {word}")
    for need in ("type", "key", "value", "entries"):
        if need not in opts:
            raise CliError(f"map {need} not specified")
    if "offload_dev" in opts:
        raise CliError("device offload is not supported")
    try:
        m = Map.create(opts["type"], _num(opts["key"], "key"), _num(opts["value"], "value"),
                       _num(opts["entries"], "entries"), _num(opts.get("flags", "0"), "flags"),
                       opts.get("name", ""), inner_map=inner,
                       map_extra=_num(opts.get("extra", "0"), "extra"))
    except OSError as e:
        raise CliError(f"map create failed: {os.strerror(e.errno)} ({e.strerror})") from None
    finally:
        if inner is not None:
            inner.close()
    with m:
        try:
            m.pin(path)
        except OSError as e:
            raise CliError(f"can't pin the object ({path}): {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


@map_group.command("show", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def show(words, as_json, pretty):
    """map show [MAP]: every live map (pinned, held, or open in a process), by id."""
    from .. import kobj
    kobj.gc()
    objs = [h for h in kobj.live_objects() if h["kind"] == "map"]
    if words:
        args = _Args(words)
        m = _open_map(args)
        args.done()
        with m:
            objs = [h for h in objs if h["id"] == m.id]
    entries = [_map_entry(h) for h in objs]
    if words and (as_json or pretty):
        _emit(entries[0] if entries else None, True, pretty)
    else:
        _print_show(entries, as_json, pretty)


map_group.add_command(click.Command("list", callback=show.callback, params=show.params,
                                    context_settings=_CTX, help="Same as show."))


def _entry_json(m, k: bytes, v) -> dict:
    if isinstance(v, list):
        return {"key": _jhex(k), "values": [{"cpu": i, "value": _jhex(x)} for i, x in enumerate(v)]}
    return {"key": _jhex(k), "value": _jhex(v)}


def _entry_text(k: bytes, v) -> str:
    if isinstance(v, list):
        lines = [f"key:\n{_hexs(k)}"] + [f"value (CPU {i:02d}): {_hexs(x)}" for i, x in enumerate(v)]
        return "\n".join(lines)
    return f"key: {_hexs(k)}  value: {_hexs(v)}"


def _btf_of(m):
    """The map's BTF when it describes its values (bpftool's get_map_kv_btf), else None."""
    if not m.btf_value_type_id:
        return None
    from ..errors import PybpfError
    try:
        return m.btf()
    except (OSError, PybpfError):
        return None


def _formatted(w, m, btf, k: bytes, v, plain: bool) -> None:
    """bpftool's do_dump_btf: {"key": ..., "value": ...} (per CPU: "values") by BTF type."""
    from ..loader.btf_format import value_tree
    w.begin("{")
    if m.btf_key_type_id:
        w.name("key")
        w.value(value_tree(btf, m.btf_key_type_id, k, plain=plain))
    if isinstance(v, list):
        w.name("values")
        w.begin("[")
        for i, x in enumerate(v):
            w.begin("{")
            w.name("cpu")
            w.scalar(str(i))
            w.name("value")
            w.value(value_tree(btf, m.btf_value_type_id, x, plain=plain))
            w.end("}")
        w.end("]")
    else:
        w.name("value")
        w.value(value_tree(btf, m.btf_value_type_id, v, plain=plain))
    w.end("}")


def _btf_entry(w, m, btf, k: bytes, v, as_json: bool) -> None:
    """One element of a map with BTF: by type (plain), or hex plus "formatted" (-j)."""
    if isinstance(v, OSError):
        w.value({"key": _jhex(k), "value": {"error": os.strerror(v.errno)}})
    elif not as_json:
        _formatted(w, m, btf, k, v, True)
    else:
        w.begin("{")
        w.name("key")
        w.value(_jhex(k))
        if isinstance(v, list):
            w.name("values")
            w.value([{"cpu": i, "value": _jhex(x)} for i, x in enumerate(v)])
        else:
            w.name("value")
            w.value(_jhex(v))
        w.name("formatted")
        _formatted(w, m, btf, k, v, False)
        w.end("}")


def _values_for_dump(m):
    from ..syscall import constants as C
    t = m.type
    if t in (C.BPF_MAP_TYPE_QUEUE, C.BPF_MAP_TYPE_STACK, C.BPF_MAP_TYPE_RINGBUF,
             C.BPF_MAP_TYPE_BLOOM_FILTER):
        raise CliError(f"map dump not supported for {m.type_name} maps (use peek/pop)")
    for k in m._raw_keys():
        try:
            v = m._vout(m._lookup(k))
        except OSError as e:
            if e.errno == errno.ENOENT:
                continue
            yield k, e
            continue
        yield k, v


@map_group.command("dump", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def dump(words, as_json, pretty):
    """map dump MAP"""
    args = _Args(words)
    with _open_map(args) as m:
        args.done()
        btf = _btf_of(m)
        if btf is not None:
            from ..loader.btf_format import JsonWriter
            w = JsonWriter(pretty=pretty or not as_json)
            w.begin("[")
            for k, v in _values_for_dump(m):
                _btf_entry(w, m, btf, k, v, as_json or pretty)
            w.end("]")
            click.echo(w.text(), nl=False)
            return
        out, n = [], 0
        for k, v in _values_for_dump(m):
            n += 1
            if isinstance(v, OSError):
                if as_json or pretty:
                    out.append({"key": _jhex(k), "value": {"error": os.strerror(v.errno)}})
                else:
                    click.echo(f"key: {_hexs(k)}  value: <{os.strerror(v.errno)}>")
                continue
            if as_json or pretty:
                out.append(_entry_json(m, k, v))
            else:
                click.echo(_entry_text(k, v))
        if as_json or pretty:
            _emit(out, True, pretty)
        else:
            click.echo(f"Found {n} element{'s' if n != 1 else ''}")


@map_group.command("lookup", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def lookup(words, as_json, pretty):
    """map lookup MAP [key DATA]"""
    args = _Args(words)
    with _open_map(args) as m:
        key = b""
        if args.peek() == "key":
            args.next("key")
            key = _bytes(args, m.key_size, "key")
        elif m.key_size:
            raise CliError("did not find key")
        args.done()
        try:
            v = m._vout(m._lookup(key))
        except OSError as e:
            if e.errno == errno.ENOENT:
                if as_json or pretty:
                    _emit(None, True, pretty)
                else:
                    click.echo(f"key:\n{_hexs(key)}\n\nNot found")
                return
            raise CliError(f"lookup failed: {os.strerror(e.errno)}") from None
        btf = _btf_of(m)
        if btf is not None:
            from ..loader.btf_format import JsonWriter
            w = JsonWriter(pretty=pretty or not as_json)
            _btf_entry(w, m, btf, key, v, as_json or pretty)
            click.echo(w.text(), nl=False)
        elif as_json or pretty:
            _emit(_entry_json(m, key, v), True, pretty)
        else:
            click.echo(_entry_text(key, v))


@map_group.command("getnext", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def getnext(words, as_json, pretty):
    """map getnext MAP [key DATA]"""
    from ..syscall import mapops
    args = _Args(words)
    with _open_map(args) as m:
        key = None
        if args.peek() == "key":
            args.next("key")
            key = _bytes(args, m.key_size, "key")
        args.done()
        try:
            nxt = mapops.get_next_key(m._obj, key)
        except OSError as e:
            raise CliError(f"can't get next key: {os.strerror(e.errno)}") from None
        if as_json or pretty:
            _emit({"key": _jhex(key) if key is not None else None, "next_key": _jhex(nxt)}, True, pretty)
        else:
            click.echo("key:\n" + (_hexs(key) if key is not None else "None"))
            click.echo("next key:\n" + _hexs(nxt))


@map_group.command("update", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def update(words, as_json, pretty):
    """map update MAP [key DATA] [value VALUE] [any|exist|noexist]"""
    from ..syscall import constants as C
    args = _Args(words)
    with _open_map(args) as m:
        key, value, flags = b"", None, C.BPF_ANY
        while args.more():
            w = args.next("keyword")
            if w == "key":
                key = _bytes(args, m.key_size, "key")
            elif w == "value":
                if m.type in C.FD_MAP_TYPES and args.peek() in ("id", "pinned", "name"):
                    value = _ref_value(m, args)
                else:
                    value = _bytes(args, m._uvs, "value")
            elif w in ("any", "exist", "noexist"):
                flags = {"any": C.BPF_ANY, "exist": C.BPF_EXIST, "noexist": C.BPF_NOEXIST}[w]
            else:
                raise CliError(f"unknown arg {w}")
        if value is None:
            raise CliError("did not find value")
        if m.key_size and len(key) != m.key_size:
            raise CliError("did not find key")
        try:
            if isinstance(value, tuple):
                ref = value[0]
                try:
                    m._update(key, ref.fileno().to_bytes(4, "little"), flags)
                finally:
                    ref.close()
            else:
                m._update(key, value, flags)
        except OSError as e:
            raise CliError(f"update failed: {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


def _ref_value(m, args: _Args):
    """VALUE := MAP | PROG for map-in-map and prog array updates (an fd, as bpftool)."""
    from .. import kobj
    how = args.next("id|pinned|name")
    if how == "pinned":
        fd = kobj.get(args.next("FILE"))
    elif how == "id":
        fd = kobj.find_by_id(_num(args.next("ID"), "id")).new_fd()
    else:
        return (_open_map(_Args(["name", args.next("NAME")])),)

    class _Fd:
        def fileno(self):
            return fd

        def close(self):
            os.close(fd)
    return (_Fd(),)


@map_group.command("delete", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def delete(words, as_json, pretty):
    """map delete MAP key DATA"""
    from ..syscall import mapops
    args = _Args(words)
    with _open_map(args) as m:
        if args.next("key") != "key":
            raise CliError("expected key")
        key = _bytes(args, m.key_size, "key")
        args.done()
        try:
            mapops.delete(m._obj, key)
        except OSError as e:
            raise CliError(f"delete failed: {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


@map_group.command("pin", context_settings=_CTX)
@click.argument("words", nargs=-1)
@_json_opts
def pin(words, as_json, pretty):
    """map pin MAP FILE"""
    args = _Args(words)
    with _open_map(args) as m:
        path = args.next("FILE")
        args.done()
        try:
            m.pin(path)
        except OSError as e:
            raise CliError(f"can't pin the object ({path}): {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


def _push(words, as_json, pretty):
    args = _Args(words)
    with _open_map(args) as m:
        if args.next("value") != "value":
            raise CliError("expected value")
        value = _bytes(args, m._uvs, "value")
        args.done()
        try:
            m._update(b"", value, 0)
        except OSError as e:
            raise CliError(f"update failed: {os.strerror(e.errno)}") from None
    if as_json or pretty:
        _emit(None, True, pretty)


def _pop(words, as_json, pretty, delete: bool):
    from ..syscall import mapops
    args = _Args(words)
    with _open_map(args) as m:
        args.done()
        try:
            v = mapops.lookup_and_delete(m._obj, None) if delete else m._lookup(b"")
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise CliError("empty map") from None
            raise CliError(f"{'pop' if delete else 'peek'} failed: {os.strerror(e.errno)}") from None
        if as_json or pretty:
            _emit({"value": _jhex(v)}, True, pretty)
        else:
            click.echo(f"value: {_hexs(v)}")


for _name, _fn, _help in (("push", _push, "map push MAP value VALUE"),
                          ("enqueue", _push, "map enqueue MAP value VALUE")):
    _c = click.Command(_name, callback=_fn, context_settings=_CTX, help=_help,
                       params=[click.Argument(["words"], nargs=-1)])
    _json_opts(_c)
    map_group.add_command(_c)

for _name, _del in (("pop", True), ("dequeue", True), ("peek", False)):
    _c = click.Command(_name, callback=(lambda d: lambda words, as_json, pretty:
                                        _pop(words, as_json, pretty, d))(_del),
                       context_settings=_CTX, help=f"map {_name} MAP",
                       params=[click.Argument(["words"], nargs=-1)])
    _json_opts(_c)
    map_group.add_command(_c)

commands = [map_group]
