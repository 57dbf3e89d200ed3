"""File helpers that import nothing heavy: the cache folder and atomic writes.

They live here rather than in :mod:`hti_bench.harness.targets` (which re-exports them) because that module
imports torch, and the start-up path of the command line (:mod:`hti_bench.harness.catalog`) must not.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$HTI_BENCH_CACHE`` if set, else ``~/.cache/hti-bench``."""
    env = os.environ.get("HTI_BENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hti-bench"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    import tempfile  # here, not at the top: a cached ``hti-bench list`` reads but never writes

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
