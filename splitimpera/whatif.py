"""What-if helpers behind the dashboard (``app.py``): small pure functions over the public API.

The dashboard keeps one *base* scenario (a file, or an uploaded / pasted YAML text) and turns
its controls into ``overrides``: dotted keys mapped to values, exactly what CLI ``--set``
takes. Only the heavy part of a run (:func:`~splitimpera.pipeline.prepare`) is cached, keyed
by :func:`~splitimpera.prepared.prepare_key`; every control change re-runs
:func:`~splitimpera.pipeline.evaluate` (latency and QoS ranking) on the cached
:class:`~splitimpera.prepared.Prepared`.

Nothing here imports Streamlit: the functions are tested on their own.
"""

from __future__ import annotations

import math
import os
import shlex
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

import numpy as np
import pandas as pd
import yaml

from .errors import UserError
from .config.scenario import Scenario, scenario_from_dict
from .report.columns import KEY_COLUMNS, shows_accuracy
from .report.view import View

_PROFILE_KEYS = ("device", "server", "network")
# Bookkeeping fields of profiles: never worth showing in a comparison.
_DIFF_SKIP = ("sources", "estimates", "description")


def bottleneck_names(scenario: Scenario) -> list[str]:
    """The bottlenecks the scenario ranks, its globs expanded, in its order."""
    from .accuracy.bottlenecks import resolve_bottlenecks

    return resolve_bottlenecks(scenario.bottleneck.name)


def bottleneck_choice(scenario: Scenario, chosen: list[str]) -> dict[str, Any]:
    """The ``bottleneck.name`` override for the bottlenecks ``chosen`` (a multiselect's value):
    empty when they are the scenario's own (a glob it names included), one name as a string,
    several as a list (``--set bottleneck.name=int8`` or ``--set 'bottleneck.name=[none, int8]'``)."""
    chosen = list(chosen)
    if chosen == bottleneck_names(scenario):
        return {}
    return {"bottleneck.name": chosen[0] if len(chosen) == 1 else chosen}


def _literal_values(annotation) -> list:
    """The values a field's annotation allows as Literal members (None and other types left out)."""
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [v for arg in typing.get_args(annotation) for v in _literal_values(arg)]
    return []


def schema_choices(key: str, model: type[BaseModel] = Scenario) -> list:
    """The values the scenario schema allows at dotted ``key``, in the schema's order: the
    members of its ``Literal`` (``"qos.objective"`` → ``["latency", "energy", …]``; an optional
    or union field gives the Literal members of its union). A key without a Literal is a
    ``KeyError``: the dashboard's choice lists come from here, never from a copy."""
    node: Any = model
    parts = key.split(".")
    for i, part in enumerate(parts):
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            raise KeyError(f"{key}: no field {'.'.join(parts[:i + 1])} in the scenario schema")
        ann = fields[part].annotation
        if i < len(parts) - 1:
            node = ann
    values = _literal_values(ann)
    if not values:
        raise KeyError(f"{key}: not a choice field (no Literal) in the scenario schema")
    return values


TRUST_ENV = "SPLITIMPERA_TRUST_UPLOADED_MODELS"


def scenario_from_text(text: str, source: str, overrides: dict[str, Any] | None = None,
                       base_dir: Path | None = None) -> tuple[dict, Scenario]:
    """Parse a scenario given as YAML text (an uploaded or pasted file).

    Returns ``(raw mapping, validated Scenario)``; the raw mapping is the base that later
    overrides apply to. A YAML syntax error is a one-line :class:`UserError` naming
    ``source`` and the line; invalid content is the usual one-line error from
    :func:`~splitimpera.config.scenario.scenario_from_dict`.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"not valid YAML: {where}{problem}", source=source) from None
    model = data.get("model") if isinstance(data, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    if isinstance(name, str) and ":" in name and os.environ.get(TRUST_ENV) != "1":
        # Validating a user model imports its module: code from a file someone handed over.
        raise UserError(f"user models (package.module:function) run code and are not accepted from an uploaded "
                        f"or pasted scenario; set {TRUST_ENV}=1 where the dashboard runs to allow them",
                        source=source, field="model.name")
    return data, scenario_from_dict(data, source=source, overrides=overrides, base_dir=base_dir)


def current_value(scenario: Scenario, key: str) -> Any:
    """The value at dotted ``key`` of the resolved scenario (None when absent).

    ``device``, ``server`` and ``network`` alone give the profile's name, as ``--set network=wifi5``
    sets it.
    """
    node: Any = scenario.resolved()
    parts = key.split(".")
    if len(parts) == 1 and parts[0] in _PROFILE_KEYS:
        return node[parts[0]]["name"]
    for p in parts:
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def changed(scenario: Scenario, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` (dotted key → value) that differ from ``scenario``.

    This keeps the overrides minimal: a control left at the scenario's own value adds
    nothing, so the equivalent command line (:func:`cli_command`) stays short.
    """
    return {k: v for k, v in values.items() if not _same(current_value(scenario, k), v)}


