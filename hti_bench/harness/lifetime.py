"""Child processes die with the process that started them (worker pools, sandbox templates, sandboxes)."""

from __future__ import annotations

import os


def die_with_parent(parent_pid: int | None = None) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux), and exit now if the parent
    (``parent_pid``, when given) has already died: the request covers only deaths that come after it."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)
