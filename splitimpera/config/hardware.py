"""Device and network profiles: schema, YAML loading and a registry.

Profiles live as YAML files in ``profiles/devices/*.yaml`` and ``profiles/networks/*.yaml``
at the top of the repository, plus any folders named in ``$SPLITIMPERA_PROFILES``
(``os.pathsep``-separated; each holds ``devices/`` and/or ``networks/``). The YAML edge uses
the units named in the keys (``peak_gflops``, ``uplink_mbps``, ``rtt_ms``); the methods of
the profile classes return SI values (FLOP/s, bit/s, seconds, watts).

FLOP convention: ``peak_gflops`` counts 2 FLOP per multiply-add, as datasheets do. The
model profile (fvcore) counts 1 per multiply-add, so :meth:`DeviceProfile.macs_per_s`
halves the datasheet rate.

Registry API in the style of torchvision's ``models/_api.py``::

    list_devices(include="jetson*")   get_device("rpi4")   register_device(profile)
"""

from __future__ import annotations

import copy
import difflib
import functools
import logging
import os
import types
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_serializer,
                      model_validator)

from ..errors import UserError
from .rate_trace import RateTrace, read_trace_csv
from .registry import Registry

log = logging.getLogger(__name__)

OP_CLASSES = ("conv", "linear", "other")
# The op kinds of the per-kind compute model (defined with their features in model/kinds.py).
KINDS = ("conv", "conv_dw", "conv_group", "linear", "matmul", "attention", "norm", "act", "pool", "eltwise",
         "concat", "view", "copy", "other")


def _admits_number_not_bool(annotation) -> bool:
    """Whether a field of this type takes numbers (int or float) but not booleans."""
    import typing

    if annotation is bool or annotation is Any:
        return False
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return not any(a is bool or a is Any for a in args) and any(_admits_number_not_bool(a) for a in args)
    return False


def _bool_for_number(value, annotation) -> bool:
    """Whether ``value`` holds a boolean where ``annotation`` expects a number (looking into
    lists, tuples and mappings of numbers)."""
    import typing

    if isinstance(value, bool):
        return _admits_number_not_bool(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_bool_for_number(value, a) for a in args if a is not type(None))
    if isinstance(value, (list, tuple)) and origin in (list, tuple) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return any(_bool_for_number(v, a) for v, a in zip(value, args))
        return any(_bool_for_number(v, args[0]) for v in value)
    if isinstance(value, dict) and origin is dict and len(args) == 2:
        return any(_bool_for_number(v, args[1]) for v in value.values())
    return False


