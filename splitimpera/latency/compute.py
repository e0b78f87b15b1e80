"""Compute latency and energy of a model part on a device profile: a per-layer roofline.

Each graph node (fx node) takes, at batch 1::

    node_time_s = max(Σ_class flops_class / macs_per_s(class),  bytes_moved / bandwidth_Bps)
                  + is_layer × layer_overhead_s

— the slower of its arithmetic and its memory traffic (input activations read, output
written, parameters and buffers read, fp32; see :mod:`splitimpera.model.cost`), plus a fixed
per-layer cost (framework dispatch, Python). The head of a split is the sum over the nodes
up to and including the cut, the tail the rest (prefix sums, so head + tail is the whole
model for every split).

FLOPs here are multiply-adds (fvcore); profiles quote peaks at 2 FLOP per multiply-add and
:meth:`DeviceProfile.macs_per_s` converts. ``memory.bandwidth_gbps`` is GB/s (1e9 bytes).

Measured mode: a frame with a ``head_measured_s`` / ``tail_measured_s`` column
(:func:`measured_column`) carries seconds timed on the hardware itself (``splitimpera
measure``); :func:`compute_time_s` returns them as they are, for both engines.

Data flow: :func:`splitimpera.model.cost.profile_model` attaches the per-node inputs as
``profile.attrs["nodes"]`` (device independent, plain lists); :func:`compute_time_s` turns
them into node times for a device and picks each row's prefix by its ``index`` column. A
profile without them (built by hand, or by an older version) falls back to the first,
flop-only model (:func:`flop_only_time_s`) with a logged warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..config.op_kinds import OP_CLASSES
from ..model.cost import ROOFLINE_COLUMNS, extra_columns
from ..config.hardware import DeviceProfile

log = logging.getLogger(__name__)


def memory_bytes_per_s(device: DeviceProfile) -> float:
    """Sustained memory bandwidth of ``device``, bytes/s."""
    return device.memory.bandwidth_gbps * 1e9


def node_time_s(nodes: Mapping | pd.DataFrame, device: DeviceProfile) -> np.ndarray:
    """Roofline seconds of each node on ``device`` (batch 1), shape ``(n_nodes,)``.

    ``nodes`` has the columns :data:`~splitimpera.model.cost.ROOFLINE_COLUMNS` (a
    :func:`~splitimpera.model.cost.profile_nodes` table or ``profile.attrs["nodes"]``).
    """
    compute = sum(np.asarray(nodes[f"flops_{c}"], dtype=float) / device.macs_per_s(c) for c in OP_CLASSES)
    memory = np.asarray(nodes["bytes_moved"], dtype=float) / memory_bytes_per_s(device)
    layer = np.asarray(nodes["is_layer"], dtype=float)
    return np.maximum(compute, memory) + layer * device.layer_overhead_s


def bound(nodes: Mapping | pd.DataFrame, device: DeviceProfile) -> np.ndarray:
    """Which roofline bound limits each node: ``"compute"`` or ``"memory"`` (ties: compute)."""
    compute = sum(np.asarray(nodes[f"flops_{c}"], dtype=float) / device.macs_per_s(c) for c in OP_CLASSES)
    memory = np.asarray(nodes["bytes_moved"], dtype=float) / memory_bytes_per_s(device)
    return np.where(memory > compute, "memory", "compute")


def _has_nodes(profile: pd.DataFrame) -> bool:
    nodes = profile.attrs.get("nodes")
    return (isinstance(nodes, Mapping) and all(c in nodes for c in ROOFLINE_COLUMNS)
            and "index" in profile.columns)


def compute_time_s(profile: pd.DataFrame, side: str, device: DeviceProfile) -> pd.Series:
    """Seconds to run the ``side`` ("head" or "tail") of every split on ``device``, batch 1.

    ``profile`` is (a row selection of) :func:`~splitimpera.model.cost.profile_model`'s table.
    Which model gives the seconds (:func:`compute_mode`), first that applies: the frame's
    measured columns; a timing table of ``device`` measured on this very model and input
    (``calibrate --for-model``); the device's per-kind model (``compute.kinds``); the roofline.
    """
    if side not in ("head", "tail"):
        raise ValueError(f"side must be 'head' or 'tail', got {side!r}")
    measured = measured_column(side)
    if measured in profile.columns:  # measured mode: times taken on the device itself, used as they are
        return pd.Series(profile[measured].to_numpy(dtype=float), index=profile.index, name=f"{side}_compute_s")
    if not _has_nodes(profile):
        log.warning("profile has no per-node table (attrs['nodes']); using the flop-only compute model")
        return flop_only_time_s(profile, side, device)
    nodes = profile.attrs["nodes"]
    table = matching_table(profile, device)
    if table is not None:
        per_node = table_node_s(table, nodes)
    elif device.compute.kinds and _has_kind_columns(nodes):
        per_node = _kind_node_s(device, nodes)
    else:
        per_node = node_time_s(nodes, device)
    cum = np.concatenate([[0.0], np.cumsum(per_node)])
    # Nodes at positions <= index are in the head; `output`'s index is past every node.
    k = np.searchsorted(np.asarray(nodes["pos"]), profile["index"].to_numpy(), side="right")
    head = cum[k]
    t = head if side == "head" else cum[-1] - head
    return pd.Series(t + extra_time_s(profile, side, device), index=profile.index, name=f"{side}_compute_s")


_kind_times: dict[tuple, tuple] = {}  # key → (model, seconds per node)


def _kind_node_s(device: DeviceProfile, nodes) -> np.ndarray:
    """The per-kind model's seconds per node, kept per model and node table: the simulation
    asks for the same ones at every design point."""
    from .kind_model import MODEL_COLUMNS, model_for

    model = model_for(device)
    cols = ("pos", *MODEL_COLUMNS, *(f"flops_{c}" for c in OP_CLASSES))
    key = (id(model), *(hash(tuple(nodes[c])) for c in cols if c in nodes))
    hit = _kind_times.get(key)
    if hit is None or hit[0] is not model:
        if len(_kind_times) > 256:
            _kind_times.clear()
        hit = _kind_times[key] = (model, model.predict_s(nodes))
    return hit[1]


def _has_kind_columns(nodes) -> bool:
    from .kind_model import MODEL_COLUMNS

    return all(c in nodes for c in MODEL_COLUMNS if c != "macs")


def matching_table(profile: pd.DataFrame, device: DeviceProfile):
    """The device's timing table (:class:`~splitimpera.config.hardware.TimingTable`) measured on
    this profile's model and input, or None."""
    structure = profile.attrs.get("structure")
    shape = "x".join(map(str, profile.attrs.get("input_shape", [])))
    for t in device.compute.timings:
        if t.structure == structure and t.input == shape:
            return t
    return None


