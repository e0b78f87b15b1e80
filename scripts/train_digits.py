"""Train the bundled demo model (``digits_cnn``) deterministically and write its weights.

    .venv/bin/python scripts/train_digits.py            # writes splitimpera/zoo/weights/
    .venv/bin/python scripts/train_digits.py --check    # retrain in memory, compare to shipped

Data: scikit-learn's handwritten digits (shipped with scikit-learn), stratified 80/20 split,
upsampled to 32×32 (see ``splitimpera.data.digits``). Single-threaded, seeded, deterministic
algorithms: the same torch build gives the same weights bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import time

import torch
import torch.nn as nn

from splitimpera.data import digits
from splitimpera.model.zoo import WEIGHTS_DIR
from splitimpera.model.zoo.digits import DigitsCNN

SEED = 0
EPOCHS = 30
BATCH = 64
LR = 2e-3


def evaluate(model: nn.Module, ds) -> float:
    model.eval()
    with torch.no_grad():
        x, y = ds.tensors
        return (model(x).argmax(1) == y).float().mean().item()


def train() -> tuple[nn.Module, dict]:
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    train_ds, test_ds = digits("train"), digits("test")
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    seconds = fit(model, train_ds, opt, sched, EPOCHS, torch.Generator().manual_seed(SEED))
    meta = {
        "train_accuracy": evaluate(model, train_ds),
        "test_accuracy": evaluate(model, test_ds),
        "test_samples": len(test_ds),
        "epochs": EPOCHS,
        "seed": SEED,
        "train_seconds": seconds,
        "torch": torch.__version__,
    }
    return model, meta


def fit(model: nn.Module, train_ds, opt, sched, epochs: int, gen: torch.Generator, batch: int = BATCH,
        log: bool = False) -> float:
    """``epochs`` passes of cross-entropy over ``train_ds`` in ``gen``'s order, each batch
    shifted by a random 0–2 px (light augmentation: the images are centred); the seconds taken."""
    x_all, y_all = train_ds.tensors
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(y_all), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            x = x_all[idx]
            dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = nn.functional.cross_entropy(model(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if log:
            print(f"epoch {epoch + 1}/{epochs}: last loss {loss.item():.3f} ({time.perf_counter() - t0:.0f} s)",
                  file=sys.stderr)
    return round(time.perf_counter() - t0, 1)


def state_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="retrain and compare with the shipped weights")
    args = ap.parse_args(argv)
    model, meta = train()
    print(f"held-out accuracy: {meta['test_accuracy']:.4f} on {meta['test_samples']} images "
          f"(train {meta['train_accuracy']:.4f}, {meta['train_seconds']} s)")
    if args.check:
        shipped = torch.load(WEIGHTS_DIR / "digits_cnn.pt", weights_only=True)
        diff = max((shipped[k] - v).abs().max().item() for k, v in model.state_dict().items())
        print(f"max abs difference to shipped weights: {diff:.3g}")
        return 0 if diff < 1e-4 else 1
    blob = state_bytes(model)
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    (WEIGHTS_DIR / "digits_cnn.pt").write_bytes(blob)
    meta["sha256"] = hashlib.sha256(blob).hexdigest()
    (WEIGHTS_DIR / "digits_cnn.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {WEIGHTS_DIR / 'digits_cnn.pt'} ({len(blob) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
