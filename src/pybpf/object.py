"""``pybpf.load("prog.o")``: an object file made live, as libbpf's ``bpf_object__load`` does.

    with pybpf.load("prog.o") as obj:
        obj.maps["counts"][6]            # a pybpf.Map
        obj.programs["count_bytes"]      # a pybpf Program, verified and loaded

Order, as libbpf: every map is created (or, for ``LIBBPF_PIN_BY_NAME``,
reused from its pin when compatible, else created and pinned), global data
is written into its map, map-in-map slots are filled, then every autoload
program is resolved against the map fds and loaded, and finally the slots
of prog arrays that the object names are filled.  Any failure undoes what
the call made (programs, maps, pins it created) before the error is raised,
so a failed load leaves nothing behind.

A program the verifier rejects is reported with the source line the failing
instruction came from (from .BTF.ext line info, when the object was built
with ``-g``): ``prog.o: program 'p': ./prog.c:42: return *v;: R0 invalid mem
access 'map_value_or_null'``.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

from .errors import PybpfError
from .loader import read_object, resolve
from .loader.spec import (DEFAULT_PIN_ROOT, MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS,
                          MAP_TYPE_PROG_ARRAY, PIN_BY_NAME, LineInfo, MapDef, ObjectSpec)
from .map import Map
from .syscall import constants as C
from .syscall.constants import MAP_TYPE_NAMES
from .syscall.map_btf import NO_BTF_TYPES

MAP_TYPE_PERF_EVENT_ARRAY = 4

MAX_NAME = 15    # BPF_OBJ_NAME_LEN - 1


class ObjectLoadError(PybpfError):
    """Loading an object failed; names the object and the map or program at fault.

    For a rejected program: ``errno``, the verifier ``log``, the failing
    instruction ``index`` and its ``line`` (a LineInfo, or None without -g).
    """

    def __init__(self, path: str, reason: str, *, program: str | None = None,
                 map: str | None = None, errno_: int = 0, log: str = "",
                 index: int | None = None, line: LineInfo | None = None):
        self.path, self.reason, self.program, self.map = path, reason, program, map
        self.errno, self.log, self.index, self.line = errno_, log, index, line
        where = [path]
        if map is not None:
            where.append(f"map '{map}'")
        if program is not None:
            where.append(f"program '{program}'")
        super().__init__(": ".join(where + [reason]))


class NotInObject(PybpfError, KeyError):
    """obj.maps[name] / obj.programs[name] for a name the object does not have."""

    def __str__(self) -> str:
        return self.args[0]


class _Named(dict):
    """A dict of an object's maps or programs whose misses say what exists."""

    def __init__(self, path: str, what: str):
        super().__init__()
        self._path, self._what = path, what

    def __missing__(self, name):
        have = ", ".join(self) or "none"
        raise NotInObject(f"{self._path}: no {self._what} '{name}' (has: {have})")


@dataclass
class BpfObject:
    """The live maps and programs of one object file; ``close()`` (or ``with``) releases them.

    Closing drops this process's fds only: pinned maps, and maps held by
    programs pinned elsewhere, live on as in Linux.
    """

    name: str
    path: str
    spec: ObjectSpec
    maps: dict[str, Map] = field(default_factory=dict)
    programs: dict = field(default_factory=dict)
    # Maps taken over from an existing pin (LIBBPF_PIN_BY_NAME): not re-initialised.
    reused: set[str] = field(default_factory=set)
    # Maps this load pinned (removed again if the load fails).
    pinned: dict[str, str] = field(default_factory=dict)
    # The object's BTF loaded with BPF_BTF_LOAD (-1 without), and why it could not be.
    btf_fd: int = -1
    btf_error: str = ""
    # Maps created without BTF after the kernel refused their BTF types: name -> why.
    map_btf_errors: dict[str, str] = field(default_factory=dict)

    @property
    def license(self) -> str:
        return self.spec.license

    @property
    def kern_version(self) -> int:
        return self.spec.kern_version

    def __post_init__(self) -> None:
        maps, progs = _Named(self.path, "map"), _Named(self.path, "loaded program")
        maps.update(self.maps)
        progs.update(self.programs)
        self.maps, self.programs = maps, progs

    def close(self) -> None:
        for p in self.programs.values():
            p.close()
        for m in self.maps.values():
            m.close()
        self.programs.clear()
        self.maps.clear()
        fd, self.btf_fd = self.btf_fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> "BpfObject":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<BpfObject {self.path!r} maps={list(self.maps)} "
                f"programs={list(self.programs)}>")


