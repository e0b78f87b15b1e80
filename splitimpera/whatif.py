"""What-if helpers behind the dashboard (``app.py``): small pure functions over the public API.

The dashboard keeps one *base* scenario (a file, or an uploaded / pasted YAML text) and turns
its controls into ``overrides``: dotted keys mapped to values, exactly what CLI ``--set``
takes. Only the heavy part of a run (:func:`~splitimpera.pipeline.prepare`) is cached, keyed
by :func:`prepare_key`; every control change re-runs :func:`~splitimpera.pipeline.evaluate`
(latency and QoS ranking) on the cached :class:`~splitimpera.pipeline.Prepared`.

Nothing here imports Streamlit: the functions are tested on their own.
"""

from __future__ import annotations

import json
import os
import math
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from .errors import UserError
from .config.scenario import Scenario, scenario_from_dict

# What prepare() depends on. analysis.engine is left out: it only changes evaluate().
PREPARE_SECTIONS = ("seed", "model", "data", "analysis", "bottleneck")
_PROFILE_KEYS = ("device", "server", "network")
# Bookkeeping fields of profiles: never worth showing in a comparison.
_DIFF_SKIP = ("sources", "estimates", "description")


def prepare_key(scenario: Scenario) -> str:
    """Canonical JSON of the scenario sections :func:`~splitimpera.pipeline.prepare` reads.

    Two scenarios with the same key share one ``Prepared``: seed, model, data, analysis
    and bottleneck settings (without ``analysis.engine``, which only the latency model reads).
    """
    d = scenario.resolved()
    part = {k: d[k] for k in PREPARE_SECTIONS}
    part["analysis"] = {k: v for k, v in part["analysis"].items() if k != "engine"}
    csv = scenario.bottleneck.accuracy_csv
    if csv is not None:  # an edited file of accuracies must not hit the old entry
        try:
            st = os.stat(csv)
            part["accuracy_csv_stat"] = [st.st_mtime_ns, st.st_size]
        except OSError:
            pass
    return json.dumps(part, sort_keys=True)


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
    """The ranked table as displayed: feasible splits by rank, then the others, closest first.

    Indexed by split name; times in ms, energy in mJ, accuracy and link load in %, bytes sent
    as a number. Queueing waits and p95 appear with the SimPy engine (the analytic model has
    none), the downlink only when the result travels back to the device.
    """
    t = result.ranked()
    simulated = result.sim is not None
    v = pd.DataFrame(index=t.index)
    v.index.name = "split"
    v["rank"] = t["rank"]
    v["sent B"] = t["bytes_sent"].astype("int64")
    cols = [("device_wait_s", "device wait ms", simulated), ("device_compute_s", "device ms", True),
            ("uplink_s", "uplink ms", True), ("server_wait_s", "server wait ms", simulated),
            ("server_compute_s", "server ms", True),
            ("downlink_s", "downlink ms", result.scenario.workload.result_at == "device"),
            ("latency_s", "mean ms" if simulated else "latency ms", True),
            ("latency_p95_s", "p95 ms", simulated)]
    for col, label, show in cols:
        if show:
            v[label] = t[col] * 1e3
    v["verdict"] = np.where(t["feasible"], "ok", t["reason"])
    v["energy mJ"] = t["energy_j"] * 1e3
    if t["accuracy"].notna().any():
        v["accuracy %"] = t["accuracy"] * 100
        if result.scenario.bottleneck.active:  # measured, predicted from the CUI curve, or yours
            v["accuracy from"] = t["accuracy_source"]
    v["link load %"] = t["uplink_utilisation"] * 100
    total = (t["head_flops"] + t["tail_flops"]).replace(0, np.nan)
    v["device FLOPs %"] = (t["head_flops"] / total * 100).fillna(0.0)
    v["Pareto"] = t["pareto"].astype(bool)
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
    return df.map(lambda x: "—" if x is None else str(x))


def compare_results(a, b) -> pd.DataFrame:
    """Per split (outer join on split name, A's order first): latency, rank and verdict of A and B.

    ``Δ ms`` is B's latency minus A's.
    """
    ta, tb = a.table, b.table
    names = list(dict.fromkeys([*ta.index, *tb.index]))
    out = pd.DataFrame(index=pd.Index(names, name="split"))
    out["A ms"] = ta["latency_s"].reindex(names) * 1e3
    out["B ms"] = tb["latency_s"].reindex(names) * 1e3
    out["Δ ms"] = out["B ms"] - out["A ms"]
    out["A rank"] = ta["rank"].reindex(names).astype("Int64")
    out["B rank"] = tb["rank"].reindex(names).astype("Int64")
    out["A"] = np.where(ta["feasible"].reindex(names).fillna(False).astype(bool), "ok",
                        ta["reason"].reindex(names).fillna("—"))
    out["B"] = np.where(tb["feasible"].reindex(names).fillna(False).astype(bool), "ok",
                        tb["reason"].reindex(names).fillna("—"))
    return out
