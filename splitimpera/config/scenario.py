"""Scenario files: YAML → validated, fully resolved :class:`Scenario`.

Units are explicit at the YAML edge (``max_latency_ms``, ``rate_hz``); the pipeline reads
them through SI properties (``max_latency_s``). Device, server and network entries are a
profile name or a mapping (a full profile, or ``base: <name>`` plus the keys to change).
Every error is a :class:`~splitimpera.errors.UserError` naming the file and the field.
"""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, PrivateAttr, ValidationError, field_validator, model_validator

from ..errors import UserError, first_line
from .checks import run_checks
from .hardware import DeviceProfile, NetworkProfile
from .profile_registry import ProfileFileError, resolve_profile, resolve_relative_paths, warn_broken_profiles
from .strict import StrictModel, format_validation_error, unknown_key_message
from .yaml_files import read_yaml

log = logging.getLogger(__name__)


def _name_list(v, what: str):
    """A list of names must name at least one ``what`` and none twice (a single name passes)."""
    if isinstance(v, list):
        if not v:
            raise ValueError(f"name at least one {what}")
        dup = sorted({n for n in v if v.count(n) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
    return v


def parse_shape_text(text: str) -> tuple[int, ...]:
    """``"3x224x224"`` (or ``3×224×224``) → ``(3, 224, 224)``; ValueError if not integers."""
    return tuple(int(p) for p in text.lower().replace("×", "x").split("x"))

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Folder names may have 255 bytes on common file systems; results are first written to a
# temporary folder named after the result folder with a prefix and suffix added.
MAX_NAME_CHARS = 100


def _folder_name(v: str) -> str:
    if not _NAME_RE.match(v):
        raise ValueError("use letters, digits, '.', '_' and '-' only (it names the output folder)")
    if len(v) > MAX_NAME_CHARS:
        raise ValueError(f"at most {MAX_NAME_CHARS} characters (it names the output folder)")
    return v


# A name that becomes an output folder's name (a scenario's, a sweep's).
FolderName = Annotated[str, AfterValidator(_folder_name)]


class ModelSpec(StrictModel):
    name: str = Field(min_length=1, description="torchvision name, zoo name, or package.module:function")
    weights: str = Field("default", description="none | default | torchvision weights name | state-dict path")
    num_classes: int | None = Field(None, gt=0)
    input_shape: tuple[int, ...] | None = Field(None, description="per-sample shape (C, H, W); default: the model's")

    @field_validator("weights", mode="before")
    @classmethod
    def _weights_none(cls, v):
        return "none" if v is None else v

    @field_validator("input_shape", mode="before")
    @classmethod
    def _shape(cls, v):
        if isinstance(v, str):
            try:
                v = list(parse_shape_text(v))
            except ValueError:
                raise ValueError("write the shape as a list [3, 224, 224] or a string 3x224x224") from None
        return v

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v):
        if v is not None and (not 1 <= len(v) <= 4 or any(d <= 0 for d in v)):
            raise ValueError("must have 1 to 4 positive dimensions, without the batch dimension")
        return v


class DataSpec(StrictModel):
    source: Literal["digits", "letters", "synthetic", "imagefolder", "none"] = "none"
    path: str | None = None
    split: Literal["train", "test", "all"] = "test"
    limit: int | None = Field(None, gt=0, description="use at most this many samples")
    batch_size: int = Field(64, gt=0)
    skip_unreadable: bool = Field(False, description="imagefolder: skip image files that cannot be decoded "
                                                     "(empty, truncated, not an image), with a warning; "
                                                     "default: stop with an error naming the file")


class CUISpec(StrictModel):
    """I-SPLIT importance analysis (see :mod:`splitimpera.accuracy.cui`). Unset keys come from the preset."""

    preset: Literal["default", "reference"] = "default"
    method: str | None = Field(None, description="gradcam, gradcam++, xgradcam, hirescam, layercam, …")
    target: Literal["label", "predicted"] | None = None
    reduction: Literal["sum", "mean"] | None = None
    aggregate: Literal["mean", "median", "trimmed"] | None = None
    trim: float = Field(0.1, ge=0, lt=0.5, description="fraction cut at each end by the trimmed mean")
    splits: Literal["all", "reference"] | list[str] | None = None
    prominence: float = Field(0.1, ge=0, description="log10 units a local maximum must stand out by")
    top_k: int = Field(3, ge=1)
    classes: list[int] | None = Field(None, min_length=1, description="restrict curve and nominations to these labels")

    def settings(self) -> dict:
        return self.model_dump(exclude={"classes"})


class AnalysisSpec(StrictModel):
    splits: Literal["all", "nominated"] | list[str] = Field(
        "all", description="rank every split, only those the CUI curve nominates, or the splits listed "
                           "(input and output included as named)")
    engine: Literal["simpy", "analytic"] = Field(
        "simpy", description="latency model behind the ranking: the discrete-event simulation (queueing, "
                             "contention over time, jitter, traces) or the closed-form one-request model (fast)")
    cui: CUISpec = CUISpec()
    max_simulated_requests: int = Field(
        2_000_000, gt=0, description="the most requests the simpy engine simulates in one run (design points × "
                                     "devices × requests; ~500 B and ~50 µs each); beyond it the run is refused")

    @field_validator("splits")
    @classmethod
    def _split_list(cls, v):
        return _name_list(v, "split (or all, or nominated)")


class WorkloadSpec(StrictModel):
    num_devices: int = Field(1, ge=1)
    rate_hz: float = Field(1.0, gt=0, description="requests per second per device")
    arrival: Literal["periodic", "poisson"] = "periodic"
    num_requests: int = Field(200, gt=0)
    result_at: Literal["server", "device"] = Field(
        "server", description="where the prediction is consumed; 'device' adds the downlink of the result")
    # Discrete-event simulation (splitimpera.latency.simulation); the analytic model ignores these.
    server_workers: int = Field(1, ge=1, description="parallel server workers (e.g. GPUs), each at the profile's rate")
    max_batch: int = Field(1, ge=1, description="largest dynamic batch on a server worker; 1 = no batching")
    batch_timeout_ms: float = Field(
        0.0, ge=0, description="longest a request waits for its batch to fill before a free worker runs it")
    batch_cost_fraction: float = Field(
        0.3, gt=0, le=1, description="time of each extra request in a batch, as a fraction of the batch-1 tail time")
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="first floor(fraction × num_requests) requests of each device are dropped")
    stochastic_network: bool = Field(
        True, description="sample jitter and retransmissions; false: no jitter, mean retransmission overhead")


