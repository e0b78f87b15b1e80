"""Early exit (Split-Et-Impera's EE configuration): an exit head at the cut answers on the
device when it is confident; the other samples go on to the server as in split computing.

* :class:`ExitHead`: the small classifier at a split. ``linear`` (the default): global
  average pooling over H×W and one linear layer C → K on the standardised pooled features;
  ``conv``: a 3×3 convolution C → C and a ReLU before them. A (C,) tensor gets the linear
  layer alone, a (L, D) one the mean over L first.
* :func:`fit_exit_head`: trained on calibration activations with the backbone frozen
  (seeded Adam, cross-entropy), as the autoencoder bottleneck is; never on the samples it
  is scored on. The fitted heads live only inside the shared evaluation pass
  (:func:`~splitimpera.accuracy.evaluate.measure_accuracy`), whose result, per-sample
  outcomes included, is what the disk cache keeps.
* :class:`ExitOutcomes`: per evaluation sample and exit split, the exit head's confidence
  (``max_softmax`` and ``entropy``: 1 − H(p)/log K, both in [0, 1]) and whether its answer
  is right, and per (split, bottleneck) whether the server path's answer is right.
* :func:`exit_behaviour`: per (split, bottleneck, τ) the exit rate, the accuracy of the
  exited samples and of the rest, the overall accuracy, and the per-sample decisions
  (``confidence ≥ τ``: τ = 0 always exits, τ > 1 never does).
* :func:`exit_head_work`: the head's work on the device at batch 1, FLOPs counted by fvcore
  (one per multiply-add) per op class, as the per-split profile counts the backbone's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn as nn

CONFIDENCES = ("max_softmax", "entropy")
# Split-Et-Impera's names of the four configurations of an application.
CONFIGS = {"LC": "local computing", "RC": "remote computing", "SC": "split computing", "EE": "early exit"}
NO_EXIT = "none"  # the exit level of a point without an exit head


def configuration(split: str, exit_label: str = NO_EXIT) -> str:
    """``LC`` (``output``: all on the device), ``RC`` (``input``: all on the server), ``EE``
    (an exit head at the split) or ``SC``."""
    if exit_label != NO_EXIT:
        return "EE"
    return {"output": "LC", "input": "RC"}.get(split, "SC")


def exit_label(tau: float) -> str:
    """The exit level's value for threshold ``tau``: ``"0.9"`` (``repr``-exact, so distinct τ stay distinct)."""
    return repr(float(tau))


class ExitHead(nn.Module):
    """Exit classifier for a tensor of per-sample ``shape`` into ``classes`` logits.

    ``forward(z)``: ``z`` (B, *shape) → logits (B, classes). ``features`` is parameter-free
    (pooling), so training may run on pooled calibration features; ``mu``/``sigma``
    standardise what the trainable part sees (per channel, from the calibration data).
    """

    def __init__(self, shape: tuple[int, ...], classes: int, kind: str = "linear"):
        super().__init__()
        if kind not in ("linear", "conv"):
            raise ValueError(f"unknown exit head kind {kind!r} (linear or conv)")
        self.shape, self.kind = tuple(shape), kind
        spatial = len(self.shape) == 3
        self.conv = kind == "conv" and spatial
        c = self.shape[0] if spatial else self.shape[-1]
        if self.conv:
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            stat = (1, c, 1, 1)
        else:
            self.body = nn.Identity()
            stat = (1, c)
        self.fc = nn.Linear(c, classes)
        self.register_buffer("mu", torch.zeros(stat))
        self.register_buffer("sigma", torch.ones(stat))

    def features(self, z: torch.Tensor) -> torch.Tensor:
        """What the trainable part reads (:func:`exit_features`)."""
        return exit_features(z, self.shape, self.kind)

    def classify(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body((f - self.mu) / self.sigma))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(z))


