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