class AutoencoderSpec(StrictModel):
    """Training of I-SPLIT's autoencoder bottleneck (per split, backbone frozen)."""

    epochs: int = Field(5, ge=1)
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    recon_weight: float = Field(1.0, ge=0, description="weight of the reconstruction MSE beside the task loss")


class BottleneckSpec(StrictModel):
    """What happens to the sent tensor (see :mod:`splitimpera.accuracy.bottlenecks`) and how accuracy is known."""

    name: str | list[str] = Field(
        "none", description="bottleneck(s) applied at the cut: one name (none, fp16, int8, int4_channel, top50_gradcam, "
                            "autoencoder, …), a glob (\"int*\") or a list of names and globs; every (split, "
                            "bottleneck) pair is a design point, ranked jointly")
    coder: Literal["raw", "zstd", "rle"] = Field("raw", description="lossless coder of the payload on the wire")
    measure: Literal["all"] | list[str] = Field(
        "all", description="bottlenecks `analyze` measures for the accuracy × bytes table")
    splits: Literal["all", "nominated"] | list[str] = Field(
        "all", description="splits where accuracy is measured; the others are predicted (see predictor)")
    predictor: Literal["auto", "cui", "cui_linear", "mean", "depth", "log_size", "probe", "none"] = Field(
        "auto", description="how accuracy at unmeasured splits is predicted from the measured ones: auto (the "
                            "predictor that passed validation on the bundled study, else none), cui (isotonic on "
                            "log10 CUI), cui_linear, mean, depth, log_size (log sent bytes), probe (a linear "
                            "probe's accuracy), or none (measure every split instead)")
    calibration: Literal["auto"] | DataSpec = Field(
        "auto", description="data that learning bottlenecks fit on; auto: the train split of digits or letters, "
                            "else a seeded half of the data (the other half evaluates)")
    calibration_limit: int = Field(1024, gt=0, description="calibration samples at most")
    accuracy_csv: str | None = Field(
        None, description="your measured accuracies (columns split, accuracy[, bottleneck]); they take precedence")
    nominal: bool = Field(
        False, description="sizes only: each bottleneck's nominal payload bytes, accuracy taken as the full model's "
                           "(nothing measured, no data needed); what workload.payload_dtype used to mean")
    autoencoder: AutoencoderSpec = AutoencoderSpec()

    @field_validator("name")
    @classmethod
    def _names(cls, v):
        return _name_list(v, "bottleneck")

    @model_validator(mode="after")
    def _nominal_is_uncoded(self):
        if self.nominal and self.coder != "raw":
            raise ValueError("nominal sizes are uncoded: set coder: raw, or drop nominal to measure coded bytes")
        return self

    @property
    def patterns(self) -> list[str]:
        """``name`` as a list of names and globs, in the order given."""
        return [self.name] if isinstance(self.name, str) else list(self.name)

    def fit_options(self) -> dict:
        return {"autoencoder": self.autoencoder.model_dump()}


