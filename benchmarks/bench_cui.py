"""Grad-CAM at every split in one pass vs pytorch-grad-cam once per layer vs a bare pass.

VGG16 (random weights: timing does not depend on them), I-SPLIT's 18 candidate points
(conv and pool outputs of `features`), batch 8, 3×224×224, CPU. Medians; ratios are
measured side by side in this run. Peak memory (max RSS) is measured in fresh processes.

    .venv/bin/python benchmarks/bench_cui.py [--repeats 3] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import warnings

warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)

import torch  # noqa: E402
from _timing import median_time  # noqa: E402
import torchvision  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from splitimpera.accuracy.gradcam import MapEngine, reference_splits  # noqa: E402
from splitimpera.model.splits import trace  # noqa: E402




def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(batch: int, n_images: int) -> None:
    """Run the CUI engine over n_images synthetic images in batches; print peak RSS (MB).

    Model construction (random init) has its own, larger, transient peak: the kernel's
    high-water mark is reset after set-up (Linux: /proc/self/clear_refs), so the figure is
    the analysis alone.
    """
    import gc

    from torch.utils.data import TensorDataset

    from splitimpera import cui

    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    data = TensorDataset(torch.randn(n_images, 3, 224, 224), torch.randint(0, 1000, (n_images,)))
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _status_mb("VmRSS")
    cui(model, data, splits="reference", batch_size=batch, use_cache=False)
    peak = _status_mb("VmHWM")
    print(json.dumps({"batch": batch, "images": n_images, "peak_mb": peak, "before_mb": base}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--memory-child", nargs=2, type=int, metavar=("BATCH", "IMAGES"))
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-only", action="store_true")
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return

    if not args.memory_only:
        timing(args)
    if not args.skip_memory:
        memory_table()


def timing(args) -> None:
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    tm = trace(model, (3, 224, 224))
    splits = reference_splits(tm)
    assert len(splits) == 18
    x = torch.randn(args.batch, 3, 224, 224)
    targets = torch.randint(0, 1000, (args.batch,))
    engine = MapEngine(tm, splits=splits)

    def ours():
        engine(x, targets)

    def bare(param_grads: bool):
        def f():
            m = model
            for p in m.parameters():
                p.requires_grad_(param_grads)
            xin = x.clone().requires_grad_(True)
            m(xin).gather(1, targets[:, None]).sum().backward()
            m.zero_grad(set_to_none=True)
            for p in m.parameters():
                p.requires_grad_(True)
        return f

    # pytorch-grad-cam needs the in-place ReLUs off to hook a conv output (see tests).
    lib_model = copy.deepcopy(model)
    for mod in lib_model.modules():
        if hasattr(mod, "inplace"):
            mod.inplace = False
    layers = [lib_model.get_submodule(tm.node(s).target) for s in splits]
    cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]

    def library_loop():
        for layer in layers:
            cam = GradCAM(model=lib_model, target_layers=[layer])
            cam(input_tensor=x, targets=cam_targets)
            cam.activations_and_grads.release()

    print(f"VGG16, {len(splits)} split points, batch {args.batch}, 3x224x224, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    ours()  # warm-up
    t_ours = median_time(ours, args.repeats)
    t_bare_act = median_time(bare(False), args.repeats)
    t_bare_all = median_time(bare(True), args.repeats)
    t_lib = median_time(library_loop, max(1, args.repeats // 3))
    print(f"{'':<44}{'median s':>10}{'ours is':>12}")
    print(f"{'ours: one forward+backward, 18 maps':<44}{t_ours:>10.2f}")
    print(f"{'pytorch-grad-cam, once per layer (18 calls)':<44}{t_lib:>10.2f}{t_lib / t_ours:>11.1f}x faster")
    print(f"{'bare forward+backward (activation grads)':<44}{t_bare_act:>10.2f}{t_ours / t_bare_act:>11.2f}x its time")
    print(f"{'bare forward+backward (+ parameter grads)':<44}{t_bare_all:>10.2f}{t_ours / t_bare_all:>11.2f}x its time")



def memory_table() -> None:
    print("\npeak memory (max RSS of a fresh process running the CUI engine, VGG16, 224x224):")
    print(f"{'batch':>6}{'images':>8}{'before MB':>11}{'peak MB':>9}{'analysis MB':>13}")
    for batch, n in ((4, 8), (4, 32), (8, 32)):
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(batch), str(n)],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{batch:>6}{n:>8}{r['before_mb']:>11.0f}{r['peak_mb']:>9.0f}{r['peak_mb'] - r['before_mb']:>13.0f}")


if __name__ == "__main__":
    main()
