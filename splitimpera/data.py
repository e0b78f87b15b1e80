"""Evaluation data: scikit-learn's handwritten digits (bundled, offline), the bundled
"letters" set, synthetic sets, image folders.

The digits set is real data that scikit-learn ships (1,797 8×8 greyscale images, 10 classes).
It is upsampled to 32×32 so that a small VGG-style CNN has room for three pooling stages.
The train/test split is stratified and fixed (seed 0), so training and evaluation agree.

The letters set (``splitimpera/datasets/letters.npz``, made by ``scripts/make_letters.py``)
is harder: A–J drawn from matplotlib's fonts with random distortions, clutter and noise,
32×32 greyscale, its test split drawn from fonts never seen in training (notMNIST-like).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .errors import UserError, first_line

if TYPE_CHECKING:
    from .config.scenario import Scenario

log = logging.getLogger(__name__)

DIGITS_SIZE = 32
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
# Mean/std of the upsampled training images (pixel values scaled to [0, 1]); fixed so that
# the normalisation never depends on which subset is loaded.
DIGITS_MEAN = 0.3054
DIGITS_STD = 0.3237


def digits(split: str = "test", size: int = DIGITS_SIZE) -> TensorDataset:
    """scikit-learn's digits as a TensorDataset of (image (1, size, size) float32, label int64).

    ``split``: ``"train"`` (80 %), ``"test"`` (20 %, held out from training) or ``"all"``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = bunch.images.astype(np.float32) / 16.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    if split != "all":
        idx = np.arange(len(y))
        tr, te = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
                                  stratify=y)
        if split == "train":
            sel = np.sort(tr)
        elif split == "test":
            sel = np.sort(te)
        else:
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        x, y = x[sel], y[sel]
    t = torch.from_numpy(x)[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    t = (t - DIGITS_MEAN) / DIGITS_STD
    return TensorDataset(t.contiguous(), torch.from_numpy(y))


LETTERS_FILE = Path(__file__).resolve().parent / "datasets" / "letters.npz"
LETTERS_CLASSES = list("ABCDEFGHIJ")
# Mean/std of the letters training images (pixels scaled to [0, 1]), as letters.json records
# them; fixed here so that the normalisation never depends on which split is loaded.
LETTERS_MEAN = 0.2527
LETTERS_STD = 0.3197
_LETTERS_ARRAYS = ("x_train", "y_train", "font_train", "x_test", "y_test", "font_test")


def load_letters_arrays(path: str | Path = LETTERS_FILE) -> dict[str, np.ndarray]:
    """The raw arrays of the letters file at ``path`` (uint8 images, labels, font indices),
    after checking its sha256 against the ``.json`` beside it. Read without pickle: a file
    that does not match its recorded hash, or holds anything but plain numeric arrays, is a
    :class:`UserError` naming the file."""
    import hashlib
    import io
    import json

    path = Path(path)
    meta_path = path.with_suffix(".json")
    try:
        blob = path.read_bytes()
        want = json.loads(meta_path.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read the letters data set: {first_line(e)}", source=str(path)) from None
    got = hashlib.sha256(blob).hexdigest()
    if got != want:
        raise UserError(f"sha256 {got[:12]}… does not match {want[:12]}… recorded in {meta_path.name}: the file "
                        f"was changed or damaged (scripts/make_letters.py writes it)", source=str(path))
    out = {}
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            for k in npz.files:
                v = npz[k]
                if not isinstance(v, np.ndarray) or v.dtype.kind not in "biuf":
                    raise ValueError(f"member {k!r} is not a plain numeric array")
                out[k] = v
    except Exception as e:  # noqa: BLE001 - numpy/zipfile report a bad member in many ways
        raise UserError(f"not a letters data set of plain numeric arrays ({first_line(e)}); refusing to read it",
                        source=str(path)) from None
    missing = [k for k in _LETTERS_ARRAYS if k not in out]
    if missing:
        raise UserError(f"not a letters data set: no {', '.join(missing)}", source=str(path))
    return out


def letters(split: str = "test", size: int = DIGITS_SIZE, path: str | Path = LETTERS_FILE) -> TensorDataset:
    """The bundled letters set as a TensorDataset of (image (1, size, size) float32, label
    int64), with ``classes`` (A–J) set on it.

    ``split``: ``"train"`` (16 fonts), ``"test"`` (6 other fonts, never seen in training) or
    ``"all"`` (train then test).
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    arr = load_letters_arrays(path)
    parts = ["train", "test"] if split == "all" else [split]
    x = np.concatenate([arr[f"x_{p}"] for p in parts]).astype(np.float32) / 255.0
    y = np.concatenate([arr[f"y_{p}"] for p in parts]).astype(np.int64)
    t = torch.from_numpy(x)[:, None]
    if size != t.shape[-1]:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    t = (t - LETTERS_MEAN) / LETTERS_STD
    ds = TensorDataset(t.contiguous(), torch.from_numpy(y))
    ds.classes = list(LETTERS_CLASSES)  # what class_names() reads, as from an ImageFolder
    return ds


def synthetic(n: int, shape: tuple[int, ...], num_classes: int, seed: int = 0) -> TensorDataset:
    """``n`` standard-normal images of ``shape`` (C, H, W) with uniform random labels, seeded."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g)
    y = torch.randint(0, num_classes, (n,), generator=g)
    return TensorDataset(x, y)


def batches(dataset, batch_size: int):
    """An in-order DataLoader over ``dataset`` with its own generator: a DataLoader draws a
    base seed per iteration, from the global torch RNG otherwise."""
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=batch_size, shuffle=False, generator=torch.Generator())


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_dataset(spec, input_shape: tuple[int, ...], num_classes: int | None = None, seed: int = 0, *,
                 source: str | None = None, field: str = "data.path"):
    """The scenario's ``data`` section → a Dataset of (image, label), or None for ``source: none``.

    ``imagefolder`` reads torchvision's ``ImageFolder`` layout (``root/<class>/<image>``),
    resized and centre-cropped to ``input_shape`` and normalised with ImageNet statistics.
    An image file that cannot be decoded raises a :class:`UserError` naming the file
    (``source``: the scenario file, ``field``: the key of the folder), when it is read; with
    ``spec.skip_unreadable`` every file the data set will use is decoded once up front and
    the unreadable ones are left out, with one warning saying how many.
    """
    from torch.utils.data import Subset

    if spec.source == "none":
        return None
    if spec.source == "digits":
        ds = digits(spec.split, size=input_shape[-1])
    elif spec.source == "letters":
        ds = letters(spec.split, size=input_shape[-1])
    elif spec.source == "synthetic":
        ds = synthetic(spec.limit or 256, input_shape, num_classes or 10, seed=seed)
    else:
        from torchvision import datasets, transforms

        h, w = input_shape[-2], input_shape[-1]
        tf = transforms.Compose([
            transforms.Resize(int(round(max(h, w) * 256 / 224))),
            transforms.CenterCrop((h, w)),
            transforms.Grayscale(1) if input_shape[0] == 1 else transforms.Lambda(lambda im: im.convert("RGB")),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN[: input_shape[0]], IMAGENET_STD[: input_shape[0]]),
        ])
        ds = datasets.ImageFolder(spec.path, transform=tf, loader=ImageLoader(source, field))
        if getattr(spec, "skip_unreadable", False):
            return _skip_unreadable(ds, spec.limit, seed, source, field)
    if spec.limit is not None and spec.limit < len(ds):
        keep = np.sort(_subset_order(len(ds), seed)[: spec.limit])
        ds = Subset(ds, keep.tolist())
    return ds


