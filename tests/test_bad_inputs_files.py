"""Bad files around a run: unreadable images in an ImageFolder, and output folders that cannot
be written. Each is exit code 2 with one ``error: …`` line naming the file, no traceback,
nothing written (the output folder and the cache stay empty); ``data.skip_unreadable: true``
leaves unreadable images out instead and says how many.
"""

from __future__ import annotations

import io
import json
import logging
import sys
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from splitimpera.cli import main

REPO = Path(__file__).resolve().parent.parent
DEMO = yaml.safe_load((REPO / "scenarios" / "demo.yaml").read_text())
PER_CLASS = 4


def _png_bytes(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (32, 32), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _bad_bytes(kind: str) -> tuple[str, bytes]:
    """(file name, content) of an unreadable image of ``kind``."""
    if kind == "truncated":
        return "bad.png", _png_bytes(99)[:200]  # a valid header, then the data stops
    if kind == "empty":
        return "bad.png", b""
    if kind == "text":
        return "bad.jpg", b"these are not the pixels you are looking for\n"
    raise ValueError(kind)


def _image_folder(root: Path, bad: list[str] = ()) -> list[Path]:
    """``root/images/{a,b}/<i>.png`` (PER_CLASS readable PNGs per class) plus one unreadable file
    per entry of ``bad``, in class ``b`` so that the first sample read is a good one. Returns the
    bad files."""
    for c, cls in enumerate("ab"):
        d = root / "images" / cls
        d.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            (d / f"{i}.png").write_bytes(_png_bytes(10 * c + i))
    out = []
    for j, kind in enumerate(bad):
        name, blob = _bad_bytes(kind)
        path = root / "images" / "b" / f"{j}_{name}"
        path.write_bytes(blob)
        out.append(path)
    return out


def _scenario(root: Path, **data) -> Path:
    d = yaml.safe_load(yaml.safe_dump(DEMO))
    d["data"] = {"source": "imagefolder", "path": "images", "batch_size": 4, **data}
    d["qos"].pop("min_accuracy")
    d["bottleneck"] = {"name": ["none", "int8"]}  # something is measured on the data, quickly
    path = root / "s.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    """``cli.main`` in-process; an escaping exception counts as exit 1 with its traceback on stderr."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    except BaseException:  # noqa: BLE001 - what the user would see
        rc = 1
        print(traceback.format_exc(), file=sys.stderr)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


def assert_one_line_error(rc, out: str, err: str, *needles: str, empty: tuple[Path, ...] = ()) -> str:
    report = f"rc={rc}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    assert "Traceback" not in out + err, report
    assert rc == 2, report
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), report
    for n in needles:
        assert n in lines[0], f"expected {n!r}\n{report}"
    assert "BufferedReader" not in lines[0], report
    for folder in empty:
        assert _entries(folder) == [], f"{folder} gained {_entries(folder)}\n{report}"
    return lines[0]


# ---------------------------------------------------------------------------------------------
# Unreadable images


@pytest.mark.parametrize("kind", ["truncated", "empty", "text"])
@pytest.mark.parametrize("command", ["analyze", "simulate"])
def test_unreadable_image_is_one_line_naming_the_file(command, kind, dirs, capsys):
    scen, out, cache, _ = dirs
    [bad] = _image_folder(scen, [kind])
    path = _scenario(scen)
    argv = [command, str(path), "-o", str(out)] + (["-q"] if command == "analyze" else [])
    rc, stdout, stderr = run_main(argv, capsys)
    line = assert_one_line_error(rc, stdout, stderr, f"error: {path}: data.path: ", str(bad),
                                 "data.skip_unreadable", empty=(out, cache))
    why = {"truncated": "truncated", "empty": "empty", "text": "not an image"}[kind]
    assert why in line


def test_unreadable_calibration_image_names_its_field(dirs, capsys):
    scen, out, cache, _ = dirs
    (scen / "calib").mkdir()
    [bad] = _image_folder(scen / "calib", ["truncated"])
    d = yaml.safe_load(_scenario(scen).read_text())
    d["data"] = {"source": "digits", "limit": 16}
    d["bottleneck"] = {"name": ["none", "autoencoder"], "autoencoder": {"epochs": 1},
                       "calibration": {"source": "imagefolder", "path": "calib/images"}}
    path = scen / "s.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    rc, stdout, stderr = run_main(["simulate", str(path), "-o", str(out)], capsys)
    # (The model's FLOP profile may be cached by then: it does not depend on the data.)
    assert_one_line_error(rc, stdout, stderr, "bottleneck.calibration.path: cannot read the calibration data: ", str(bad),
                          "bottleneck.calibration.skip_unreadable", empty=(out,))


