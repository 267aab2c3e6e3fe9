"""Figures of the per-image route inspector (paper Fig. 5-style single-image views), headless.

``render_inspection`` draws, for one record of :mod:`inspector.records`: on top the image with its
predicted segmentation (optionally the ground truth), this image's FLOPs against its own model's mean /
min / max, and the per-scale activity; below them the route grid (:func:`analysis.route_plot.draw_route_grid`).
A pinned second record (other image or model) is drawn as a second block against *its* model's statistics.
``render_records_grid`` is the static fallback saved by batch runs (``inspector_grid.png``): the live widget
only exists in an interactive front end. Text is at least 9 pt; PNGs are written at 100 dpi or more.
"""
from __future__ import annotations

import io
from typing import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..analysis.figstyle import FONT, LABEL, titled
from ..analysis.route_plot import SCALE_LABELS, draw_route_grid, legend_handles, scale_activity

FLOPS_KEYS = {"official": "real_gflops", "executed": "exec_gflops"}
PNG_DPI = 100              # the widget's PNG: 9 pt text is 12.5 px


def fig_to_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
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
                fontsize=FONT, color="white", bbox=dict(facecolor="black", alpha=0.6))
    else:
        ax.imshow(_colorize(labels, info.palette, info.ignore_index), alpha=0.5, interpolation="nearest")
        present = [c for c in np.unique(labels) if c < info.num_classes]
        handles = [Patch(color=np.asarray(info.palette[c]) / 255.0, label=info.class_names[c]) for c in present]
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(3, max(1, len(handles))),
                  fontsize=FONT, frameon=False, handlelength=1.0, columnspacing=0.8)
    ax.set_title(title, fontsize=LABEL)
    ax.set_axis_off()


def _draw_flops(ax, record: dict, stats: dict | None, kind: str) -> None:
    """This image's GFLOPs (dot) on its model's min-max range (bar, ticks) and mean (black mark), horizontally."""
    v = float(record[FLOPS_KEYS[kind]])
    lo, hi = (min(v, stats["min"]), max(v, stats["max"])) if stats else (v, v)
    pad = 0.2 * (hi - lo) if hi > lo else 0.05 * abs(v) + 1e-9
    ticks, names = [v], [f"{v:.3g}"]
    if stats:
        ax.plot([stats["min"], stats["max"]], [0, 0], color="0.7", lw=8, solid_capstyle="butt")
        ax.plot([stats["mean"]] * 2, [-0.3, 0.3], color="0.1", lw=2.2)
        ax.text(stats["mean"], -0.45, f"mean {stats['mean']:.3g}", ha="center", va="top", fontsize=FONT)
        ticks, names = ([stats["min"], stats["max"]], [f"min {stats['min']:.3g}", f"max {stats['max']:.3g}"]) \
            if stats["max"] > stats["min"] else ([stats["min"]], [f"all {stats['min']:.3g}"])
    ax.plot([v], [0], "o", color="#c0392b", ms=9)
    ax.text(v, 0.4, "this image", ha="center", va="bottom", fontsize=FONT, color="#c0392b")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-1.3, 1.2)
    ax.set_yticks([])
    ax.set_xticks(ticks, names, fontsize=FONT)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    rel = f", {100 * (v / stats['mean'] - 1):+.1f} % vs mean" if stats and stats["mean"] else ""
    ax.set_title(f"{v:.3g} GFLOPs{rel}", fontsize=LABEL)
    ax.set_xlabel(f"GFLOPs per image ({kind}; range and mean\nover the images, this image's model)", fontsize=FONT)


def _draw_activity(ax, record: dict, threshold: float) -> None:
    act = scale_activity(record["gates"], record["num_layers"], threshold=threshold,
                         computed=record.get("computed"), live=record.get("live"))
    x = np.arange(len(SCALE_LABELS))
    ax.bar(x - 0.2, act["open_paths"], width=0.4, color="#1f5fa8", label="open paths")
    ax.bar(x + 0.2, act["active_nodes"], width=0.4, color="#d9731a", label="active nodes")
    ax.set_xticks(x, SCALE_LABELS, fontsize=FONT)
    ax.set_ylim(0, 1.05)
    ax.tick_params(labelsize=FONT)
    ax.set_xlabel("scale", fontsize=FONT)
    ax.set_title("share active per scale", fontsize=LABEL)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, fontsize=FONT, frameon=False)


