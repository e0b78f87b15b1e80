"""Profiles keyed by their content, so that what depends on a profile alone is computed once
for every scenario that shares it."""

from __future__ import annotations

import numpy as np


class ProfileKeys:
    """The canonical JSON of each profile object, computed once per object: the scenarios of a
    sweep share their device, server and network objects wherever the point does not change them."""

    def __init__(self):
        self.seen: dict[int, tuple[object, str]] = {}

    def __call__(self, profile) -> str:
        hit = self.seen.get(id(profile))
        if hit is None:  # the object is kept, so its id is not reused while this lives
            hit = self.seen[id(profile)] = (profile, profile.model_dump_json())
        return hit[1]


def by_key(keys: list, fn) -> np.ndarray:
    """``fn(i)`` (an array of length D) for the first row ``i`` of each distinct key, gathered
    to shape ``(N, D)``."""
    first: dict = {}
    where = np.array([first.setdefault(k, i) for i, k in enumerate(keys)], dtype=np.int64)
    rows = {i: np.asarray(fn(i), dtype=float) for i in first.values()}
    uniq = list(rows)
    pos = np.searchsorted(uniq, where)  # first-row indices are increasing
    return np.stack([rows[i] for i in uniq])[pos]
