"""On-disk cache (``$SPLITIMPERA_CACHE`` or ``~/.cache/splitimpera``), JSON, written atomically."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    env = os.environ.get("SPLITIMPERA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "splitimpera"


def key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def load(kind: str, k: str) -> Any | None:
    path = cache_dir() / kind / f"{k}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # a corrupt entry is recomputed, never fatal
        log.warning("ignoring unreadable cache entry %s: %s", path, e)
        return None


def store(kind: str, k: str, value: Any) -> None:
    folder = cache_dir() / kind
    try:
        atomic_write(folder / f"{k}.json", json.dumps(value))
    except OSError as e:  # a read-only home must not break a run
        log.warning("cannot write cache entry in %s: %s", folder, e)
