"""Wiring only: scenario → prepared stages → ranked design points.

``prepare`` runs the heavy stages once (model, trace, profile, importance, accuracy and bytes
of every design point); ``evaluate`` runs the latency engine and the QoS ranking on them
(the what-if and sweep fast path); ``run`` is both. Each stage lives in its own package.
"""

from __future__ import annotations

from .accuracy.design_points import analyze, design_points, full_model_accuracy
from .batch import evaluate_batch, select_splits
from .config.scenario import Scenario
from .data import load_data
from .latency.engine import point_frame
from .latency.simulation import SimResult
from .model.cost import profile_model
from .model.loading import load_traced
from .prepared import Prepared
from .results.run import Result


def prepare(scenario: Scenario) -> Prepared:
    """Model, trace, profile, full-model accuracy, (if asked) the importance analysis, and
    bytes and accuracy at every design point."""
    tm = load_traced(scenario)
    names = [sp.name for sp in tm.candidates]
    select_splits(scenario, names, scenario.analysis.splits)  # a misspelt split fails before the heavy work
    if scenario.exit is not None:
        select_splits(scenario, names, scenario.exit.splits, "exit.splits")
    ds = load_data(scenario, tm.input_shape, tm.output_width)
    full_acc = full_model_accuracy(scenario, tm.model, ds)
    importance = analyze(scenario, tm, ds) if scenario.analysis.splits == "nominated" else None
    prof = profile_model(tm)
    points = design_points(scenario, tm, prof, ds, full_acc, importance)
    return Prepared(traced=tm, profile=prof, full_accuracy=full_acc, importance=importance, points=points)


def evaluate(scenario: Scenario, prep: Prepared, progress=None) -> Result:
    """Latency (by ``analysis.engine``) and the joint QoS ranking of ``prep``'s design points.

    ``scenario`` must share ``prep``'s model, data, analysis and bottleneck settings;
    everything else (device, server, network, workload, QoS) may differ. ``progress``: the
    simulation's size and progress hook (:func:`~splitimpera.latency.simulation.simulate`).
    A batch of one (:func:`~splitimpera.batch.evaluate_batch`): the same arrays a sweep runs.
    """
    return evaluate_batch([scenario], prep, progress).result(0)


def run(scenario: Scenario, progress=None) -> Result:
    """Run the pipeline on a validated scenario: ``evaluate(scenario, prepare(scenario))``.

    Every design point ``(split, bottleneck)`` is ranked; the latency model is
    ``analysis.engine`` (``simpy``: simulated; ``analytic``: the closed form).
    """
    return evaluate(scenario, prepare(scenario), progress)


def simulate(scenario: Scenario, splits: list[str] | None = None) -> SimResult:
    """The discrete-event simulation of the scenario's design points (``splits``: only those),
    whatever ``analysis.engine`` says; see :class:`~splitimpera.latency.simulation.SimResult`."""
    from .latency.simulation import simulate as simulate_frame

    prep = prepare(scenario)
    names = select_splits(scenario, prep.splits, scenario.analysis.splits)
    if splits is not None:
        names = select_splits(scenario, names, splits, "splits")
    points = prep.points.select(names)
    return simulate_frame(scenario, point_frame(prep.profile, points.table), decisions=points.decisions)

