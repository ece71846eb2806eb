"""The BPF object layer: objects with real fds, Linux's lifetime rules, the BPF fs.

For the layers that add object kinds (PROG_LOAD):

    fd = create_object("prog", {"prog_type": 1, ...}, payload_size, name="xdp_main")
    obj = obj_from_fd(fd)              # process-local handle, cached by inode
    obj.payload[:n] = insn_bytes       # shared mapping after the 4 KiB header
    add_hold(obj, obj_from_fd(map_fd)) # the program keeps its maps alive
    acquire(obj) / release(obj)        # keep the handle while running without a user fd
    pybpf.syscall.register(BPF_PROG_LOAD, handler)

Kinds: "map", "prog", "btf", and "perf_event" (a BPF-output event's ring, see
perf_event.py: what PERF_EVENT_ARRAY slots hold).

Lifetime: the kernel's inode reference counts do the work (fds, pins = hard
links, mappings, holds = hard links in the hidden store).  This process's own
handle is released by sweep() once no user fd refers to the object (at the
next object creation or open, Map.close(), gc(), or exit); holds of dead
holders are dropped by gc() (run every few seconds from add_hold and by
`pybpf map show`).  An object that gets a pin or a hold first gets a hidden
name (holds/<id>/self) so that it can be pinned or held again after those go;
from then on gc() frees it once nothing names it and no process has it open.
"""

from . import perf_event
from .fs import LINUX_ROOT, root, store_dir, translate
from .holds import add_hold, drop_hold, find_by_id, gc, held_path, keep_name, live_objects, pins
from .objects import (HEADER_SIZE, BpfObject, acquire, create_object, fd_access, obj_from_fd,
                      obj_from_path, read_header, release, sweep)
from .pins import BPF_F_RDONLY, BPF_F_WRONLY, get, pin

__all__ = ["LINUX_ROOT", "root", "store_dir", "translate", "add_hold", "drop_hold", "find_by_id",
           "gc", "held_path", "keep_name", "live_objects", "pins", "HEADER_SIZE", "BpfObject",
           "acquire", "create_object", "fd_access", "obj_from_fd", "obj_from_path", "read_header",
           "release", "sweep", "BPF_F_RDONLY", "BPF_F_WRONLY", "get", "pin", "perf_event"]
