"""Two small CNNs for the bundled letters set (A–J in held-out fonts, 32×32 greyscale).

``letters_vgg`` stacks conv-bn-relu pairs and max-pools (``features`` then ``classifier``,
as torchvision's VGG); ``letters_resnet`` is a stem and three basic residual blocks, the
last two downsampling (as torchvision's ResNet: ``conv1``/``bn1``, ``layer1``…, ``fc``).
Both are sized to train on two CPU cores in a few minutes (``scripts/train_letters.py``).
"""

from __future__ import annotations

import torch.nn as nn


class LettersVGG(nn.Module):
    """Input (B, 1, 32, 32) normalised letters; output (B, num_classes) logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(1, 16), *block(16, 16), nn.MaxPool2d(2),    # 16×16
            *block(16, 32), *block(32, 32), nn.MaxPool2d(2),   # 8×8
            *block(32, 64), *block(64, 64), nn.MaxPool2d(2),   # 4×4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64), nn.ReLU(inplace=True), nn.Dropout(0.3),
            nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3×3 conv-bn, a 1×1 conv-bn shortcut when the
    shape changes, ReLU after the sum."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class LettersResNet(nn.Module):
    """Input (B, 1, 32, 32) normalised letters; output (B, num_classes) logits."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)           # 16×16
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, 2)      # 8×8
        self.layer3 = BasicBlock(32, 64, 2)      # 4×4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def register() -> None:
    from . import ZooEntry, register_zoo_model

    for name, builder, what in (("letters_vgg", LettersVGG, "VGG-style CNN (conv-bn-relu, max-pools)"),
                                 ("letters_resnet", LettersResNet, "ResNet-style CNN (stem, 3 basic blocks)")):
        register_zoo_model(ZooEntry(
            name=name,
            builder=builder,
            input_shape=(1, 32, 32),
            num_classes=10,
            weights_file=f"{name}.pt",
            description=f"{what}, bundled letters A-J in held-out fonts, 32x32 (offline)",
        ))