def _subset_order(n: int, seed: int) -> np.ndarray:
    """The order ``data.limit`` takes samples in: a seeded permutation, since ImageFolder lists
    samples class by class and the first N would cover only the first classes."""
    return np.random.default_rng(seed).permutation(n)


# --------------------------------------------------------------------------------------------
# Image files that cannot be read


def read_image(path: str):
    """Decode the image file at ``path`` completely, as an RGB PIL image (what torchvision's
    default ImageFolder loader returns). Raises whatever PIL raises for a bad file."""
    from PIL import Image

    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")  # convert() decodes the whole file


def unreadable_reason(path: str, e: BaseException) -> str:
    """Why ``path`` could not be decoded, in words (PIL's own message names a file object)."""
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "the file is empty"
    except OSError:
        pass
    if isinstance(e, UnidentifiedImageError):
        return "not an image file PIL can read"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return first_line(e)


def _skip_key(field: str) -> str:
    """``data.path`` → ``data.skip_unreadable`` (and so for ``bottleneck.calibration``)."""
    return field.rsplit(".", 1)[0] + ".skip_unreadable" if field.endswith(".path") else f"{field}.skip_unreadable"


class ImageLoader:
    """The ImageFolder loader: :func:`read_image`, with a file that cannot be read reported
    as a :class:`UserError` naming the file, the scenario (``source``) and its key (``field``)."""

    def __init__(self, source: str | None = None, field: str = "data.path"):
        self.source, self.field = source, field

    def __call__(self, path: str):
        try:
            return read_image(path)
        # Decoding a malformed file raises whatever the format's plugin trips on (OSError,
        # SyntaxError, ValueError, EOFError, struct.error, DecompressionBombError…); all of it
        # is about this one file, which is what the user needs to hear.
        except Exception as e:  # noqa: BLE001
            what = "calibration data" if self.field.startswith("bottleneck.calibration") else "data"
            raise UserError(f"cannot read the {what}: image {path}: {unreadable_reason(path, e)} (set "
                            f"{_skip_key(self.field)}: true to skip unreadable images)", source=self.source,
                            field=self.field) from None


