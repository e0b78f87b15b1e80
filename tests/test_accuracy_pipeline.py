"""Accuracy under bottlenecks end to end: scenario → measured accuracy and coded bytes in the
ranking, CUI predictions where unmeasured, user CSV precedence, analyze's outputs."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import splitimpera as si
from splitimpera.accuracy.evaluate import measure_accuracy
from splitimpera.latency.analytic import analytic_latency
from splitimpera.cli import main
from splitimpera.data import digits
from splitimpera.model.loading import load_traced


def _scenario(repo_root, **over):
    return si.load_scenario(repo_root / "scenarios/demo.yaml", overrides={"analysis.engine": "analytic", **over})


@pytest.fixture(scope="module")
def demo_tm(repo_root):
    return load_traced(_scenario(repo_root))


def test_none_measures_the_full_models_accuracy_at_every_split(repo_root, demo_tm):
    """The issue's check: with no bottleneck, the split pipeline is the full model."""
    ds = digits("test")
    x, y = ds.tensors
    with torch.no_grad():
        full = int((demo_tm.model(x).argmax(1) == y).sum()) / len(y)
    at = measure_accuracy(demo_tm, ds, ["none"], use_cache=False)
    t = at.for_bottleneck("none")
    assert list(t.index) == [sp.name for sp in demo_tm.candidates]
    assert at.full_accuracy == pytest.approx(full, abs=0)
    assert (t["accuracy"] == full).all()
    assert (t["agreement"] == 1.0).all()
    tx = pd.Series({sp.name: sp.tx_bytes for sp in demo_tm.candidates})
    assert (t["bytes_raw"] == tx[t.index]).all()


def test_simulate_ranks_on_measured_accuracy_and_coded_bytes(repo_root, demo_tm):
    sc = _scenario(repo_root, **{"bottleneck.name": "int2", "bottleneck.coder": "zstd"})
    res = si.run(sc)
    assert res.bottlenecks == ["int2"] and list(res.table.index.names) == ["split", "bottleneck"]
    t = res.for_bottleneck("int2")
    ref = measure_accuracy(demo_tm, digits("test"), ["int2"]).for_bottleneck("int2")
    assert (t["accuracy"] == ref["accuracy"][t.index]).all()
    assert (t.drop(index="output")["accuracy_source"] == "measured").all()
    # Some split loses accuracy under 2-bit codes: the column is no longer constant.
    assert t["accuracy"].nunique() > 1
    assert (t["bytes_sent"] == np.ceil(ref["bytes_zstd"][t.index]).astype(int)).all()
    # The latency model saw those bytes: recompute independently with the bytes swapped in.
    prof = res.profile.copy()
    prof["tx_bytes"] = np.ceil(ref["bytes_zstd"][prof.index]).astype(np.int64)
    lat = analytic_latency(prof, sc)
    assert np.allclose(t["uplink_s"], lat.loc[t.index, "uplink_s"], rtol=0, atol=1e-12)
    # …and they are fewer than the raw fp32 bytes at every tensor split.
    fp32 = res.profile["tx_bytes"]
    inner = [n for n in t.index if n not in ("output",)]
    assert (t.loc[inner, "bytes_sent"] < fp32[inner]).all()


def test_min_accuracy_rejects_splits_the_bottleneck_hurts(repo_root):
    res = si.run(_scenario(repo_root, **{"bottleneck.name": "top25_random", "qos.min_accuracy": 0.9}))
    t = res.for_bottleneck("top25_random")
    bad = t[t["accuracy"] < 0.9]
    assert len(bad) > 5
    assert not bad["feasible"].any()
    assert bad["reason"].str.contains("accuracy").all()
    # The bottleneck cannot select channels of the raw input: it is sent as is, at full accuracy.
    assert t.at["input", "accuracy_source"] == "full model (bottleneck n/a)"
    assert t.at["input", "accuracy"] == res.full_accuracy


