"""Sequentially consistent atomic read-modify-write on raw addresses.

Python has no atomic memory operations, yet BPF atomics and shared map memory
must stay correct when several threads or processes touch the same word.  We
generate the few primitives we need with llvmlite (``atomicrmw``/``cmpxchg``),
so they compile to the CPU's own locked instructions.  Each primitive takes an
address (an int) that the caller has already checked is inside memory it owns.
"""

from __future__ import annotations

import ctypes
import threading

_RMW = {"add": "add", "or": "or", "and": "and", "xor": "xor", "xchg": "xchg"}
_lock = threading.Lock()
_funcs: dict[tuple[str, int], object] | None = None
_engine = None  # kept alive: the generated code lives inside it


def _ir() -> str:
    lines = []
    for bits in (32, 64):
        t = f"i{bits}"
        for name, rmw in _RMW.items():
            lines.append(
                f"define {t} @fetch_{name}{bits}(i64 %a, {t} %v) {{\n"
                f"  %p = inttoptr i64 %a to {t}*\n"
                f"  %o = atomicrmw {rmw} {t}* %p, {t} %v seq_cst\n"
                f"  ret {t} %o\n}}\n")
        lines.append(
            f"define {t} @cmpxchg{bits}(i64 %a, {t} %e, {t} %n) {{\n"
            f"  %p = inttoptr i64 %a to {t}*\n"
            f"  %r = cmpxchg {t}* %p, {t} %e, {t} %n seq_cst seq_cst\n"
            f"  %o = extractvalue {{ {t}, i1 }} %r, 0\n"
            f"  ret {t} %o\n}}\n")
        lines.append(
            f"define {t} @load{bits}(i64 %a) {{\n"
            f"  %p = inttoptr i64 %a to {t}*\n"
            f"  %o = load atomic {t}, {t}* %p seq_cst, align {bits // 8}\n"
            f"  ret {t} %o\n}}\n")
        lines.append(
            f"define void @store{bits}(i64 %a, {t} %v) {{\n"
            f"  %p = inttoptr i64 %a to {t}*\n"
            f"  store atomic {t} %v, {t}* %p seq_cst, align {bits // 8}\n"
            f"  ret void\n}}\n")
    return "".join(lines)


def _build() -> dict[tuple[str, int], object]:
    global _engine
    import llvmlite.binding as llvm

    try:  # llvmlite < 0.44 wants explicit initialisation; newer ones do it themselves
        llvm.initialize()
    except RuntimeError:
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    mod = llvm.parse_assembly(_ir())
    mod.verify()
    tm = llvm.Target.from_default_triple().create_target_machine()
    _engine = llvm.create_mcjit_compiler(mod, tm)
    _engine.finalize_object()
    funcs: dict[tuple[str, int], object] = {}
    for bits, ct in ((32, ctypes.c_uint32), (64, ctypes.c_uint64)):
        for name in _RMW:
            proto = ctypes.CFUNCTYPE(ct, ctypes.c_uint64, ct)
            funcs[(name, bits)] = proto(_engine.get_function_address(f"fetch_{name}{bits}"))
        funcs[("cmpxchg", bits)] = ctypes.CFUNCTYPE(ct, ctypes.c_uint64, ct, ct)(
            _engine.get_function_address(f"cmpxchg{bits}"))
        funcs[("load", bits)] = ctypes.CFUNCTYPE(ct, ctypes.c_uint64)(
            _engine.get_function_address(f"load{bits}"))
        funcs[("store", bits)] = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ct)(
            _engine.get_function_address(f"store{bits}"))
    return funcs


def _get(name: str, bits: int):
    global _funcs
    if _funcs is None:
        with _lock:
            if _funcs is None:
                _funcs = _build()
    return _funcs[(name, bits)]


def _mask(bits: int) -> int:
    return (1 << bits) - 1


def fetch_op(name: str, addr: int, value: int, bits: int = 64) -> int:
    """Atomically apply ``name`` (add, or, and, xor, xchg) at ``addr``; return the old value."""
    return _get(name, bits)(addr, value & _mask(bits))


def fetch_add(addr: int, value: int, bits: int = 64) -> int:
    return _get("add", bits)(addr, value & _mask(bits))


def cmpxchg(addr: int, expected: int, new: int, bits: int = 64) -> int:
    """Store ``new`` if the word equals ``expected``; return the value found (unsigned)."""
    return _get("cmpxchg", bits)(addr, expected & _mask(bits), new & _mask(bits))


def load(addr: int, bits: int = 64) -> int:
    return _get("load", bits)(addr)


def store(addr: int, value: int, bits: int = 64) -> None:
    _get("store", bits)(addr, value & _mask(bits))
