"""Bad input: exit code 2, one ``error: <file>: <field>: <message>`` line, no traceback, nothing written.

Every bad scenario starts from ``scenarios/demo.yaml`` and changes one thing. Most cases run
in-process through :func:`splitimpera.cli.main` (fast); a representative handful also runs
as a real subprocess (``python -m splitimpera.cli``) to prove the exit code is the process's
and that no traceback reaches the terminal. A positive control keeps the checks honest.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

import splitimpera as si
from splitimpera.cli import main

REPO = Path(__file__).resolve().parent.parent
DEMO_PATH = REPO / "scenarios" / "demo.yaml"
DEMO = yaml.safe_load(DEMO_PATH.read_text())

MISSING = object()  # "write no file at all"


# ---------------------------------------------------------------------------------------------
# Building bad scenarios


def _set(d: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = d
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _del(d: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = d
    for p in parents:
        node = node[p]
    del node[leaf]


def setting(**changes) -> Callable[[dict], None]:
    """Mutator: ``setting(**{"qos.min_accuracy": 2})`` sets dotted keys on the demo dict."""

    def mutate(d: dict) -> None:
        for k, v in changes.items():
            _set(d, k, v)

    return mutate


def deleting(*keys: str) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for k in keys:
            _del(d, k)

    return mutate


def chain(*mutators: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for m in mutators:
            m(d)

    return mutate


INLINE_DEVICE_WITHOUT_POWER = {
    "name": "my_board",
    "kind": "device",
    "compute": {"peak_gflops": 10.0, "efficiency": {"conv": 0.5, "linear": 0.3, "other": 0.1},
                "layer_overhead_us": 20},
    "memory": {"capacity_gb": 1.0, "bandwidth_gbps": 2.0},
}


@dataclass(frozen=True)
class Case:
    """One kind of bad input.

    ``mutate`` edits a deep copy of the demo dict; ``raw`` is written verbatim instead (or,
    when it is ``MISSING``, no file is written). ``fields``: the dotted field(s) the error line
    may name (first is the expected one; None: a file-level error with no field).
    ``needle``: extra text the line must contain. ``source``: what the line must start with
    after ``error: `` (default: the scenario path). ``setup`` prepares files in tmp_path.
    """

    id: str
    fields: tuple[str, ...] | None
    mutate: Callable[[dict], None] | None = None
    raw: Any = None
    args: tuple[str, ...] = ()
    needle: str | None = None
    source: str | None = None
    setup: Callable[[Path], None] | None = None
    marks: tuple = field(default_factory=tuple)


def _make_empty_imagefolder(tmp: Path) -> None:
    (tmp / "images").mkdir()


def _make_corrupt_imagefolder(tmp: Path) -> None:
    (tmp / "images" / "cat").mkdir(parents=True)
    (tmp / "images" / "cat" / "0.png").write_bytes(b"this is not a PNG file\n")


def _trace_file(text: str) -> Callable[[Path], None]:
    """Setup: write ``trace.csv`` beside the scenario (a relative trace_csv is relative to it)."""

    def setup(tmp: Path) -> None:
        (tmp / "trace.csv").write_text(text)

    return setup


LTE_WITH_TRACE = {"network": {"base": "lte", "trace_csv": "trace.csv"}}

# "Billion laughs": nine levels of nine aliases, 9^9 (387 million) strings once expanded.
ALIAS_BOMB = 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
DEMO_TEXT = DEMO_PATH.read_text()


def _garbage_weights(tmp: Path) -> None:
    """Setup: ``garbage.pt`` beside the scenario, random bytes (seeded)."""
    import numpy as np

    (tmp / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(3000))

CASES: list[Case] = [
    # --- schema: keys, types, ranges, enums --------------------------------------------------
    Case("unknown-top-level-key", ("modle",), setting(modle={"name": "digits_cnn"}), needle="unknown key"),
    Case("unknown-nested-key", ("qos.max_latncy_ms",), setting(**{"qos.max_latncy_ms": 50}),
         needle="unknown key"),
    Case("string-for-number", ("qos.max_latency_ms",), setting(**{"qos.max_latency_ms": "fast"})),
    Case("zero-rate", ("workload.rate_hz",), setting(**{"workload.rate_hz": 0})),
    Case("invalid-enum-arrival", ("workload.arrival",), setting(**{"workload.arrival": "bursty"})),
    Case("min-accuracy-above-1", ("qos.min_accuracy",), setting(**{"qos.min_accuracy": 1.5})),
    Case("min-accuracy-without-data", ("qos.min_accuracy",), setting(**{"data.source": "none"})),
    Case("name-with-slash", ("name",), setting(name="results/demo")),
    # A name longer than a folder name may be: refused in the schema, not by the file system.
    Case("name-too-long", ("name",), setting(name="a" * 300), needle="at most 100 characters"),
    # A misspelt key is reported, not the required key it leaves missing.
    Case("misspelt-key-hides-missing-profile", ("netwrok",), chain(deleting("network"), setting(netwrok="lte")),
         needle="did you mean network"),
    # Numbers are finite, and true/false is not a number.
    Case("infinite-peak-in-inline-profile", ("device.compute.peak_gflops",),
         setting(device={"base": "rpi4", "compute": {"peak_gflops": float("inf")}}), needle="finite"),
    Case("nan-in-a-list-of-numbers", ("network.contention.1.1",),
         setting(network={"base": "lte", "contention": [[1, 1.0], [2, float("nan")]]}), needle="finite"),
    Case("set-infinite-rtt", ("network.rtt_ms",), args=("--set", "network.rtt_ms=inf"), needle="finite"),
    Case("set-infinite-rate", ("workload.rate_hz",), args=("--set", "workload.rate_hz=.inf"), needle="finite"),
    Case("set-nan-rate", ("workload.rate_hz",), args=("--set", "workload.rate_hz=.nan"), needle="finite"),
    Case("set-boolean-device-count", ("workload.num_devices",), args=("--set", "workload.num_devices=true"),
         needle="not true or false"),
    Case("boolean-for-a-float", ("network.rtt_ms",), setting(network={"base": "lte", "rtt_ms": True}),
         needle="not true or false"),
    Case("boolean-in-a-shape", ("model.input_shape",), setting(**{"model.input_shape": [1, True, 32]}),
         needle="not true or false"),
    Case("negative-seed", ("seed",), setting(seed=-1)),
    Case("zero-output-top", ("output.top",), setting(**{"output.top": 0})),
    Case("missing-model-section", ("model",), deleting("model")),
    Case("imagefolder-without-path", ("data.path",), setting(**{"data.source": "imagefolder"})),
    Case("imagefolder-path-not-found", ("data.path",),
         setting(**{"data.source": "imagefolder", "data.path": "no_such_folder"})),
    # --- profiles: names, inline mappings, base: ---------------------------------------------
    Case("unknown-device-profile", ("device",), setting(device="rpi9"), needle="rpi9"),
    Case("unknown-server-profile", ("server",), setting(server="server_z80"), needle="server_z80"),
    Case("unknown-network-profile", ("network",), setting(network="6g"), needle="6g"),
    Case("base-names-unknown-profile", ("device.base",),
         setting(device={"base": "rpi9", "memory": {"capacity_gb": 2}}), needle="rpi9"),
    Case("inline-negative-bandwidth", ("network.uplink_mbps",),
         setting(network={"base": "lte", "uplink_mbps": -5})),
    Case("inline-loss-1.0", ("network.loss",), setting(network={"base": "lte", "loss": 1.0})),
    Case("unknown-transport", ("network.transport",), setting(network={"base": "lte", "transport": "quic"}),
         needle="'tcp' or 'udp'"),
    Case("negative-receive-window", ("network.tcp.rwnd_bytes",),
         setting(network={"base": "lte", "tcp": {"rwnd_bytes": -1}})),
    Case("rto-below-1ms", ("network.tcp.min_rto_ms",), setting(network={"base": "lte", "tcp": {"min_rto_ms": 0.5}}),
         needle="1"),
    Case("zero-initial-window", ("network.tcp.init_cwnd_segments",),
         setting(network={"base": "lte", "tcp": {"init_cwnd_segments": 0}})),
    Case("unknown-connection", ("network.tcp.connection",),
         setting(network={"base": "lte", "tcp": {"connection": "sometimes"}})),
    Case("mss-over-mtu", ("network",), setting(network={"base": "lte", "tcp": {"mss_bytes": 1500}}),
         needle="mss_bytes"),
    Case("set-unknown-transport", ("network.transport",), args=("--set", "network.transport=sctp")),
    Case("frame-loss-limit-over-1", ("qos.max_frame_loss_ratio",), setting(qos={"max_frame_loss_ratio": 2})),
    # A model-level validator: pydantic reports the profile, the message names the key.
    Case("contention-not-starting-at-1", ("network", "network.contention"),
         setting(network={"base": "lte", "contention": [[2, 1.0], [4, 0.5]]}), needle="contention"),
    Case("inline-device-missing-key", ("device.power",), setting(device=INLINE_DEVICE_WITHOUT_POWER)),
    Case("inline-efficiency-above-1", ("device.compute.efficiency.conv",),
         setting(device={"base": "rpi4", "compute": {"efficiency": {"conv": 1.5}}})),
    Case("active-power-below-idle", ("device.power", "device.power.active_w"),
         setting(device={"base": "rpi4", "power": {"idle_w": 10.0}}), needle="active_w"),
    # --- rate traces: read and checked at load time ----------------------------------------
    Case("trace-file-missing", ("network.trace_csv",),
         setting(network={"base": "lte", "trace_csv": "no_such_trace.csv"}), needle="not found"),
    Case("trace-times-not-increasing", ("network.trace_csv",), setting(**LTE_WITH_TRACE),
         setup=_trace_file("time_s,uplink_mbps\n0,5\n2,4\n1,3\n"), needle="must increase"),
    Case("trace-negative-rate", ("network.trace_csv",), setting(**LTE_WITH_TRACE),
         setup=_trace_file("time_s,uplink_mbps,downlink_mbps\n0,5,10\n1,4,-3\n"), needle="downlink_mbps must be >= 0"),
    Case("trace-missing-column", ("network.trace_csv",), setting(**LTE_WITH_TRACE),
         setup=_trace_file("time_s,downlink_mbps\n0,5\n"), needle="missing column 'uplink_mbps'"),
    Case("trace-not-a-number", ("network.trace_csv",), setting(**LTE_WITH_TRACE),
         setup=_trace_file("time_s,uplink_mbps\n0,fast\n"), needle="not a number"),
    Case("set-trace-on-named-profile", ("network.trace_csv",), args=("--set", "network.trace_csv=missing.csv"),
         needle="--set"),
    # --- the file itself ---------------------------------------------------------------------
    Case("missing-file", None, raw=MISSING, needle="not found"),
    Case("malformed-yaml", None, raw="name: demo\nmodel: {name: digits_cnn, weights: default\ndevice: rpi4\n",
         needle="malformed YAML"),
    Case("empty-file", None, raw="", needle="empty"),
    Case("yaml-list-not-mapping", None, raw="- name: demo\n- device: rpi4\n", needle="mapping"),
    Case("yaml-alias-bomb", None, raw=DEMO_TEXT + ALIAS_BOMB, needle="expand to more than 1,000,000 values"),
    Case("yaml-recursive-alias", None, raw=DEMO_TEXT + "x: &x [1, *x]\n", needle="recursive"),
    # --- models ------------------------------------------------------------------------------
    Case("unknown-model-name", ("model.name",), setting(**{"model.name": "resnet9000"}), needle="resnet9000"),
    Case("user-model-module-not-found", ("model.name",), setting(**{"model.name": "no.such.module:fn"}),
         needle="no.such.module"),
    Case("missing-weights-file", ("model.weights",), setting(**{"model.weights": "weights/missing.pt"}),
         needle="missing.pt"),
    Case("weights-random-bytes", ("model.weights",), setting(**{"model.weights": "garbage.pt"}),
         setup=_garbage_weights, needle="are not a state dict"),
    Case("input-shape-zero-dim", ("model.input_shape",), setting(**{"model.input_shape": [1, 0, 32]})),
    Case("input-shape-missing-a-dimension", ("model.input_shape",), setting(**{"model.input_shape": [32, 32]}),
         needle="takes 3 dimensions (C×H×W, without the batch), e.g. 1x32x32"),
    # Only detected when the pipeline runs (the model has to be traced).
    Case("input-shape-wrong-channels", ("model.input_shape",), setting(**{"model.input_shape": [3, 32, 32]}),
         needle="3x32x32"),
    # --- early exit ----------------------------------------------------------------------------
    Case("exit-threshold-above-1", ("exit.thresholds",),
         setting(exit={"splits": ["features_9"], "thresholds": [0.5, 1.5]}), needle="[0, 1]"),
    Case("exit-threshold-negative", ("exit.thresholds",),
         setting(exit={"splits": ["features_9"], "thresholds": [-0.1]}), needle="[0, 1]"),
    Case("exit-at-input", ("exit.splits",), setting(exit={"splits": ["input", "features_9"]}),
         needle="no exit at input"),
    Case("exit-at-output", ("exit.splits",), setting(exit={"splits": ["output"]}), needle="no exit at output"),
    Case("exit-unknown-head-kind", ("exit.head",), setting(exit={"splits": ["features_9"], "head": "mlp"}),
         needle="'linear' or 'conv'"),
    Case("exit-unknown-split", ("exit.splits",), setting(exit={"splits": ["features_99"]}), needle="features_99"),
    Case("exit-without-labelled-data", ("exit",),
         setting(**{"data.source": "synthetic", "qos.min_accuracy": None, "exit": {"splits": ["features_9"]}})),
    # --- --set overrides ---------------------------------------------------------------------
    Case("set-without-equals", None, args=("--set", "network.uplink_mbps"), source="--set",
         needle="key=value"),
    Case("set-unknown-key", ("qos.max_latncy_ms",), args=("--set", "qos.max_latncy_ms=50"), needle="--set"),
    Case("set-negative-uplink-on-named-profile", ("network.uplink_mbps",),
         args=("--set", "network.uplink_mbps=-1"), needle="--set"),
    Case("set-through-a-scalar", ("name.x",), args=("--set", "name.x=1"), needle="not a mapping"),
    # An unclosed flow list is not a name: refused, not taken as the string "[none".
    Case("set-unclosed-list", ("bottleneck.name",), args=("--set", "bottleneck.name=[none"), source="--set",
         needle="malformed value '[none'"),
    Case("set-unclosed-list-where-any-string-goes", ("description",), args=("--set", "description=[oops"),
         source="--set", needle="malformed value"),
    Case("set-unclosed-quote", ("network",), args=("--set", "network='lte"), source="--set",
         needle="malformed value"),
    # --- regressions: bugs these tests found (field from a substring; data errors after caching) --
    Case("unknown-model-name-containing-weights", ("model.name",),
         setting(**{"model.name": "resnet_weights"}), needle="resnet_weights"),
    Case("imagefolder-without-classes", ("data", "data.path"),
         setting(**{"data.source": "imagefolder", "data.path": "images"}), setup=_make_empty_imagefolder),
    Case("imagefolder-corrupt-image", ("data", "data.path"),
         setting(**{"data.source": "imagefolder", "data.path": "images"}), setup=_make_corrupt_imagefolder),
    Case("digits-data-for-3-channel-model", ("data", "data.source", "model.input_shape"),
         setting(**{"model.name": "mobilenet_v3_small", "model.weights": "none",
                    "model.input_shape": [3, 32, 32], "data.limit": 4})),
]

CASES_BY_ID = {c.id: c for c in CASES}
assert len(CASES_BY_ID) == len(CASES), "duplicate case ids"

# Run as real processes too: one per layer (schema, profile, file, model at pipeline time, --set).
SUBPROCESS_IDS = [
    "unknown-nested-key",
    "inline-negative-bandwidth",
    "malformed-yaml",
    "input-shape-wrong-channels",
    "exit-threshold-above-1",
    "set-without-equals",
]


def write_case(case: Case, tmp: Path) -> Path:
    """Write the case's scenario into ``tmp``; returns its path (which may not exist)."""
    if case.setup is not None:
        case.setup(tmp)
    path = tmp / "scenario.yaml"
    if case.raw is MISSING:
        return tmp / "no_such_scenario.yaml"
    if case.raw is not None:
        path.write_text(case.raw)
        return path
    data = copy.deepcopy(DEMO)
    if case.mutate is not None:
        case.mutate(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------
# Checks


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def assert_user_error(rc, stdout: str, stderr: str, *, source: str, fields, needle: str | None,
                      untouched: list[Path]) -> None:
    report = f"rc={rc}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"
    assert "Traceback" not in stdout + stderr, report
    assert rc == 2, report
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, report
    line = lines[0]
    assert line.startswith(f"error: {source}"), report
    if fields is None:
        # File-level error: "error: <file>: <message>", the file right after "error: ".
        assert line.startswith(f"error: {source}: "), report
    else:
        assert any(f": {f}: " in line for f in fields), f"expected field {fields[0]!r}\n{report}"
    if needle is not None:
        assert needle in line, f"expected {needle!r} in the error line\n{report}"
    for folder in untouched:
        assert _entries(folder) == [], f"{folder} gained {_entries(folder)}\n{report}"


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cli.main`` in-process; an escaping exception counts as exit 1 with its traceback on stderr."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    except BaseException:  # noqa: BLE001 - this is what the user would see
        rc = 1
        print(traceback.format_exc(), file=sys.stderr)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _params(cases):
    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]