def exit_features(z: torch.Tensor, shape: tuple[int, ...], kind: str) -> torch.Tensor:
    """What an exit head's trainable part reads of ``z`` (B, *shape): ``z`` itself for a conv
    head on a (C, H, W) tensor, else its mean over H×W (or over L), (B, C). Parameter-free,
    so calibration activations can be reduced to it as they are computed."""
    if kind == "conv" and len(shape) == 3:
        return z
    if len(shape) == 3:
        return z.mean((2, 3))
    if len(shape) == 2:
        return z.mean(1)
    return z.reshape(len(z), -1)


def fit_exit_head(f_calib: torch.Tensor, y_calib: torch.Tensor, shape: tuple[int, ...], classes: int,
                  kind: str = "linear", *, seed: int = 0, epochs: int = 30, lr: float = 0.01,
                  batch_size: int = 128) -> ExitHead:
    """An :class:`ExitHead` for tensors of per-sample ``shape``, trained on calibration
    features ``f_calib`` (:func:`exit_features` of the activations at the split) with labels
    ``y_calib`` (N,): Adam on cross-entropy, initialisation and batch order from ``seed``.
    The backbone never sees a gradient (only its activations are given)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head = ExitHead(tuple(shape), classes, kind)
    with torch.no_grad():
        f = f_calib.float()
        dims = (0, 2, 3) if head.conv else (0,)
        head.mu.copy_(f.mean(dims, keepdim=True).reshape(head.mu.shape))
        head.sigma.copy_(f.std(dims, keepdim=True).clamp_min(1e-6).reshape(head.sigma.shape))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    head.train()
    with torch.enable_grad():
        for _ in range(epochs):
            for idx in torch.randperm(len(f), generator=gen).split(batch_size):
                loss = loss_fn(head.classify(f[idx]), y_calib[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    head.eval()
    return head


def confidences(logits: torch.Tensor) -> dict[str, np.ndarray]:
    """Per sample: ``max_softmax`` (the largest probability) and ``entropy`` (1 − H(p)/log K),
    both in [0, 1], float64, shape (B,)."""
    logp = torch.log_softmax(logits.double(), 1)
    p = logp.exp()
    k = logits.shape[1]
    ent = -(p * logp).sum(1) / math.log(k) if k > 1 else torch.zeros(len(p), dtype=torch.float64)
    return {"max_softmax": p.max(1).values.numpy(), "entropy": (1.0 - ent).clamp(0.0, 1.0).numpy()}


def exit_head_work(head: ExitHead) -> dict[str, float]:
    """The exit head's work on the device at batch 1, in the per-split extra-work columns'
    keys (:func:`~splitimpera.model.cost.extra_columns`): ``flops_<class>`` (multiply-adds,
    counted by fvcore on the head itself, per op class), ``bytes_moved`` (fp32 input read,
    every layer's output written, parameters read) and ``layers``."""
    from fvcore.nn import FlopCountAnalysis

    from ..config.op_kinds import OP_CLASSES
    from ..model.cost import op_class

    x = torch.zeros((1, *head.shape))
    fca = FlopCountAnalysis(head, (x,))
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        per_op = fca.by_operator()
    work = {f"flops_{c}": 0.0 for c in OP_CLASSES}
    for op, f in per_op.items():
        work[f"flops_{op_class(op)}"] += float(f)
    outs: list[int] = []
    layers = [m for m in head.modules() if not list(m.children()) and not isinstance(m, (nn.Identity, nn.Flatten))]
    hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o.numel())) for m in layers]
    try:
        with torch.no_grad():
            head(x)
    finally:
        for h in hooks:
            h.remove()
    params = sum(p.numel() for p in head.parameters()) + sum(b.numel() for b in head.buffers())
    work["bytes_moved"] = 4.0 * (x.numel() + sum(outs) + params)
    work["layers"] = float(len(layers) + (0 if head.conv else 1))  # the pooling is a layer too
    return work