EXIT_HEAD_KINDS = ("linear", "conv")
EXIT_DEGENERATE = ("input", "output")


class ExitSpec(StrictModel):
    """Early exit (Split-Et-Impera's EE configuration): at each listed split a small classifier
    (the exit head) runs on the device after the head; a request whose confidence reaches
    the threshold τ is answered there, the others go on to the server as in split computing."""

    splits: list[str] = Field(min_length=1, description="splits that get an exit head (not input or output)")
    thresholds: list[float] = Field(
        [0.5, 0.8, 0.9, 0.95, 0.99], min_length=1,
        description="confidence thresholds τ in [0, 1]; a sample exits when its confidence ≥ τ (τ = 0: always)")
    head: Literal["linear", "conv"] = Field(
        "linear", description="linear: global average pooling + one linear layer; conv: a 3×3 convolution "
                              "(C→C) + ReLU before them")
    confidence: Literal["max_softmax", "entropy"] = Field(
        "max_softmax", description="max_softmax: the largest class probability; entropy: 1 − H(p)/log K")
    epochs: int = Field(30, gt=0, description="passes of Adam over the calibration activations")
    lr: float = Field(0.01, gt=0, description="Adam's learning rate")

    @field_validator("splits")
    @classmethod
    def _splits(cls, v):
        _name_list(v, "split")
        bad = [s for s in v if s in EXIT_DEGENERATE]
        if bad:
            raise ValueError(f"no exit at {bad[0]}: an exit head needs a head on the device and a tail on the "
                             "server (input sends the raw input, output runs everything on the device)")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v):
        bad = [t for t in v if not 0.0 <= t <= 1.0]
        if bad:
            raise ValueError(f"thresholds are confidences in [0, 1], got {bad[0]:g}")
        dup = sorted({t for t in v if v.count(t) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(f'{t:g}' for t in dup)}")
        return v


class ObjectiveWeights(StrictModel):
    """Weights of the ``weighted`` objective; each metric is min-max scaled across splits first."""

    latency: float = Field(1.0, ge=0)
    energy: float = Field(0.0, ge=0)
    bytes: float = Field(0.0, ge=0)
    accuracy: float = Field(0.0, ge=0)


class QoSSpec(StrictModel):
    max_latency_ms: float | None = Field(None, gt=0, description="limit on the latency statistic below")
    latency_statistic: Literal["mean", "p50", "p95", "p99"] = Field(
        "mean", description="which latency the limit applies to (percentiles need the simpy engine; "
                            "the analytic engine's single-request latency stands for all)")
    max_deadline_miss_ratio: float | None = Field(
        None, ge=0, le=1, description="fraction of requests allowed over max_latency_ms")
    max_energy_mj: float | None = Field(None, gt=0, description="device energy per inference, mJ")
    max_tx_bytes: int | None = Field(None, gt=0)
    max_uplink_utilisation: float | None = Field(
        None, gt=0, le=1, description="offered uplink load of all devices / link capacity")
    max_frame_loss_ratio: float | None = Field(
        None, ge=0, le=1, description="fraction of frames allowed lost (UDP: a frame with a lost packet is lost)")
    min_accuracy: float | None = Field(None, ge=0, le=1)
    fit_device_memory: bool = True
    objective: Literal["latency", "energy", "bytes", "accuracy", "weighted"] = "latency"
    weights: ObjectiveWeights = ObjectiveWeights()

    @model_validator(mode="after")
    def _deadline_needs_limit(self) -> "QoSSpec":
        if self.max_deadline_miss_ratio is not None and self.max_latency_ms is None:
            raise ValueError("max_deadline_miss_ratio needs max_latency_ms (the deadline)")
        return self

    @property
    def max_latency_s(self) -> float | None:
        return None if self.max_latency_ms is None else self.max_latency_ms * 1e-3

    @property
    def max_energy_j(self) -> float | None:
        return None if self.max_energy_mj is None else self.max_energy_mj * 1e-3


class OutputSpec(StrictModel):
    dir: str = "results"
    top: int = Field(10, gt=0, description="rows shown in the terminal table")


class Scenario(StrictModel):
    name: FolderName
    seed: int = Field(0, ge=0)
    description: str = ""
    model: ModelSpec
    data: DataSpec = DataSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    device: DeviceProfile
    server: DeviceProfile
    network: NetworkProfile
    workload: WorkloadSpec = WorkloadSpec()
    bottleneck: BottleneckSpec = BottleneckSpec()
    qos: QoSSpec = QoSSpec()
    output: OutputSpec = OutputSpec()
    exit: ExitSpec | None = Field(None, description="early exit: exit heads at splits, thresholds τ")

    _source: str = PrivateAttr(default="<scenario>")
    _base_dir: Path | None = PrivateAttr(default=None)

    @property
    def source(self) -> str:
        return self._source

    @property
    def base_dir(self) -> Path | None:
        """The folder of the scenario file (None when given as data): relative paths, and a
        user model's module (``model.name: mymod:make`` with ``mymod.py`` beside the file)."""
        return self._base_dir

    def resolved(self) -> dict:
        """The fully resolved scenario as plain data (profiles expanded), reloadable as is."""
        # Without an exit section the resolved scenario is what it was before early exit existed.
        return self.model_dump(mode="json", exclude={"exit"} if self.exit is None else None)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.resolved(), sort_keys=False)


