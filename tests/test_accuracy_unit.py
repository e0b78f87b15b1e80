"""`splitimpera.accuracy.evaluate`: measured accuracy and bytes against the full model and an independent
head/tail + numpy quantisation; the CUI predictor against scikit-learn and scipy; user CSVs."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Subset

from splitimpera import split_model
from splitimpera.accuracy import evaluate as accuracy
from splitimpera.accuracy.evaluate import fit_predictor, measure_accuracy, read_user_accuracy
from splitimpera.data import digits
from splitimpera.errors import UserError
from splitimpera.model.loading import load_model
from splitimpera.model.splits import OUTPUT, PREDICTION_BYTES, trace

SHAPE = (1, 32, 32)


@pytest.fixture(scope="module")
def model():
    return load_model("digits_cnn", "default")


@pytest.fixture(scope="module")
def tm(model):
    return trace(model, SHAPE)


@pytest.fixture(scope="module")
def data(model):
    """64 test images, including the ones the model gets wrong (so accuracy and agreement differ)."""
    ds = digits("test")
    x, y = ds.tensors
    with torch.no_grad():
        wrong = (model(x.clone()).argmax(1) != y).numpy()
    idx = list(np.flatnonzero(wrong)[:8]) + list(np.flatnonzero(~wrong)[:64])
    return Subset(ds, sorted(int(i) for i in idx[:64]))


@pytest.fixture(scope="module")
def xy(data):
    x = torch.stack([data[i][0] for i in range(len(data))])
    y = torch.tensor([int(data[i][1]) for i in range(len(data))])
    return x, y


@pytest.fixture(scope="module")
def full_pred(model, xy):
    with torch.no_grad():
        return model(xy[0].clone()).argmax(1)


def _rle_bytes(codes: np.ndarray) -> int:
    """Run-length code size of 8-bit codes: 1 symbol byte + LEB128 run length per run."""
    return sum(1 + max(1, -(-len(list(g)).bit_length() // 7)) for _, g in itertools.groupby(codes.tolist()))


# --------------------------------------------------------------------------------------------
# measure_accuracy


def test_none_equals_the_full_model_at_every_split(tm, data, xy, full_pred):
    zstandard = pytest.importorskip("zstandard")
    x, y = xy
    full_acc = float((full_pred == y).float().mean())
    assert full_acc > 0.5  # a trained model: the comparison means something
    res = measure_accuracy(tm, data, ["none"], use_cache=False)
    t = res.for_bottleneck("none")
    assert list(t.index) == [sp.name for sp in tm.candidates]
    assert res.full_accuracy == full_acc
    assert res.samples == 64 and res.calibration_samples == 0
    for sp in tm.candidates:
        row = t.loc[sp.name]
        assert row["accuracy"] == full_acc, sp.name
        assert row["agreement"] == 1.0, sp.name
        assert row["accuracy_std"] == 0.0
        assert row["tx_bytes_fp32"] == sp.tx_bytes
        assert row["bytes_raw"] == sp.tx_bytes, sp.name
        assert row["samples"] == 64
        if sp.name != OUTPUT:
            assert row["bytes_raw"] == 4 * math.prod(sp.shape)
    assert t.loc[OUTPUT, "bytes_raw"] == t.loc[OUTPUT, "bytes_zstd"] == t.loc[OUTPUT, "bytes_rle"] == PREDICTION_BYTES
    # zstd at the input: the fp32 image bytes, compressed one sample at a time.
    comp = zstandard.ZstdCompressor(level=3)
    ref = np.mean([len(comp.compress(xi.numpy().astype("<f4").tobytes())) for xi in x])
    assert t.loc["input", "bytes_zstd"] == pytest.approx(ref, rel=1e-12)
    # The model's modes are left as they were.
    assert not any(m.training for m in tm.model.modules())


def _quantise_reference(z: np.ndarray, bits: int):
    """Per-sample min-max uniform quantisation in float32 numpy: (dequantised, codes)."""
    levels = np.float32(2 ** bits - 1)
    g = z.reshape(len(z), -1)
    lo, hi = g.min(1, keepdims=True), g.max(1, keepdims=True)
    scale = (hi - lo) / levels
    scale = np.where(scale > 0, scale, np.float32(1))
    q = np.clip(np.round((g - lo) / scale), 0, levels)
    return (q * scale + lo).reshape(z.shape).astype(np.float32), q.astype(np.uint8)


def _packed(codes: np.ndarray, bits: int) -> bytes:
    if bits == 8:
        return codes.tobytes()
    return np.packbits(np.unpackbits(codes[:, None], axis=1)[:, 8 - bits:].reshape(-1)).tobytes()


@pytest.mark.parametrize("split, bits", [("features_9", 8), ("classifier_1", 8), ("features_9", 1)])
def test_quantiser_matches_an_independent_head_tail_quantisation(model, tm, data, xy, full_pred, split, bits):
    zstandard = pytest.importorskip("zstandard")
    x, y = xy
    name = f"int{bits}"
    res = measure_accuracy(tm, data, [name, "none"], splits=[split], use_cache=False)
    assert list(dict.fromkeys(res.table.index)) == [split]
    row = res.for_bottleneck(name).loc[split]

    head, tail = split_model(model, split, SHAPE)
    with torch.no_grad():
        z = head(x.clone()).numpy()
        deq, codes = _quantise_reference(z, bits)
        pred = tail(torch.from_numpy(deq)).argmax(1)
        assert torch.equal(tail(torch.from_numpy(z.copy())).argmax(1), full_pred)  # the split is lossless at fp32
    assert row["accuracy"] == float((pred == y).float().mean())
    assert row["agreement"] == float((pred == full_pred).float().mean())
    if bits == 1:  # one bit per value is lossy enough to change predictions: the check has teeth
        assert row["agreement"] < 1.0
    numel = z[0].size
    assert row["bytes_raw"] == math.ceil(numel * bits / 8) + 8  # packed codes, lo and scale as two fp32
    comp = zstandard.ZstdCompressor(level=3)
    zstd_ref = np.mean([len(comp.compress(_packed(c, bits))) + 8 for c in codes])
    assert row["bytes_zstd"] == pytest.approx(zstd_ref, rel=1e-12)
    assert row["bytes_rle"] == pytest.approx(np.mean([_rle_bytes(c) + 8 for c in codes]), rel=1e-12)
    assert row["accuracy_std"] == 0.0 and row["note"] == ""


def test_cache_round_trip(tm, data, monkeypatch, tmp_path):
    monkeypatch.setenv("SPLITIMPERA_CACHE", str(tmp_path))
    splits = ["input", "features_14", "classifier_1", OUTPUT]
    bns = ["none", "int4_channel", "fp16"]
    fresh = measure_accuracy(tm, data, bns, splits=splits, use_cache=False)
    assert not (tmp_path / "accuracy").exists()
    first = measure_accuracy(tm, data, bns, splits=splits, use_cache=True)
    assert len(list((tmp_path / "accuracy").glob("*.json"))) == 1

    def boom(*a, **k):
        raise AssertionError("a cached result must not be recomputed")

    monkeypatch.setattr(accuracy, "_evaluate", boom)
    second = measure_accuracy(tm, data, bns, splits=splits, use_cache=True)
    for r in (first, second):
        pd.testing.assert_frame_equal(r.table, fresh.table)
        assert (r.full_accuracy, r.samples, r.calibration_samples) == (fresh.full_accuracy, fresh.samples, 0)
        assert r.settings == fresh.settings
    # A per-channel quantiser does not apply to a 1-D tensor: NaN with a note, also from the cache.
    row = second.for_bottleneck("int4_channel").loc["classifier_1"]
    assert math.isnan(row["accuracy"]) and math.isnan(row["bytes_raw"]) and "per-channel" in row["note"]
    assert second.pivot("bytes_raw").loc["features_14", "fp16"] == 2 * 64 * 4 * 4
    # Other data is another cache entry, not a stale hit.
    with pytest.raises(AssertionError, match="recomputed"):
        measure_accuracy(tm, Subset(data.dataset, data.indices[1:]), bns, splits=splits, use_cache=True)


@pytest.mark.parametrize("name", ["top50_gradcam", "top25_random", "autoencoder"])
def test_learning_bottleneck_needs_calibration(tm, data, name):
    with pytest.raises(UserError, match=f"{name}.*calibration"):
        measure_accuracy(tm, data, ["none", name], splits=["features_9"], use_cache=False)


def test_bottleneck_listed_twice_is_a_user_error(tm, data):
    with pytest.raises(UserError, match="int8"):
        measure_accuracy(tm, data, ["int8", "none", "int8"], splits=["features_9"], use_cache=False)


def test_splits_filter_keeps_candidate_order(tm, data):
    res = measure_accuracy(tm, data, ["fp16"], splits=[OUTPUT, "features_4", "input"], use_cache=False)
    assert list(res.table.index) == ["input", "features_4", OUTPUT]
    assert res.for_bottleneck("fp16").loc["features_4", "bytes_raw"] == 2 * 16 * 16 * 16


@pytest.mark.parametrize("splits", [["bogus"], []])
def test_no_known_split_is_a_user_error(tm, data, splits):
    with pytest.raises(UserError):
        measure_accuracy(tm, data, ["none"], splits=splits, use_cache=False)


def test_all_channels_kept_equals_no_bottleneck(tm, data, xy, full_pred):
    """top100 keeps every channel: the full model's predictions; the random control over its
    seeded draws sends the same bytes as the Grad-CAM selection."""
    calib = Subset(digits("test"), range(100, 132))
    res = measure_accuracy(tm, data, ["top100_gradcam", "top50_gradcam", "top50_random"],
                           splits=["input", "features_14"], calibration=calib, use_cache=False)
    full_acc = float((full_pred == xy[1]).float().mean())
    row = res.for_bottleneck("top100_gradcam").loc["features_14"]
    assert row["accuracy"] == full_acc and row["agreement"] == 1.0
    assert row["bytes_raw"] == 4 * 64 * 4 * 4
    assert res.calibration_samples == 32
    g = res.for_bottleneck("top50_gradcam").loc["features_14"]
    r = res.for_bottleneck("top50_random").loc["features_14"]
    assert g["bytes_raw"] == r["bytes_raw"] == 4 * 32 * 4 * 4
    assert r["note"] == f"mean of {accuracy.RANDOM_DRAWS} seeded draws"
    for b in ("top100_gradcam", "top50_random"):  # no channel importance at the input
        assert math.isnan(res.for_bottleneck(b).loc["input", "accuracy"])


# --------------------------------------------------------------------------------------------
# fit_predictor


def _loo_ref(x, y, increasing):
    from sklearn.isotonic import IsotonicRegression

    loo, base = [], []
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        iso = IsotonicRegression(increasing=increasing, out_of_bounds="clip").fit(x[keep], y[keep])
        loo.append(iso.predict([x[i]])[0] - y[i])
        base.append(y[keep].mean() - y[i])
    return np.array(loo), np.array(base)


@pytest.mark.parametrize("increasing", [True, False])
def test_predictor_on_monotone_data(increasing):
    from scipy.stats import spearmanr
    from sklearn.isotonic import IsotonicRegression

    names = [f"s{i}" for i in range(12)]
    x = np.linspace(-4.0, -0.5, 12) + np.linspace(0, 0.05, 12) ** 2  # unevenly spaced
    y = 0.3 + 0.6 / (1 + np.exp(-2 * (x + 2)))  # increasing, no noise
    if not increasing:
        y = 1.2 - y
    p = fit_predictor(pd.Series(x, index=names), pd.Series(y, index=names))
    assert p is not None and p.splits == tuple(names)
    loo, base = _loo_ref(x, y, increasing)
    np.testing.assert_allclose(p.loo_errors, loo, atol=1e-12)
    np.testing.assert_allclose(p.baseline_errors, base, atol=1e-12)
    assert p.loo_mae == pytest.approx(np.mean(np.abs(loo)))
    assert p.baseline_loo_mae == pytest.approx(np.mean(np.abs(base)))
    assert p.loo_mae < 0.05
    assert p.loo_mae < 0.25 * p.baseline_loo_mae
    assert p.spearman == pytest.approx(spearmanr(x, y).statistic) == (1.0 if increasing else -1.0)
    grid = np.array([-10.0, -3.3, -1.0, 5.0])
    ref = IsotonicRegression(increasing=increasing, out_of_bounds="clip").fit(x, y).predict(grid)
    np.testing.assert_allclose(p.predict(grid), ref)
    s = p.summary()
    assert s["measured_splits"] == 12 and s["loo_mae"] == pytest.approx(p.loo_mae)


def test_predictor_aligns_by_split_and_drops_missing_points():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    cui = pd.Series(rng.normal(size=8), index=[f"s{i}" for i in range(8)])
    cui["s2"] = -np.inf  # log10 of a zero CUI
    acc = pd.Series(rng.uniform(0.2, 0.9, size=8), index=[f"s{i}" for i in reversed(range(8))])
    acc["s5"] = np.nan
    acc["extra"] = 0.5  # measured, but no CUI value
    p = fit_predictor(cui, acc)
    assert set(p.splits) == {"s0", "s1", "s3", "s4", "s6", "s7"}
    for s, xv, yv in zip(p.splits, p.x, p.y):
        assert xv == cui[s] and yv == acc[s]
    assert p.spearman == pytest.approx(spearmanr(p.x, p.y).statistic)


def test_predictor_needs_three_points_and_flat_data_has_no_rank_correlation():
    idx = ["a", "b", "c"]
    assert fit_predictor(pd.Series([1.0, 2.0], index=idx[:2]), pd.Series([0.5, 0.6], index=idx[:2])) is None
    assert fit_predictor(pd.Series([1.0, 2.0, 3.0], index=idx), pd.Series([0.5, np.nan, 0.7], index=idx)) is None
    p = fit_predictor(pd.Series([1.0, 2.0, 3.0], index=idx), pd.Series([0.5, 0.5, 0.5], index=idx))
    assert p is not None and math.isnan(p.spearman) and p.summary()["spearman"] is None
    assert p.loo_mae == 0.0


# --------------------------------------------------------------------------------------------
# read_user_accuracy

SPLITS = ["input", "conv1", "pool1", "fc", "output"]


def _read(tmp_path, text, bottleneck="int8"):
    path = tmp_path / "acc.csv"
    path.write_text(text)
    return read_user_accuracy(path, bottleneck, SPLITS, source="scenario.yaml")


def test_good_csv(tmp_path):
    s = _read(tmp_path, "split,accuracy\nconv1,0.91\npool1,0.875\noutput,1\n")
    assert s.to_dict() == {"conv1": 0.91, "pool1": 0.875, "output": 1.0}
    s = _read(tmp_path, "bottleneck,split,accuracy\nint8,conv1,0.9\nnone,conv1,95\nnone,bogus,0.1\nint8,fc,0.0\n")
    assert s.to_dict() == {"conv1": 0.9, "fc": 0.0}  # rows of other bottlenecks are ignored, even bad ones
    assert s.dtype == float


@pytest.mark.parametrize("text, words", [
    ("split,acc\nconv1,0.9\n", ["accuracy", "column"]),
    ("layer,accuracy\nconv1,0.9\n", ["split", "column"]),
    ("split,accuracy\nconv1,0.9\nconv9,0.8\n", ["conv9", "split"]),
    ("split,accuracy\nconv1,95\n", ["fraction", "conv1"]),
    ("split,accuracy\nconv1,-0.1\n", ["fraction", "conv1"]),
    ("split,accuracy\nconv1,high\n", ["fraction", "conv1"]),
    ("split,accuracy\npool1,0.9\nconv1,0.8\npool1,0.7\n", ["pool1", "twice"]),
])
def test_bad_csv_is_a_user_error_naming_the_problem(tmp_path, text, words):
    with pytest.raises(UserError) as e:
        _read(tmp_path, text)
    for w in words:
        assert w in e.value.message
    assert e.value.source == "scenario.yaml" and e.value.field == "bottleneck.accuracy_csv"


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_user_accuracy(tmp_path / "nope.csv", "int8", SPLITS, source="s")