# ---------------------------------------------------------------------------------------------
# In-process: every case


@pytest.mark.parametrize("case", _params(CASES))
def test_bad_scenario_in_process(case: Case, dirs, capsys):
    scen, out, cache, cwd = dirs
    path = write_case(case, scen)
    rc, stdout, stderr = run_main(["simulate", str(path), "-o", str(out), *case.args], capsys)
    assert_user_error(rc, stdout, stderr, source=case.source or str(path), fields=case.fields,
                      needle=case.needle, untouched=[out, cache, cwd])


def test_enough_kinds_of_bad_input():
    assert len(CASES) >= 20
    assert all(i in CASES_BY_ID for i in SUBPROCESS_IDS)


# ---------------------------------------------------------------------------------------------
# Subprocesses: a representative handful, started together to keep the suite fast


def _subprocess_env(cache: Path) -> dict:
    env = dict(os.environ)
    env.pop("SPLITIMPERA_PROFILES", None)
    env["SPLITIMPERA_CACHE"] = str(cache)
    env["PYTHONWARNINGS"] = "ignore"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


@pytest.fixture(scope="module")
def subprocess_runs(tmp_path_factory):
    """id → (rc, stdout, stderr, scenario path, out, cache, cwd); as many at once as there are CPUs."""
    specs = {}
    for cid in [*SUBPROCESS_IDS, "__demo__"]:
        root = tmp_path_factory.mktemp(cid)
        scen, out, cache, cwd = (root / n for n in ("scen", "out", "cache", "cwd"))
        for d in (scen, out, cwd):
            d.mkdir()
        if cid == "__demo__":
            path, args = DEMO_PATH, ()
        else:
            case = CASES_BY_ID[cid]
            path, args = write_case(case, scen), case.args
        cmd = [sys.executable, "-m", "splitimpera.cli", "simulate", str(path), "-o", str(out), *args]
        specs[cid] = (cmd, path, out, cache, cwd)

    def one(cid):
        cmd, path, out, cache, cwd = specs[cid]
        p = subprocess.run(cmd, cwd=cwd, env=_subprocess_env(cache), capture_output=True, text=True,
                           timeout=300)
        return cid, (p.returncode, p.stdout, p.stderr, path, out, cache, cwd)

    with ThreadPoolExecutor(max_workers=max(1, min(len(specs), os.cpu_count() or 1))) as pool:
        return dict(pool.map(one, specs))