_PROFILE_FIELDS = {"device": "devices", "server": "devices", "network": "networks"}


def parse_overrides(items) -> dict[str, Any]:
    """``["a.b=1", ...]`` (CLI ``--set``) → ``{"a.b": 1}``; values are parsed as YAML.

    A value YAML cannot parse is taken as the string it is (``note=a: b``), unless it opens
    a list, a mapping or a quoted string (``[``, ``{``, ``'``, ``"``): that is a list or a
    string left unclosed, refused naming the key rather than taken literally."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not p for p in key.split(".")):
            raise UserError(f"expected key=value with a dotted key, got {item!r}", source="--set")
        try:
            out[key] = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as e:
            if value.strip()[:1] in ("[", "{", "'", '"'):
                problem = getattr(e, "problem", None) or first_line(e)
                raise UserError(f"malformed value {value!r} ({problem}): close the list, mapping or quotes",
                                source="--set", field=key) from None
            out[key] = value
    return out


def _apply_override(data: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if i == 0 and part in _PROFILE_FIELDS and isinstance(child, str):
            child = {"base": child}  # --set network.uplink_mbps=5 on a named profile
        if child is None:
            child = {}
        if not isinstance(child, dict):
            raise UserError(f"cannot set {key}: {'.'.join(parts[:i + 1])} is not a mapping",
                            source=source, field=key)
        node[part] = child
        node = child
    node[parts[-1]] = value


def scenario_from_dict(data: Any, source: str = "<scenario>", overrides: dict[str, Any] | None = None,
                       base_dir: Path | None = None) -> Scenario:
    """Validate and resolve a scenario given as plain data."""
    if not isinstance(data, dict):
        what = "an empty file" if data is None else f"a {type(data).__name__}"
        raise UserError(f"a scenario must be a YAML mapping, got {what}", source=source)
    data = copy.deepcopy(data)
    # Parents before children: `--set network.uplink_mbps=50 --set network=wifi5` keeps the 50.
    for key, value in sorted((overrides or {}).items(), key=lambda kv: kv[0].count(".")):
        _apply_override(data, key, value, source)
    over_keys = list(overrides or {})

    def src_for(field: str) -> str:
        hits = [k for k in over_keys if field == k or field.startswith(k + ".") or k.startswith(field + ".")]
        return f"{source} (--set {hits[0]})" if hits else source

    if base_dir is not None:  # before resolution: a base profile's own paths are already absolute
        for field, kind in _PROFILE_FIELDS.items():
            if field in data:
                data[field] = resolve_relative_paths(kind, data[field], base_dir)
    # An unknown key first: a misspelt `netwrok:` is why `network` is missing.
    for key in data:
        if key not in Scenario.model_fields:
            raise UserError(unknown_key_message(str(key), list(Scenario.model_fields)), source=src_for(str(key)),
                            field=str(key))
    resolved = dict(data)
    for field, kind in _PROFILE_FIELDS.items():
        if field not in data:
            raise UserError("missing required field (a profile name or a mapping)", source=source, field=field)
        try:
            resolved[field] = resolve_profile(kind, data[field], source, field)
        except ProfileFileError:
            raise  # the profile's own file is at fault, and named
        except UserError as e:
            raise UserError(e.message, source=src_for(e.field or field), field=e.field) from None
    used: dict[str, set[str]] = {}
    for field, kind in _PROFILE_FIELDS.items():
        spec = data[field]
        name = spec if isinstance(spec, str) else spec.get("base") if isinstance(spec, dict) else None
        if isinstance(name, str):
            used.setdefault(kind, set()).add(name)
    warn_broken_profiles(used)
    if base_dir is not None:
        _resolve_paths(resolved, base_dir)
    _translate_payload_dtype(resolved, source, src_for)
    try:
        sc = Scenario.model_validate(resolved)
    except ValidationError as e:
        field, msg = format_validation_error(e, model=Scenario)
        raise UserError(msg, source=src_for(field), field=field) from None
    sc._base_dir = base_dir
    _semantic_checks(sc, src_for)
    sc._source = source
    return sc


PAYLOAD_DTYPES = {"float32": "none", "float16": "fp16", "int8": "int8"}


def _translate_payload_dtype(data: dict, source: str, src_for) -> None:
    """The old ``workload.payload_dtype`` becomes a nominal bottleneck (sizes without
    measurement): float32 → none, float16 → fp16, int8 → int8 (its payload now carries the
    quantisation range, 8 B, which the old key left out)."""
    wl = data.get("workload")
    if not isinstance(wl, dict) or "payload_dtype" not in wl:
        return
    wl = data["workload"] = dict(wl)
    dtype = wl.pop("payload_dtype")
    field = "workload.payload_dtype"
    if dtype is None:  # `--set workload.payload_dtype=null` removes the old key
        return
    if dtype not in PAYLOAD_DTYPES:
        raise UserError(f"is replaced by bottleneck.name (with nominal: true for sizes only); it was one of "
                        f"{', '.join(PAYLOAD_DTYPES)}, got {dtype!r}", source=src_for(field), field=field)
    name = PAYLOAD_DTYPES[dtype]
    if name == "none":
        return
    bn = data.get("bottleneck")
    if bn is not None and not isinstance(bn, dict):
        raise UserError(f"the bottleneck section must be a mapping (got {bn!r}); with payload_dtype {dtype} drop "
                        f"one of them", source=src_for("bottleneck"), field="bottleneck")
    bn = dict(bn or {})
    for key, plain in (("name", "none"), ("coder", "raw"), ("nominal", True)):
        if key in bn and bn[key] != plain:
            sub = f"bottleneck.{key}"
            raise UserError(f"payload_dtype {dtype} means bottleneck: {{name: {name}, nominal: true}}, which "
                            f"{sub}: {bn[key]!r} contradicts; drop workload.payload_dtype",
                            source=src_for(sub), field=field)
    bn.update(name=name, nominal=True)
    data["bottleneck"] = bn
    log.warning("%s: workload.payload_dtype is deprecated; %s means bottleneck: {name: %s, nominal: true}",
                source, dtype, name)


def _resolve_paths(data: dict, base_dir: Path) -> None:
    """Relative file paths in a scenario are relative to the scenario file's folder."""
    model = data.get("model")
    if isinstance(model, dict):
        w = model.get("weights")
        if isinstance(w, str) and ("/" in w or w.endswith((".pt", ".pth", ".bin"))) and not Path(w).is_absolute():
            model["weights"] = str((base_dir / w).resolve())
    dat = data.get("data")
    if isinstance(dat, dict) and isinstance(dat.get("path"), str) and not Path(dat["path"]).is_absolute():
        dat["path"] = str((base_dir / dat["path"]).resolve())
    bn = data.get("bottleneck")
    if isinstance(bn, dict):
        if isinstance(bn.get("accuracy_csv"), str) and not Path(bn["accuracy_csv"]).is_absolute():
            bn["accuracy_csv"] = str((base_dir / bn["accuracy_csv"]).resolve())
        cal = bn.get("calibration")
        if isinstance(cal, dict) and isinstance(cal.get("path"), str) and not Path(cal["path"]).is_absolute():
            cal["path"] = str((base_dir / cal["path"]).resolve())


