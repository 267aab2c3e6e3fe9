"""Validation curve during training and the convergence rule of the CPU reproduction (issue 13).

Every ``val_interval`` iterations the network is evaluated on the validation split (eval mode: Eq. 5/6 skip
rules, sparse executor, batch 1) and one row is appended to ``val_log.csv``: val mIoU and the per-image real
cost (official accounting, spec Sec. 4.5) as a fraction of the all-open cost. The paper trains for a fixed
schedule; at CPU scale we also state whether each row *converged*: its last 20 % of training improved val
mIoU by less than one point (:func:`converged`).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from ..data import build_dataset
from ..flops import route_flops
from .csv_log import CsvLogger
from .evaluate import evaluate_model

VAL_FIELDS = ["step", "val_miou_pct", "val_real_gflops", "val_real_ratio", "val_expected_gflops", "val_wall_s"]


class ValCurve:
    """Appends a validation row to ``<out>/val_log.csv`` every ``interval`` iterations (resumable).

    Args:
        out: Run directory.
        dataset: Validation data set (eval transform).
        interval: Iterations between evaluations; 0 disables the curve.
        limit: Evaluate on the first ``limit`` images only (None = all).
        resume_step: Keep the rows up to this step of an existing log (a resumed run).
    """

    def __init__(self, out: Path, dataset, interval: int, *, limit: int | None,
                 resume_step: int | None = None) -> None:
        self.dataset, self.interval, self.limit, self.full = dataset, interval, limit, None
        self.log = CsvLogger(Path(out) / "val_log.csv", VAL_FIELDS, resume_step=resume_step) if interval else None

    def due(self, step: int, max_iter: int) -> bool:
        return bool(self.interval) and (step % self.interval == 0 or step == max_iter)

    def __call__(self, net: torch.nn.Module, step: int, device, wall_s: float) -> dict:
        """Evaluate ``net`` (restored to train mode afterwards) and log the row; returns it."""
        was_training = net.training
        # all-open real cost at the evaluation size (the ratio's denominator); a static baseline without a
        # routing space (LR-ASPP) is its own all-open cost
        routed = hasattr(net, "route")
        if self.full is None and routed:
            h, w = self.dataset[0][0].shape[-2:]
            self.full = route_flops(net, int(h), int(w))["gflops_official"]
        res = evaluate_model(net, self.dataset, device=device, limit=self.limit, true_macs=False)
        net.train(was_training)
        if self.full is None:
            self.full = res["mean_real_gflops"]
        row = {"step": step, "val_miou_pct": res["miou_pct"], "val_real_gflops": res["mean_real_gflops"],
               "val_real_ratio": res["mean_real_gflops"] / self.full,
               "val_expected_gflops": res["mean_expected_gflops"], "val_wall_s": wall_s}
        self.log.log(row)
        return row

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def val_dataset(mcfg, tcfg):
    """The validation split at the run's evaluation size (the same images and transform as the final eval)."""
    return build_dataset(tcfg.data, tcfg.data_root or None, "val", train=False, normalization=mcfg.normalization,
                         resize_hw=tuple(tcfg.resize_hw) if tcfg.resize_hw else None)


def converged(curve: pd.DataFrame, *, tail: float = 0.2, tol_points: float = 1.0) -> dict:
    """Convergence of a run from its val curve: the last ``tail`` of training improved mIoU by < ``tol_points``.

    The gain is the final val mIoU minus the val mIoU of the last point at or before ``(1 - tail) * last step``.

    Returns:
        ``{"converged": bool | None, "tail_gain_points": float, "final_val_miou_pct": float}``; ``None``
        when the curve has no point before the tail (too short to tell).
    """
    if curve is None or len(curve) == 0:
        return {"converged": None, "tail_gain_points": float("nan"), "final_val_miou_pct": float("nan")}
    c = curve.sort_values("step")
    last = c["step"].iloc[-1]
    before = c[c["step"] <= (1 - tail) * last]
    final = float(c["val_miou_pct"].iloc[-1])
    if before.empty:
        return {"converged": None, "tail_gain_points": float("nan"), "final_val_miou_pct": final}
    gain = final - float(before["val_miou_pct"].iloc[-1])
    return {"converged": bool(gain < tol_points), "tail_gain_points": gain, "final_val_miou_pct": final}