_tables: dict[tuple, np.ndarray] = {}


def table_node_s(table, nodes) -> np.ndarray:
    """Seconds per node of ``nodes`` from a timing table (matched by position; cached per file)."""
    from ..errors import UserError

    path = Path(table.file)
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino, tuple(nodes["pos"]))
    except OSError as e:
        raise UserError(f"cannot read the timing table: {e.strerror or e}", source=str(path),
                        field="compute.timings") from None
    if key not in _tables:
        try:
            df = pd.read_csv(path)
            by_pos = dict(zip(df["pos"].astype(int), df["measured_s"].astype(float)))
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"cannot read the timing table: {e}", source=str(path), field="compute.timings") from None
        bad = [p for p, v in by_pos.items() if not (np.isfinite(v) and v >= 0)]
        if bad:
            raise UserError(f"timing table has measured_s {by_pos[bad[0]]!r} at graph position {bad[0]} (a finite "
                            "number of seconds ≥ 0 is needed)", source=str(path), field="compute.timings")
        missing = [p for p in nodes["pos"] if p not in by_pos]
        if missing:
            raise UserError(f"timing table has no row for graph position(s) {missing[:5]}: measured on another "
                            "graph?", source=str(path), field="compute.timings")
        _tables[key] = np.array([by_pos[p] for p in nodes["pos"]], dtype=float)
    return _tables[key]


def compute_mode(profile: pd.DataFrame, side: str, device: DeviceProfile) -> str:
    """Which model :func:`compute_time_s` uses for ``side`` on ``device``, in words."""
    if measured_column(side) in profile.columns:
        return "measured (real run)"
    if not _has_nodes(profile):
        return "flop-only model"
    table = matching_table(profile, device)
    if table is not None:
        return f"measured (timing table {Path(table.file).name})"
    if device.compute.kinds and _has_kind_columns(profile.attrs["nodes"]):
        return "per-kind model" + (" + residual" if device.compute.residual_table else "")
    return "roofline"


