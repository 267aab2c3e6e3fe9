"""Notebook figures: DataFrame in, headless ``Figure`` out (paper Fig. 2/3 routing space, Fig. 5, Tables 1-4).

Every function builds a ``matplotlib.figure.Figure`` without pyplot state (safe under papermill and in tests);
the caller saves it (``ctx.save_fig``), which also closes it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

MODEL_LABELS = {"dynamic_raw_l16": "Dynamic-Raw", "dynamic_a": "Dynamic-A", "dynamic_b": "Dynamic-B",
                "dynamic_c": "Dynamic-C"}


def _fig(nrows: int = 1, ncols: int = 1, size=(6.4, 3.6), **kw):
    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


# ---- 00 data overview ----------------------------------------------------------------------------------------
def sample_overlays(samples: list, info, alpha: float = 0.5) -> Figure:
    """Images (top) and their labels blended over them (bottom); ``samples`` = [(uint8 [H,W,3], labels [H,W])]."""
    fig, ax = _fig(2, len(samples), size=(3.2 * len(samples), 4.8))
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
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=7, frameon=False)
    return fig


def _patch(color, label):
    from matplotlib.patches import Patch
    return Patch(facecolor=color, label=label)


def class_frequency(freq: pd.DataFrame) -> Figure:
    """Pixel share and image share per class (bars)."""
    fig, ax = _fig(1, 1, size=(6.4, 3.2))
    x = np.arange(len(freq))
    ax[0, 0].bar(x - 0.2, freq["pixels_pct"], 0.4, label="pixels (%)")
    ax[0, 0].bar(x + 0.2, freq["images_with_class_pct"], 0.4, label="images containing the class (%)")
    ax[0, 0].set_xticks(x, freq["class"], rotation=45, ha="right", fontsize=8)
    ax[0, 0].legend(fontsize=8)
    return fig


def object_sizes(hist: pd.DataFrame) -> Figure:
    """Distribution of region sizes per class (log10 of the area fraction): the scale variation of Sec. 1."""
    classes = list(dict.fromkeys(hist["class"]))
    fig, ax = _fig(1, 1, size=(7.0, 3.6))
    for cls in classes:
        h = hist[hist["class"] == cls]
        centers = (h["log10_area_frac_lo"] + h["log10_area_frac_hi"]) / 2
        ax[0, 0].plot(centers, h["count"] / max(h["count"].sum(), 1), marker=".", label=cls)
    ax[0, 0].set_xlabel("log10(region area / image area)")
    ax[0, 0].set_ylabel("share of the class's regions")
    ax[0, 0].legend(fontsize=7, ncol=2)
    return fig


# ---- 01 routing space and FLOPs ------------------------------------------------------------------------------
def routing_space(masks: dict, num_layers: int = 16) -> Figure:
    """The layer x scale routing space (all paths open) and the modeled routes of Table 1, one panel each."""
    from .route_plot import draw_route_grid
    n = len(masks)
    fig = Figure(figsize=(7.5, 2.9 * n), layout="constrained")
    for ax, (name, mask) in zip(fig.subplots(n, 1, squeeze=False)[:, 0], masks.items()):
        draw_route_grid(mask, num_layers, ax=ax, title=name)
    return fig


def flops_vs_paper(df: pd.DataFrame) -> Figure:
    """Ours (official rule and true MACs) against the paper's static GFLOPs and params, log-log."""
    fig, ax = _fig(1, 2, size=(9.0, 3.8))
    d = df.dropna(subset=["paper_gflops"])
    for col, mk in (("ours_gflops_official", "o"), ("ours_gmacs_true", "x")):
        ax[0, 0].scatter(d["paper_gflops"], d[col], marker=mk, label=col)
    for _, r in d.iterrows():
        ax[0, 0].annotate(r["preset"], (r["paper_gflops"], r["ours_gflops_official"]), fontsize=6)
    p = df.dropna(subset=["paper_params_m"])
    ax[0, 1].scatter(p["paper_params_m"], p["ours_params_m"])
    for a, what in ((ax[0, 0], "GFLOPs at 1024x2048"), (ax[0, 1], "params (M)")):
        lo, hi = a.get_xlim()
        a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        a.set(xscale="log", yscale="log", xlabel=f"paper {what}", ylabel=f"ours {what}")
    ax[0, 0].legend(fontsize=7)
    return fig


# ---- 02 training ---------------------------------------------------------------------------------------------
def training_curves(log: pd.DataFrame, title: str = "") -> Figure:
    """Loss terms, learning rate and expected cost (share of the full space, Eq. 9) per iteration."""
    fig, ax = _fig(1, 3, size=(11.0, 3.2))
    for col in ("loss", "ce_loss", "budget_loss"):
        if col in log:
            ax[0, 0].plot(log["step"], log[col], label=col)
    ax[0, 0].set(xlabel="iteration", ylabel="loss")
    ax[0, 0].legend(fontsize=7)
    ax[0, 1].plot(log["step"], log["lr"])
    ax[0, 1].set(xlabel="iteration", ylabel="learning rate")
    ax[0, 2].plot(log["step"], log["expected_cost_ratio"], label="expected / full (E/C)")
    ax[0, 2].set(xlabel="iteration", ylabel="expected cost ratio", ylim=(0, 1.05))
    ax[0, 2].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