def switch_model(scenario: Scenario, name: str) -> dict[str, Any]:
    """Overrides that put model ``name`` in place of the scenario's (empty when it is the same).

    Another model rarely fits the scenario's weights file or data set, so the switch also
    asks for the model's own default input shape, no data (accuracy is then not measured,
    and ``qos.min_accuracy`` is dropped) and weights that need no download: the zoo's
    bundled ones, random ones for torchvision models. Latency, bytes and energy do not
    depend on the weights.
    """
    from .model.zoo import list_zoo_models

    if name == scenario.model.name:
        return {}
    out: dict[str, Any] = {
        "model.name": name,
        "model.weights": "default" if name in list_zoo_models() else "none",
        "model.input_shape": None,
        "model.num_classes": None,
        "data.source": "none",
        "data.path": None,
        "qos.min_accuracy": None,
    }
    if scenario.analysis.splits == "nominated":
        out["analysis.splits"] = "all"  # the importance analysis needs data
    return changed(scenario, out)


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return ""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return text[:-4].strip() if text.endswith("\n...") else text.removesuffix("...").strip()


def cli_command(scenario_path: str, overrides: dict[str, Any], command: str = "simulate") -> str:
    """The ``splitimpera`` command line that reproduces ``overrides`` on ``scenario_path``."""
    parts = ["splitimpera", command, str(scenario_path)]
    for key, value in overrides.items():
        parts += ["--set", f"{key}={_yaml_scalar(value)}"]
    return " ".join(shlex.quote(p) for p in parts)


def ranked_view(result) -> pd.DataFrame:
    """The ranked table as displayed: :meth:`View.all_rows <splitimpera.report.view.View.all_rows>`
    (feasible points by rank, then the others, closest first), in display units.

    Indexed by ``(split, bottleneck)`` (and ``exit``); the columns of :meth:`View.columns
    <splitimpera.report.view.View.columns>` other than the key, in order and by label, times
    in ms, energy in mJ, fractions in %, bytes sent as a number; then the details only the
    dashboard offers: the compute model's error band and ties (``± ms``, ``tie``), where the
    accuracy comes from and its band, the link load, the device's share of the FLOPs and
    ``Pareto``.
    """
    view = View.of(result)
    t = view.all_rows()
    values = view.rows(t)
    v = pd.DataFrame(index=t.index)
    for c in view.columns():
        if c.key in KEY_COLUMNS:
            continue
        col = values[c.key]
        if c.key == "rank":
            v[c.label] = pd.array(col, dtype="Int64")
        elif c.key == "bytes_sent":
            v[c.label] = col.astype("int64")
        elif c.unit:
            v[c.label] = col.astype(float) * c.scale
        else:
            v[c.label] = col
    if "latency_err_s" in t.columns and t["latency_err_s"].notna().any():
        # The compute model's error band on the ranked latency, and ties within it (qos.mark_ties).
        v["± ms"] = t["latency_err_s"] * 1e3
        v["tie"] = np.where(t["tie"].astype(bool), "≈ rank 1", "")
    if shows_accuracy(t):  # measured, predicted, nominal, yours
        v["accuracy from"] = t["accuracy_source"]
        if "accuracy_band" in t.columns and t["accuracy_band"].notna().any():  # a predictor's LOO error
            v["accuracy ± %"] = t["accuracy_band"] * 100
    v["link load %"] = t["uplink_utilisation"] * 100
    total = (t["head_flops"] + t["tail_flops"]).replace(0, np.nan)
    v["device FLOPs %"] = (t["head_flops"] / total * 100).fillna(0.0)
    v["Pareto"] = t["pareto"].astype(bool)
    return v