class _Strict(BaseModel):
    """Base of every schema: unknown keys are refused, numbers are finite, and a boolean is
    not taken for a number (YAML's ``true`` is not 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_number(cls, v, info):
        f = cls.model_fields.get(info.field_name) if info.field_name else None
        if f is not None and _bool_for_number(v, f.annotation):
            raise ValueError("expected a number, not true or false")
        return v


class Efficiency(_Strict):
    """Fraction of peak sustained by the framework at batch 1, per op class, in (0, 1]."""

    conv: float = Field(gt=0, le=1)
    linear: float = Field(gt=0, le=1)
    other: float = Field(gt=0, le=1)


class KindCoefficients(_Strict):
    """One op kind of the per-kind compute model (:mod:`splitimpera.latency.kinds`)."""

    overhead_us: float = Field(ge=0, description="fixed cost per call, µs")
    gmacs_per_s: float | None = Field(None, gt=0, description="multiply-adds per second, 1e9 (None: MACs cost nothing)")
    gbytes_per_s: float | None = Field(None, gt=0, description="bytes moved per second, 1e9 (None: bytes cost nothing)")


class TimingTable(_Strict):
    """A per-node timing table of one model on this device (``calibrate --for-model``)."""

    file: str = Field(min_length=1, description="CSV: node, pos, kind, measured_s (seconds, median)")
    model: str = Field(min_length=1)
    input: str = Field(min_length=1, description="input shape, CxHxW")
    structure: str = Field(min_length=1, description="hash of the traced graph the table was measured on")
    noise_pct: float = Field(0.0, ge=0, description="run-to-run spread of the whole model (IQR / median), %")


class Compute(_Strict):
    peak_gflops: float = Field(gt=0, description="fp32 peak, 2 FLOP per multiply-add, GFLOP/s")
    efficiency: Efficiency
    layer_overhead_us: float = Field(ge=0, description="fixed cost per executed layer, µs")
    kinds: dict[str, KindCoefficients] | None = Field(
        None, description="per-kind compute model (replaces the roofline when set; needs an 'all' entry; "
                          "kind/operator entries, e.g. act/silu, for operators measured apart)")
    residual_table: str | None = Field(None, description="CSV of measured nodes the residual model is fitted from")
    residual_kinds: list[str] | None = Field(
        None, description="kinds that get a residual regressor (None: every kind with enough measured nodes)")
    error_pct: float | None = Field(
        None, ge=0, description="held-out whole-model error of this profile's compute model, % (median |error|)")
    timings: list[TimingTable] = Field(default_factory=list, description="measured per-node tables (measured mode)")
    measured_on: dict[str, str | int | list[int]] | None = Field(
        None, description="where calibrate measured kinds: cpu, threads, cpus, torch, date, rounds")

    @model_validator(mode="after")
    def _kinds_all(self) -> "Compute":
        if self.kinds is not None:
            unknown = sorted(k for k in self.kinds if k != "all" and k.partition("/")[0] not in KINDS)
            if unknown:
                raise ValueError(f"unknown op kind(s) {', '.join(unknown)} in kinds; known: all, {', '.join(KINDS)} "
                                 "(an operator of a kind as kind/operator, e.g. act/silu)")
            if "all" not in self.kinds:
                raise ValueError("kinds needs an 'all' entry (used for kinds the fit did not see)")
        if self.residual_table is not None and self.kinds is None:
            raise ValueError("residual_table needs kinds")
        if self.residual_kinds is not None:
            unknown = sorted(set(self.residual_kinds) - set(KINDS))
            if unknown:
                raise ValueError(f"unknown op kind(s) {', '.join(unknown)} in residual_kinds; known: {', '.join(KINDS)}")
        return self


class Memory(_Strict):
    capacity_gb: float = Field(gt=0, description="usable memory, GB (1e9 bytes)")
    bandwidth_gbps: float = Field(gt=0, description="sustained memory bandwidth, GB/s")


class Power(_Strict):
    idle_w: float = Field(ge=0)
    active_w: float = Field(gt=0)

    @model_validator(mode="after")
    def _active_above_idle(self) -> "Power":
        if self.active_w < self.idle_w:
            raise ValueError(f"active_w ({self.active_w}) must be >= idle_w ({self.idle_w})")
        return self


class DeviceProfile(_Strict):
    """A compute platform (edge device or server)."""

    name: str = Field(min_length=1)
    kind: Literal["device", "server"] = "device"
    description: str = ""
    compute: Compute
    memory: Memory
    power: Power
    sources: list[str] = Field(default_factory=list)
    estimates: list[str] = Field(default_factory=list)

    def macs_per_s(self, op_class: str) -> float:
        """Sustained multiply-adds per second for an op class (``conv``, ``linear``, ``other``)."""
        eff = getattr(self.compute.efficiency, op_class)
        return self.compute.peak_gflops * 1e9 * eff / 2.0

    @property
    def layer_overhead_s(self) -> float:
        return self.compute.layer_overhead_us * 1e-6

    @property
    def memory_bytes(self) -> float:
        return self.memory.capacity_gb * 1e9


class Radio(_Strict):
    """Huang et al. (MobiSys 2012) power model: P = a_up*t_up + a_down*t_down + beta (mW, Mbit/s)."""

    alpha_up_mw_per_mbps: float = Field(ge=0)
    alpha_down_mw_per_mbps: float = Field(ge=0)
    beta_mw: float = Field(ge=0)


class TcpSettings(_Strict):
    """TCP as the link's transport sees it (:mod:`splitimpera.latency.transport`).

    Defaults are Linux's: initial window 10 segments (RFC 6928), minimum RTO 200 ms (ns-3's
    own default is 1 s), SYN timeout 1 s (RFC 6298's initial RTO), a 4 MiB receive window.
    ``mss_bytes`` defaults to the MTU less the headers. ``connection``: ``persistent`` (one
    connection carries every request; after an idle gap longer than the RTO its window
    restarts at the initial window, RFC 2861) or ``new`` (a handshake round trip per request).
    """

    init_cwnd_segments: int = Field(10, ge=1, le=10000)
    min_rto_ms: float = Field(200.0, ge=1.0, le=60000.0)
    syn_rto_ms: float = Field(1000.0, ge=1.0, le=60000.0)
    mss_bytes: int | None = Field(None, gt=0)
    rwnd_bytes: int = Field(4 * 1024 * 1024, gt=0)
    connection: Literal["persistent", "new"] = "persistent"


# Per-packet overhead of IPv4 (20 B) and the transport: TCP 20 B + timestamps option 12 B; UDP 8 B.
DEFAULT_HEADER_BYTES = {"tcp": 52, "udp": 28}


class NetworkProfile(_Strict):
    """A link between the devices and the server.

    ``transport``: ``tcp`` (default; slow start, loss recovery and retransmission timeouts,
    settings in ``tcp``) or ``udp`` (no handshake, no retransmission: a frame with a lost
    packet is lost). ``header_bytes`` defaults to the transport's IPv4 + TCP/UDP headers.

    ``trace_csv`` (optional) names a rate trace (:mod:`splitimpera.config.rate_trace`): the simulation
    replays it as the link's rate over time, and ``uplink_mbps`` (and ``downlink_mbps`` when
    the trace has that column) are set to the trace's time-weighted mean, which the analytic
    model uses; values given for them are replaced. A relative path is relative to the YAML
    file that names it (resolved when that file is loaded); the file is read and checked when
    the profile is validated.
    """

    name: str = Field(min_length=1)
    description: str = ""
    # Before the rates: a bad trace is the first error reported, not a missing uplink_mbps.
    trace_csv: str | None = Field(None, description="CSV of time_s, uplink_mbps[, downlink_mbps] the link follows")
    uplink_mbps: float = Field(gt=0)
    downlink_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    loss: float = Field(default=0.0, ge=0, lt=1)
    mtu_bytes: int = Field(default=1500, gt=0)
    transport: Literal["tcp", "udp"] = "tcp"
    tcp: TcpSettings = TcpSettings()
    header_bytes: int | None = Field(default=None, ge=0)
    radio: Radio = Radio(alpha_up_mw_per_mbps=0.0, alpha_down_mw_per_mbps=0.0, beta_mw=0.0)
    contention: list[tuple[int, float]] = Field(default_factory=lambda: [(1, 1.0)])
    sources: list[str] = Field(default_factory=list)
    estimates: list[str] = Field(default_factory=list)

    _trace: RateTrace | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _rates_from_trace(cls, data):
        if isinstance(data, dict) and isinstance(data.get("trace_csv"), str):
            try:
                tr = read_trace_csv(data["trace_csv"])
            except ValueError:
                # The trace_csv field validator reports it, naming the field; stand-in rates
                # keep a trace-only profile from adding "uplink_mbps: Field required" to it.
                return {"uplink_mbps": 1.0, "downlink_mbps": 1.0, **data}
            data = dict(data)
            data["uplink_mbps"] = tr.mean_mbps("up")
            if tr.downlink_mbps is not None:
                data["downlink_mbps"] = tr.mean_mbps("down")
        return data

    @field_validator("trace_csv")
    @classmethod
    def _trace_file(cls, v):
        if v is not None:
            read_trace_csv(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> "NetworkProfile":
        if self.header_bytes is None:
            object.__setattr__(self, "header_bytes", DEFAULT_HEADER_BYTES[self.transport])
        if self.header_bytes >= self.mtu_bytes:
            raise ValueError(f"header_bytes ({self.header_bytes}) must be < mtu_bytes ({self.mtu_bytes})")
        mss = self.tcp.mss_bytes
        if mss is not None and mss + self.header_bytes > self.mtu_bytes:
            raise ValueError(f"tcp.mss_bytes ({mss}) + header_bytes ({self.header_bytes}) must be <= mtu_bytes "
                             f"({self.mtu_bytes})")
        if self.trace_csv is not None:
            self._trace = read_trace_csv(self.trace_csv)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        """Leave out a ``header_bytes`` the profile did not set: it follows ``transport``, so a
        saved scenario reloaded with another transport gets that transport's headers."""
        d = handler(self)
        if isinstance(d, dict) and "header_bytes" not in self.model_fields_set:
            d.pop("header_bytes", None)
        return d

    @property
    def trace(self) -> RateTrace | None:
        """The parsed rate trace (bit/s over seconds), or None for a constant-rate link."""
        return self._trace

    @field_validator("contention")
    @classmethod
    def _contention(cls, pts):
        if not pts or tuple(pts[0]) != (1, 1.0):
            raise ValueError("must start with [1, 1.0]")
        for (n0, f0), (n1, f1) in zip(pts, pts[1:]):
            if n1 <= n0 or not (0 < f1 <= f0):
                raise ValueError("stations must increase and fractions must be non-increasing in (0, 1]")
        return pts

    @property
    def uplink_bps(self) -> float:
        return self.uplink_mbps * 1e6

    @property
    def downlink_bps(self) -> float:
        return self.downlink_mbps * 1e6

    @property
    def rtt_s(self) -> float:
        return self.rtt_ms * 1e-3

    @property
    def payload_per_packet(self) -> int:
        """Payload bytes per packet: the TCP MSS (``tcp.mss_bytes`` when set), else MTU − headers."""
        if self.transport == "tcp" and self.tcp.mss_bytes is not None:
            return self.tcp.mss_bytes
        return self.mtu_bytes - self.header_bytes