@pytest.mark.parametrize("cid", SUBPROCESS_IDS)
def test_bad_scenario_subprocess(cid, subprocess_runs):
    case = CASES_BY_ID[cid]
    rc, stdout, stderr, path, out, cache, cwd = subprocess_runs[cid]
    assert_user_error(rc, stdout, stderr, source=case.source or str(path), fields=case.fields,
                      needle=case.needle, untouched=[out, cache, cwd])
    assert stdout == "", stdout


def test_demo_subprocess_positive_control(subprocess_runs):
    rc, stdout, stderr, path, out, cache, cwd = subprocess_runs["__demo__"]
    assert rc == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert (out / "demo" / "splits.csv").is_file()
    assert _entries(cwd) == []


# ---------------------------------------------------------------------------------------------
# Positive control in-process: the same harness does see a successful run


def test_demo_in_process_positive_control(dirs, capsys):
    scen, out, cache, cwd = dirs
    rc, stdout, stderr = run_main(["simulate", str(DEMO_PATH), "-o", str(out)], capsys)
    assert rc == 0, stderr
    assert "Traceback" not in stdout + stderr
    assert (out / "demo" / "splits.csv").is_file()
    assert (out / "demo" / "result.json").is_file()
    assert _entries(cwd) == []


# ---------------------------------------------------------------------------------------------
# `splitimpera splits`


