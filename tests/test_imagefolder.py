"""The ImageFolder path end to end: real image files on disk, the layout of Tiny-ImageNet,
notMNIST and Chest X-Ray."""

import json

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from splitimpera.cli import main
from splitimpera.data import digits


def _write_folder(root, per_class=6):
    """Greyscale PNGs of held-out digits, classes in folders named so that the sorted order
    differs from the digit value (ImageFolder assigns labels by sorted folder name)."""
    x, y = digits("test", size=32).tensors
    names = {3: "a_three", 5: "b_five", 8: "c_eight"}
    counts = {}
    for img, lab in zip(x, y.tolist()):
        if lab not in names or counts.get(lab, 0) >= per_class:
            continue
        counts[lab] = counts.get(lab, 0) + 1
        arr = img[0].numpy()
        arr = (255 * (arr - arr.min()) / (arr.max() - arr.min() + 1e-9)).astype(np.uint8)
        d = root / names[lab]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr, mode="L").save(d / f"{counts[lab]}.png")
    return {v: i for i, v in enumerate(sorted(names.values()))}, counts


def test_analyze_on_an_image_folder(repo_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    labels, counts = _write_folder(tmp_path / "images")
    data = yaml.safe_load((repo_root / "scenarios/demo.yaml").read_text())
    data["data"] = {"source": "imagefolder", "path": "images", "batch_size": 4}
    data["qos"].pop("min_accuracy")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(data))
    assert main(["analyze", str(tmp_path / "s.yaml"), "-q", "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    # Every line fits 80 columns (the accuracy matrix of 16+ bottlenecks comes in blocks) and the
    # classes are named by their folders.
    assert max(len(line) for line in out.splitlines()) <= 80
    best = out.split("Best split per class:")[1]
    assert all(name in best for name in labels)
    per_image = pd.read_parquet(tmp_path / "out/demo/cui_per_image.parquet")
    assert len(per_image) == sum(counts.values()) == 18
    # Learning bottlenecks fit on a seeded half; all of them are scored on the other half.
    acc = json.loads((tmp_path / "out/demo/accuracy_summary.json").read_text())
    assert acc["calibration"].startswith("a seeded half") and acc["calibration_samples"] == 9
    assert acc["evaluation_samples"] == 9
    # One label per class folder, in sorted folder order, each with its images.
    assert sorted(per_image["label"].unique()) == sorted(labels.values())
    assert all((per_image["label"] == i).sum() == 6 for i in labels.values())
    noms = json.loads((tmp_path / "out/demo/nominations.json").read_text())
    assert {r["class"] for r in noms["best_per_class"]} == set(labels.values())
    assert {r["name"]: r["class"] for r in noms["best_per_class"]} == labels
    assert np.isfinite(per_image.drop(columns=["label", "target", "predicted"]).to_numpy()).all()


def test_imagefolder_class_names():
    from splitimpera.accuracy.cui import class_name
    from splitimpera.data import class_names

    class Folder:
        classes = ["a_three", "b_five"]

    class Sub:
        dataset = Folder()

    assert class_names(Sub()) == ["a_three", "b_five"] and class_names(object()) is None
    assert class_name(1, ["a_three", "b_five"]) == "b_five" and class_name(7, None) == "7"
