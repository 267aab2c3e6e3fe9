"""Segmentation metrics and per-image FLOPs statistics (paper Sec. 4: mIoU and FLOPs mean / max / min).

Implements the evaluation protocol of Li et al., CVPR 2020 (spec §5.6): mIoU from a
confusion matrix accumulated over the whole split, and per-image FLOPs statistics (spec §4.5,
mean/max/min as reported in the paper's tables). The accumulator follows the shape of
VainF/DeepLabV3Plus-Pytorch's ``StreamSegMetrics`` with snake_case result keys.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.distributed as dist


def _dist_device() -> torch.device:
    """Device a collective must run on: NCCL only reduces CUDA tensors, gloo uses CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _dist_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class StreamSegMetrics:
    """Streaming confusion-matrix accumulator for semantic segmentation.

    Rows of ``confusion`` are ground-truth classes, columns are predictions. The matrix lives
    on the CPU in int64 so that full-resolution splits cannot overflow and results do not
    depend on the evaluation device.

    Args:
        num_classes: Number of valid classes; labels outside ``[0, num_classes)`` are ignored.
        ignore_index: Label value excluded from every statistic.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def reset(self) -> None:
        """Clears the accumulated confusion matrix."""
        self.confusion.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Adds one batch to the confusion matrix.

        Args:
            pred: Predicted labels with the same shape as ``target``, or logits with an extra
                class dimension at dim 1 (``[N, C, H, W]``), which are arg-maxed.
            target: Ground-truth labels; ``ignore_index`` pixels are skipped.
        """
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        n = self.num_classes
        pred, target = pred.reshape(-1).long(), target.reshape(-1).to(pred.device).long()
        valid = (target != self.ignore_index) & (target >= 0) & (target < n)
        pred, target = pred[valid], target[valid]
        if pred.numel() and (pred.min() < 0 or pred.max() >= n):
            raise ValueError(f"predicted labels must lie in [0, {n}), got range "
                             f"[{int(pred.min())}, {int(pred.max())}]")
        # One bincount over the flattened (gt, pred) index is the whole update: no Python loop.
        cm = torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)
        self.confusion += cm.cpu()

    def merge(self, other: "StreamSegMetrics") -> "StreamSegMetrics":
        """Adds another accumulator's counts into this one (e.g. per-worker shards)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class metrics into {self.num_classes}")
        self.confusion += other.confusion
        return self

    def all_reduce(self) -> None:
        """Sums the confusion matrix over all DDP ranks; a no-op outside distributed runs."""
        if not _dist_active():
            return
        buf = self.confusion.to(_dist_device())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        self.confusion = buf.cpu()

    def results(self) -> dict:
        """Computes the summary metrics in percent.

        Returns:
            Dict with ``miou_pct``, ``pixel_acc_pct``, ``mean_acc_pct``, ``fwiou_pct``,
            ``per_class_iou_pct`` (list; NaN for classes absent from both prediction and ground
            truth, which are excluded from the mean) and ``num_pixels``.
        """
        h = self.confusion.double()
        tp, gt, pr = h.diag(), h.sum(1), h.sum(0)
        total = float(h.sum())
        union = gt + pr - tp
        nan = torch.full_like(tp, math.nan)
        iou = torch.where(union > 0, tp / union.clamp_min(1), nan)
        # Per-class accuracy is undefined for classes without ground truth; skip them too.
        cls_acc = torch.where(gt > 0, tp / gt.clamp_min(1), nan)
        seen = ~iou.isnan()
        if total == 0:
            miou = pix_acc = mean_acc = fwiou = math.nan
        else:
            miou = float(iou[seen].mean()) if seen.any() else math.nan
            pix_acc = float(tp.sum() / total)
            mean_acc = float(cls_acc.nanmean())
            fwiou = float((gt[seen] / total * iou[seen]).sum())
        return {
            "miou_pct": 100.0 * miou,
            "pixel_acc_pct": 100.0 * pix_acc,
            "mean_acc_pct": 100.0 * mean_acc,
            "fwiou_pct": 100.0 * fwiou,
            "per_class_iou_pct": [100.0 * float(v) for v in iou],
            "num_pixels": int(total),
        }


class FlopsStats:
    """Accumulates one FLOPs value per image and summarises it (spec §4.5).

    Values are kept individually (a split is at most a few thousand floats) so that
    notebooks can plot the per-image distribution as well as the summary.
    """

    def __init__(self) -> None:
        self.values: list[float] = []

    def reset(self) -> None:
        """Drops all accumulated values."""
        self.values.clear()

    def update(self, values: torch.Tensor | Iterable[float] | float) -> None:
        """Adds per-image values: a tensor of shape ``[N]``, an iterable or one number."""
        if isinstance(values, torch.Tensor):
            self.values.extend(values.detach().reshape(-1).double().cpu().tolist())
        elif isinstance(values, (int, float)):
            self.values.append(float(values))
        else:
            self.values.extend(float(v) for v in values)

    def merge(self, other: "FlopsStats") -> "FlopsStats":
        """Appends another accumulator's values."""
        self.values.extend(other.values)
        return self

    def all_reduce(self) -> None:
        """Gathers the values of all DDP ranks on every rank; a no-op outside distributed runs."""
        if not _dist_active():
            return
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, self.values)
        self.values = [v for part in gathered for v in part]

    def results(self, prefix: str = "") -> dict:
        """Returns ``{prefix}mean``, ``{prefix}max``, ``{prefix}min`` and ``{prefix}count``.

        Args:
            prefix: Prepended to every key, e.g. ``"real_gflops_"``.
        """
        v = self.values
        mean = sum(v) / len(v) if v else math.nan
        return {f"{prefix}mean": mean, f"{prefix}max": max(v, default=math.nan),
                f"{prefix}min": min(v, default=math.nan), f"{prefix}count": len(v)}