def test_skip_unreadable_leaves_them_out_and_says_how_many(dirs, capsys, caplog):
    scen, out, cache, _ = dirs
    bad = _image_folder(scen, ["truncated", "empty", "text"])
    path = _scenario(scen, skip_unreadable=True)
    with caplog.at_level(logging.WARNING, logger="splitimpera"):
        rc, stdout, stderr = run_main(["analyze", str(path), "-q", "--no-accuracy", "-o", str(out)], capsys)
    assert rc == 0, stderr
    assert "Traceback" not in stdout + stderr
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    skipped = [w for w in warnings if "skipped" in w]
    assert len(skipped) == 1, warnings
    assert "skipped 3 unreadable image files" in skipped[0] and f"using {2 * PER_CLASS}" in skipped[0]
    assert str(bad[0]) in skipped[0]  # the first one, by name
    # Every readable image, and only those, was analysed.
    per_image = pd.read_parquet(out / "demo" / "cui_per_image.parquet")
    assert len(per_image) == 2 * PER_CLASS
    assert sorted(per_image["label"].value_counts().tolist()) == [PER_CLASS, PER_CLASS]


def test_skip_unreadable_simulate_warns_once(dirs, capsys, caplog):
    scen, out, cache, _ = dirs
    _image_folder(scen, ["truncated"])
    path = _scenario(scen, skip_unreadable=True)
    with caplog.at_level(logging.WARNING, logger="splitimpera"):
        rc, stdout, stderr = run_main(["simulate", str(path), "-o", str(out)], capsys)
    assert rc == 0, stderr
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "skipped 1 unreadable image file," in skipped[0], skipped
    summary = json.loads((out / "demo" / "result.json").read_text())["summary"]
    assert summary["bottleneck"]["evaluation_samples"] == 2 * PER_CLASS  # int8 measured on every readable image


def test_skip_unreadable_with_limit_takes_readable_images_in_the_same_order(tmp_path):
    """With nothing to skip the selection is the one without the option; with bad files the
    limit is still met, from readable files only."""
    from splitimpera.config.scenario import DataSpec
    from splitimpera.data import load_dataset

    _image_folder(tmp_path)
    plain = load_dataset(DataSpec(source="imagefolder", path=str(tmp_path / "images"), limit=5), (1, 32, 32))
    skip = load_dataset(DataSpec(source="imagefolder", path=str(tmp_path / "images"), limit=5,
                                 skip_unreadable=True), (1, 32, 32))
    picked = [plain.dataset.samples[i][0] for i in plain.indices]
    assert [p for p, _ in skip.samples] == picked and skip.skipped == []
    bad = _image_folder(tmp_path, ["truncated", "empty", "text"])
    skip = load_dataset(DataSpec(source="imagefolder", path=str(tmp_path / "images"), limit=6,
                                 skip_unreadable=True), (1, 32, 32))
    assert len(skip) == 6 and not {p for p, _ in skip.samples} & {str(b) for b in bad}
    assert len(skip.targets) == 6 and all(t in (0, 1) for t in skip.targets)
    assert tuple(skip[0][0].shape) == (1, 32, 32)


def test_skip_unreadable_with_no_readable_image_is_a_user_error(dirs, capsys):
    scen, out, cache, _ = dirs
    (scen / "images" / "a").mkdir(parents=True)
    (scen / "images" / "a" / "x.png").write_bytes(b"")
    path = _scenario(scen, skip_unreadable=True)
    rc, stdout, stderr = run_main(["simulate", str(path), "-o", str(out)], capsys)
    assert_one_line_error(rc, stdout, stderr, "data.path: ", "no readable image", "x.png", empty=(out, cache))


# ---------------------------------------------------------------------------------------------
# Output folders that cannot be written: refused before any work


@pytest.fixture
def no_work(monkeypatch):
    """The pipeline and the model loader fail loudly if reached: the check must come first."""
    import splitimpera.model.loading as loading
    import splitimpera.pipeline as pipeline

    def boom(*a, **k):
        raise AssertionError("the work started before the output folder was checked")

    monkeypatch.setattr(pipeline, "run", boom)
    monkeypatch.setattr(loading, "load_traced", boom)


def _unwritable_outputs(tmp_path: Path) -> list[tuple[str, str]]:
    """(-o value, text its error line must hold)."""
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    cases = [(str(afile), "is a file, not a folder"),
             (str(afile / "out"), f"{afile} is a file")]
    for p in ("/sys/kernel", "/proc/splitimpera-out"):
        parent = Path(p) if Path(p).exists() else Path(p).parent
        try:  # only where this machine refuses it (it does in Linux containers, even for root)
            (parent / ".splitimpera-probe").open("x").close()
            (parent / ".splitimpera-probe").unlink()
        except OSError:
            cases.append((p, "cannot "))
    return cases


