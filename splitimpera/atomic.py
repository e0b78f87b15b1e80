"""Atomic file writes: a temporary file beside the target, then one rename.

The temporary file is created with ordinary permissions (the process umask applies, unlike
``tempfile.mkstemp``'s private 0600), so no umask juggling is needed, and it is removed if
anything fails: a reader sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
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


def _folder_problem(path: Path, explicit: bool) -> str | None:
    """Why files cannot be written in the folder ``path`` (created first if missing), or None.
    ``explicit``: name ``path`` in the answer (else it is "this folder")."""
    this = str(path) if explicit else "this folder"
    probe = path
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            if probe == path:
                return f"{path} is a file, not a folder" if explicit else "is a file, not a folder"
            return f"cannot create {this}: {probe} is a file"
    except OSError as e:  # e.g. an ancestor that cannot be searched
        return f"cannot use {this}: {e.strerror or e}"
    # Create a file: permission bits alone say nothing about read-only mounts, /sys or root.
    tmp = probe / f".splitimpera-write-test-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as e:
        # /proc answers "No such file or directory" for a file it will not create.
        why = "it takes no new files" if e.errno == errno.ENOENT else e.strerror or str(e)
        where = this if probe == path else str(probe)
        return f"cannot write in {where} ({why})" if probe == path else \
            f"cannot create {this}: cannot write in {where} ({why})"
    os.close(fd)
    os.unlink(tmp)
    return None


def check_writable_dir(path: str | Path, *, source: str | None = None, field: str | None = None) -> None:
    """Raise a :class:`~splitimpera.errors.UserError` unless files can be written in the folder
    ``path``, or, when it does not exist yet, it can be created there. Creates nothing
    (a probe file in the nearest existing folder is removed at once).

    Meant to run before minutes of work whose results go there. ``source`` names the path in
    the error line (default: ``path``), ``field`` the option that gave it (e.g. ``-o``).
    """
    from .errors import UserError

    why = _folder_problem(Path(path), explicit=False)
    if why is not None:
        raise UserError(why, source=source or str(path), field=field)


def check_writable_file(path: str | Path, *, source: str | None = None, field: str | None = None) -> None:
    """Raise a :class:`~splitimpera.errors.UserError` unless :func:`atomic_write` can write
    ``path``: not a folder, and its folder writable or creatable (see :func:`check_writable_dir`)."""
    from .errors import UserError

    path = Path(path)
    why = "is a folder, not a file" if path.is_dir() else _folder_problem(path.parent, explicit=True)
    if why is not None:
        raise UserError(why, source=source or str(path), field=field)
