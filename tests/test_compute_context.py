"""What the per-kind compute model knows of a node beyond its kind: the operator, its cache
context, the FLOPs fvcore counts per call; which kinds get a residual; the synthetic fit networks."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from splitimpera.config.profile_registry import parse_profile
from splitimpera.errors import UserError
from splitimpera.calibrate.fit import MIN_GAIN, choose_residual_kinds, fit_base
from splitimpera.latency.kind_model import TABLE_COLUMNS, KindCoef, KindModel, read_table
from splitimpera.model.cost import profile_nodes, structure_hash
from splitimpera.model.splits import trace


class Ops(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.gelu = nn.GELU(approximate="tanh")
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.bn = nn.BatchNorm2d(8)
        self.tok = nn.Linear(8, 4)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = self.relu(self.conv(x))
        b = F.silu(self.bn(a))
        c = self.gelu(b) + a
        d = self.pool(c)
        w = torch.sigmoid(c)  # moves bytes after `pool` wrote d …
        t = self.tok(d.flatten(2).transpose(1, 2))  # … and before its view is read; a linear layer on many rows
        return self.fc(self.gap(d).flatten(1)) + t.mean() + d.mean((2, 3)).sum() + w.sum()  # and on one row


def _nodes(model, shape=(3, 16, 16)):
    return profile_nodes(trace(model.eval(), shape), use_cache=False)


def test_each_node_names_its_operator():
    n = _nodes(Ops())
    fn = dict(zip(n.index, n["fn"]))
    assert fn["conv"] == "conv" and fn["relu"] == "relu_" and fn["silu"] == "silu" and fn["gelu"] == "gelu_tanh"
    assert fn["bn"] == "batch_norm" and fn["pool"] == "max_pool2d" and fn["gap"] == "adaptive_avg_pool2d"
    assert fn["add"] == "add" and fn["transpose"] == "transpose" and fn["mean_1"] == "mean"
    # A single row is a matrix-vector product (bound by reading the weights), many rows a product of matrices.
    assert fn["fc"] == "linear_gemv" and fn["tok"] == "linear"
    # Placeholders and the like run no operator.
    assert fn["x"] == ""


def test_cache_context_in_closed_form():
    n = _nodes(Ops())
    moved = n["bytes_moved"]
    # `add` reads the GELU's output (just written) and the ReLU's (written before bn, silu, gelu):
    # its oldest input has seen the bytes those three moved since.
    assert n.loc["add", "reuse_bytes"] == moved["bn"] + moved["silu"] + moved["gelu"]
    # The transpose reads a view of `pool`'s output: the view is followed back to `pool`,
    # so the sigmoid's traffic counts (a view moves nothing).
    assert moved["flatten"] == 0 and moved["sigmoid"] > 0
    assert n.loc["transpose", "reuse_bytes"] == moved["sigmoid"]
    assert n.loc["silu", "reuse_bytes"] == 0  # reads what bn just wrote
    # since_macs: the work run since the same operator last ran, all of it before a first.
    macs = n["macs"].to_numpy()
    before = dict(zip(n.index, np.concatenate([[0], np.cumsum(macs)[:-1]])))
    assert n.loc["conv", "since_macs"] == 0
    assert n.loc["pool", "since_macs"] == before["pool"] and before["pool"] > 0
    pos = list(n.index)
    between = macs[pos.index("mean") + 1:pos.index("mean_1")].sum()
    assert n.loc["mean_1", "since_macs"] == between


class Twice(nn.Module):
    """One convolution called twice, and a branch whose result nothing uses."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(4, 4, 3, padding=1)
        self.dead = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        self.dead(x)
        return self.c(self.c(x))


def test_fvcore_counts_every_call_and_dead_ends():
    n = _nodes(Twice(), (4, 8, 8))
    per_call = 4 * 4 * 9 * 8 * 8  # cout · cin · k² · output pixels
    assert n.loc["c", "macs"] == per_call and n.loc["c_1", "macs"] == per_call
    assert n.loc["dead", "macs"] == 2 * 4 * 8 * 8