# ---- 03 tables -----------------------------------------------------------------------------------------------
def miou_vs_gflops(table: pd.DataFrame, title: str = "") -> Figure:
    """mIoU against mean GFLOPs, paper (left, 1024x2048) and ours (right, run resolution), one point per row."""
    fig, ax = _fig(1, 2, size=(10.0, 3.8))
    for a, (x, y, what) in zip(ax[0], (("paper_gflops", "paper_miou_pct", "paper (Cityscapes, 1024x2048)"),
                                       ("ours_gflops_mean", "ours_miou_pct", "ours (run resolution)"))):
        d = table.dropna(subset=[x, y])
        a.scatter(d[x], d[y], c=["C3" if bool(v) else "C0" for v in d.get("dynamic", [False] * len(d))])
        for _, r in d.iterrows():
            a.annotate(r.get("method", r["preset"]), (r[x], r[y]), fontsize=7)
        a.set(xlabel="GFLOPs (mean per image)", ylabel="mIoU (%)", title=what)
    fig.suptitle(title, fontsize=10)
    return fig


# ---- 04 route distribution (Fig. 5) --------------------------------------------------------------------------
def route_activation(act: pd.DataFrame) -> Figure:
    """Fig. 5: distribution over paths of the activation probability (share of images a path is open)."""
    models = list(dict.fromkeys(act["model"]))
    fig, ax = _fig(1, 2, size=(10.0, 3.6))
    bins = np.linspace(0, 1, 21)
    for m in models:
        d = act[act["model"] == m]
        ax[0, 0].hist(d["activation_prob"], bins=bins, histtype="step", lw=1.6, label=MODEL_LABELS.get(m, m))
    ax[0, 0].set(xlabel="activation probability of a path", ylabel="number of paths")
    ax[0, 0].legend(fontsize=7)
    data = [act[act["model"] == m]["mean_gate"].to_numpy() for m in models]
    ax[0, 1].violinplot([d if len(d) else [np.nan] for d in data], showmeans=True)
    ax[0, 1].set_xticks(range(1, len(models) + 1), [MODEL_LABELS.get(m, m) for m in models], fontsize=8)
    ax[0, 1].set(ylabel="mean gate value of a path", ylim=(-0.02, 1.02))
    return fig


def route_activation_grids(act: pd.DataFrame, threshold: float = 0.5) -> Figure:
    """Per model, the routing space with each path drawn by its activation probability (closed below threshold)."""
    from .route_plot import draw_route_grid
    models = list(dict.fromkeys(act["model"]))
    fig = Figure(figsize=(7.5, 2.9 * len(models)), layout="constrained")
    for ax, m in zip(fig.subplots(len(models), 1, squeeze=False)[:, 0], models):
        d = act[act["model"] == m]
        L = int(d["layer"].max()) + 1
        gates = {node: g["activation_prob"].to_numpy() for node, g in d.groupby("node", sort=False)}
        draw_route_grid(gates, L, ax=ax, threshold=threshold,
                        title=f"{MODEL_LABELS.get(m, m)}: paths open in > {threshold:.0%} of images")
    return fig


def flops_distribution(per_image: pd.DataFrame) -> Figure:
    """Per-image real GFLOPs per model: violins with mean / max / min (the paper's FLOPs_Avg/Max/Min)."""
    models = list(dict.fromkeys(per_image["model"]))
    fig, ax = _fig(1, 1, size=(6.4, 3.6))
    data = [per_image[per_image["model"] == m]["real_gflops"].to_numpy() for m in models]
    ax[0, 0].violinplot(data, showmeans=True, showextrema=True)
    ax[0, 0].set_xticks(range(1, len(models) + 1), [MODEL_LABELS.get(m, m) for m in models], fontsize=8)
    ax[0, 0].set(ylabel="real GFLOPs per image (run resolution)")
    return fig


# ---- 06 sparse speed -----------------------------------------------------------------------------------------
def sparse_speed(df: pd.DataFrame) -> Figure:
    """Left: dense vs sparse wall time per case and batch. Right: time ratio vs FLOPs ratio (y = x: time saved
    exactly in proportion to FLOPs; dotted: the goal time_over_flops of each batch size)."""
    fig, ax = _fig(1, 2, size=(10.0, 3.8))
    labels = [f"b{b} {c}" for b, c in zip(df["batch"], df["case"])]
    x = np.arange(len(df))
    ax[0, 0].bar(x - 0.2, df["dense_ms"], 0.4, label="dense")
    ax[0, 0].bar(x + 0.2, df["sparse_ms"], 0.4, label="sparse")
    ax[0, 0].set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax[0, 0].set(ylabel="median wall time (ms)", yscale="log")
    ax[0, 0].legend(fontsize=7)
    for b, d in df.groupby("batch"):
        ax[0, 1].scatter(d["flops_ratio"], d["time_ratio"], label=f"batch {b}")
        if "goal" in d:
            ax[0, 1].plot([0, 1], [0, float(d["goal"].iloc[0])], ":", lw=0.8)
    ax[0, 1].plot([0, 1], [0, 1], "k--", lw=0.8)
    ax[0, 1].set(xlabel="FLOPs ratio (sparse / dense)", ylabel="time ratio (sparse / dense)", xlim=(0, 1.05),
                 ylim=(0, max(1.05, float(df["time_ratio"].max()) * 1.05)))
    ax[0, 1].legend(fontsize=7)
    return fig