def load(path, *, pin_root: str | None = None, log_level: int = 0,
         privileged: bool = True, programs=None) -> BpfObject:
    """Read, create and load everything in the object file at ``path``.

    ``pin_root``: the directory (in Linux's terms, e.g. "/sys/fs/bpf/app")
    where maps declared with ``pinning = LIBBPF_PIN_BY_NAME`` are pinned
    and looked for; default /sys/fs/bpf, i.e. the root of pybpf's BPF fs.
    ``log_level``: the verifier log kept on each program (``.log``).
    ``programs``: the names of the programs to load (libbpf's autoload); the
    others are left out. Default: every program whose section does not start
    with ``?``.
    """
    path = os.fspath(path)
    spec = read_object(path)
    if programs is not None:
        wanted = [programs] if isinstance(programs, str) else list(programs)
        unknown = [n for n in wanted if n not in spec.programs]
        if unknown:
            raise ObjectLoadError(path, f"no program named {', '.join(map(repr, unknown))} "
                                        f"(the object has {', '.join(spec.programs) or 'none'})")
        for name, p in spec.programs.items():
            p.autoload = name in wanted
    return load_spec(spec, pin_root=pin_root, log_level=log_level, privileged=privileged)


def load_spec(spec: ObjectSpec, *, pin_root: str | None = None, log_level: int = 0,
              privileged: bool = True) -> BpfObject:
    """:func:`load` for an object already read (``pybpf.loader.read_object``) or built in memory."""
    path = spec.path or spec.name
    obj = BpfObject(spec.name, path, spec)
    try:
        _load_btf(obj)          # first, as libbpf: maps are created with the object's BTF
        _create_maps(obj, pin_root or DEFAULT_PIN_ROOT)
        _load_programs(obj, log_level, privileged)
        _fill_prog_arrays(obj)
    except BaseException:
        _undo(obj)
        raise
    return obj


# -- maps ------------------------------------------------------------------------------

def _map_error(obj: BpfObject, m: MapDef, reason: str, code: int = 0) -> ObjectLoadError:
    return ObjectLoadError(obj.path, reason, map=m.name, errno_=code)


def _max_entries(m: MapDef) -> int:
    """libbpf sizes a perf event array declared without max_entries to the possible CPUs."""
    if m.type == MAP_TYPE_PERF_EVENT_ARRAY and m.max_entries == 0:
        from .maps import ncpus
        return ncpus()
    return m.max_entries


# map types libbpf creates without BTF type ids: those whose values are fds or ids (which
# Linux refuses BTF for), and the keyless queue, stack and arena
_NO_BTF_TYPES = NO_BTF_TYPES | {C.BPF_MAP_TYPE_QUEUE, C.BPF_MAP_TYPE_STACK, C.BPF_MAP_TYPE_ARENA}


def _create_one(obj: BpfObject, m: MapDef, inner: Map | None = None) -> Map:
    """bpf_object__create_map(): with the object's BTF and the map's key and value types when
    there are some; if that fails, again without BTF (libbpf's "Retrying without BTF")."""
    args = (m.type, m.key_size, m.value_size, _max_entries(m), m.map_flags, _kernel_name(m.name))
    kw = dict(inner_map=inner, map_extra=m.map_extra)
    try:
        if obj.btf_fd >= 0 and (m.key_type_id or m.value_type_id) and m.type not in _NO_BTF_TYPES:
            try:
                return Map.create(*args, **kw, btf=obj.btf_fd, btf_key_type_id=m.key_type_id or 0,
                                  btf_value_type_id=m.value_type_id or 0)
            except (OSError, PybpfError) as e:
                obj.map_btf_errors[m.name] = _strerror(e) if isinstance(e, OSError) else str(e)
        return Map.create(*args, **kw)
    except OSError as e:
        kind = MAP_TYPE_NAMES.get(m.type, "unknown")
        raise _map_error(obj, m, f"cannot create it ({_strerror(e)}): type {kind} ({m.type}), "
                         f"key {m.key_size}, value {m.value_size}, max_entries {m.max_entries}, "
                         f"flags {m.map_flags:#x}", e.errno or 0) from None
    except PybpfError as e:
        raise _map_error(obj, m, f"cannot create it: {e}") from None


