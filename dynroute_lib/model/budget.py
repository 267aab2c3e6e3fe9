"""Budget constraint and total loss (paper Sec. 3.3, Eq. 9-10; spec Sec. 4.4).

Eq. 9: ``L_C = (E / C - mu)^2`` with E the batch mean of the per-sample expected cost (Eq. 7-8, ``model.costs``)
and C its normaliser: the full-space expected cost *at the same input size* (``budget_norm="same_size"``) or the
official constant 26300 MFLOPs scaled from 768x768 (``"official"``). Eq. 10: ``L = L_N + lambda_2 * w * L_C``
with the cross-entropy L_N. The schedule weight ``w`` (0 for the first 40 % of training, then a 2 % ramp) is
the trainer's (``engine.schedule.budget_weight_at``) and is passed in: the model knows no training schedule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

OFFICIAL_FLOPS_ALL = 26300e6            # official budget normaliser (FLOPs at 768x768)


def budget_loss(cfg, aux, budget_w: float, *, fixed: bool = False) -> torch.Tensor:
    """``lambda_2 * w * (mean_b E_b / C - mu)^2`` (Eq. 9 and the budget term of Eq. 10); 0 without a budget."""
    if cfg.budget_weight == 0 or fixed:
        return aux.expected_gflops.new_zeros(())
    h, w = aux.input_hw
    norm = aux.expected_full_gflops if cfg.budget_norm == "same_size" else OFFICIAL_FLOPS_ALL * h * w / 768 ** 2 / 1e9
    ratio = aux.expected_gflops.mean() / norm
    return cfg.budget_weight * budget_w * (ratio - cfg.budget_mu) ** 2


def total_loss(logits, target, budget: torch.Tensor, ignore_index: int = 255, weight=None) -> dict:
    """Eq. 10: ``{"loss": CE + budget, "ce": CE, "budget": budget}``; ``weight`` = optional per-class CE
    weights (``data.balance``, a CPU-profile departure; None = the paper's plain CE)."""
    ce = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)
    return {"loss": ce + budget, "ce": ce, "budget": budget}
