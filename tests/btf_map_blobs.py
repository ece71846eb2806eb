"""A BTF blob with the key and value types the map-with-BTF tests need (ids in ``IDS``)."""

from __future__ import annotations

import struct

from pybpf.loader import btf as B
from test_loader_btf import Builder


def _int(b: Builder, name: str, size: int, bits: int, signed: bool = False, offset: int = 0,
         encoding: int | None = None) -> int:
    enc = (1 if signed else 0) if encoding is None else encoding
    return b.add(B.KIND_INT, name, 0, size, struct.pack("<I", (enc << 24) | (offset << 16) | bits))


def _members(b: Builder, *ms) -> bytes:
    return b"".join(struct.pack("<III", b.s(n), t, off) for n, t, off in ms)


def map_btf() -> tuple[bytes, dict[str, int]]:
    b = Builder()
    i = {}
    i["int"] = _int(b, "int", 4, 32, True)
    i["u32"] = _int(b, "unsigned int", 4, 32)
    i["u32_t"] = b.add(B.KIND_TYPEDEF, "u32", 0, i["u32"])
    i["const_u32"] = b.add(B.KIND_CONST, "", 0, i["u32_t"])
    i["u64"] = _int(b, "long long unsigned int", 8, 64)
    i["s64"] = _int(b, "long long int", 8, 64, True)
    i["char"] = _int(b, "char", 1, 8, True)
    i["u8"] = _int(b, "unsigned char", 1, 8)
    i["s16"] = _int(b, "short", 2, 16, True)
    i["bool"] = _int(b, "_Bool", 1, 8, encoding=4)
    i["ch"] = _int(b, "signed char", 1, 8, encoding=2)
    i["u24"] = _int(b, "u24", 4, 24)
    i["u32_off"] = _int(b, "odd", 4, 16, offset=8)
    i["u128"] = _int(b, "unsigned __int128", 16, 128)
    i["name"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", i["char"], i["u32"], 16))
    i["u8x6"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", i["u8"], i["u32"], 6))
    i["u32x2"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", i["u32"], i["u32"], 2))
    i["pair"] = b.add(B.KIND_STRUCT, "pair", 2, 8, _members(b, ("packets", i["u32"], 0),
                                                             ("bytes", i["u32_t"], 32)))
    i["enum"] = b.add(B.KIND_ENUM, "color", 2, 4, struct.pack("<Ii", b.s("RED"), 1)
                      + struct.pack("<Ii", b.s("BLUE"), 40))
    i["ptr"] = b.add(B.KIND_PTR, "", 0, i["int"])
    i["union"] = b.add(B.KIND_UNION, "u", 2, 4, _members(b, ("word", i["u32"], 0),
                                                         ("bytes", b.add(B.KIND_ARRAY, "", 0, 0, struct.pack(
                                                             "<III", i["u8"], i["u32"], 4)), 0)))
    i["flags"] = b.add(B.KIND_STRUCT, "flags", 3, 4,
                       _members(b, ("a", i["u32"], 0 | 3 << 24), ("b", i["u32"], 3 | 5 << 24),
                                ("neg", i["int"], 8 | 4 << 24)), kflag=1)
    i["rec"] = b.add(B.KIND_STRUCT, "rec", 9, 64,
                     _members(b, ("name", i["name"], 0), ("addr", i["u8x6"], 128),
                              ("delta", i["s16"], 176), ("ok", i["bool"], 192), ("c", i["ch"], 200),
                              ("color", i["enum"], 224), ("f", i["flags"], 256),
                              ("un", i["union"], 288), ("ptr", i["ptr"], 320)))
    i["big"] = b.add(B.KIND_STRUCT, "big", 2, 24, _members(b, ("wide", i["u128"], 0),
                                                           ("pair", i["pair"], 128)))
    i["empty"] = b.add(B.KIND_STRUCT, "empty", 0, 0)
    i["proto"] = b.add(B.KIND_FUNC_PROTO, "", 0, i["int"])
    i["func"] = b.add(B.KIND_FUNC, "f", 0, i["proto"])
    i["fwd"] = b.add(B.KIND_FWD, "opaque", 0, 0)
    i["var"] = b.add(B.KIND_VAR, "counter", 0, i["u64"], struct.pack("<I", 1))
    i["var2"] = b.add(B.KIND_VAR, "limit", 0, i["u32"], struct.pack("<I", 1))
    i["datasec"] = b.add(B.KIND_DATASEC, ".data", 2, 16, struct.pack("<III", i["var"], 0, 8)
                         + struct.pack("<III", i["var2"], 8, 4))
    i["float"] = b.add(B.KIND_FLOAT, "float", 0, 4)
    i["decl_tag"] = b.add(B.KIND_DECL_TAG, "tag", 0, i["pair"], struct.pack("<i", -1))
    i["type_tag"] = b.add(B.KIND_TYPE_TAG, "user", 0, i["u32"])
    i["volatile"] = b.add(B.KIND_VOLATILE, "", 0, i["pair"])
    i["lpm_key"] = b.add(B.KIND_STRUCT, "lpm_key", 2, 8, _members(b, ("prefixlen", i["u32"], 0),
                                                                  ("addr", i["u32"], 32)))
    i["lock"] = b.add(B.KIND_STRUCT, "bpf_spin_lock", 1, 4, _members(b, ("val", i["u32"], 0)))
    i["locked"] = b.add(B.KIND_STRUCT, "locked", 2, 8, _members(b, ("lock", i["lock"], 0),
                                                                ("v", i["u32"], 32)))
    i["enum64"] = b.add(B.KIND_ENUM64, "big_enum", 1, 8,
                        struct.pack("<III", b.s("HUGE"), 0xFFFFFFFF, 0xFFFFFFFF))
    i["u64x1"] = b.add(B.KIND_ARRAY, "", 0, 0, struct.pack("<III", i["u64"], i["u32"], 1))
    i["timer"] = b.add(B.KIND_STRUCT, "bpf_timer", 2, 16, _members(b, ("a", i["u64"], 0),
                                                                    ("b", i["u64"], 64)))
    i["timed"] = b.add(B.KIND_STRUCT, "timed", 2, 24, _members(b, ("t", i["timer"], 0),
                                                              ("v", i["u64"], 128)))
    i["nested_lock"] = b.add(B.KIND_STRUCT, "outer", 2, 16, _members(b, ("x", i["u64"], 0),
                                                                    ("in", i["locked"], 64)))
    return b.blob(), i


BLOB, IDS = map_btf()