def _check_image(path: str) -> str | None:
    """None when ``path`` decodes, else why it does not."""
    try:
        read_image(path)
    except Exception as e:  # noqa: BLE001 - as in ImageLoader
        return unreadable_reason(path, e)
    return None


def _skip_unreadable(ds, limit: int | None, seed: int, source: str | None, field: str):
    """``ds`` (an ImageFolder) without the files that cannot be decoded, and cut to ``limit``
    samples: the first ``limit`` readable ones in the order :func:`_subset_order` takes them
    (so with no bad file the selection is the one without ``skip_unreadable``). Only the
    files the data set may use are decoded, in threads (PIL decodes without the GIL)."""
    n = len(ds.samples)
    order = _subset_order(n, seed) if limit is not None and limit < n else np.arange(n)
    want = n if limit is None else min(limit, n)
    keep: list[int] = []
    bad: list[tuple[str, str]] = []
    pos = 0
    log.info("decoding the image files of %s to leave out unreadable ones", ds.root)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        while len(keep) < want and pos < n:
            chunk = order[pos: pos + max(want - len(keep), 64)].tolist()
            pos += len(chunk)
            for i, why in zip(chunk, pool.map(_check_image, [ds.samples[i][0] for i in chunk])):
                if len(keep) == want:
                    break
                if why is None:
                    keep.append(i)
                else:
                    bad.append((ds.samples[i][0], why))
    where = ": ".join(p for p in (source, field) if p)
    if not keep:
        first = f"; first: {bad[0][0]}: {bad[0][1]}" if bad else ""
        raise UserError(f"no readable image in {ds.root} ({len(bad)} unreadable{first})", source=source, field=field)
    if bad:
        log.warning("%s: skipped %d unreadable image file%s, using %d (%s: true); first: %s: %s", where, len(bad),
                    "" if len(bad) == 1 else "s", len(keep), _skip_key(field), bad[0][0], bad[0][1])
    keep.sort()
    ds.samples = [ds.samples[i] for i in keep]
    ds.imgs = ds.samples
    ds.targets = [t for _, t in ds.samples]
    ds.skipped = bad  # (path, reason) of each file left out
    return ds


# --------------------------------------------------------------------------------------------
# The scenario's data, checked


def load_data(scenario: Scenario, shape: tuple[int, ...], num_outputs: int | None = None):
    """The scenario's data set, checked against the model's input shape and, when
    ``num_outputs`` (the model's output width) is given, its labels (None for ``none``).

    Runs before anything is profiled or cached, so that bad data leaves nothing behind.
    """
    spec, src = scenario.data, scenario.source
    where = "data.path" if spec.path else "data"
    try:
        ds = load_dataset(spec, shape, num_outputs or scenario.model.num_classes, seed=scenario.seed, source=src,
                          field=where)
        if ds is None:
            return None
        if len(ds) == 0:
            raise UserError("the data set is empty", source=src, field="data")
        got = tuple(ds[0][0].shape)
    except UserError:
        raise
    except Exception as e:  # torchvision/PIL report unreadable folders and images in many ways
        raise UserError(f"cannot read the data: {first_line(e)}", source=src, field=where) from None
    check_samples("the data", got, shape, label_count(ds), num_outputs, src, "data.source", "model.num_classes")
    return ds


def check_samples(what: str, got: tuple, shape: tuple, n_labels: int | None, width: int | None, src: str,
                   shape_field: str, label_field: str) -> None:
    """Samples must have the model's input shape and labels within its outputs."""
    if got != tuple(shape):
        raise UserError(f"samples of shape {'x'.join(map(str, got))} do not fit model.input_shape "
                        f"{'x'.join(map(str, shape))}", source=src, field=shape_field)
    if width is not None and n_labels is not None and n_labels > width:
        raise UserError(f"{what} has {n_labels} classes but the model outputs {width}", source=src,
                        field=label_field)


def class_names(ds) -> list[str] | None:
    """The class names of an ImageFolder (its folder names, in label order), through a Subset;
    the letters set's A–J; None for data without named classes (digits, synthetic)."""
    while ds is not None and not hasattr(ds, "classes") and hasattr(ds, "dataset"):
        ds = ds.dataset
    names = getattr(ds, "classes", None)
    return [str(n) for n in names] if names else None


def label_count(ds) -> int | None:
    """Number of classes a data set's labels span (max label + 1), without loading images."""
    from torch.utils.data import Subset, TensorDataset

    idx = None
    if isinstance(ds, Subset):
        idx, ds = list(ds.indices), ds.dataset
    if isinstance(ds, TensorDataset):
        y = ds.tensors[1] if idx is None else ds.tensors[1][idx]
        return int(y.max()) + 1 if len(y) else None
    targets = getattr(ds, "targets", None)  # torchvision ImageFolder
    if targets is not None:
        t = targets if idx is None else [targets[i] for i in idx]
        return max(t) + 1 if len(t) else None
    return None
