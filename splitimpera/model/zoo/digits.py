"""A small VGG-style CNN for scikit-learn's digits upsampled to 32×32 (the offline demo model).

Layout mirrors torchvision's VGG (``features`` then ``classifier``), so its split names look
like VGG's (``features_3``, ``classifier_1`` …). Trained by ``scripts/train_digits.py``.
"""

from __future__ import annotations

import torch.nn as nn


class DigitsCNN(nn.Module):
    """Input (B, 1, 32, 32) normalised digits; output (B, num_classes) logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 16), *block(16, 16), nn.MaxPool2d(2),    # 16×16
            *block(16, 32), *block(32, 32), nn.MaxPool2d(2),   # 8×8
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),   # 4×4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128), nn.ReLU(inplace=True), nn.Dropout(0.3),
            nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def register() -> None:
    from . import ZooEntry, register_zoo_model

    register_zoo_model(ZooEntry(
        name="digits_cnn",
        builder=DigitsCNN,
        input_shape=(1, 32, 32),
        num_classes=10,
        weights_file="digits_cnn.pt",
        description="VGG-style CNN, scikit-learn digits upsampled to 32x32 (bundled, offline)",
    ))