def _semantic_checks(sc: Scenario, src_for) -> None:
    # Model names, importance methods and bottleneck names are answered by the layers that
    # own them, through the hooks they register in config.checks (the layout rule: the schema
    # imports no later stage). Each section's hooks run where that section is checked.
    run_checks(sc, src_for, "model")
    if sc.data.source == "imagefolder":
        if not sc.data.path:
            raise UserError("required when data.source is imagefolder", source=src_for("data.path"),
                            field="data.path")
        if not Path(sc.data.path).is_dir():
            raise UserError(f"folder not found: {sc.data.path}", source=src_for("data.path"), field="data.path")
    if sc.analysis.splits == "nominated" and sc.data.source == "none":
        raise UserError("nominated splits need data for the importance analysis (set data.source)",
                        source=src_for("analysis.splits"), field="analysis.splits")
    run_checks(sc, src_for, "analysis")
    _check_bottleneck(sc, src_for)
    if sc.exit is not None and sc.data.source in ("none", "synthetic"):
        raise UserError("exit heads are trained and scored on labelled data (data.source: digits, letters or "
                        "imagefolder)", source=src_for("exit"), field="exit")
    if sc.qos.min_accuracy is not None and sc.data.source in ("none", "synthetic"):
        raise UserError("needs labelled data (data.source: digits, letters or imagefolder)",
                        source=src_for("qos.min_accuracy"), field="qos.min_accuracy")


