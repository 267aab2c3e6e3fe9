"""Notebook figures: DataFrame in, headless ``Figure`` out (paper Fig. 2/3 routing space, Fig. 5, Tables 1-4).

Every function builds a ``matplotlib.figure.Figure`` without pyplot state (safe under papermill and in tests);
the caller saves it (``ctx.save_fig``), which also closes it. Each takes the run's ``scale`` record
(``ctx.scale()``, ``run.json["scale"]``) and names it in the subtitle: data set, resolution / width,
iterations (:mod:`figstyle`). Text is at least 9 pt, the figures are sized for reading at the saved dpi.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .figstyle import FONT, LABEL, data_name, place_labels, titled

MODEL_LABELS = {"dynamic_raw_l16": "Dynamic-Raw", "dynamic_a": "Dynamic-A", "dynamic_b": "Dynamic-B",
                "dynamic_c": "Dynamic-C"}
Scale = Mapping | None


def _fig(nrows: int = 1, ncols: int = 1, size=(6.4, 3.6), **kw):
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.tick_params(labelsize=FONT)
    return fig, axes


def _patch(color, label):
    from matplotlib.patches import Patch
    return Patch(facecolor=color, label=label)


# ---- 00 data overview ----------------------------------------------------------------------------------------
def sample_overlays(samples: list, info, alpha: float = 0.5, *, scale: Scale = None) -> Figure:
    """Images (top) and their labels blended over them (bottom); ``samples`` = [(uint8 [H,W,3], labels [H,W])]."""
    fig, ax = _fig(2, len(samples), size=(2.9 * len(samples), 5.4))
    palette = np.asarray(info.palette + [(0, 0, 0)] * (256 - len(info.palette)), dtype=np.float64)
    for j, (image, label) in enumerate(samples):
        color = palette[np.asarray(label, dtype=np.int64)]
        blend = (1 - alpha) * image + alpha * color
        blend[label == info.ignore_index] = image[label == info.ignore_index]
        ax[0, j].imshow(image)
        ax[1, j].imshow(blend.astype(np.uint8))
        for a in ax[:, j]:
            a.set_axis_off()
    used = sorted({int(c) for _, lab in samples for c in np.unique(lab) if c != info.ignore_index})
    handles = [_patch(palette[c] / 255, info.class_names[c]) for c in used]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=FONT, frameon=False)
    return titled(fig, "Sample images (top) and their labels blended in (bottom)", scale)


def class_frequency(freq: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Pixel share and image share per class (bars)."""
    fig, ax = _fig(1, 1, size=(7.5, 4.2))
    x = np.arange(len(freq))
    ax[0, 0].bar(x - 0.2, freq["pixels_pct"], 0.4, label="share of labelled pixels (%)")
    ax[0, 0].bar(x + 0.2, freq["images_with_class_pct"], 0.4, label="share of images containing the class (%)")
    ax[0, 0].set_xticks(x, freq["class"], rotation=40, ha="right", fontsize=FONT)
    ax[0, 0].set_ylabel("%", fontsize=LABEL)
    fig.legend(fontsize=FONT, loc="outside lower center", ncol=2, frameon=False)
    return titled(fig, "Class frequencies", scale)


