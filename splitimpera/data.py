"""Evaluation data: scikit-learn's handwritten digits (bundled, offline), synthetic sets.

The digits set is real data that scikit-learn ships (1,797 8×8 greyscale images, 10 classes).
It is upsampled to 32×32 so that a small VGG-style CNN has room for three pooling stages.
The train/test split is stratified and fixed (seed 0), so training and evaluation agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .errors import UserError, first_line

if TYPE_CHECKING:
    from .config.scenario import Scenario

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


def load_dataset(spec, input_shape: tuple[int, ...], num_classes: int | None = None, seed: int = 0):
    """The scenario's ``data`` section → a Dataset of (image, label), or None for ``source: none``.

    ``imagefolder`` reads torchvision's ``ImageFolder`` layout (``root/<class>/<image>``),
    resized and centre-cropped to ``input_shape`` and normalised with ImageNet statistics.
    """
    from torch.utils.data import Subset

    if spec.source == "none":
        return None
    if spec.source == "digits":
        ds = digits(spec.split, size=input_shape[-1])
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
        ds = datasets.ImageFolder(spec.path, transform=tf)
    if spec.limit is not None and spec.limit < len(ds):
        # A seeded random subset: ImageFolder lists samples class by class, so the first N
        # would cover only the first classes.
        keep = np.sort(np.random.default_rng(seed).permutation(len(ds))[: spec.limit])
        ds = Subset(ds, keep.tolist())
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
        ds = load_dataset(spec, shape, num_outputs or scenario.model.num_classes, seed=scenario.seed)
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
