"""The bundled letters set (splitimpera/datasets/letters.npz) and its two zoo models.

The set is checked as shipped (fonts held out, no test image in training, balanced classes,
the normalisation constants its metadata records); the loader refuses a file that does not
match its recorded hash or that holds anything but plain numeric arrays, in one line naming
the file; the shipped models reach the test accuracy their metadata records (within a few
images: another CPU may round a near-tie the other way).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch

import splitimpera as si
from splitimpera.data import (LETTERS_CLASSES, LETTERS_FILE, LETTERS_MEAN, LETTERS_STD, class_names, letters,
                              load_dataset, load_letters_arrays)
from splitimpera.errors import UserError
from splitimpera.model.zoo import WEIGHTS_DIR

META = json.loads(LETTERS_FILE.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def arrays():
    return load_letters_arrays()


def test_shipped_file_is_small_and_matches_its_metadata(arrays):
    assert LETTERS_FILE.stat().st_size == META["file_bytes"] <= 4e6
    assert hashlib.sha256(LETTERS_FILE.read_bytes()).hexdigest() == META["sha256"]
    assert META["classes"] == LETTERS_CLASSES == list("ABCDEFGHIJ")
    for split in ("train", "test"):
        x, y, f = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"font_{split}"]
        assert x.dtype == np.uint8 and x.shape == (META[split]["count"], 32, 32)
        assert len(y) == len(f) == len(x)
        assert 0 <= f.min() and f.max() < len(META[split]["fonts"])
    assert 8000 <= META["train"]["count"] <= 12000 and 2000 <= META["test"]["count"] <= 3000


def test_fonts_are_held_out_and_no_test_image_is_a_training_image(arrays):
    assert not set(META["train"]["fonts"]) & set(META["test"]["fonts"])
    assert len(META["test"]["fonts"]) >= 5
    train = {img.tobytes() for img in arrays["x_train"]}
    assert len(train) == len(arrays["x_train"])  # no duplicates within a split either
    assert len({img.tobytes() for img in arrays["x_test"]}) == len(arrays["x_test"])
    assert not any(img.tobytes() in train for img in arrays["x_test"])
    # Every font of each split is used, for every letter.
    for split in ("train", "test"):
        pairs = set(zip(arrays[f"font_{split}"].tolist(), arrays[f"y_{split}"].tolist()))
        assert len(pairs) == len(META[split]["fonts"]) * 10


def test_classes_are_balanced(arrays):
    for split in ("train", "test"):
        counts = np.bincount(arrays[f"y_{split}"], minlength=10)
        assert len(counts) == 10 and (counts == META[split]["per_class"]).all(), counts


def test_normalisation_constants_are_the_training_statistics(arrays):
    assert LETTERS_MEAN == META["train_mean"] and LETTERS_STD == META["train_std"]
    pix = arrays["x_train"] / 255.0
    assert abs(pix.mean() - LETTERS_MEAN) < 1e-3 and abs(pix.std() - LETTERS_STD) < 1e-3


def test_loader_splits_sizes_and_class_names():
    te, tr, both = letters("test"), letters("train"), letters("all")
    x, y = te.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape[1:]) == (1, 32, 32)
    assert len(te) == META["test"]["count"] and len(tr) == META["train"]["count"] and len(both) == len(te) + len(tr)
    assert abs(float(tr.tensors[0].mean())) < 1e-2 and abs(float(tr.tensors[0].std()) - 1) < 1e-2
    assert tuple(letters("test", size=16).tensors[0].shape[1:]) == (1, 16, 16)
    assert class_names(te) == LETTERS_CLASSES
    with pytest.raises(ValueError, match="split"):
        letters("val")


def test_scenario_data_source_letters_and_its_calibration(repo_root):
    from splitimpera.accuracy.design_points import load_calibration

    sc = si.load_scenario(repo_root / "scenarios/letters_autoencoder.yaml", overrides={"data.limit": 50})
    ds = load_dataset(sc.data, (1, 32, 32), 10, seed=sc.seed)
    assert len(ds) == 50 and class_names(ds) == LETTERS_CLASSES
    sc = si.load_scenario(repo_root / "scenarios/letters_autoencoder.yaml")
    calib, evaluation, how = load_calibration(sc, (1, 32, 32), letters("test"))
    assert how == "letters train split" and len(calib) == sc.bottleneck.calibration_limit
    assert len(evaluation) == META["test"]["count"]


# --------------------------------------------------------------------------------------------
# Files the loader refuses


def _write(tmp_path, blob: bytes, sha: str | None = None):
    """``blob`` as tmp_path/letters.npz with a letters.json recording ``sha`` (its own by default)."""
    p = tmp_path / "letters.npz"
    p.write_bytes(blob)
    p.with_suffix(".json").write_text(json.dumps({"sha256": sha or hashlib.sha256(blob).hexdigest()}))
    return p


def _refused(p, *needles):
    with pytest.raises(UserError) as e:
        letters("test", path=p)
    line = e.value.line()
    assert "\n" not in line and str(p) in line, line
    for n in needles:
        assert n in line, line


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # allow_pickle defaults to True on save: object arrays go in pickled
    return buf.getvalue()


def _valid(arrays) -> dict:
    return {k: arrays[k][:4] for k in ("x_train", "y_train", "font_train", "x_test", "y_test", "font_test")}


def test_an_object_array_is_refused_in_one_line(tmp_path, arrays):
    good = _valid(arrays)
    p = _write(tmp_path, _npz(**{**good, "x_test": np.array([{"a": 1}, None], dtype=object)}))
    _refused(p, "plain numeric arrays")
    assert len(letters("test", path=_write(tmp_path, _npz(**good)))) == 4  # the same file, all numeric, loads


def test_a_pickled_member_is_refused_in_one_line(tmp_path, arrays):
    buf = io.BytesIO(_npz(**_valid(arrays)))
    with zipfile.ZipFile(buf, "a") as zf:  # a member that is a pickle, not a .npy
        zf.writestr("labels", pickle.dumps({"a": [1, 2]}))
    _refused(_write(tmp_path, buf.getvalue()), "plain numeric arrays")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # …or a pickle under an .npy name
        zf.writestr("x_train.npy", pickle.dumps(np.zeros(3)))
    _refused(_write(tmp_path, buf.getvalue()), "plain numeric arrays")


def test_a_hash_mismatch_is_refused_in_one_line(tmp_path):
    p = tmp_path / "letters.npz"
    shutil.copyfile(LETTERS_FILE, p)
    p.with_suffix(".json").write_text(json.dumps({**META, "sha256": "0" * 64}))
    _refused(p, "sha256", "does not match")
    # A changed byte in the shipped file with the shipped metadata: refused alike.
    blob = bytearray(LETTERS_FILE.read_bytes())
    blob[len(blob) // 2] ^= 1
    _refused(_write(tmp_path, bytes(blob), META["sha256"]), "does not match")


def test_a_missing_file_or_metadata_is_one_line(tmp_path):
    _refused(tmp_path / "letters.npz", "cannot read")
    p = tmp_path / "letters.npz"
    shutil.copyfile(LETTERS_FILE, p)
    _refused(p, "cannot read")  # no letters.json beside it


# --------------------------------------------------------------------------------------------
# The two models


@pytest.mark.parametrize("name", ["letters_vgg", "letters_resnet"])
def test_shipped_model_reaches_its_recorded_test_accuracy(name):
    meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 1e6
    assert hashlib.sha256((WEIGHTS_DIR / f"{name}.pt").read_bytes()).hexdigest() == meta["sha256"]
    model = si.load_model(name, "default")
    assert not model.training
    assert meta["params"] == sum(p.numel() for p in model.parameters())
    x, y = letters("test").tensors
    with torch.no_grad():
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(512), y.split(512)))
    assert meta["test_samples"] == len(y)
    # Within a handful of images: another CPU's arithmetic may flip a near-tie.
    assert abs(hits - round(meta["test_accuracy"] * len(y))) <= 5, (hits, meta["test_accuracy"] * len(y))
    assert 0.80 <= meta["test_accuracy"] <= 0.97  # a task that is not saturated
