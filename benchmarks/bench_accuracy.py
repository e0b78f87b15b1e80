"""Accuracy at every split: one shared forward pass per batch vs re-running each head.

`measure_accuracy` runs each evaluation batch through the model once and hands every
split's activation to that split's tails as the pass reaches it. The baseline does what a
per-split script does: for each split, run the head on the batch, then each bottleneck's
tail. Both produce the same predictions (checked here) and measure the bytes under every
coder; times are medians of side-by-side runs in this process. Also times the I-SPLIT autoencoder's training on the demo model.

    .venv/bin/python benchmarks/bench_accuracy.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import torch  # noqa: E402
import torchvision  # noqa: E402
from _timing import median_time  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from splitimpera.accuracy.evaluate import measure_accuracy  # noqa: E402
from splitimpera.accuracy.bottlenecks import CODERS, get_bottleneck  # noqa: E402
from splitimpera.data import digits  # noqa: E402
from splitimpera.model.loading import load_model  # noqa: E402
from splitimpera.model.splits import OUTPUT, head_tail, trace  # noqa: E402


def per_split(tm, data, names, batch_size):
    """Baseline: per split, the head on every batch, then each bottleneck's tail."""
    bns = [get_bottleneck(n) for n in names]
    correct = {}
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size)
    with torch.no_grad():
        for sp in tm.candidates:
            if sp.name == OUTPUT:
                continue
            head, tail = head_tail(tm, sp)
            for x, y in loader:
                z = head(x)
                for b in bns:
                    if b.applicable(sp.shape, sp.name):
                        continue
                    zh, payload = b.roundtrip(z)
                    zh = zh.clone() if zh is z else zh
                    for coder in CODERS:  # the same bytes work as measure_accuracy
                        payload.sizes(coder)
                    k = (sp.name, b.name)
                    correct[k] = correct.get(k, 0) + int((tail(zh).argmax(1) == y).sum())
    return correct


def compare(label, tm, data, names, batch_size, repeats):
    def shared():
        return measure_accuracy(tm, data, names, use_cache=False, batch_size=batch_size)

    res = shared()
    base = per_split(tm, data, names, batch_size)
    n = res.samples
    for (s, b), c in base.items():
        got = res.for_bottleneck(b).at[s, "accuracy"]
        assert abs(got - c / n) < 1e-12, (s, b, got, c / n)
    t_shared = median_time(shared, repeats)
    t_base = median_time(lambda: per_split(tm, data, names, batch_size), repeats)
    splits = len(tm.candidates) - 1
    print(f"{label}: {splits} splits × {len(names)} bottleneck(s), {n} samples")
    print(f"  shared pass (measure_accuracy)  {t_shared:8.2f} s")
    print(f"  head re-run per split           {t_base:8.2f} s")
    print(f"  speed-up                        {t_base / t_shared:8.2f}×   (same predictions: checked)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)

    demo = trace(load_model("digits_cnn", "default"), (1, 32, 32))
    compare("digits_cnn (demo), digits test set", demo, digits("test"), ["none", "int8", "int4", "int2"], 64,
            args.repeats)

    vgg = torchvision.models.vgg11(weights=None).eval()
    tm = trace(vgg, (3, 128, 128))
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, 128, 128, generator=g), torch.randint(0, 1000, (8,), generator=g))
    compare("vgg11 (random weights), 8 images 3×128×128", tm, data, ["int8"], 8, args.repeats)

    t0 = time.perf_counter()
    res = measure_accuracy(demo, digits("test"), ["autoencoder"], calibration=digits("train"), use_cache=False)
    t = time.perf_counter() - t0
    ae = res.for_bottleneck("autoencoder")
    fitted = int(ae["applicable"].sum()) - 1  # the output split needs no autoencoder
    print(f"autoencoder on digits_cnn: {fitted} splits trained (5 epochs, {len(digits('train'))} calibration "
          f"images) and measured in {t:.1f} s; accuracy {ae['accuracy'].min():.1%}–"
          f"{ae.loc[ae['applicable'] & (ae.index != OUTPUT), 'accuracy'].max():.1%} "
          f"(full model {res.full_accuracy:.1%})")


if __name__ == "__main__":
    main()
