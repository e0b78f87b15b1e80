"""The heavy part of a run, and the key that says when two scenarios share it.

:class:`Prepared` is what :func:`~splitimpera.pipeline.prepare` returns and
:func:`~splitimpera.pipeline.evaluate` reuses; :func:`prepare_key` is the canonical text of
the scenario sections it depends on (:data:`PREPARE_SECTIONS`), so a front end that caches
prepared stages (the dashboard, a sweep) keys them alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pandas as pd

from .accuracy.bottlenecks import resolve_bottlenecks
from .accuracy.predictors import resolve as resolve_predictor
from .accuracy.design_points import DesignPoints
from .config.scenario import Scenario
from .model.splits import TracedModel

# What prepare() depends on. analysis.engine is left out: it only changes evaluate().
PREPARE_SECTIONS = ("seed", "model", "data", "analysis", "bottleneck", "exit")


@dataclass(frozen=True)
class Prepared:
    """The heavy part of a run (see :func:`~splitimpera.pipeline.prepare`), reusable across
    what-if changes.

    Depends only on ``model``, ``data``, ``analysis`` and ``bottleneck`` (and the seed):
    what-if changes to the device, server, network, workload or QoS reuse it through
    :func:`~splitimpera.pipeline.evaluate`. ``points`` is what every design point sends and
    how accurate it is.
    """

    traced: TracedModel
    profile: pd.DataFrame
    full_accuracy: float | None
    importance: object | None  # CUIResult with analysis.splits "nominated"
    points: DesignPoints
    # evaluate()'s work that depends on the splits ranked alone, kept per selection: a sweep
    # or the dashboard evaluates many scenarios on one Prepared.
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def splits(self) -> list[str]:
        """Splits to rank, topological order (only the nominated or listed ones when asked)."""
        names = list(self.profile.index)
        if self.importance is not None:
            nominated = set(self.importance.nominated["split"])
            names = [n for n in names if n in nominated]
        return names


def prepare_key(scenario: Scenario) -> str:
    """Canonical JSON of the scenario sections :func:`~splitimpera.pipeline.prepare` reads.

    Two scenarios with the same key share one :class:`Prepared`: seed, model, data, analysis,
    bottleneck and exit settings (without ``analysis.engine``, which only the latency model reads).
    """
    d = scenario.resolved()
    part = {k: d[k] for k in PREPARE_SECTIONS if k in d}  # no exit section: the key is as it was before
    part["analysis"] = {k: v for k, v in part["analysis"].items() if k != "engine"}
    # The bottlenecks measured, not how they were written: "int*" and the names it expands
    # to share an entry (and a newly registered match does not).
    part["bottleneck"] = {**part["bottleneck"], "name": resolve_bottlenecks(scenario.bottleneck.name),
                          # the setting, and what auto means now
                          "predictor": [scenario.bottleneck.predictor,
                                        str(resolve_predictor(scenario.bottleneck.predictor))]}
    csv = scenario.bottleneck.accuracy_csv
    if csv is not None:  # an edited file of accuracies must not hit the old entry
        try:
            st = os.stat(csv)
            part["accuracy_csv_stat"] = [st.st_mtime_ns, st.st_size]
        except OSError:
            pass
    return json.dumps(part, sort_keys=True)