def _check_bottleneck(sc: Scenario, src_for) -> None:
    run_checks(sc, src_for, "bottleneck")  # bottleneck.name and bottleneck.measure resolve
    bn = sc.bottleneck
    # bottleneck.name is a name or a list of names and globs: any entry but "none" sends
    # something other than the plain fp32 tensor.
    active = [n for n in ([bn.name] if isinstance(bn.name, str) else bn.name) if n != "none"]
    if bn.measure != "all":
        if not bn.measure:
            raise UserError("name at least one bottleneck (or all)", source=src_for("bottleneck.measure"),
                            field="bottleneck.measure")
        dup = sorted({n for n in bn.measure if bn.measure.count(n) > 1})
        if dup:
            raise UserError(f"listed twice: {', '.join(dup)}", source=src_for("bottleneck.measure"),
                            field="bottleneck.measure")
    if (active or bn.coder != "raw") and not bn.nominal and sc.data.source == "none":
        field = "bottleneck.name" if active else "bottleneck.coder"
        raise UserError("bytes and accuracy under a bottleneck or coder are measured on data (set data.source, "
                        "or bottleneck.nominal: true for sizes only)",
                        source=src_for(field), field=field)
    if bn.splits == "nominated" and sc.data.source == "none":
        raise UserError("nominated splits need data for the importance analysis (set data.source)",
                        source=src_for("bottleneck.splits"), field="bottleneck.splits")
    if bn.accuracy_csv is not None and not Path(bn.accuracy_csv).is_file():
        raise UserError(f"file not found: {bn.accuracy_csv}", source=src_for("bottleneck.accuracy_csv"),
                        field="bottleneck.accuracy_csv")
    cal = bn.calibration
    if isinstance(cal, DataSpec) and cal.source == "imagefolder" and not (cal.path and Path(cal.path).is_dir()):
        raise UserError(f"folder not found: {cal.path}", source=src_for("bottleneck.calibration.path"),
                        field="bottleneck.calibration.path")


SCENARIOS_DIR = Path(__file__).resolve().parent.parent / "scenarios"  # bundled (the repo's scenarios/ links here)


def list_scenarios() -> list[str]:
    """Names of the bundled ready scenarios (``demo``, …), sorted; ``load_scenario`` takes them."""
    return sorted(p.stem for p in SCENARIOS_DIR.glob("*.yaml"))


def bundled_file(path: Path, folder: Path, what: str = "scenario") -> Path | None:
    """The bundled file in ``folder`` that ``path`` names, when it is a bare name (no folder, no
    suffix) and not a file; None for anything else. An unknown bare name is a UserError listing
    the bundled ``what``s."""
    text = str(path)
    if not text or path.name != text or path.suffix or "\\" in text or path.is_file():
        return None
    bundled = folder / f"{text}.yaml"
    if not bundled.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise UserError(f"file not found, nor a bundled {what} ({', '.join(names)})", source=text)
    return bundled


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    """Read, override (dotted keys, as CLI ``--set``), validate and resolve a scenario file.

    ``path`` may also be the name of a bundled scenario (``"demo"``, see :func:`list_scenarios`)
    when no file of that name exists; messages then name it as given."""
    path = Path(path)
    source = str(path)
    path = bundled_file(path, SCENARIOS_DIR) or path
    data = read_yaml(path)
    return scenario_from_dict(data, source=source, overrides=overrides, base_dir=path.parent.resolve())