@pytest.mark.parametrize("argv, fld, needle", [
    pytest.param(["splits", "resnet9000"], "MODEL", "resnet9000", id="unknown-model"),
    pytest.param(["splits", "digits_cnn", "--input", "3x0x224"], "--input", "3x0x224", id="zero-dim-input"),
    # A shape the model cannot take is said in the model's terms, not its first layer's.
    pytest.param(["splits", "resnet18", "--input", "3x224"], "--input", "takes 3 dimensions (C×H×W, without the "
                 "batch), e.g. 3x224x224; got 3x224", id="input-missing-a-dimension"),
    pytest.param(["splits", "digits_cnn", "--input", "3x224"], "--input", "e.g. 1x32x32; got 3x224",
                 id="input-missing-a-dimension-zoo"),
    pytest.param(["splits", "digits_cnn", "--input", "3x32x32"], "--input", "(the model's usual input is 1x32x32)",
                 id="input-wrong-channels"),
])
def test_splits_bad_input(argv, fld, needle, dirs, capsys):
    scen, out, cache, cwd = dirs
    rc, stdout, stderr = run_main(argv, capsys)
    assert_user_error(rc, stdout, stderr, source="splits", fields=(fld,), needle=needle,
                      untouched=[cache, cwd])


def _weights_file(kind: str, path: Path) -> None:
    import collections

    import numpy as np
    import torch

    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(5000))
    elif kind == "text":
        path.write_text("these are not the weights you are looking for\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickled-module":  # a whole model, not its state dict: never unpickled
        torch.save(torch.nn.Linear(2, 2), path)
    elif kind == "list-of-tensors":
        torch.save([torch.zeros(2)], path)
    elif kind == "dict-without-tensors":
        torch.save(collections.OrderedDict(epoch=3, lr=0.1), path)
    else:
        raise ValueError(kind)


@pytest.mark.parametrize("kind", ["random-bytes", "text", "empty", "pickled-module", "list-of-tensors",
                                  "dict-without-tensors"])
def test_weights_that_are_not_a_state_dict_say_so(kind, dirs, capsys):
    """One line naming the file; never torch's advice to load it with weights_only=False."""
    scen, out, cache, cwd = dirs
    path = scen / f"{kind}.pt"
    _weights_file(kind, path)
    rc, stdout, stderr = run_main(["splits", "digits_cnn", "--weights", str(path)], capsys)
    assert_user_error(rc, stdout, stderr, source="splits", fields=("--weights",),
                      needle=f"weights {path} are not a state dict", untouched=[cache, cwd])
    assert "weights_only" not in stderr and "succeed" not in stderr


def test_threads_beyond_four_per_cpu_are_refused_before_torch_sees_them(dirs, capsys, monkeypatch):
    import torch

    scen, out, cache, cwd = dirs
    limit = 4 * (os.cpu_count() or 1)
    asked = []
    monkeypatch.setattr(torch, "set_num_threads", asked.append)
    rc, stdout, stderr = run_main(["simulate", "demo", "--threads", "100000", "-o", str(out)], capsys)
    assert_user_error(rc, stdout, stderr, source="simulate", fields=("--threads",),
                      needle=f"at most {limit} (4 per CPU", untouched=[out, cache, cwd])
    assert 100000 not in asked
    monkeypatch.setenv("SPLITIMPERA_THREADS", str(limit + 1))
    rc, stdout, stderr = run_main(["simulate", "demo", "-o", str(out)], capsys)
    assert_user_error(rc, stdout, stderr, source="simulate", fields=("SPLITIMPERA_THREADS",),
                      needle=f"at most {limit}", untouched=[out, cache, cwd])
    # The limit itself is taken.
    rc, stdout, stderr = run_main(["simulate", "demo", "--threads", str(limit), "--set", "analysis.engine=analytic"],
                                  capsys)
    assert rc == 0, stderr
    assert asked[0] == limit


# ---------------------------------------------------------------------------------------------
# Public API


@pytest.mark.parametrize("overrides, fld", [
    pytest.param({"network.uplink_mbps": -1}, "network.uplink_mbps", id="negative-uplink-on-named-profile"),
    pytest.param({"qos.max_latncy_ms": 50}, "qos.max_latncy_ms", id="unknown-nested-key"),
])
def test_load_scenario_raises_user_error_with_field(overrides, fld, tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(DEMO, sort_keys=False))
    with pytest.raises(si.UserError) as info:
        si.load_scenario(path, overrides=overrides)
    assert info.value.field == fld
    assert str(path) in info.value.source


def test_load_scenario_accepts_good_overrides(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(DEMO, sort_keys=False))
    sc = si.load_scenario(path, overrides={"network.uplink_mbps": 2.5})
    assert sc.network.uplink_mbps == 2.5
    assert sc.network.rtt_ms == si.get_network("lte").rtt_ms


def test_labels_beyond_the_model_outputs_are_a_user_error(repo_root, tmp_path, capsys):
    rc = main(["analyze", str(repo_root / "scenarios/demo.yaml"), "-q", "-o", str(tmp_path),
               "--set", "model.weights=none", "--set", "model.num_classes=5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "model.num_classes" in err[0] and "10 classes" in err[0]
    assert not list(tmp_path.iterdir())
