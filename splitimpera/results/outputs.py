"""Writing a result folder: ``<out_dir>/<scenario name>/``, every file atomically, the resolved
scenario beside."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..atomic import check_writable_dir
from ..config.scenario import Scenario
from ..errors import UserError


def check_output_dir(out_dir: str | Path, scenario: Scenario, field: str | None = None) -> Path:
    """Raise a one-line :class:`UserError` unless :func:`write_outputs` can write
    ``<out_dir>/<scenario name>/``; call it before the work. Returns that folder; creates
    nothing. ``field`` names the option in the error line (e.g. ``-o``)."""
    out_dir = Path(out_dir)
    final = out_dir / scenario.name
    check_writable_dir(out_dir, field=field)
    try:
        there = final.exists() or final.is_symlink()
    except OSError as e:  # e.g. a path longer than the file system takes
        raise UserError(f"cannot use this folder: {e.strerror or e}", source=str(final), field=field) from None
    if there:
        check_writable_dir(final, field=field)
    return final


_WRITE_ERRNOS = {getattr(errno, n) for n in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "ENOTDIR", "EISDIR",
                                              "EEXIST", "EFBIG") if hasattr(errno, n)}


def write_outputs(out_dir: str | Path, scenario: Scenario, writers: dict, remove: tuple[str, ...] = ()) -> Path:
    """Write ``<out_dir>/<scenario name>/`` files plus the resolved ``scenario.yaml``.

    Every file is written in a temporary folder first and then moved into place with an
    atomic rename, so a failure leaves no half-written file; files other commands wrote in
    the same folder (``analyze`` beside ``simulate``) are kept.
    """
    out_dir = Path(out_dir)
    final = out_dir / scenario.name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder: {e.strerror}", source=str(out_dir)) from None
    try:
        tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{scenario.name}.tmp-"))
    except OSError as e:
        raise UserError(f"cannot write in the output folder: {e.strerror or e}", source=str(out_dir)) from None
    try:
        for name, write in {**writers, "scenario.yaml": lambda p: p.write_text(scenario.to_yaml())}.items():
            write(tmp / name)
        final.mkdir(exist_ok=True)
        # Files were created with ordinary modes (only the temporary folder is private).
        for f in tmp.iterdir():
            os.replace(f, final / f.name)
        for name in remove:  # files this command owns but did not produce this time
            (final / name).unlink(missing_ok=True)
    except OSError as e:
        # The folder's own state (full disk, read-only, a file where a folder goes), not a bug.
        if e.errno not in _WRITE_ERRNOS:
            raise
        raise UserError(f"cannot write the results: {e.strerror}", source=str(final)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