@pytest.mark.parametrize("command", ["simulate", "analyze"])
def test_unwritable_output_folder_is_refused_before_the_work(command, tmp_path, dirs, capsys, no_work):
    scen, out, cache, _ = dirs
    for target, needle in _unwritable_outputs(tmp_path):
        before = _entries(tmp_path)
        rc, stdout, stderr = run_main([command, "demo", "-o", target], capsys)
        assert_one_line_error(rc, stdout, stderr, f"error: {target}: -o: ", needle, empty=(cache,))
        assert stdout == ""
        assert _entries(tmp_path) == before  # nothing created, no probe left


def test_result_subfolder_that_is_a_file_is_refused(tmp_path, dirs, capsys, no_work):
    scen, out, cache, _ = dirs
    (out / "demo").write_text("in the way\n")
    rc, stdout, stderr = run_main(["simulate", "demo", "-o", str(out)], capsys)
    assert_one_line_error(rc, stdout, stderr, f"error: {out / 'demo'}: -o: ", "is a file")


def test_writable_output_folder_leaves_no_probe(dirs, capsys):
    scen, out, cache, _ = dirs
    rc, stdout, stderr = run_main(["simulate", "demo", "-o", str(out / "new" / "deeper")], capsys)
    assert rc == 0, stderr
    assert sorted(p.name for p in (out / "new" / "deeper" / "demo").iterdir()) == [
        "requests.parquet", "result.json", "scenario.yaml", "splits.csv", "splits.parquet"]
    assert [p.name for p in _entries(out) if p.name.startswith(".")] == []


def test_report_and_calibrate_check_their_output_file_first(tmp_path, dirs, capsys, monkeypatch):
    import splitimpera.calibrate as calibrate
    import splitimpera.report.html as html

    def boom(*a, **k):
        raise AssertionError("the work started before the output file was checked")

    monkeypatch.setattr(html, "write_report", boom)
    monkeypatch.setattr(calibrate, "calibrate", boom)
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    for argv, needles in [
        (["report", str(folder), "-o", str(afile / "r.html")], (f"error: {afile / 'r.html'}: -o: ", "is a file")),
        (["report", str(folder), "-o", str(folder)], (f"error: {folder}: -o: ", "is a folder, not a file")),
        (["report", str(folder), "-o", str(folder / "r.html"), "--png"], ()),  # the positive control below
        (["calibrate", "-o", str(afile / "x.yaml")], (f"error: {afile / 'x.yaml'}: -o: ", "is a file")),
    ]:
        if not needles:
            (folder / "r_figures").write_text("in the way\n")
            needles = (f"error: {folder / 'r_figures'}: --png: ", "is a file, not a folder")
        rc, stdout, stderr = run_main(argv, capsys)
        assert_one_line_error(rc, stdout, stderr, *needles)


def test_write_failure_after_the_check_is_still_one_line(dirs, capsys, monkeypatch):
    """A folder that fails during the writing (disk full, remounted read-only)."""
    import errno
    import os

    scen, out, cache, _ = dirs

    def full(self, path, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    rc, stdout, stderr = run_main(["simulate", "demo", "-o", str(out)], capsys)
    report = f"rc={rc}\n{stderr}"
    assert rc == 2 and "Traceback" not in stderr, report
    assert stderr.strip().splitlines() == [f"error: {out / 'demo'}: cannot write the results: No space left on device"]
    assert _entries(out) == []  # nothing half-written, no temporary folder left


# ---------------------------------------------------------------------------------------------
# As the user runs it: a real process, its exit code and its stderr


def test_subprocess_exit_code_and_stderr(tmp_path):
    import os
    import subprocess

    [bad] = _image_folder(tmp_path, ["truncated"])
    path = _scenario(tmp_path)
    env = dict(os.environ, SPLITIMPERA_CACHE=str(tmp_path / "cache"), PYTHONWARNINGS="ignore",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    env.pop("SPLITIMPERA_PROFILES", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "splitimpera.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)

    p = run("analyze", str(path), "-q", "--no-accuracy", "-o", str(tmp_path / "out"))
    assert_one_line_error(p.returncode, p.stdout, p.stderr, f"error: {path}: data.path: cannot read the data: image {bad}: ",
                          "truncated")
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()
    p = run("analyze", str(path), "-q", "--no-accuracy", "--set", "data.skip_unreadable=true")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "skipped 1 unreadable image file" in lines[0] and str(bad) in lines[0], p.stderr
