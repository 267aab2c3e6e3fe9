"""Training schedules (Li et al., CVPR 2020, Sec. 4.1; w(t) of the budget term of Eq. 10): LR, budget, drop path.

* ``lr_at``: linear warm-up then poly decay (spec §5.4).
* ``budget_weight_at``: w(t) of the budget loss, off for the first 40 % of training, then a
  2 % linear ramp (spec §4.4, official ``UNUPDATE_RATE`` and ``WARM_UP``).
* ``drop_path_keep_prob``: scheduled drop path on the SepConv branch (spec §2.10).

All functions are pure and return Python floats, so they are trivially testable and can be
plotted in a notebook without building a model.
"""
from __future__ import annotations


def lr_at(it: int, max_iter: int, base_lr: float, warmup_iters: int = 1000,
          warmup_factor: float = 1e-3, power: float = 0.9) -> float:
    """Learning rate at iteration ``it``: ``base * warm(it) * (1 - it / max_iter) ** power``.

    ``warm`` rises linearly from ``warmup_factor`` at ``it = 0`` to 1 at ``it = warmup_iters``
    (detectron2's "linear" warm-up, which the official code uses), and is 1 afterwards.

    Args:
        it: Zero-based iteration; clamped to ``[0, max_iter]``.
        max_iter: Total iterations T; the LR reaches exactly 0 at ``it = max_iter``.
        base_lr: Peak LR (0.05 from scratch, 0.02 with ImageNet initialisation).
        warmup_iters: Length of the linear warm-up; 0 disables it.
        warmup_factor: LR multiplier at iteration 0.
        power: Exponent of the poly decay.
    """
    if max_iter <= 0:
        raise ValueError(f"max_iter must be positive, got {max_iter}")
    it = min(max(it, 0), max_iter)
    warm = 1.0
    if it < warmup_iters:
        alpha = it / warmup_iters
        warm = warmup_factor * (1.0 - alpha) + alpha
    return base_lr * warm * (1.0 - it / max_iter) ** power


def budget_weight_at(progress: float, unupdate_rate: float = 0.4, ramp: float = 0.02) -> float:
    """Weight w(t) of the budget loss at training progress ``t / T`` (spec §4.4).

    The budget is switched off early so that the gates first learn which routes help
    accuracy, then it is ramped in over ``ramp`` of training to avoid a loss spike.

    Args:
        progress: Fraction of training done, ``t / T``.
        unupdate_rate: Progress before which the weight is 0.
        ramp: Length of the linear ramp from 0 to 1, as a fraction of training; 0 = a step.
    """
    if progress < unupdate_rate:
        return 0.0
    if ramp <= 0:
        return 1.0
    return min(1.0, (progress - unupdate_rate) / ramp)


def drop_path_keep_prob(layer: int, num_layers: int, progress: float, p: float) -> float:
    """Keep probability of scheduled drop path: ``1 - p * (layer + 1) / L * t / T`` (spec §2.10).

    The drop rate grows linearly with depth and with training progress, so evaluation and
    precise-BN forwards (called with ``progress = 0``) are exact no-ops.

    Args:
        layer: Zero-based routing-layer index (the init cell is never dropped).
        num_layers: Number of routing layers L.
        progress: Fraction of training done, clamped to ``[0, 1]``.
        p: Final drop probability of the deepest layer (``DROP_PROB``, 0.3 in the SDP config).
    """
    progress = min(max(progress, 0.0), 1.0)
    return 1.0 - p * (layer + 1) / num_layers * progress