def _draw_block(fig: Figure, spec, record: dict, *, info, stats, show_gt, threshold, kind, prefix) -> None:
    """One record: overlay(s), FLOPs and activity on top, the route grid below (``spec``: a gridspec cell)."""
    h, w = record["image"].shape[:2]
    img_w = 3.0 * min(1.6, max(0.8, w / h / 1.5))
    top, bottom = spec.subgridspec(2, 1, height_ratios=[1.0, 1.1])
    widths = [img_w] * (2 if show_gt else 1) + [2.6, 2.2]
    cells = top.subgridspec(1, len(widths), width_ratios=widths)
    axes = [fig.add_subplot(cells[0, c]) for c in range(len(widths))]
    head = f"{prefix}#{record['index']} {record['name']}" if record["index"] >= 0 else f"{prefix}{record['name']}"
    _draw_overlay(axes[0], record, record["pred"], info, f"{head}: prediction")
    k = 1
    if show_gt:
        _draw_overlay(axes[1], record, record.get("gt"), info, "ground truth")
        k = 2
    _draw_flops(axes[k], record, stats, kind)
    _draw_activity(axes[k + 1], record, threshold)
    draw_route_grid(record["gates"], record["num_layers"], ax=fig.add_subplot(bottom), threshold=threshold,
                    live=record.get("live"), computed=record.get("computed"), legend=False,
                    title=f"{prefix}route of {record.get('source', 'model')} (open: gate > {threshold:.2g})")


def render_inspection(record: dict, *, info, flops_stats: dict | None, show_gt: bool = False,
                      threshold: float = 1e-4, flops_kind: str = "official", compare: dict | None = None,
                      compare_stats: dict | None = None, scale: Mapping | None = None) -> Figure:
    """One inspector view: image + prediction, [ground truth], FLOPs, per-scale activity, route grid.

    Args:
        record: A record from :func:`inspector.records.collect_records` or ``image_record``.
        info: ``DatasetInfo`` of the data set (class names, palette, ignore index).
        flops_stats: ``flops_summary(records, flops_kind)`` of the records of ``record``'s model, or None.
        show_gt: Add a ground-truth panel.
        threshold: A path counts as active when its gate is above this.
        flops_kind: "official" (``real_gflops``) or "executed" (``exec_gflops``).
        compare: A pinned second record (other image or model), drawn as a second block.
        compare_stats: ``flops_summary`` of the pinned record's own model (a model of another width has
            another cost; None = ``flops_stats``, i.e. the same model).
        scale: Scale record for the subtitle (data set, resolution, width, iterations); None = no title.

    Raises:
        ValueError: Unknown ``flops_kind``.
    """
    if flops_kind not in FLOPS_KEYS:
        raise ValueError(f"unknown FLOPs kind {flops_kind!r}; valid: {', '.join(FLOPS_KEYS)}")
    blocks = [(record, flops_stats, "")]
    if compare is not None:
        blocks.append((compare, compare_stats if compare_stats is not None else flops_stats, "pinned: "))
    fig = Figure(figsize=(9.5, 5.6 * len(blocks) + (0.9 if scale else 0.5)), layout="constrained")
    gs = fig.add_gridspec(len(blocks), 1)
    for r, (rec, stats, prefix) in enumerate(blocks):
        _draw_block(fig, gs[r, 0], rec, info=info, stats=stats, show_gt=show_gt, threshold=threshold,
                    kind=flops_kind, prefix=prefix)
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=4, fontsize=FONT, frameon=False)
    if scale:
        titled(fig, f"Route inspector: {record.get('source', 'model')}", scale)
    return fig


def render_records_grid(records: list[dict], info, *, threshold: float = 1e-4, max_images: int = 4,
                        scale: Mapping | None = None) -> Figure:
    """Static overview: one row per image (prediction overlay + route grid), at most ``max_images`` rows."""
    rows = records[:max_images]
    if not rows:
        raise ValueError("render_records_grid needs at least one record")
    fig = Figure(figsize=(12.0, 3.3 * len(rows) + 1.3), layout="constrained")
    gs = fig.add_gridspec(len(rows), 2, width_ratios=[3.4, 8.0])
    for r, rec in enumerate(rows):
        _draw_overlay(fig.add_subplot(gs[r, 0]), rec, rec["pred"], info, f"#{rec['index']} {rec['name']}: prediction")
        draw_route_grid(rec["gates"], rec["num_layers"], ax=fig.add_subplot(gs[r, 1]), threshold=threshold,
                        live=rec.get("live"), computed=rec.get("computed"), legend=False,
                        title=f"{rec['real_gflops']:.3g} GFLOPs (official rule), {rec['exec_gflops']:.3g} executed")
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=4, fontsize=FONT, frameon=False)
    return titled(fig, f"Per-image routes of {rows[0].get('source', 'the model')} (gate > {threshold:g}: open)", scale)