def test_unmeasured_splits_are_predicted_from_the_cui_curve(repo_root):
    from sklearn.isotonic import IsotonicRegression

    measured = ["features_0", "features_2", "features_4", "features_7", "features_9", "features_11", "features_14"]
    sc = _scenario(repo_root, **{"bottleneck.name": "int2", "bottleneck.splits": measured,
                                 "bottleneck.predictor": "cui"})
    res = si.run(sc)
    t = res.for_bottleneck("int2")
    assert set(t.index[t["accuracy_source"] == "measured"]) == set(measured)
    assert t.at["output", "accuracy_source"] == "full model" and t.at["output", "bytes_sent"] == 8
    pred = t.index[t["accuracy_source"] == "predicted (cui)"]
    curve = si.cui(load_traced(sc), digits("test")).curve["log10_cui"]
    assert set(pred) == set(curve.index) - set(measured)
    # Independent isotonic fit on the measured splits (direction chosen as the predictor does).
    x, y = curve[measured].to_numpy(), t.loc[measured, "accuracy"].to_numpy()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        iso = IsotonicRegression(increasing="auto", out_of_bounds="clip").fit(x, y)
        from sklearn.model_selection import LeaveOneOut, cross_val_predict

        loo = cross_val_predict(IsotonicRegression(increasing="auto", out_of_bounds="clip"), x, y, cv=LeaveOneOut())
    assert np.allclose(t.loc[pred, "accuracy"], iso.predict(curve[pred].to_numpy()))
    # Each predicted accuracy carries the predictor's leave-one-split-out error as its band.
    assert np.allclose(t.loc[pred, "accuracy_band"], np.mean(np.abs(loo - y)), rtol=1e-9)
    assert t.loc[measured, "accuracy_band"].isna().all()
    # Bytes at unmeasured splits: the bottleneck's nominal size (2-bit codes and the range).
    b = si.bottleneck.get_bottleneck("int2")
    tm = load_traced(sc)
    for n in pred:
        assert t.at[n, "bytes_sent"] == b.nominal_bytes(tm.split(n).shape)
    # Under a coder, unmeasured splits scale the nominal bytes by the coder's median ratio on
    # the measured ones (not the raw size: that would favour the measured splits).
    res_z = si.run(_scenario(repo_root, **{"bottleneck.name": "int2", "bottleneck.coder": "zstd",
                                           "bottleneck.splits": measured, "bottleneck.predictor": "cui"}))
    tz = res_z.for_bottleneck("int2")
    ref = measure_accuracy(tm, digits("test"), ["int2"], measured, coders=["zstd"]).for_bottleneck("int2")
    ratio = np.median([ref.at[n, "bytes_zstd"] / b.nominal_bytes(tm.split(n).shape) for n in measured])
    for n in pred:
        assert tz.at[n, "bytes_sent"] == math.ceil(b.nominal_bytes(tm.split(n).shape) * ratio)
    assert res_z.summary()["bottleneck"]["estimated_bytes"]["splits"] == len(set(tm.split(n).name for n in tz.index)
                                                                               - set(measured) - {"output"})
    assert "loo_mae" in res.summary()["bottleneck"]["predictor"]


def test_user_accuracies_take_precedence(repo_root, tmp_path):
    csv = tmp_path / "acc.csv"
    pd.DataFrame({"split": ["features_4", "features_9", "features_9"], "accuracy": [0.5, 0.97, 0.1],
                  "bottleneck": ["int8", "int8", "fp16"]}).to_csv(csv, index=False)
    res = si.run(_scenario(repo_root, **{"bottleneck.name": "int8", "bottleneck.accuracy_csv": str(csv),
                                         "qos.min_accuracy": 0.9}))
    t = res.for_bottleneck("int8")
    assert t.at["features_4", "accuracy"] == 0.5 and t.at["features_4", "accuracy_source"] == "user"
    assert t.at["features_9", "accuracy"] == 0.97 and t.at["features_9", "accuracy_source"] == "user"
    assert not t.at["features_4", "feasible"]
    assert (t.drop(index=["features_4", "features_9", "output"])["accuracy_source"] == "measured").all()