def best_view(result) -> pd.DataFrame:
    """:meth:`View.best_per_bottleneck <splitimpera.report.view.View.best_per_bottleneck>` as
    displayed: one row per bottleneck (scenario order) with its best split, the joint rank,
    how many of its splits meet the QoS, bytes sent, the latency the limit applies to (ms),
    accuracy (%), device energy (mJ) and the verdict."""
    view = View.of(result)
    best = view.best_per_bottleneck()
    stat = view.statistic
    v = pd.DataFrame(index=best.index)
    v["best split"] = best["split"]
    v["rank"] = best["rank"]
    v["feasible splits"] = best["feasible_splits"]
    v["sent B"] = best["bytes_sent"].astype("int64")
    v["latency ms" if stat == "mean" else f"{stat} ms"] = best["latency_qos_s"] * 1e3
    v["accuracy %"] = best["accuracy"] * 100
    v["energy mJ"] = best["energy_j"] * 1e3
    v["verdict"] = np.where(best["feasible"], "ok", best["reason"])
    return v


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            if k in _DIFF_SKIP:
                continue
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def scenario_diff(a: Scenario, b: Scenario) -> pd.DataFrame:
    """Fields where two resolved scenarios differ: index dotted key, columns ``A`` and ``B``."""
    fa, fb = _flatten(a.resolved()), _flatten(b.resolved())
    keys = [k for k in dict.fromkeys([*fa, *fb]) if not _same(fa.get(k), fb.get(k))]
    df = pd.DataFrame({"A": [fa.get(k) for k in keys], "B": [fb.get(k) for k in keys]},
                      index=pd.Index(keys, name="field"), dtype=object)
    return df.map(lambda x: "—" if x is None else ", ".join(map(str, x)) if isinstance(x, list) else str(x))


def compare_results(a, b) -> pd.DataFrame:
    """Per design point (outer join on ``(split, bottleneck)``, A's order first): latency, rank
    and verdict of A and B. ``Δ ms`` is B's latency minus A's.

    When A and B rank one bottleneck each and not the same one (the bottleneck is what was
    changed), they are compared split by split, on the bottleneck level ``"<A's> → <B's>"``.
    """
    ta, tb = a.table, b.table
    if "exit" in ta.index.names or "exit" in tb.index.names:  # early exit on one side: the others are exit "none"
        ta, tb = (t if "exit" in t.index.names else t.assign(exit="none").set_index("exit", append=True)
                  for t in (ta, tb))
    ba = list(dict.fromkeys(ta.index.get_level_values("bottleneck")))
    bb = list(dict.fromkeys(tb.index.get_level_values("bottleneck")))
    if len(ba) == len(bb) == 1 and ba != bb:
        both = f"{ba[0]} → {bb[0]}"
        ta, tb = (t.rename(index={b[0]: both}, level="bottleneck") for t, b in ((ta, ba), (tb, bb)))
    points = list(dict.fromkeys([*ta.index, *tb.index]))
    index = pd.MultiIndex.from_tuples(points, names=list(ta.index.names))
    ta, tb = ta.reindex(index), tb.reindex(index)
    out = pd.DataFrame(index=index)
    out["A ms"] = ta["latency_s"] * 1e3
    out["B ms"] = tb["latency_s"] * 1e3
    out["Δ ms"] = out["B ms"] - out["A ms"]
    out["A rank"] = ta["rank"].astype("Int64")
    out["B rank"] = tb["rank"].astype("Int64")
    for tag, t in (("A", ta), ("B", tb)):
        out[tag] = np.where(t["feasible"].eq(True), "ok", t["reason"].fillna("—"))
    return out
