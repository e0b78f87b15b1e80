"""Atomic file writes: a temporary file beside the target, then one rename.

The temporary file is created with ordinary permissions (the process umask applies, unlike
``tempfile.mkstemp``'s private 0600), so no umask juggling is needed, and it is removed if
anything fails: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically; creates the parent folder. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    blob = data.encode(encoding) if isinstance(data, str) else data
    try:
        with open(tmp, "xb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