@pytest.mark.parametrize("over, field", [
    ({"bottleneck.name": "int9"}, "bottleneck.name"),
    ({"bottleneck.measure": ["int8", "ae"]}, "bottleneck.measure"),
    ({"bottleneck.coder": "gzip"}, "bottleneck.coder"),
    ({"bottleneck.name": "int8", "workload.payload_dtype": "int8"}, "workload.payload_dtype"),
    ({"bottleneck.name": "int8", "data.source": "none", "qos.min_accuracy": None}, "bottleneck.name"),
    ({"bottleneck.accuracy_csv": "missing.csv"}, "bottleneck.accuracy_csv"),
    ({"bottleneck.splits": ["features_4", "nope"], "bottleneck.name": "int8"}, "bottleneck.splits"),
    ({"bottleneck.measure": []}, "bottleneck.measure"),
    ({"bottleneck.measure": ["int4", "int4"]}, "bottleneck.measure"),
    ({"bottleneck.coder": "zstd", "workload.payload_dtype": "float16"}, "workload.payload_dtype"),
])
def test_bad_bottleneck_settings_are_one_line_exit_2(repo_root, capsys, over, field):
    args = ["simulate", str(repo_root / "scenarios/demo.yaml")]
    for k, v in over.items():
        args += ["--set", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err and "Traceback" not in err


def test_bad_user_csv_is_one_line_exit_2(repo_root, tmp_path, capsys):
    csv = tmp_path / "acc.csv"
    csv.write_text("split,accuracy\nfeatures_4,97\n")
    assert main(["simulate", str(repo_root / "scenarios/demo.yaml"), "--set", f"bottleneck.accuracy_csv={csv}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bottleneck.accuracy_csv" in err and "[0, 1]" in err


def test_analyze_writes_the_accuracy_by_bytes_table(repo_root, tmp_path, capsys):
    measure = ["none", "int8", "int2", "top50_gradcam", "top50_random"]
    args = ["analyze", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path), "-q",
            "--set", f"bottleneck.measure={json.dumps(measure)}", "--set", "bottleneck.coder=rle"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "CUI as a predictor of accuracy" in out and "Grad-CAM vs random channels" in out
    folder = tmp_path / "demo"
    acc = pd.read_csv(folder / "accuracy.csv", index_col="split")
    tm = load_traced(_scenario(repo_root))
    assert len(acc) == len(tm.candidates) * len(measure)
    assert list(dict.fromkeys(acc["bottleneck"])) == measure
    for b in measure:
        assert list(acc[acc["bottleneck"] == b].index) == [sp.name for sp in tm.candidates]
    summary = json.loads((folder / "accuracy_summary.json").read_text())
    per = summary["predictor"]["per_bottleneck"]
    assert set(per) == set(measure)
    # The reported LOO error is the mean absolute LOO error recomputed from the table.
    from splitimpera.accuracy.evaluate import fit_predictor

    curve = pd.read_csv(folder / "cui.csv", index_col="split")["log10_cui"]
    p = fit_predictor(curve, acc[acc["bottleneck"] == "int2"]["accuracy"])
    assert per["int2"]["loo_mae"] == pytest.approx(p.loo_mae)
    assert summary["channels_gradcam_vs_random"]["50 %"]["splits"] == 20
    assert (folder / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    # Without the accuracy part, stale accuracy files from the earlier run go away.
    assert main(["analyze", str(repo_root / "scenarios/demo.yaml"), "-o", str(tmp_path), "-q", "--no-accuracy"]) == 0
    assert not (folder / "accuracy.csv").exists() and (folder / "cui.csv").exists()


@pytest.mark.trained
def test_autoencoder_is_reproducible_and_trains(repo_root, demo_tm):
    from torch.utils.data import Subset

    calib = Subset(digits("train"), list(range(256)))
    ds = Subset(digits("test"), list(range(120)))
    kw = dict(calibration=calib, seed=3, options={"autoencoder": {"epochs": 8}}, use_cache=False)
    a = measure_accuracy(demo_tm, ds, ["autoencoder"], ["features_9", "features_14"], **kw)
    b = measure_accuracy(demo_tm, ds, ["autoencoder"], ["features_9", "features_14"], **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    t = a.for_bottleneck("autoencoder")
    # 1/64 of the elements at fp32: (C/4)·(H/4)·(W/4)·4 bytes.
    for n in ("features_9", "features_14"):
        c, h, w = demo_tm.split(n).shape
        assert t.at[n, "bytes_raw"] == 4 * (c // 4) * math.ceil(h / 4) * math.ceil(w / 4)
        assert t.at[n, "bytes_raw"] * 64 == demo_tm.split(n).tx_bytes
    # Eight epochs on 256 images (32 steps) already beat chance (10 classes) by far.
    assert (t["accuracy"] > 0.5).all()


def test_dashboard_key_follows_the_bottleneck(repo_root):
    from splitimpera.prepared import prepare_key

    a = _scenario(repo_root)
    b = _scenario(repo_root, **{"bottleneck.name": "int4"})
    assert prepare_key(a) != prepare_key(b)


def test_dashboard_key_follows_edits_of_the_accuracy_csv(repo_root, tmp_path):
    import os

    from splitimpera.prepared import prepare_key

    csv = tmp_path / "acc.csv"
    csv.write_text("split,accuracy\nfeatures_4,0.5\n")
    sc = _scenario(repo_root, **{"bottleneck.accuracy_csv": str(csv)})
    k1 = prepare_key(sc)
    csv.write_text("split,accuracy\nfeatures_4,0.25\n")
    os.utime(csv, ns=(os.stat(csv).st_atime_ns, os.stat(csv).st_mtime_ns + 10**9))
    assert prepare_key(sc) != k1


def test_report_and_terminal_show_accuracy_under_the_bottleneck(repo_root, tmp_path, capsys):
    sc = str(repo_root / "scenarios/demo.yaml")
    over = ["--set", "bottleneck.name=int2", "--set", "analysis.engine=analytic",
            "--set", "bottleneck.splits=[features_0, features_2, features_4, features_7, features_9, features_11, "
                     "features_14]", "--set", "bottleneck.predictor=cui"]
    assert main(["simulate", sc, "-o", str(tmp_path), *over]) == 0
    out = capsys.readouterr().out
    assert "bottleneck int2" in out and "predicted by isotonic on log10 CUI" in out
    table = pd.read_csv(tmp_path / "demo/splits.csv", index_col="split")
    # Predicted values carry their band and a '*' in the terminal table.
    pred = table.index[table["accuracy_source"] == "predicted (cui)"]
    band = table.loc[pred, "accuracy_band"]
    assert len(pred) and band.notna().all() and band.nunique() == 1
    assert all(f"{table.at[n, 'accuracy'] * 100:.1f} ±{band[n] * 100:.1f} %*" in out for n in pred
               if table.at[n, "feasible"] and n in out)
    assert main(["analyze", sc, "-q", "-o", str(tmp_path), *over,
                 "--set", "bottleneck.measure=[int2, top50_gradcam, top50_random]"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "demo"), "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    summary = json.loads((tmp_path / "demo/accuracy_summary.json").read_text())
    loo = summary["predictor"]["per_bottleneck"]["int2"]["loo_mae"]
    assert "Accuracy under bottlenecks" in page and f"{loo * 100:.2f}" in page
    assert "Grad-CAM better" in page and 'alt="accuracy vs bytes"' in page
    # The ranked table shows each split's accuracy, predicted ones starred.
    # (header and cell as the terminal shows them: the same column spec formats both)
    assert ">accuracy</th>" in page
    n = pred[0]
    assert f'<td class="">{table.at[n, "accuracy"] * 100:.1f} ±{band[n] * 100:.1f} %*</td>' in page
    # An analysis of another model left in the folder is not shown beside this run.
    doc = json.loads((tmp_path / "demo/accuracy_summary.json").read_text())
    doc["inputs"]["model"]["name"] = "resnet18"
    (tmp_path / "demo/accuracy_summary.json").write_text(json.dumps(doc))
    assert main(["report", str(tmp_path / "demo"), "-o", str(tmp_path / "r2.html")]) == 0
    assert "Accuracy under bottlenecks" not in (tmp_path / "r2.html").read_text()


def test_bottlenecks_command_lists_the_registry(capsys):
    assert main(["bottlenecks", "--include", "int4*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [ln.split()[0] for ln in lines if ln.startswith("  ")]
    assert listed == si.list_bottlenecks("int4*") == ["int4", "int4_channel", "int4_pct"]
    for ln, name in zip(lines, listed):
        assert si.get_bottleneck(name).describe() in ln


def test_bad_calibration_images_are_one_line_exit_2(repo_root, tmp_path, capsys):
    from PIL import Image

    x = digits("test", size=8).tensors[0]
    for c in range(12):  # more classes than the model's 10 outputs
        d = tmp_path / "cal" / f"c{c:02d}"
        d.mkdir(parents=True)
        Image.fromarray((np.clip(x[c, 0].numpy(), 0, 1) * 255).astype(np.uint8), mode="L").save(d / "a.png")
    base = ["simulate", str(repo_root / "scenarios/demo.yaml"), "--set", "bottleneck.name=top25_gradcam",
            "--set", "bottleneck.calibration.source=imagefolder", "--set", f"bottleneck.calibration.path={tmp_path / 'cal'}",
            "--set", "bottleneck.splits=[features_9]", "-o", str(tmp_path / "out")]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bottleneck.calibration.path" in err and "12 classes" in err
    (tmp_path / "cal" / "c00" / "b.png").write_text("not an image")
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read the calibration data" in err
    assert not (tmp_path / "out").exists()


def test_nested_subsets_are_fingerprinted_by_their_composed_indices():
    from torch.utils.data import Subset

    from splitimpera.accuracy.cui import data_fingerprint

    ds = digits("test")
    nested = Subset(Subset(ds, [5, 7, 9, 11]), [3, 1])
    assert data_fingerprint(nested) == data_fingerprint(Subset(ds, [11, 7]))
    assert data_fingerprint(nested) != data_fingerprint(Subset(ds, [7, 11]))


def test_a_bottleneck_returning_a_view_cannot_corrupt_the_shared_pass(demo_tm):
    from torch.utils.data import Subset

    class Detached(si.Bottleneck):
        name = "detached"

        def roundtrip(self, z):
            zh, payload = super().roundtrip(z)
            return zh.detach(), payload  # the same storage as the live activation

    ds = Subset(digits("test"), list(range(64)))
    alone = measure_accuracy(demo_tm, ds, ["int8"], ["features_0"], use_cache=False).for_bottleneck("int8")
    both = measure_accuracy(demo_tm, ds, [Detached(), "int8"], ["features_0"], use_cache=False)
    # features_0's tail starts with ReLU(inplace=True): without a copy it would clip the live value.
    pd.testing.assert_frame_equal(both.for_bottleneck("int8"), alone)


def test_random_draws_average_whole_bytes(demo_tm):
    from torch.utils.data import Subset

    calib = Subset(digits("train"), list(range(64)))
    ds = Subset(digits("test"), list(range(64)))
    at = measure_accuracy(demo_tm, ds, ["top25_gradcam", "top25_random"], ["classifier_1", "classifier_4"],
                          calibration=calib, coders=["raw"], use_cache=False)
    b = si.get_bottleneck("top25_random")
    for n in ("classifier_1", "classifier_4"):
        assert at.for_bottleneck("top25_random").at[n, "bytes_raw"] == b.nominal_bytes(demo_tm.split(n).shape)
        assert at.for_bottleneck("top25_gradcam").at[n, "bytes_raw"] == b.nominal_bytes(demo_tm.split(n).shape)


def test_bottleneck_settings_are_part_of_the_cache_key_and_no_grad_is_fine(demo_tm):
    from torch.utils.data import Subset

    from splitimpera.accuracy.bottlenecks import Autoencoder

    calib = Subset(digits("train"), list(range(64)))
    ds = Subset(digits("test"), list(range(64)))
    kw = dict(calibration=calib, coders=["raw"])
    with torch.no_grad():  # the autoencoder still trains
        a = measure_accuracy(demo_tm, ds, [Autoencoder(epochs=1)], ["features_14"], **kw)
    b = measure_accuracy(demo_tm, ds, [Autoencoder(epochs=1, lr=0.5)], ["features_14"], **kw)
    fresh = measure_accuracy(demo_tm, ds, [Autoencoder(epochs=1, lr=0.5)], ["features_14"], use_cache=False, **kw)
    pd.testing.assert_frame_equal(b.table, fresh.table)
    assert a.table.at["features_14", "agreement"] != b.table.at["features_14", "agreement"]


def test_autoencoder_compute_matches_fvcore_and_enters_the_latency(repo_root):
    from fvcore.nn import FlopCountAnalysis

    from splitimpera.accuracy.bottlenecks.autoencoder import AutoencoderNet

    for shape in [(64, 4, 4), (32, 16, 16), (16, 9, 7)]:
        net = AutoencoderNet(shape).eval()
        x = torch.zeros(1, *shape)
        enc = FlopCountAnalysis(net.encoder, (x,)).unsupported_ops_warnings(False).total()
        code = net.encoder(x)
        dec = FlopCountAnalysis(net.decoder, (code,)).unsupported_ops_warnings(False).total()
        work = si.get_bottleneck("autoencoder").extra_work(shape)
        assert work["head"]["flops_conv"] == enc and work["tail"]["flops_conv"] == dec
    over = {"bottleneck.splits": ["features_14"], "bottleneck.autoencoder.epochs": 1, "bottleneck.calibration_limit": 64}
    plain = si.run(_scenario(repo_root)).for_bottleneck("none")
    ae = si.run(_scenario(repo_root, **{"bottleneck.name": "autoencoder", **over}))
    ae_t = ae.for_bottleneck("autoencoder")
    dev, srv = ae.scenario.device, ae.scenario.server
    work = si.get_bottleneck("autoencoder").extra_work((64, 4, 4))
    for side, d, col in (("head", dev, "device_compute_s"), ("tail", srv, "server_compute_s")):
        w = work[side]  # the encoder on the device, the decoder on the server
        arith = w["flops_conv"] / d.macs_per_s("conv") + w["flops_other"] / d.macs_per_s("other")
        expect = max(arith, w["bytes_moved"] / (d.memory.bandwidth_gbps * 1e9)) + w["layers"] * d.layer_overhead_s
        got = ae_t.at["features_14", col] - plain.at["features_14", col]
        assert got == pytest.approx(expect, rel=1e-9)
    # Splits the autoencoder cannot apply to (vectors) run the plain model.
    assert ae_t.at["classifier_1", "device_compute_s"] == plain.at["classifier_1", "device_compute_s"]


def test_channel_comparison_without_labels_uses_agreement(demo_tm):
    from torch.utils.data import Subset

    from splitimpera.accuracy.evaluate import channel_comparison

    calib = Subset(digits("train"), list(range(32)))
    ds = Subset(digits("test"), list(range(48)))
    at = measure_accuracy(demo_tm, ds, ["top25_gradcam", "top25_random"], ["features_9", "features_14"],
                          calibration=calib, labelled=False, coders=["raw"], use_cache=False)
    c = channel_comparison(at)
    assert (c["metric"] == "agreement").all() and c["gradcam_accuracy"].isna().all()
    assert np.allclose(c["difference"], c["gradcam_agreement"] - c["random_agreement"])
    assert np.isfinite(c["difference"]).all()