def object_sizes(hist: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Distribution of region sizes per class (log10 of the area fraction): the scale variation of Sec. 1."""
    classes = list(dict.fromkeys(hist["class"]))
    fig, ax = _fig(1, 1, size=(9.0, 5.0))
    for cls in classes:
        h = hist[hist["class"] == cls]
        centers = (h["log10_area_frac_lo"] + h["log10_area_frac_hi"]) / 2
        ax[0, 0].plot(centers, h["count"] / max(h["count"].sum(), 1), marker=".", label=cls)
    ax[0, 0].set_xlabel("log10(region area / image area)", fontsize=LABEL)
    ax[0, 0].set_ylabel("share of the class's regions", fontsize=LABEL)
    fig.legend(fontsize=FONT, loc="outside lower center", ncol=6, frameon=False)
    return titled(fig, "Object sizes per class (4-connected regions of one class)", scale)


# ---- 01 routing space and FLOPs ------------------------------------------------------------------------------
def routing_space(masks: dict, num_layers: int = 16, *, scale: Scale = None) -> Figure:
    """The layer x scale routing space (all paths open) and the modeled routes of Table 1, one panel each."""
    from .route_plot import draw_route_grid, legend_handles
    n = len(masks)
    fig = Figure(figsize=(9.0, 2.7 * n + 0.9), layout="constrained")
    for ax, (name, mask) in zip(fig.subplots(n, 1, squeeze=False)[:, 0], masks.items()):
        draw_route_grid(mask, num_layers, ax=ax, title=name, legend=False)
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=4, fontsize=FONT, frameon=False)
    scale = scale or {"data": "no data set", "note": f"structure of the Layer{num_layers} space, no training"}
    return titled(fig, "Routing space (paper Fig. 2) and the modeled routes of Table 1", scale)


def flops_vs_paper(df: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Ours (official rule and true MACs) against the paper's static GFLOPs and params, log-log."""
    fig, ax = _fig(1, 2, size=(12.0, 5.6), width_ratios=[1.45, 1])
    d = df.dropna(subset=["paper_gflops"])
    names = {"ours_gflops_official": "ours, official counting rule",
             "ours_gmacs_true": "ours, true multiply-adds (FlopCounterMode / 2)"}
    for col, mk in (("ours_gflops_official", "o"), ("ours_gmacs_true", "x")):
        ax[0, 0].scatter(d["paper_gflops"], d[col], marker=mk, label=names[col], zorder=3)
    p = df.dropna(subset=["paper_params_m"])
    ax[0, 1].scatter(p["paper_params_m"], p["ours_params_m"], zorder=3)
    for a, what in ((ax[0, 0], "GFLOPs at 1024×2048"), (ax[0, 1], "parameters (millions)")):
        a.set(xscale="log", yscale="log")
        lo, hi = a.get_xlim()
        a.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="ours = paper")
        a.set_xlim(lo, hi)
        a.set_xlabel(f"paper: {what}", fontsize=LABEL)
        a.set_ylabel(f"ours: {what}", fontsize=LABEL)
    ax[0, 0].set_title("GFLOPs (all paths open)", fontsize=LABEL)
    ax[0, 1].set_title("parameters", fontsize=LABEL)
    ax[0, 0].legend(fontsize=FONT, loc="upper left")
    titled(fig, "Static GFLOPs and parameters of every preset: ours vs the paper (Tables 1-4)", scale)
    place_labels(ax[0, 0], d["paper_gflops"], d["ours_gflops_official"], d["preset"],
                 avoid=(d["paper_gflops"], d["ours_gmacs_true"]))
    return fig


# ---- 02 training ---------------------------------------------------------------------------------------------
def training_curves(log: pd.DataFrame, title: str = "", *, scale: Scale = None) -> Figure:
    """Loss terms, learning rate and expected cost (share of the full space, Eq. 9) per iteration."""
    fig, ax = _fig(1, 3, size=(12.0, 4.0))
    for col, name in (("loss", "total loss"), ("ce_loss", "cross-entropy"), ("budget_loss", "budget loss (Eq. 10)")):
        if col in log:
            ax[0, 0].plot(log["step"], log[col], label=name)
    ax[0, 0].set_ylabel("loss", fontsize=LABEL)
    ax[0, 0].legend(fontsize=FONT)
    ax[0, 1].plot(log["step"], log["lr"])
    ax[0, 1].set_ylabel("learning rate", fontsize=LABEL)
    ax[0, 2].plot(log["step"], log["expected_cost_ratio"], label="expected / full cost (E/C)")
    ax[0, 2].set_ylabel("expected cost ratio", fontsize=LABEL)
    ax[0, 2].set_ylim(0, 1.05)
    ax[0, 2].legend(fontsize=FONT)
    for a in ax[0]:
        a.set_xlabel("iteration", fontsize=LABEL)
    return titled(fig, f"Training curves{': ' + title if title else ''}", scale)


def convergence_curves(curves: Mapping[str, tuple[pd.DataFrame, pd.DataFrame | None]], *,
                       scale: Scale = None) -> Figure:
    """Per row of the CPU reproduction: train CE (running mean of 100), val mIoU and the val real-cost ratio per
    iteration (issue 13: convergence shown, not assumed; the rule is < 1 point gained over the last 20 %)."""
    fig, ax = _fig(1, 3, size=(13.0, 4.2))
    for row, (train, val) in curves.items():
        line = ax[0, 0].plot(train["step"], train["ce"].rolling(100, min_periods=1).mean(), lw=1, label=row)[0]
        if val is not None and len(val):
            ax[0, 1].plot(val["step"], val["val_miou_pct"], marker="o", ms=3, color=line.get_color(), label=row)
            ax[0, 2].plot(val["step"], val["val_real_ratio"], marker="o", ms=3, color=line.get_color(), label=row)
    for a, what in zip(ax[0], ("train cross-entropy (mean of 100)", "val mIoU (%)", "val real cost / all-open")):
        a.set_xlabel("iteration", fontsize=LABEL)
        a.set_ylabel(what, fontsize=LABEL)
    ax[0, 2].set_ylim(0, 1.05)
    ax[0, 1].legend(fontsize=FONT)
    return titled(fig, "CPU reproduction: convergence of every finished row", scale)


