"""The bpf() command interface: ``bpf(cmd, attr, size)`` as Linux's bpf(2).

Other packages add commands with :func:`register` (e.g. PROG_LOAD)."""

from . import commands as _commands  # noqa: F401  (registers the map and object commands)
from . import constants
from .attr import SIZEOF_ATTR, BpfAttr, GetIdAttr, InfoAttr, MapCreateAttr, MapElemAttr, ObjAttr
from .dispatch import Attr, bpf, register, registered
from .info import register_info

__all__ = ["bpf", "register", "registered", "register_info", "Attr", "constants", "SIZEOF_ATTR", "BpfAttr",
           "MapCreateAttr", "MapElemAttr", "ObjAttr", "GetIdAttr", "InfoAttr"]
