"""The verifier log buffer's rules (kernel/bpf/log.c, Linux 6.4+), checked against the host kernel.

- ``log_buf`` and ``log_size`` go together; a buffer needs a level; the level
  must be within BPF_LOG_MASK; ``log_size`` at most UINT_MAX >> 2: else EINVAL.
- A level with no buffer is allowed: nothing is written, but ``log_true_size``
  still reports the size the log needs (text plus its NUL).
- A log that does not fit fails the load with ENOSPC (overriding the
  verifier's own verdict), the buffer still filled: by default with the *end*
  of the log (the error is at the end), with BPF_LOG_FIXED with its start.
"""

from __future__ import annotations

import errno

LOG_LEVEL1 = 1
LOG_LEVEL2 = 2
LOG_STATS = 4
LOG_FIXED = 8
LOG_MASK = LOG_LEVEL1 | LOG_LEVEL2 | LOG_STATS | LOG_FIXED
LOG_SIZE_MAX = 0xFFFFFFFF >> 2


def check_attrs(level: int, size: int, has_buf: bool) -> str | None:
    """Why the log attributes are invalid (EINVAL), or None."""
    if has_buf != bool(size):
        return "log_buf and log_size must be given together"
    if has_buf and level == 0:
        return "log_buf without log_level"
    if level & ~LOG_MASK:
        return f"log_level {level:#x} has bits outside BPF_LOG_MASK ({LOG_MASK:#x})"
    if size > LOG_SIZE_MAX:
        return f"log_size {size} is larger than {LOG_SIZE_MAX}"
    return None


def finalize(text: str, level: int, size: int, dropped: int = 0) -> tuple[bytes, int, int]:
    """(bytes to write to the user's buffer, log_true_size, 0 or ENOSPC); ``dropped`` characters
    of the log went before ``text`` (a rotating log keeps its end only)."""
    if not level:
        return b"", 0, 0
    data = text.encode("utf-8", "replace")
    true_size = len(data) + dropped + 1
    if not size:
        return b"", true_size, 0
    if true_size <= size:
        return data + b"\0", true_size, 0
    keep = size - 1
    part = data[:keep] if level & LOG_FIXED else data[len(data) - keep:]
    return part + b"\0", true_size, errno.ENOSPC
