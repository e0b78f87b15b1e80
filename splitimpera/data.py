"""Evaluation data: scikit-learn's handwritten digits (bundled, offline), synthetic sets.

The digits set is real data that scikit-learn ships (1,797 8×8 greyscale images, 10 classes).
It is upsampled to 32×32 so that a small VGG-style CNN has room for three pooling stages.
The train/test split is stratified and fixed (seed 0), so training and evaluation agree.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

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
