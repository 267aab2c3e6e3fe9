"""Class-balanced cross-entropy weights: a documented departure from the paper's plain CE (Eq. 10), used only by
the CPU reproduction profile (docs/cpu_reproduction.md).

Why: at the CPU scale (CamVid, C_0 = 16, a few thousand iterations) the thin classes (Pole, Fence, Bicyclist,
SignSymbol) stay at ~0 IoU under plain CE. Measured at T = 3000, ENet weights lift them but cost the large
classes as much (35.4 % mIoU vs 36.0 % plain), so ``repro`` keeps the paper's plain CE. The weights follow
ENet (Paszke et al. 2016, Sec. 4): ``w_c = 1 / ln(k + p_c)`` with ``k = 1.02`` and ``p_c`` the class's share of
the labelled training pixels, which bounds every weight by ``1 / ln(1.02) ~ 50``. ``"median"`` is SegNet's
median-frequency balancing ``median(p) / p_c``. Frequencies are counted once over the un-augmented train split.
"""

from __future__ import annotations

import numpy as np
import torch

from .registry import IGNORE_INDEX

MODES = ("none", "enet", "median")     # TrainConfig.class_weighting


def check_mode(mode: str) -> None:
    """One-line error for an unknown ``TrainConfig.class_weighting``."""
    if mode not in MODES:
        raise ValueError(f"unknown class_weighting {mode!r}; valid: {', '.join(MODES)}")


def class_frequencies(ds, num_classes: int) -> np.ndarray:
    """Share of the labelled pixels per class over every sample of ``ds`` (ignore pixels excluded)."""
    counts = np.zeros(256, np.int64)
    for i in range(len(ds)):
        counts += np.bincount(ds.load_raw(i)[1].ravel(), minlength=256)
    counts[IGNORE_INDEX] = 0
    total = counts[:num_classes].sum()
    if total == 0:
        raise ValueError("class_weighting: the training split has no labelled pixels")
    return counts[:num_classes] / total


def class_weights(freq: np.ndarray, mode: str) -> torch.Tensor | None:
    """CE weights for ``mode`` (None for ``"none"``); classes absent from the split get weight 0."""
    check_mode(mode)
    if mode == "none":
        return None
    freq = np.asarray(freq, np.float64)
    present = freq > 0
    w = np.zeros_like(freq)
    if mode == "enet":
        w[present] = 1.0 / np.log(1.02 + freq[present])
    else:
        w[present] = float(np.median(freq[present])) / freq[present]
    return torch.tensor(w, dtype=torch.float32)


def describe(weights: torch.Tensor | None) -> str:
    """Short log line: every weight, then max/min."""
    if weights is None:
        return "class weights: none (plain CE)"
    vals = [f"{v:.2f}" for v in weights.tolist()]
    return "class weights: " + " ".join(vals) + f" (max/min {max(weights) / max(min(weights), 1e-12):.1f})"


__all__ = ["MODES", "check_mode", "class_frequencies", "class_weights", "describe"]