@dataclass(frozen=True)
class ExitOutcomes:
    """Per-sample outcomes of the shared evaluation pass at the exit splits (N samples).

    ``confidence[split][kind]``: (N,) float, kind in :data:`CONFIDENCES`; ``exit_correct[split]``:
    (N,) bool, the exit head's answer is right; ``server_correct[(split, bottleneck)]``: (N,)
    bool, the server path's answer under that bottleneck is right (the first seeded draw of a
    bottleneck with several); ``work[split]``: :func:`exit_head_work`; ``settings``: what
    the heads are (kind, epochs, lr, seed, calibration samples).
    """

    confidence: dict
    exit_correct: dict
    server_correct: dict
    work: dict
    settings: dict = field(default_factory=dict)

    @property
    def splits(self) -> list[str]:
        return list(self.exit_correct)

    @property
    def samples(self) -> int:
        return len(next(iter(self.exit_correct.values()))) if self.exit_correct else 0

    def to_plain(self) -> dict:
        return {"confidence": {s: {k: v.tolist() for k, v in d.items()} for s, d in self.confidence.items()},
                "exit_correct": {s: v.astype(int).tolist() for s, v in self.exit_correct.items()},
                "server_correct": [[s, b, v.astype(int).tolist()] for (s, b), v in self.server_correct.items()],
                "work": self.work, "settings": self.settings}

    @classmethod
    def from_plain(cls, d: dict) -> "ExitOutcomes":
        return cls(confidence={s: {k: np.asarray(v, dtype=float) for k, v in c.items()}
                               for s, c in d["confidence"].items()},
                   exit_correct={s: np.asarray(v, dtype=bool) for s, v in d["exit_correct"].items()},
                   server_correct={(s, b): np.asarray(v, dtype=bool) for s, b, v in d["server_correct"]},
                   work=d["work"], settings=d.get("settings", {}))


EXIT_COLUMNS = ["exit_threshold", "exit_rate", "exit_accuracy", "rest_accuracy"]


def exit_behaviour(outcomes: ExitOutcomes, thresholds, confidence: str = "max_softmax",
                   bottlenecks=None) -> tuple[pd.DataFrame, dict]:
    """Measured exit behaviour per (split, bottleneck, τ) and the per-sample decisions.

    Returns ``(table, decisions)``: ``table`` indexed by ``(split, bottleneck, exit)``
    (``exit`` = :func:`exit_label` of τ; splits and bottlenecks in ``outcomes``' order, τ
    as given), columns ``exit_threshold`` (τ), ``exit_rate`` (fraction of samples with
    confidence ≥ τ), ``exit_accuracy`` (accuracy of the exited samples, NaN when none
    exits), ``rest_accuracy`` (accuracy of the others through the server path, NaN when
    all exit) and ``accuracy`` (overall: each sample answered where it was decided);
    ``decisions``: point → (N,) bool, True where the sample exits.
    """
    if confidence not in CONFIDENCES:
        raise ValueError(f"unknown confidence {confidence!r} ({', '.join(CONFIDENCES)})")
    rows, decisions = [], {}
    for (split, bn), served in outcomes.server_correct.items():
        if bottlenecks is not None and bn not in bottlenecks:
            continue
        conf, ok_exit = outcomes.confidence[split][confidence], outcomes.exit_correct[split]
        for tau in thresholds:
            leave = conf >= float(tau)
            n_exit = int(leave.sum())
            n = len(leave)
            point = (split, bn, exit_label(tau))
            decisions[point] = leave
            rows.append({"split": split, "bottleneck": bn, "exit": point[2], "exit_threshold": float(tau),
                         "exit_rate": n_exit / n,
                         "exit_accuracy": float(ok_exit[leave].mean()) if n_exit else np.nan,
                         "rest_accuracy": float(served[~leave].mean()) if n_exit < n else np.nan,
                         "accuracy": float(np.where(leave, ok_exit, served).mean())})
    cols = ["split", "bottleneck", "exit", *EXIT_COLUMNS, "accuracy"]
    table = pd.DataFrame(rows, columns=cols).set_index(["split", "bottleneck", "exit"])
    return table, decisions