# ---- 03 tables -----------------------------------------------------------------------------------------------
def miou_vs_gflops(table: pd.DataFrame, title: str = "Table 1", *, scale: Scale = None) -> Figure:
    """mIoU against mean GFLOPs, paper (left, Cityscapes 1024x2048) and ours (right, this run), one point per row."""
    fig, ax = _fig(1, 2, size=(12.0, 5.4))
    ours = data_name((scale or {}).get("data")) or "this run"
    panels = (("paper_gflops", "paper_miou_pct", "paper: Cityscapes val, 1024×2048 px"),
              ("ours_gflops_mean", "ours_miou_pct", f"ours: {ours} val, run resolution"))
    colors = {True: "C3", False: "C0"}
    for a, (x, y, what) in zip(ax[0], panels):
        d = table.dropna(subset=[x, y])
        dyn = d["dynamic"].astype(bool) if "dynamic" in d else pd.Series(False, index=d.index)
        for kind in (True, False):
            sel = d[dyn == kind]
            a.scatter(sel[x], sel[y], c=colors[kind], zorder=3,
                      label="dynamic route (gated, per image)" if kind else "static route (fixed)")
        a.set_xlabel("GFLOPs (mean per image)", fontsize=LABEL)
        a.set_ylabel("mIoU (%)", fontsize=LABEL)
        a.set_title(what, fontsize=LABEL)
        a.margins(0.12)
    ax[0, 0].legend(fontsize=FONT, loc="lower right")
    titled(fig, f"{title}: mIoU vs GFLOPs, dynamic vs static routes", scale)
    for a, (x, y, _) in zip(ax[0], panels):
        d = table.dropna(subset=[x, y])
        place_labels(a, d[x], d[y], d["method"] if "method" in d else d["preset"])
    return fig