def _table(seed=0):
    """Six models' nodes of two kinds: an activation whose time triples when its operator has
    not run for a while (a pattern a residual can learn), a norm with pure noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(6):
        for kind, fn in (("act", "relu"), ("norm", "batch_norm")):
            for _ in range(80):
                b = float(rng.uniform(1e4, 5e6))
                since = float(10 ** rng.uniform(3, 9))
                base = 2e-6 + b / 20e9
                t = base * (3.0 if (kind == "act" and since > 1e7) else 1.0)
                t *= float(np.exp(rng.normal(0, 0.3 if kind == "norm" else 0.02)))  # a clock's noise
                rows.append({"model": f"m{m}", "kind": kind, "fn": fn, "macs": 0, "bytes_moved": b, "in_bytes": b / 2,
                             "out_bytes": b / 2, "param_bytes": 0, "cin": 64, "cout": 64, "kernel": 1, "stride": 1,
                             "groups": 1, "out_hw": 196, "module": 1, "reuse_bytes": 0, "since_macs": since,
                             "measured_s": t})
    return pd.DataFrame(rows)


def test_a_kind_gets_a_residual_only_when_it_predicts_unseen_models_better():
    table = _table()
    assert set(TABLE_COLUMNS) <= set(table.columns)
    kinds, score = choose_residual_kinds(table)
    assert kinds == ["act"]
    assert score.loc["act", "residual"] < 0.5 * score.loc["act", "base"]  # the tripling, learnt
    assert score.loc["norm", "residual"] >= (1 - MIN_GAIN) * score.loc["norm", "base"]  # noise: nothing to learn


def test_operators_get_their_own_base_within_a_kind():
    rng = np.random.default_rng(1)
    rows = []
    for fn, gbps in (("relu", 40e9), ("silu", 8e9)):
        for b in rng.uniform(1e4, 4e6, 20):
            rows.append({"kind": "act", "fn": fn, "macs": 0, "bytes_moved": b, "measured_s": 3e-6 + b / gbps})
    coef = fit_base(pd.DataFrame(rows))
    assert 1e-9 / coef["act/relu"].s_per_byte == pytest.approx(40, rel=1e-3)
    assert 1e-9 / coef["act/silu"].s_per_byte == pytest.approx(8, rel=1e-3)
    # An operator never measured falls back to its kind's base, an unknown kind to "all".
    new = pd.DataFrame([{"kind": "act", "fn": "mish", "macs": 0, "bytes_moved": 1e6},
                        {"kind": "norm", "fn": "batch_norm", "macs": 0, "bytes_moved": 1e6}])
    got = KindModel(coef).base_s(new)
    assert got[0] == pytest.approx(coef["act"].vector() @ [1, 0, 1e6])
    assert got[1] == pytest.approx(coef["all"].vector() @ [1, 0, 1e6])


def test_profiles_name_operators_and_residual_kinds_or_fail_in_one_line():
    from splitimpera import get_device

    data = get_device("rpi4").model_dump()
    kinds = {"all": KindCoef(2e-6, 1e-10, 1e-10).to_yaml(), "act/silu": KindCoef(3e-6, 0, 1e-10).to_yaml()}
    data["compute"]["kinds"] = kinds
    assert "act/silu" in parse_profile("devices", data, "p.yaml").compute.kinds
    data["compute"]["kinds"] = {**kinds, "activation/silu": kinds["act/silu"]}
    with pytest.raises(UserError, match=r"unknown op kind\(s\) activation/silu") as e:
        parse_profile("devices", data, "p.yaml")
    assert "p.yaml" in str(e.value) and "\n" not in str(e.value)
    data["compute"]["kinds"] = kinds
    data["compute"]["residual_kinds"] = ["act", "bogus"]
    with pytest.raises(UserError, match=r"bogus in residual_kinds"):
        parse_profile("devices", data, "p.yaml")


def test_a_residual_table_from_before_operators_asks_for_a_new_calibrate(tmp_path):
    t = _table().drop(columns=["fn", "since_macs"])
    path = tmp_path / "old.nodes.csv"
    t.to_csv(path, index=False)
    with pytest.raises(UserError, match=r"lacks column\(s\) fn, since_macs .*run calibrate again"):
        read_table(path)


def test_synthetic_fit_networks_cover_the_activations_and_blocks_users_meet():
    from splitimpera.calibrate import SYNTHETIC_FIT_MODELS
    from splitimpera.model.loading import load_model

    fns, kinds, hashes = set(), set(), []
    for name in SYNTHETIC_FIT_MODELS:
        tm = trace(load_model(name, "none"), (3, 64, 64))
        n = profile_nodes(tm, use_cache=False)
        fns |= {f.rstrip("_") for f in n["fn"]}
        kinds |= set(n["kind"])
        hashes.append(structure_hash(tm))
    assert {"relu", "relu6", "hardswish", "silu", "gelu", "leaky_relu", "elu"} <= fns
    assert {"conv", "conv_dw", "concat", "pool", "eltwise", "norm", "linear", "view"} <= kinds
    assert len(set(hashes)) == len(hashes)  # seven different networks
    # … and each the same every time: a seed builds one network.
    again = load_model(SYNTHETIC_FIT_MODELS[3], "none")
    assert structure_hash(trace(again, (3, 64, 64))) == hashes[3]


def test_operator_names_survive_the_residual_table_and_a_blank_one_keeps_its_kinds_base(tmp_path):
    from functools import partial

    from splitimpera.latency.kind_model import read_table_text
    from splitimpera.model.node_features import target_name

    t = _table()
    t.loc[t.index[:40], "fn"] = "null"  # a user module named Null
    t.loc[t.index[40:60], "fn"] = ""  # an operator not known
    back = read_table_text(t.to_csv(index=False))
    assert list(back["fn"]) == list(t["fn"]) and back["macs"].dtype.kind == "f"
    coef = fit_base(back)
    assert "act/null" in coef and "act/relu" in coef
    # The blank rows are in the kind's own base, fitted to every act node, not to them alone.
    assert np.allclose(coef["act"].vector(), fit_base(back.assign(fn="x").query("kind == 'act'"))["act"].vector())

    # A callable without __name__ is named by its type, never by its address.
    class Node:
        target = partial(F.relu, inplace=False)

    assert target_name(Node()) == "partial"


def test_a_linear_layer_on_one_row_of_a_sequence_is_a_matrix_vector_product():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x):
            return self.fc(x.flatten(2).transpose(1, 2)[:, :1])  # (1, 1, 8): one row

    n = _nodes(Seq(), (8, 2, 2))
    assert n.loc["fc", "fn"] == "linear_gemv"