def measured_column(side: str) -> str:
    """The frame column that, when present, holds ``side``'s measured seconds per row
    (bottleneck work included) and replaces the model (see :mod:`splitimpera.runtime.compare`)."""
    return f"{side}_measured_s"


def extra_time_s(profile: pd.DataFrame, side: str, device: DeviceProfile) -> np.ndarray:
    """Seconds of the ``<side>_extra_…`` columns (0 where absent), one node per split: the
    roofline, or with a per-kind model its base for the kind of the largest FLOP class
    (``conv``, ``linear``; element-wise when there are none) plus the overhead of the
    remaining layers."""
    cols = extra_columns(side)
    if not all(c in profile.columns for c in cols):
        return np.zeros(len(profile))
    nodes = {f"flops_{c}": profile[f"{side}_extra_flops_{c}"].to_numpy(dtype=float) for c in OP_CLASSES}
    nodes["bytes_moved"] = profile[f"{side}_extra_bytes_moved"].to_numpy(dtype=float)
    layers = profile[f"{side}_extra_layers"].to_numpy(dtype=float)
    if device.compute.kinds:
        from .kind_model import model_for

        model = model_for(device)
        f = np.column_stack([nodes[f"flops_{c}"] for c in OP_CLASSES])
        kind = np.where(f.sum(axis=1) == 0, "eltwise", np.array(["conv", "linear", "eltwise"])[f.argmax(axis=1)])
        one = {"kind": kind.astype(object), "macs": f.sum(axis=1), "bytes_moved": nodes["bytes_moved"]}
        t = np.where(layers > 0, model.base_s(one), 0.0)
        return t + np.maximum(layers - 1, 0) * model.coef["all"].overhead_s
    nodes["is_layer"] = np.zeros(len(profile))
    return node_time_s(nodes, device) + layers * device.layer_overhead_s


def flop_only_time_s(profile: pd.DataFrame, side: str, device: DeviceProfile) -> pd.Series:
    """The first compute model: no memory bound, ``Σ_class flops / rate + layers × overhead``."""
    t = extra_time_s(profile, side, device)
    for c in OP_CLASSES:
        t = t + profile[f"{side}_flops_{c}"].to_numpy(dtype=float) / device.macs_per_s(c)
    t = t + profile[f"{side}_layers"].to_numpy(dtype=float) * device.layer_overhead_s
    return pd.Series(t, index=profile.index, name=f"{side}_compute_s")


def compute_energy_j(time_s, device: DeviceProfile):
    """Energy of computing for ``time_s`` at the profile's active power, joules."""
    return np.asarray(time_s, dtype=float) * device.power.active_w


def predict_latency_s(model, input_shape=None, device: DeviceProfile | str = "rpi4",
                      server: DeviceProfile | str | None = None) -> pd.DataFrame:
    """Compute seconds of every split's head on ``device`` and tail on ``server`` (default: the
    same device), batch 1, without a bottleneck: the numbers ``simulate`` uses.

    ``model``: an ``nn.Module``, a model name (zoo, torchvision, ``module:function``; random
    weights) or a traced model; ``device``/``server``: profiles or profile names. Returns a
    frame indexed by split with ``head_s`` and ``tail_s``; ``attrs["mode"]`` says which model
    gave each side (:func:`compute_mode`).
    """
    import torch

    from ..config.profile_registry import get_device
    from ..model.cost import profile_model
    from ..model.loading import default_input_shape, load_model
    from ..model.splits import TracedModel, trace

    dev = get_device(device) if isinstance(device, str) else device
    srv = dev if server is None else (get_device(server) if isinstance(server, str) else server)
    if isinstance(model, str):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            module = load_model(model, "none")
        model = trace(module, input_shape if input_shape is not None else default_input_shape(model, module))
    elif not isinstance(model, TracedModel):
        model = trace(model, input_shape)
    prof = profile_model(model)
    out = pd.DataFrame({"head_s": compute_time_s(prof, "head", dev).to_numpy(),
                        "tail_s": compute_time_s(prof, "tail", srv).to_numpy()}, index=prof.index)
    out.attrs["mode"] = {"head": compute_mode(prof, "head", dev), "tail": compute_mode(prof, "tail", srv)}
    return out
