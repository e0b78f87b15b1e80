"""Compute latency and energy of a model part on a device profile.

First model (issue 5 refines it into a per-layer roofline): each op class runs at the
profile's sustained rate (peak × efficiency), plus a fixed overhead per executed layer::

    time_s = Σ_class flops_class / macs_per_s(class) + layers × layer_overhead_s

FLOPs here are multiply-adds (fvcore); profiles quote peaks at 2 FLOP per multiply-add and
:meth:`DeviceProfile.macs_per_s` converts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .profile import OP_CLASSES
from .profiles import DeviceProfile


def compute_time_s(profile: pd.DataFrame, side: str, device: DeviceProfile) -> pd.Series:
    """Seconds to run the ``side`` ("head" or "tail") of every split on ``device``, batch 1."""
    t = np.zeros(len(profile))
    for c in OP_CLASSES:
        t = t + profile[f"{side}_flops_{c}"].to_numpy(dtype=float) / device.macs_per_s(c)
    t = t + profile[f"{side}_layers"].to_numpy(dtype=float) * device.layer_overhead_s
    return pd.Series(t, index=profile.index, name=f"{side}_compute_s")


def compute_energy_j(time_s, device: DeviceProfile):
    """Energy of computing for ``time_s`` at the profile's active power, joules."""
    return np.asarray(time_s, dtype=float) * device.power.active_w