# --------------------------------------------------------------------------------------------
# YAML loading and the registry

_REPO_PROFILES = Path(__file__).resolve().parent / "profiles"  # bundled package data (the repo's profiles/ links here)
_KINDS = {"devices": DeviceProfile, "networks": NetworkProfile}


def profile_dirs() -> list[Path]:
    """Folders searched for profiles, in order: ``$SPLITIMPERA_PROFILES``, then the repo's."""
    extra = [Path(p) for p in os.environ.get("SPLITIMPERA_PROFILES", "").split(os.pathsep) if p]
    for p in extra:
        if not p.is_dir():
            _warn_missing_profiles(str(p))
    return [*extra, _REPO_PROFILES]


@functools.lru_cache(maxsize=None)  # once per folder and process: profile_dirs runs on every look-up
def _warn_missing_profiles(path: str) -> None:
    log.warning("$SPLITIMPERA_PROFILES names %s, which is not a folder: its profiles are not loaded", path)


def _allowed_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys a mapping at ``loc`` (inside ``model``) may hold; [] when not known."""
    import typing

    for part in loc:
        if model is None:
            return []
        f = model.model_fields.get(str(part))
        if f is None:
            return []
        nxt = None
        for t in (f.annotation, *typing.get_args(f.annotation)):
            if isinstance(t, type) and issubclass(t, BaseModel):
                nxt = t
                break
        model = nxt
    return list(model.model_fields) if model is not None else []


def unknown_key_message(key: str, known: list[str]) -> str:
    """"unknown key", with the known key(s) it may have meant, else the known keys."""
    import difflib

    close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {' or '.join(close)}?"
    return f"unknown key (known: {', '.join(known)})" if known else "unknown key"


def _error_text(error: dict, model: type[BaseModel] | None) -> str:
    """The message of one pydantic error, as users read it."""
    msg = error["msg"]
    if error["type"] == "value_error":  # our own validators' messages, without pydantic's prefix
        msg = msg.removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = unknown_key_message(str(error["loc"][-1]), _allowed_keys(model, tuple(error["loc"][:-1])))
    elif ("input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict)
          and not (error["type"] == "value_error" and str(error["input"]) in msg)):
        # Every rejected value is named ("greater than 0 (got 0)"), unless our own message
        # already does (e.g. a trace file's).
        got = repr(error["input"])
        msg = f"{msg} (got {got if len(got) <= 80 else got[:60] + '…'})"
    return msg


def format_validation_error(err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None,
                            ) -> tuple[str, str]:
    """(dotted field, message) of the first error; the count of others is appended. With the
    validated ``model``, an unknown key says which known key it may have meant."""
    errors = err.errors()
    # An unknown key first: a misspelt key is usually why a required one is missing.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = ".".join(str(p) for p in first["loc"])
    field = ".".join(p for p in (prefix, loc) if p)
    msg = _error_text(first, model)
    if len(errors) > 1:
        msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
    return field, msg


def every_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """Every error of ``err`` on one line: ``field: message; field: message``."""
    return "; ".join(": ".join(p for p in (".".join(str(x) for x in e["loc"]), _error_text(e, model)) if p)
                     for e in err.errors())


# The most values a YAML document may hold once its aliases are expanded: far above any
# scenario, sweep or profile, far below what a "billion laughs" document (aliases of aliases)
# expands to, which would exhaust the memory of whatever walks it.
MAX_YAML_VALUES = 1_000_000


class _TooLarge(Exception):
    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def _expanded_size(node, memo: dict, active: set) -> int:
    """Values in ``node`` with every alias expanded (aliases are shared nodes: counted each
    time they are used); :class:`_TooLarge` past :data:`MAX_YAML_VALUES` or on a node that
    holds itself."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise _TooLarge("an alias (*name) refers to a node that holds it (a recursive document)")
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [n for kv in node.value for n in kv]
    else:
        children = []
    active.add(key)
    n = 1
    for c in children:
        n += _expanded_size(c, memo, active)
        if n > MAX_YAML_VALUES:
            raise _TooLarge(f"its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values; write the "
                            "values out, or use fewer aliases of aliases")
    active.discard(key)
    memo[key] = n
    return n


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last),
    and a document whose aliases expand beyond :data:`MAX_YAML_VALUES` values or into itself."""

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        return self.construct_document(node)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: let SafeLoader say so
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (lines {first} and {key_node.start_mark.line + 1})",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a one-line UserError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", source=str(path)) from None
    except IsADirectoryError:
        inside = sorted(p.name for p in Path(path).glob("*.y*ml"))[:3]
        raise UserError("is a folder, not a YAML file" + (f" (YAML files in it: {', '.join(inside)})" if inside else ""),
                        source=str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read: {e.__class__.__name__}", source=str(path)) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except _TooLarge as e:
        raise UserError(f"refused: {e.why}", source=str(path)) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise UserError(f"malformed YAML: {where}{problem}", source=str(path)) from None


def resolve_relative_paths(kind: str, data: Any, base_dir: Path) -> Any:
    """A profile mapping with its relative file paths (``trace_csv``) made absolute against
    ``base_dir`` (the folder of the YAML file naming them); other input is returned as is."""
    if kind == "networks" and isinstance(data, dict):
        tr = data.get("trace_csv")
        if isinstance(tr, str) and tr and not Path(tr).is_absolute():
            data = {**data, "trace_csv": str((Path(base_dir) / tr).resolve())}
    if kind == "devices" and isinstance(data, dict) and isinstance(data.get("compute"), dict):
        comp = dict(data["compute"])
        absolute = lambda f: f if Path(f).is_absolute() else str((Path(base_dir) / f).resolve())  # noqa: E731
        if isinstance(comp.get("residual_table"), str) and comp["residual_table"]:
            comp["residual_table"] = absolute(comp["residual_table"])
        if isinstance(comp.get("timings"), list):
            comp["timings"] = [{**t, "file": absolute(t["file"])} if isinstance(t, dict) and isinstance(
                t.get("file"), str) and t["file"] else t for t in comp["timings"]]
        data = {**data, "compute": comp}
    return data


class ProfileFileError(UserError):
    """A profile file that does not validate. Its line names the file (not the scenario that
    names the profile), wherever the profile is looked up."""


def parse_profile(kind: str, data: Any, source: str, prefix: str = "", every: bool = False,
                  ) -> DeviceProfile | NetworkProfile:
    """Validate a profile mapping. ``every``: the message lists every error (a profile file),
    else the first and the count of the others (a scenario's field)."""
    cls = _KINDS[kind]
    if not isinstance(data, dict):
        raise UserError(f"expected a mapping, got {type(data).__name__}", source=source, field=prefix or None)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        if every:
            raise UserError(every_validation_error(e, cls), source=source) from None
        field, msg = format_validation_error(e, prefix)
        raise UserError(msg, source=source, field=field) from None


def _read_profile_folders(kind: str, reg: "Registry") -> None:
    """The loader of :data:`DEVICES` / :data:`NETWORKS`: every ``<folder>/<kind>/*.yaml`` of
    :func:`profile_dirs`; a name found in an earlier folder shadows the later ones.

    A file may start from another profile of its kind with ``base: <name>`` (its keys are
    deep-merged over that profile's, as a scenario's ``base:``; the name is the file's own).
    A file that does not load or validate is marked broken: looking its name up raises its
    error (naming the file), and :func:`warn_broken_profiles` warns about it when unused.
    """
    files: dict[str, Path] = {}
    for folder in profile_dirs():
        for path in sorted((folder / kind).glob("*.yaml")):
            if path.stem in files:
                log.debug("profile %s in %s shadowed by %s", path.stem, path, files[path.stem])
                continue
            files[path.stem] = path
    raws: dict[str, dict] = {}

    def load(name: str, chain: tuple[str, ...]) -> dict:
        """The resolved mapping of profile file ``name`` (its base merged in), validated and
        registered; raises ProfileFileError."""
        if name in raws:
            return raws[name]
        path = files[name]
        if name in reg.broken_names():
            raise reg.broken_names()[name]
        try:
            data = read_yaml(path)
            if not isinstance(data, dict):
                raise UserError(f"expected a {kind[:-1]} profile mapping, got "
                                f"{'an empty file' if data is None else type(data).__name__}", source=str(path))
            data = resolve_relative_paths(kind, data, path.parent)
            if "base" in data:
                data = dict(data)
                base = data.pop("base")
                if not isinstance(base, str) or not base:
                    raise UserError(f"expected a {kind[:-1]} profile name, got {base!r}", source=str(path),
                                    field="base")
                if base == name or base in chain:
                    raise UserError(f"{' → '.join((*chain, name, base))}: a profile cannot be its own base",
                                    source=str(path), field="base")
                if base not in files:
                    close = difflib.get_close_matches(base, sorted(files), n=3)
                    raise UserError(f"unknown {kind[:-1]} profile {base!r}"
                                    + (f"; did you mean {', '.join(close)}?" if close else "")
                                    + f" (known: {', '.join(sorted(files))})", source=str(path), field="base")
                try:
                    base_raw = load(base, (*chain, name))
                except UserError:
                    raise UserError(f"its base {base!r} does not load ({files[base]})", source=str(path),
                                    field="base") from None
                data = deep_merge({k: v for k, v in base_raw.items() if k != "name"}, data)
            prof = parse_profile(kind, data, str(path), every=True)
            if prof.name != path.stem:
                raise UserError(f"name {prof.name!r} must equal the file stem {path.stem!r}",
                                source=str(path), field="name")
        except UserError as e:
            err = ProfileFileError(e.message, source=e.source or str(path), field=e.field)
            reg.broken(name, err)
            raise err from None
        # raw: the keys as resolved (base merged in), which a scenario's ``base:`` merges over.
        reg.register(prof.name, prof, meta={"raw": data, "path": path})
        raws[name] = data
        return data

    for name in files:
        try:
            load(name, ())
        except ProfileFileError:
            pass  # marked broken: an error where it is used, a warning where not


_WARNED: set[str] = set()


def warn_broken_profiles(used: dict[str, set[str]] | None = None) -> None:
    """Warn, one line per file and once per process, about profile files that do not load
    and are not in ``used`` (kind → names looked up): an unused broken file fails nothing."""
    for kind in _KINDS:
        for name, err in _registry(kind).broken_names().items():
            if name in (used or {}).get(kind, ()) or err.source in _WARNED:
                continue
            _WARNED.add(err.source)
            log.warning("%s: ignored, it does not load: %s", err.source,
                        ": ".join(p for p in (err.field, err.message) if p))


def _profile_registry(kind: str) -> "Registry":
    return Registry(f"{kind[:-1]} profile", loader=lambda reg: _read_profile_folders(kind, reg))


DEVICES: Registry[DeviceProfile] = _profile_registry("devices")
NETWORKS: Registry[NetworkProfile] = _profile_registry("networks")


def _registry(kind: str) -> Registry:
    return DEVICES if kind == "devices" else NETWORKS


def profile_raw(kind: str, name: str) -> dict:
    """A registered profile as plain data: the YAML mapping it was read from, or the dump of
    a profile registered in code (a deep copy, safe to change)."""
    reg = _registry(kind)
    prof = reg.get(name)
    raw = reg.meta(name).get("raw")
    return copy.deepcopy(raw) if raw is not None else prof.model_dump()


def profile_path(kind: str, name: str) -> Path | None:
    """The YAML file a registered profile was read from; None for one registered in code."""
    return _registry(kind).meta(name).get("path")


def register_device(profile: DeviceProfile, *, overwrite: bool = False) -> None:
    DEVICES.register(profile.name, profile, overwrite=overwrite)


def register_network(profile: NetworkProfile, *, overwrite: bool = False) -> None:
    NETWORKS.register(profile.name, profile, overwrite=overwrite)


def get_device(name: str) -> DeviceProfile:
    return DEVICES.get(name)


def get_network(name: str) -> NetworkProfile:
    return NETWORKS.get(name)


def list_devices(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Device (and server) profile names, sorted, filtered by fnmatch globs."""
    return DEVICES.list(include, exclude)


def list_networks(include: str | list[str] | None = None, exclude: str | list[str] | None = None) -> list[str]:
    """Network profile names, sorted, filtered by fnmatch globs."""
    return NETWORKS.list(include, exclude)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_profile(kind: str, spec: Any, source: str, field: str):
    """A scenario's ``device``/``server``/``network`` entry → profile.

    ``spec`` is a profile name, or a mapping: a full inline profile, or ``base: <name>`` plus
    the keys to change (deep-merged over the named profile).
    """
    if isinstance(spec, str):
        try:
            return _registry(kind).get(spec)
        except ProfileFileError:
            raise  # names the profile's file, not the scenario
        except UserError as e:
            raise e.at(source=source, field=field) from None
    if not isinstance(spec, dict):
        raise UserError(f"expected a profile name or a mapping, got {type(spec).__name__}",
                        source=source, field=field)
    spec = dict(spec)
    base = spec.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise UserError("expected a profile name", source=source, field=f"{field}.base")
        try:
            raw = profile_raw(kind, base)
        except ProfileFileError:
            raise
        except UserError as e:
            raise e.at(source=source, field=f"{field}.base") from None
        raw.setdefault("name", base)
        if "name" not in spec:
            spec["name"] = f"{base}*" if spec else base
        spec = deep_merge(raw, spec)
    elif "name" not in spec:
        spec["name"] = "inline"
    return parse_profile(kind, spec, source, prefix=field)