def _kernel_name(name: str) -> str:
    """Linux keeps 15 characters of [A-Za-z0-9_.]; libbpf cuts longer names the same way."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:MAX_NAME]


def _compatible(have: Map, m: MapDef) -> str | None:
    """libbpf's map_is_reuse_compat(): what differs between a pinned map and the definition."""
    for what, a, b in (("type", have.type, m.type), ("key_size", have.key_size, m.key_size),
                       ("value_size", have.value_size, m.value_size),
                       ("max_entries", have.max_entries, _max_entries(m)),
                       ("map_flags", have.flags, m.map_flags)):
        if a != b:
            return f"{what} is {a} there but {b} in the object"
    return None


def _pinned_or_new(obj: BpfObject, m: MapDef, root: str) -> Map:
    pin = m.pin_path(root)
    try:
        have = Map.from_pinned(pin)
    except FileNotFoundError:
        have = None
    except OSError as e:
        raise _map_error(obj, m, f"cannot open the pinned map {pin} ({_strerror(e)})",
                         e.errno or 0) from None
    except PybpfError as e:
        raise _map_error(obj, m, f"{pin}: {e}") from None
    if have is not None:
        why = _compatible(have, m)
        if why:
            have.close()
            raise _map_error(obj, m, f"pinned map {pin} cannot be reused: {why}", errno.EINVAL)
        obj.reused.add(m.name)
        return have
    inner = _inner_template(obj, m)
    try:
        new = _create_one(obj, m, inner)
    finally:
        if inner is not None:
            inner.close()
    try:
        _make_parent(pin)
        new.pin(pin)
    except OSError as e:
        new.close()
        raise _map_error(obj, m, f"cannot pin it at {pin} ({_strerror(e)})", e.errno or 0) from None
    obj.pinned[m.name] = pin
    return new


def _make_parent(pin: str) -> None:
    """libbpf creates the pin's directory when missing; so do we (inside the BPF fs only)."""
    from . import kobj
    parent = os.path.dirname(kobj.translate(pin))
    if parent and not os.path.isdir(parent) and kobj.fs.inside_tree(os.path.join(parent, "x")):
        os.makedirs(parent, exist_ok=True)


def _inner_template(obj: BpfObject, m: MapDef) -> Map | None:
    if m.type not in (MAP_TYPE_ARRAY_OF_MAPS, MAP_TYPE_HASH_OF_MAPS):
        return None
    if m.inner is None:
        raise _map_error(obj, m, "map-in-map without a definition of its inner map "
                         "(__array(values, ...))", errno.EINVAL)
    return _create_one(obj, m.inner)


def _create_maps(obj: BpfObject, root: str) -> None:
    for m in obj.spec.maps.values():
        if m.pinning == PIN_BY_NAME:
            new = _pinned_or_new(obj, m, root)
        else:
            inner = _inner_template(obj, m)
            try:
                new = _create_one(obj, m, inner)
            finally:
                if inner is not None:
                    inner.close()
        obj.maps[m.name] = new
    for m in obj.spec.maps.values():
        if m.name in obj.reused:
            continue
        if m.data is not None and any(m.data):
            _write(obj, m, 0, m.data)
        if m.type != MAP_TYPE_PROG_ARRAY:
            for idx, target in sorted(m.init_slots.items()):
                if target not in obj.maps:
                    raise _map_error(obj, m, f"slot {idx} names map '{target}', which the "
                                     f"object does not define", errno.EINVAL)
                _write(obj, m, idx, obj.maps[target].fd, what=f"slot {idx} (map '{target}')")
    # libbpf freezes .rodata once written (BPF_MAP_FREEZE): user space cannot change it any
    # more, and programs cannot either (BPF_F_RDONLY_PROG, enforced by the verifier)
    for m in obj.spec.maps.values():
        if m.frozen and m.name not in obj.reused:
            try:
                obj.maps[m.name].freeze()
            except OSError as e:
                raise _map_error(obj, m, f"cannot freeze it ({_strerror(e)})", e.errno or 0) from None


