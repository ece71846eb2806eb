"""BPF programs: BPF_PROG_LOAD through ``pybpf.bpf()``, the program object, the ``Program`` API.

Importing this package registers BPF_PROG_LOAD and the program part of
BPF_OBJ_GET_INFO_BY_FD with the bpf() dispatcher.
"""

from . import command as _command  # noqa: F401  (registers BPF_PROG_LOAD)
from . import info as _info  # noqa: F401  (registers bpf_prog_info)
from .attr import ProgInfo, ProgLoadAttr
from .image import ProgImage, held_maps, read_image
from .load import LoadRequest, ProgLoadError, is_gpl_compatible, privileges
from .program import Program
from .tag import prog_tag
from .types import PROG_TYPES, prog_type_name, prog_type_number

__all__ = ["Program", "ProgLoadError", "ProgImage", "ProgInfo", "ProgLoadAttr", "LoadRequest",
           "privileges", "read_image", "held_maps", "prog_tag", "PROG_TYPES", "prog_type_name",
           "prog_type_number", "is_gpl_compatible"]
