"""The device profile ``calibrate`` writes: from a fit to a YAML mapping, checked and written.

Also what ``calibrate`` checks before minutes of timing: the output file and the profile's
name (:func:`profile_output`), and for ``--for-model`` the base profile it adds a timing table
to (:func:`plan_timing_profile`).
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch
import yaml
from pydantic import ValidationError

from ..atomic import atomic_write, check_writable_file
from ..config.hardware import DeviceProfile
from ..config.op_kinds import OP_CLASSES, OP_KINDS
from ..config.profile_registry import parse_profile, profile_raw, resolve_relative_paths
from ..config.strict import format_validation_error
from ..config.yaml_files import read_yaml
from ..errors import UserError
from ..latency.kind_model import KindCoef
from .fit import RooflineFit
from .timing import SOURCE, ModelTiming, cpu_model

TABLE_FLOAT_FORMAT = "%.6g"  # the residual table's numbers, in memory and on disk alike


# A fitted figure past these is more likely a fit artefact (caches, a layer class the fit
# models barely exercise) than this machine: said in one line, the profile is still written.
PLAUSIBLE_MAX_EFFICIENCY = 0.95  # compute.efficiency.* at or above: every FLOP at peak
PLAUSIBLE_GBPS_PER_CORE = 12.5  # memory bandwidth per core: ~100 GB/s on 8 cores (a laptop-class CPU)


def once(lines: Sequence[str]) -> list[str]:
    """``lines`` in order, each only the first time it appears."""
    return list(dict.fromkeys(lines))


def implausible(data: dict, cores: int | None = None) -> list[str]:
    """One line per fitted figure of a device profile mapping (``profile_from_fit``'s) that is
    implausible for a machine with ``cores`` CPU cores (default: this one's): memory bandwidth
    above :data:`PLAUSIBLE_GBPS_PER_CORE` per core (at least 100 GB/s allowed), an efficiency at
    or above :data:`PLAUSIBLE_MAX_EFFICIENCY`."""
    cores = cores or os.cpu_count() or 1
    out = []
    bw = float((data.get("memory") or {}).get("bandwidth_gbps") or 0.0)
    limit = max(100.0, PLAUSIBLE_GBPS_PER_CORE * cores)
    if bw > limit:
        out.append(f"memory.bandwidth_gbps {bw:.4g} GB/s is implausible for {cores} cores (over {limit:.4g}): "
                   "likely cache-resident layers, not DRAM; check it or set it by hand")
    eff = (data.get("compute") or {}).get("efficiency") or {}
    high = [f"{k} {float(v):.3g}" for k, v in eff.items() if float(v) >= PLAUSIBLE_MAX_EFFICIENCY]
    if high:
        out.append(f"compute.efficiency {', '.join(high)} is implausible (at or near the measured peak for every "
                   "layer): the fit models may barely exercise that class; check it or set it by hand")
    return out


def round_sig(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits, as the profile YAML holds it."""
    return float(f"{x:.{digits}g}")


def default_name() -> str:
    """A profile name for this machine: ``calibrated_<hostname>`` in ``[a-z0-9_]``."""
    host = re.sub(r"[^a-z0-9_]+", "_", socket.gethostname().lower()).strip("_") or "host"
    return f"calibrated_{host}"


def coef_to_yaml(coef: Mapping[str, KindCoef]) -> dict:
    """Per-kind base coefficients as ``compute.kinds`` holds them: ``all``, then each kind of
    :data:`~splitimpera.config.op_kinds.OP_KINDS` followed by its operators."""
    order = ["all"]
    for kind in OP_KINDS:
        order += [kind, *sorted(k for k in coef if k.startswith(kind + "/"))]
    return {k: coef[k].to_yaml() for k in order if k in coef}


def profile_from_fit(fit: RooflineFit, *, name: str, peak_gflops: float, kind: str = "device",
                     capacity_gb: float = 1.0, bandwidth_fallback_gbps: Callable[[], float] | None = None,
                     idle_w: float | None = None, active_w: float | None = None,
                     description: str = "", sources: Sequence[str] = (), estimates: Sequence[str] = (),
                     ) -> tuple[dict, list[str]]:
    """The device YAML mapping for a fit, and notes on what had to be assumed."""
    notes: list[str] = []
    estimates = list(estimates)
    rates = {c: 1.0 / a for c, a in fit.s_per_mac.items() if a > 0 and c not in fit.unidentified}
    fastest = max(rates.values(), default=0.0) * 2 / 1e9  # GFLOP/s at 2 FLOP per multiply-add
    if fastest > peak_gflops:
        notes.append(f"peak_gflops raised from {peak_gflops:.4g} to {fastest:.4g}: a fitted op class ran faster "
                     "than the matmul peak")
        peak_gflops = fastest
    eff = {}
    for c in OP_CLASSES:
        if c in rates:
            eff[c] = min(1.0, round_sig(rates[c] * 2 / (peak_gflops * 1e9)))
        else:
            eff[c] = 1.0
            estimates.append(f"compute.efficiency.{c}: no {c} layer of the fit models was compute bound; set to 1")
    if "memory" in fit.unidentified:
        bw = bandwidth_fallback_gbps() if bandwidth_fallback_gbps is not None else 100.0
        estimates.append("memory.bandwidth_gbps: no fit layer was memory bound; large-tensor copy rate used "
                         f"({bw:.3g} GB/s)")
    else:
        bw = 1.0 / fit.s_per_byte / 1e9
    if idle_w is None or active_w is None:
        idle_w = 5.0 if idle_w is None else idle_w
        active_w = max(idle_w, 25.0) if active_w is None else active_w
        estimates.append("power.idle_w, power.active_w: not measured by calibrate; placeholders "
                         "(pass --idle-w/--active-w)")
    data = {
        "name": name,
        "kind": kind,
        "description": description,
        "compute": {
            "peak_gflops": round_sig(peak_gflops),
            "efficiency": eff,
            "layer_overhead_us": round_sig(fit.overhead_s * 1e6),
        },
        "memory": {"capacity_gb": round_sig(capacity_gb, 3), "bandwidth_gbps": round_sig(bw)},
        "power": {"idle_w": float(idle_w), "active_w": float(active_w)},
        "sources": list(sources),
        "estimates": estimates,
    }
    return data, notes


def validate_profile(data: dict, source: str = SOURCE) -> DeviceProfile:
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as e:
        f, msg = format_validation_error(e)
        raise UserError(msg, source=source, field=f) from None


def write_profile(data: dict, path: str | Path, table: pd.DataFrame | None = None) -> Path:
    """Write a device profile YAML atomically (temporary file, then rename); returns the path.

    With ``table`` (the residual table of a per-kind profile), it is written first beside the
    YAML as ``<stem>.nodes.csv`` and ``compute.residual_table`` names it (relative)."""
    path = Path(path)
    data = copy.deepcopy(data)
    if table is not None:
        side = path.with_name(f"{path.stem}.nodes.csv")
        data["compute"]["residual_table"] = side.name
    else:
        data.get("compute", {}).pop("residual_table", None)
        data.get("compute", {}).pop("residual_kinds", None)
    validate_profile(data, str(path))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        if table is not None:
            atomic_write(side, table.to_csv(index=False, float_format=TABLE_FLOAT_FORMAT))
        atomic_write(path, text)
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", source=str(path)) from None
    return path


def scratch_table(text: str) -> Path:
    """The residual table (its CSV ``text``) in the cache folder, so that the in-memory profile
    can be used before it is written (:func:`write_profile` puts a copy beside the YAML)."""
    from .. import cache

    path = cache.cache_dir() / "tables" / f"{cache.key('residual', text)}.csv"
    if not path.exists():
        try:
            atomic_write(path, text)
        except OSError as e:
            raise UserError(f"cannot write the residual table to the cache folder: {e.strerror or e}",
                            source=str(path), field="$SPLITIMPERA_CACHE") from None
    return path


def _shape_tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def profile_with_timing(base: dict, timing: ModelTiming, *, name: str, out: Path, base_dir: Path | None) -> tuple[dict, Path]:
    """``base`` (a device profile mapping) plus ``timing`` as a ``compute.timings`` entry (one per
    model and input: a previous one is replaced), named ``name``, its paths made to work from
    ``out``'s folder. Returns the mapping and the table's path (``<stem>.<model>_<input>.timings.csv``)."""
    data = copy.deepcopy(base)
    if base_dir is not None:
        data = resolve_relative_paths("devices", data, base_dir)
    data["name"] = name
    comp = data.setdefault("compute", {})
    table_path = out.with_name(f"{out.stem}.{_shape_tag(timing.model)}_{timing.input}.timings.csv")

    def rel(p: str) -> str:
        p = Path(p)
        return p.name if p.parent.resolve() == out.parent.resolve() else str(p)

    if comp.get("residual_table"):
        comp["residual_table"] = rel(comp["residual_table"])
    entries = [dict(t, file=rel(t["file"])) for t in comp.get("timings", []) or []
               if not (t.get("model") == timing.model and t.get("input") == timing.input)]
    entries.append({"file": table_path.name, "model": timing.model, "input": timing.input,
                    "structure": timing.structure, "noise_pct": round_sig(timing.noise * 100, 3)})
    comp["timings"] = entries
    today = _dt.date.today().isoformat()
    pin = f", pinned to CPU {','.join(map(str, timing.cpus))}" if timing.cpus else ""
    data.setdefault("sources", []).append(
        f"compute.timings ({timing.model} at {timing.input}): measured node by node by `splitimpera calibrate "
        f"--for-model` on {today} ({cpu_model()}, {timing.threads} threads{pin}, torch {torch.__version__}); "
        f"median of {timing.repeats} rounds, plain forward {timing.total_s * 1e3:.4g} ms, run-to-run spread "
        f"{timing.noise * 100:.2g} %")
    return data, table_path


def write_timing_profile(data: dict, path: Path, timing: ModelTiming, table_path: Path) -> Path:
    """The timing table, then the profile YAML, each atomically."""
    validate_profile(data, str(path))
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        atomic_write(table_path, timing.table.to_csv(index=False, float_format="%.6g"))
        atomic_write(path, text)
    except OSError as e:
        raise UserError(f"cannot write: {e.strerror or e}", source=str(path)) from None
    return path


def profile_output(name: str | None, output: str | None) -> tuple[str, Path]:
    """The profile's name and the YAML file to write, checked before any timing: ``output``
    (``-o``; default ``<name>.yaml``) and ``name`` (``--name``; default the stem of ``output``,
    else :func:`default_name`). The registry wants the file stem to equal the name."""
    out = Path(output) if output else None
    name = name or (out.stem if out else default_name())
    if out is None:
        out = Path(f"{name}.yaml")
    if out.stem != name:  # the registry requires it
        raise UserError(f"profile name {name!r} must equal the file stem of -o {out.name!r}",
                        source=SOURCE, field="--name")
    check_writable_file(out, field="-o" if output else None)
    return name, out


@dataclass(frozen=True)
class TimingPlan:
    """Where ``calibrate --for-model`` starts and what it writes: ``base``, the device profile
    mapping a timing table is added to; ``base_dir``, the folder its relative paths are
    relative to (None for a registered profile); ``out``, the YAML file; ``name``, its name."""

    base: dict
    base_dir: Path | None
    out: Path
    name: str


def plan_timing_profile(model: str, profile: str | None, output: str | None = None, name: str | None = None,
                        fit_options: Sequence[str] = ()) -> TimingPlan:
    """Check everything ``calibrate --for-model`` needs before minutes of timing: ``model``
    (a zoo, torchvision or ``module:function`` name), ``profile`` (a device profile name or a
    YAML file, which must validate), ``output`` (``-o``; default: the profile file itself),
    ``name`` (``--name``; default the stem of the output). ``fit_options``: the options given
    that belong to fitting a profile (refused here)."""
    from ..model.loading import model_kind

    if not profile:
        raise UserError("name the device profile this machine is (a profile name or a YAML file), e.g. "
                        "--profile rpi4", source=SOURCE, field="--profile")
    try:
        model_kind(model)
    except UserError as e:
        raise UserError(e.message, source=SOURCE, field="--for-model") from None
    spec = Path(profile)
    if spec.suffix in (".yaml", ".yml"):
        if not spec.is_file():
            raise UserError(f"no such profile file: {spec}", source=SOURCE, field="--profile")
        base, base_dir = read_yaml(spec), spec.parent
        if not isinstance(base, dict):
            raise UserError("expected a device profile mapping", source=str(spec))
        out = Path(output) if output else spec
    else:
        try:
            base, base_dir = profile_raw("devices", profile), None
        except UserError as e:
            raise e.at(source=SOURCE, field="--profile") from None
        if not output:
            raise UserError(f"give -o FILE.yaml for the new profile ({profile!r} is a bundled or registered "
                            "profile, not a file to change)", source=SOURCE, field="-o")
        out = Path(output)
    if fit_options:
        raise UserError(f"{', '.join(fit_options)} belong{'s' if len(fit_options) == 1 else ''} to fitting a "
                        "profile, not to --for-model (the base profile keeps its own)", source=SOURCE,
                        field=fit_options[0])
    # The base must be a valid device profile before minutes of timing.
    parse_profile("devices", resolve_relative_paths("devices", base, base_dir) if base_dir is not None else base,
                  str(spec) if base_dir is not None else SOURCE, prefix="" if base_dir is not None else "--profile")
    name = name or out.stem
    if out.stem != name:  # the registry requires it
        raise UserError(f"profile name {name!r} must equal the file stem of -o {out.name!r}",
                        source=SOURCE, field="--name")
    check_writable_file(out, field="-o" if output else "--profile")
    return TimingPlan(base=base, base_dir=base_dir, out=out, name=name)