def _write(obj: BpfObject, m: MapDef, key: int, value, what: str = "initial value") -> None:
    mp = obj.maps[m.name]
    try:
        mp.update(key.to_bytes(m.key_size, "little"), value)
    except OSError as e:
        raise _map_error(obj, m, f"cannot write its {what} ({_strerror(e)})", e.errno or 0) from None
    except PybpfError as e:
        raise _map_error(obj, m, f"cannot write its {what}: {e}") from None


# -- programs --------------------------------------------------------------------------

def _load_btf(obj: BpfObject) -> None:
    """BPF_BTF_LOAD of the object's .BTF; as libbpf, a BTF the kernel refuses is left out
    (programs then load without func_info, which only callbacks and global functions need)."""
    data = obj.spec.btf_for_kernel
    if not data:
        return
    from .syscall.btf import btf_load
    try:
        obj.btf_fd, _ = btf_load(data)
    except OSError as e:
        obj.btf_error = f".BTF not loaded: {_strerror(e)}"


def _load_programs(obj: BpfObject, log_level: int, privileged: bool) -> None:
    from .prog import Program, ProgLoadError

    spec = obj.spec
    names = [n for n, p in spec.programs.items() if p.autoload]
    fds = {n: m.fd for n, m in obj.maps.items()}
    code = resolve(spec, fds, names)
    for name in names:
        p = spec.programs[name]
        btf = {}
        if obj.btf_fd >= 0 and (p.func_info or p.line_info):
            btf = {"btf": obj.btf_fd, "func_info": p.func_info_bytes(), "line_info": p.line_info_bytes()}
        try:
            prog = Program.load(code[name], p.prog_type, license=spec.license, log_level=log_level,
                                privileged=privileged, name=_kernel_name(name),
                                expected_attach_type=p.expected_attach_type, **btf)
        except ProgLoadError as e:
            raise _program_error(obj, name, e) from None
        obj.programs[name] = prog


def verifier_message(log: str) -> str:
    """The verifier's verdict: the last line of its log that is not a statistic."""
    for line in reversed(log.splitlines()):
        s = line.strip()
        if not s or s.startswith(("processed ", "verification time", "stack depth")):
            continue
        return s
    return ""


def _program_error(obj: BpfObject, name: str, e) -> ObjectLoadError:
    reason = verifier_message(e.log) or e.message
    idx = e.index
    line = obj.spec.programs[name].source_of(idx) if idx is not None else None
    if line is not None:
        text = f"{line.file}:{line.line}: {line.source.strip()}: {reason}"
    elif idx is not None:
        text = f"insn {idx}: {reason}"
    else:
        text = reason
    code = e.errno or errno.EINVAL
    text += f" ({os.strerror(code)})"
    if obj.btf_error:
        text += f" ({obj.btf_error})"
    return ObjectLoadError(obj.path, text, program=name, errno_=code, log=e.log, index=idx,
                           line=line)


def _fill_prog_arrays(obj: BpfObject) -> None:
    for m in obj.spec.maps.values():
        if m.type != MAP_TYPE_PROG_ARRAY or m.name in obj.reused:
            continue
        for idx, target in sorted(m.init_slots.items()):
            prog = obj.programs.get(target)
            if prog is None:
                if target in obj.spec.programs:     # not autoloaded: the slot stays empty
                    continue
                raise _map_error(obj, m, f"slot {idx} names program '{target}', which the "
                                 f"object does not define", errno.EINVAL)
            _write(obj, m, idx, prog.fd, what=f"slot {idx} (program '{target}')")


def _undo(obj: BpfObject) -> None:
    for name, pin in obj.pinned.items():
        try:
            from . import kobj
            os.unlink(kobj.translate(pin))
        except OSError:
            pass
    obj.close()
    # programs made by this load hold their maps and BTF: collect them now rather than at
    # the next periodic gc, so that a failed load leaves nothing behind
    from . import kobj
    kobj.sweep()
    kobj.gc()


def _strerror(e: OSError) -> str:
    """The errno's name plus whatever pybpf said about it ("Invalid argument: map type ...")."""
    if not e.errno:
        return str(e)
    std, said = os.strerror(e.errno), (e.strerror or "")
    if not said or said == std:
        return std
    return said if said.startswith(std) else f"{std}: {said}"