# ---- 04 route distribution (Fig. 5) --------------------------------------------------------------------------
def route_activation(act: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Fig. 5: distribution over paths of the activation probability (share of images a path is open)."""
    models = list(dict.fromkeys(act["model"]))
    fig, ax = _fig(1, 2, size=(12.0, 4.4))
    bins = np.linspace(0, 1, 21)
    for m in models:
        d = act[act["model"] == m]
        ax[0, 0].hist(d["activation_prob"], bins=bins, histtype="step", lw=1.6, label=MODEL_LABELS.get(m, m))
    ax[0, 0].set_xlabel("activation probability of a path (share of images with gate > threshold)", fontsize=LABEL)
    ax[0, 0].set_ylabel("number of paths", fontsize=LABEL)
    ax[0, 0].legend(fontsize=FONT, loc="upper left")
    data = [act[act["model"] == m]["mean_gate"].to_numpy() for m in models]
    ax[0, 1].violinplot([d if len(d) else [np.nan] for d in data], showmeans=True)
    ax[0, 1].set_xticks(range(1, len(models) + 1), [MODEL_LABELS.get(m, m) for m in models], fontsize=FONT)
    ax[0, 1].set_ylabel("mean gate value of a path", fontsize=LABEL)
    ax[0, 1].set_ylim(-0.02, 1.02)
    return titled(fig, "Fig. 5: how often each path of the routing space is open", scale)


def route_activation_grids(act: pd.DataFrame, threshold: float = 0.5, *, scale: Scale = None) -> Figure:
    """Per model, the routing space with each path drawn by its activation probability (closed below threshold)."""
    from .route_plot import draw_route_grid, legend_handles
    models = list(dict.fromkeys(act["model"]))
    fig = Figure(figsize=(9.0, 2.7 * len(models) + 0.9), layout="constrained")
    for ax, m in zip(fig.subplots(len(models), 1, squeeze=False)[:, 0], models):
        d = act[act["model"] == m]
        L = int(d["layer"].max()) + 1
        gates = {node: g["activation_prob"].to_numpy() for node, g in d.groupby("node", sort=False)}
        draw_route_grid(gates, L, ax=ax, threshold=threshold, legend=False,
                        title=f"{MODEL_LABELS.get(m, m)}: paths open in > {threshold:.0%} of images")
    fig.legend(handles=legend_handles(), loc="outside lower center", ncol=4, fontsize=FONT, frameon=False)
    return titled(fig, "Fig. 5: paths open in most images (line width = activation probability)", scale)


def flops_distribution(per_image: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Per-image real GFLOPs per model: violins with mean / max / min (the paper's FLOPs_Avg/Max/Min)."""
    models = list(dict.fromkeys(per_image["model"]))
    fig, ax = _fig(1, 1, size=(max(7.0, 1.1 * len(models) + 2), 4.4))
    data = [per_image[per_image["model"] == m]["real_gflops"].to_numpy() for m in models]
    ax[0, 0].violinplot(data, showmeans=True, showextrema=True)
    ax[0, 0].set_xticks(range(1, len(models) + 1), [MODEL_LABELS.get(m, m) for m in models], fontsize=FONT,
                        rotation=30 if len(models) > 5 else 0, ha="right" if len(models) > 5 else "center")
    ax[0, 0].set_ylabel("real GFLOPs per image (official rule)", fontsize=LABEL)
    return titled(fig, "Per-image GFLOPs (mean, max, min over the val images)", scale)


# ---- 06 sparse speed -----------------------------------------------------------------------------------------
def _case_label(batch, case) -> str:
    kept = str(case).removeprefix("keep")
    return f"batch {batch}\n{kept} % kept" if kept.isdigit() else f"batch {batch}\n{case}"


def sparse_speed(df: pd.DataFrame, *, scale: Scale = None) -> Figure:
    """Left: wall time of the plain all-open network (no gates, no masks), the masked dense executor and the
    sparse executor per case and batch. Right: time ratio vs FLOPs ratio against the plain network (y = x: time
    saved exactly in proportion to FLOPs; dotted: the goal ``time_ratio <= goal x flops_ratio`` of each batch)."""
    fig, ax = _fig(1, 2, size=(12.0, 4.8))
    x = np.arange(len(df))
    bars = [(k, n) for k, n in (("plain_ms", "plain network (every path, no gates)"),
                                ("dense_ms", "dense executor (every path, masked)"),
                                ("sparse_ms", "sparse executor (open paths only)")) if k in df]
    w = 0.8 / len(bars)
    for i, (k, name) in enumerate(bars):
        ax[0, 0].bar(x + (i - (len(bars) - 1) / 2) * w, df[k], w, label=name)
    ax[0, 0].set_xticks(x, [_case_label(b, c) for b, c in zip(df["batch"], df["case"])], fontsize=FONT)
    ax[0, 0].set_xlabel("batch size and route (share of routing FLOPs kept)", fontsize=LABEL)
    ax[0, 0].set_ylabel("median wall time per batch (ms)", fontsize=LABEL)
    ax[0, 0].set_ylim(0, 1.3 * float(np.nanmax(df[[k for k, _ in bars]].to_numpy())))
    ax[0, 0].legend(fontsize=FONT, loc="upper left")
    for i, (b, d) in enumerate(df.groupby("batch")):
        color = f"C{i}"
        ax[0, 1].scatter(d["flops_ratio"], d["time_ratio"], color=color, label=f"batch {b}", zorder=3)
        if "goal" in d:
            g = float(d["goal"].iloc[0])
            ax[0, 1].plot([0, 1], [0, g], ":", color=color, lw=1.2, label=f"goal, batch {b}: time ratio ≤ {g:g} × FLOPs ratio")
    ax[0, 1].plot([0, 1], [0, 1], "k--", lw=0.8, label="time saved in proportion to FLOPs")
    ref = "plain" if "plain_ms" in df else "dense"
    ax[0, 1].set_xlabel(f"FLOPs ratio (sparse / {ref} executed GFLOPs)", fontsize=LABEL)
    ax[0, 1].set_ylabel(f"time ratio (sparse / {ref} wall time)", fontsize=LABEL)
    ax[0, 1].set_xlim(0, 1.05)
    ax[0, 1].set_ylim(0, max(1.05, float(df["time_ratio"].max()) * 1.05))
    ax[0, 1].legend(fontsize=FONT, loc="upper left")
    return titled(fig, "Sparse inference: does skipping closed paths save time in proportion to FLOPs?", scale)
