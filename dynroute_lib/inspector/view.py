"""Figures of the per-image route inspector (paper Fig. 5-style single-image views), headless.

``render_inspection`` puts side by side, for one record of :mod:`inspector.records`: the image with its
predicted segmentation (optionally the ground truth), the route grid
(:func:`analysis.route_plot.draw_route_grid`), this image's FLOPs against the data set's mean / min / max, and
the per-scale activity; a pinned second record is drawn as a second row. ``render_records_grid`` is the static fallback saved by batch runs
(``inspector_grid.png``): the live widget only exists in an interactive front end.
"""
from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..analysis.route_plot import SCALE_LABELS, draw_route_grid, scale_activity

FLOPS_KEYS = {"official": "real_gflops", "executed": "exec_gflops"}


def fig_to_png(fig: Figure, dpi: int = 80) -> bytes:
    """PNG bytes of a Figure (works without pyplot or an inline backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _colorize(labels: np.ndarray, palette, ignore_index: int) -> np.ndarray:
    """RGBA overlay of a label map; ignored / unknown labels are transparent."""
    lut = np.zeros((256, 4), dtype=np.float32)
    lut[: len(palette), :3] = np.asarray(palette, dtype=np.float32) / 255.0
    lut[: len(palette), 3] = 1.0
    lut[ignore_index, 3] = 0.0
    return lut[np.asarray(labels, dtype=np.uint8)]


def _draw_overlay(ax, record: dict, labels, info, title: str) -> None:
    ax.imshow(record["image"])
    if labels is None:
        ax.text(0.5, 0.5, "no ground truth\nfor this image", ha="center", va="center", transform=ax.transAxes,
                fontsize=8, color="white", bbox=dict(facecolor="black", alpha=0.6))
    else:
        ax.imshow(_colorize(labels, info.palette, info.ignore_index), alpha=0.5, interpolation="nearest")
        present = [c for c in np.unique(labels) if c < info.num_classes]
        handles = [Patch(color=np.asarray(info.palette[c]) / 255.0, label=info.class_names[c]) for c in present]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(4, max(1, len(handles))),
                  fontsize=6, frameon=False, handlelength=1.0, columnspacing=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def _draw_flops(ax, record: dict, stats: dict | None, kind: str) -> None:
    v = float(record[FLOPS_KEYS[kind]])
    lo, hi = (min(v, stats["min"]), max(v, stats["max"])) if stats else (v, v)
    pad = 0.15 * (hi - lo) if hi > lo else 0.05 * abs(v) + 1e-9
    if stats:
        ax.plot([0, 0], [stats["min"], stats["max"]], color="0.6", lw=6, solid_capstyle="butt",
                label="data set min-max")
        ax.plot([-0.25, 0.25], [stats["mean"]] * 2, color="0.2", lw=2, label=f"mean {stats['mean']:.3g}")
    ax.plot([0], [v], "o", color="#c0392b", ms=8, label=f"this image {v:.3g}")
    ax.set_xlim(-1, 1)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks([])
    ax.tick_params(labelsize=7)
    ax.set_ylabel(f"GFLOPs ({kind})", fontsize=8)
    rel = f"\n{100 * (v / stats['mean'] - 1):+.1f}% vs mean" if stats and stats["mean"] else ""
    ax.set_title(f"FLOPs: {v:.3g}{rel}", fontsize=8)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.02), fontsize=6, frameon=False)


def _draw_activity(ax, record: dict, threshold: float) -> None:
    act = scale_activity(record["gates"], record["num_layers"], threshold=threshold,
                         computed=record.get("computed"), live=record.get("live"))
    x = np.arange(len(SCALE_LABELS))
    ax.bar(x - 0.2, act["open_paths"], width=0.4, color="#1f5fa8", label="open paths")
    ax.bar(x + 0.2, act["active_nodes"], width=0.4, color="#d9731a", label="active nodes")
    ax.set_xticks(x, SCALE_LABELS, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.tick_params(labelsize=7)
    ax.set_title("per-scale activity", fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, fontsize=6, frameon=False)


def _draw_row(fig: Figure, spec_row, record: dict, *, info, stats, show_gt, threshold, kind, prefix) -> None:
    axes = [fig.add_subplot(s) for s in spec_row]
    head = f"{prefix}#{record['index']} {record['name']}" if record["index"] >= 0 else f"{prefix}{record['name']}"
    _draw_overlay(axes[0], record, record["pred"], info, f"{head}: prediction")
    k = 1
    if show_gt:
        _draw_overlay(axes[1], record, record.get("gt"), info, "ground truth")
        k = 2
    draw_route_grid(record["gates"], record["num_layers"], ax=axes[k], threshold=threshold,
                    live=record.get("live"), computed=record.get("computed"),
                    title=f"route of {record.get('source', 'model')} (open: gate > {threshold:g})")
    _draw_flops(axes[k + 1], record, stats, kind)
    _draw_activity(axes[k + 2], record, threshold)


def render_inspection(record: dict, *, info, flops_stats: dict | None, show_gt: bool = False,
                      threshold: float = 1e-4, flops_kind: str = "official", compare: dict | None = None) -> Figure:
    """One inspector view: image + prediction, [ground truth], route grid, FLOPs, per-scale activity.

    Args:
        record: A record from :func:`inspector.records.collect_records` or ``image_record``.
        info: ``DatasetInfo`` of the data set (class names, palette, ignore index).
        flops_stats: ``flops_summary(records, flops_kind)`` of the data set, or None.
        show_gt: Add a ground-truth panel.
        threshold: A path counts as active when its gate is above this.
        flops_kind: "official" (``real_gflops``) or "executed" (``exec_gflops``).
        compare: A pinned second record (other image or model), drawn as a second row.

    Raises:
        ValueError: Unknown ``flops_kind``.
    """
    if flops_kind not in FLOPS_KEYS:
        raise ValueError(f"unknown FLOPs kind {flops_kind!r}; valid: {', '.join(FLOPS_KEYS)}")
    rows = [record] if compare is None else [record, compare]
    h, w = record["image"].shape[:2]
    img_w = 2.6 * min(2.0, max(0.75, w / h)) / 2.0 + 0.9
    widths = [img_w] * (2 if show_gt else 1) + [5.2, 1.25, 1.9]
    fig = Figure(figsize=(sum(widths) + 0.4, 3.1 * len(rows)), layout="constrained")
    gs = fig.add_gridspec(len(rows), len(widths), width_ratios=widths)
    for r, rec in enumerate(rows):
        _draw_row(fig, [gs[r, c] for c in range(len(widths))], rec, info=info, stats=flops_stats, show_gt=show_gt,
                  threshold=threshold, kind=flops_kind, prefix="pinned: " if r else "")
    return fig


def render_records_grid(records: list[dict], info, *, threshold: float = 1e-4, max_images: int = 4) -> Figure:
    """Static overview: one row per image (prediction overlay + route grid), at most ``max_images`` rows."""
    rows = records[:max_images]
    if not rows:
        raise ValueError("render_records_grid needs at least one record")
    fig = Figure(figsize=(10.0, 3.2 * len(rows)), layout="constrained")
    gs = fig.add_gridspec(len(rows), 2, width_ratios=[3.2, 6.4])
    for r, rec in enumerate(rows):
        _draw_overlay(fig.add_subplot(gs[r, 0]), rec, rec["pred"], info, f"#{rec['index']} {rec['name']}: prediction")
        draw_route_grid(rec["gates"], rec["num_layers"], ax=fig.add_subplot(gs[r, 1]), threshold=threshold,
                        live=rec.get("live"), computed=rec.get("computed"),
                        title=f"{rec.get('source', 'model')}: {rec['real_gflops']:.3g} GFLOPs (official), "
                              f"{rec['exec_gflops']:.3g} executed")
    return fig
