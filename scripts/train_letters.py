"""Train the bundled letters models (``letters_vgg``, ``letters_resnet``) deterministically.

    .venv/bin/python scripts/train_letters.py --arch vgg            # writes splitimpera/model/zoo/weights/
    .venv/bin/python scripts/train_letters.py --arch resnet --check # retrain in memory, compare to shipped

Data: the bundled letters set (``splitimpera.data.letters``; ``scripts/make_letters.py``):
trained on the 16 training fonts, scored on the 6 held-out fonts. The training loop is
``train_digits.fit`` (a random shift of up to 2 px per batch as augmentation). Single-threaded,
seeded, deterministic algorithms: the same torch build gives the same weights bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import torch
import torch.nn as nn

from splitimpera.data import letters
from splitimpera.model.zoo import WEIGHTS_DIR
from splitimpera.model.zoo.letters import LettersResNet, LettersVGG
from train_digits import fit, state_bytes  # scripts/ is on the path of a script run from it

SEED = 0
BATCH = 64
LR = 2e-3
WEIGHT_DECAY = 1e-4
# Epochs sized so that each model trains in a few minutes on one thread.
ARCHS = {"vgg": (LettersVGG, 10), "resnet": (LettersResNet, 14)}


def evaluate(model: nn.Module, ds) -> float:
    model.eval()
    with torch.no_grad():
        x, y = ds.tensors
        hits = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(512), y.split(512)))
        return hits / len(y)


def train(arch: str) -> tuple[nn.Module, dict]:
    cls, epochs = ARCHS[arch]
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    train_ds, test_ds = letters("train"), letters("test")
    model = cls()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    seconds = fit(model, train_ds, opt, sched, epochs, torch.Generator().manual_seed(SEED), BATCH, log=True)
    meta = {
        "train_accuracy": evaluate(model, train_ds),
        "test_accuracy": evaluate(model, test_ds),
        "test_samples": len(test_ds),
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": epochs,
        "seed": SEED,
        "train_seconds": seconds,
        "torch": torch.__version__,
    }
    return model, meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=sorted(ARCHS), required=True)
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped weights")
    args = ap.parse_args(argv)
    name = f"letters_{args.arch}"
    model, meta = train(args.arch)
    print(f"{name}: held-out-font accuracy {meta['test_accuracy']:.4f} on {meta['test_samples']} images "
          f"(train {meta['train_accuracy']:.4f}, {meta['params']} parameters, {meta['train_seconds']} s)")
    if args.check:
        shipped = torch.load(WEIGHTS_DIR / f"{name}.pt", weights_only=True)
        diff = max((shipped[k].double() - v.double()).abs().max().item() for k, v in model.state_dict().items())
        print(f"max abs difference to shipped weights: {diff:.3g}")
        return 0 if diff < 1e-4 else 1
    blob = state_bytes(model)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    (WEIGHTS_DIR / f"{name}.pt").write_bytes(blob)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (WEIGHTS_DIR / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {WEIGHTS_DIR / f'{name}.pt'} ({len(blob) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
