"""Per-image real-cost spread by evaluation set (issue 13, done-when 3; paper Sec. 4.4 / Fig. 5 FLOPs_Max - Min).

The paper reads a dynamic model's per-image cost spread on Cityscapes val: 500 images from three cities. CamVid's
val split is 101 frames of one drive (``0016E5_07959`` to ``_08159``, about seven seconds of video), so it may
hold too little scene variety for a gate to respond to. This module measures that, side by side on the same
checkpoints: each is evaluated (eval mode, official real-cost accounting, same resolution) on several splits, and
the spread ``(max - min) / mean`` is reported for

- the whole split,
- random subsets of ``--subset`` images (default 101, val's size, since max - min grows with the sample),
- windows of ``--window`` consecutive frames inside one sequence (how much a few seconds of one drive vary),
- each sequence (the CamVid name's prefix before ``_``: ``0001TP``, ``0006R0``, ``0016E5``),

and how densely the set samples its video (``frame_step``: the median gap in frame numbers within a sequence).

Train images were seen in training (as random crops), so a train spread is a measure of scene variety under that
caveat, not a held-out number; ``python -m dynroute_lib data holdout`` builds a root with one drive held out for the
clean test. Usage::

    python -m dynroute_lib.analysis.spread_sets runs/lever/glr2p5 runs/lever/gbias0p5 --splits val train \\
        --data camvid --resize 240 320 --out results/repro_exploration/spread_by_split

writes ``summary.csv`` (model x split), ``by_sequence.csv``, ``per_image/<model>_<split>.csv``,
``route_records/<model>_<split>.npz`` (gates), ``curves/<model>_train.csv.gz`` / ``<model>_val.csv`` (when the
run has them),
``spread_sets.png`` and ``run.json``. ``--add-to DIR`` adds models to a committed folder (its models are re-scored
from their committed files); ``--replot DIR`` only redraws the figure.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..data.holdout import sequence_of
from ..engine.dist import pick_device
from .figstyle import scale_record
from .curves import copy_curves
from .route_stats import flops_summary, gate_summary, read_gates, spread_pct


def frame_number(image: str) -> float:
    """The frame index in a ``<sequence>_<frame>`` name (``0006R0_f00930`` -> 930), NaN when there is none."""
    digits = "".join(ch for ch in image.split("_", 1)[-1] if ch.isdigit()) if "_" in image else ""
    return float(digits) if digits else float("nan")


def frame_step(per_image: pd.DataFrame) -> float:
    """Median distance in frame numbers between consecutive images of a sequence: how densely the set samples
    the video (CamVid val: every 2nd frame of 30 fps; train: every 30th)."""
    steps = [np.diff(np.sort(g.to_numpy())) for _, g in
             per_image["image"].map(frame_number).groupby(per_image["image"].map(sequence_of))]
    steps = np.concatenate(steps) if steps else np.array([])
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if len(steps) else float("nan")


def set_spread_pct(values) -> float:
    """``route_stats.spread_pct`` of one set of per-image costs."""
    v = np.asarray(values, dtype=float)
    return float(spread_pct(v.max(), v.min(), v.mean()))


def set_spread(per_image: pd.DataFrame, *, subset: int = 101, window: int = 30, draws: int = 200,
               seed: int = 0) -> dict:
    """Spread of one evaluation set (``per_image``: ``image``, ``real_gflops``): whole set, random ``subset``-image
    subsets (median and 5-95 %), ``window``-frame windows within a sequence (median; frames in name order)."""
    if len(per_image) < 2:
        raise ValueError(f"per-image table has {len(per_image)} rows; a spread needs at least 2")
    whole = flops_summary(per_image.assign(model="all")).iloc[0]
    r = per_image["real_gflops"].to_numpy(float)
    rng = np.random.default_rng(seed)
    n = min(subset, len(r))
    subs = [set_spread_pct(r[rng.choice(len(r), n, replace=False)]) for _ in range(draws)]
    wins = []
    for _, g in per_image.assign(seq=per_image["image"].map(sequence_of)).sort_values("image").groupby("seq"):
        v = g["real_gflops"].to_numpy(float)
        wins += [set_spread_pct(v[i:i + window]) for i in range(0, len(v) - window + 1)]
    return {"num_images": int(whole["num_images"]), "gflops_mean": float(whole["gflops_mean"]),
            "gflops_max": float(whole["gflops_max"]), "gflops_min": float(whole["gflops_min"]),
            "spread_pct": float(whole["max_min_gap_pct"]), "subset_size": n,
            "subset_spread_median": float(np.median(subs)), "subset_spread_p5": float(np.percentile(subs, 5)),
            "subset_spread_p95": float(np.percentile(subs, 95)), "window": window,
            "window_spread_median": float(np.median(wins)) if wins else float("nan"),
            "sequences": int(per_image["image"].map(sequence_of).nunique()), "frame_step": frame_step(per_image)}


def by_sequence(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean / max / min real GFLOPs and spread of each sequence of one evaluation set."""
    df = flops_summary(per_image.assign(model=per_image["image"].map(sequence_of)))
    return df.rename(columns={"model": "sequence", "max_min_gap_pct": "spread_pct"})


def conditional(records: Path) -> dict:
    """Conditional paths and cell ops (fired on 10-90 % of the set's images, ``route_stats``) of one evaluation's
    gate records; empty for a model without gates."""
    if not Path(records).is_file():
        return {}
    s = gate_summary(read_gates(records))
    return {"conditional_paths": int(s["conditional_paths"]), "conditional_cells": int(s["conditional_cells"])}


def resolve(run: str) -> Path:
    """A ``train --eval`` run directory (its ``model_final.pt``) or a checkpoint file."""
    p = Path(run)
    ck = p / "model_final.pt" if p.is_dir() else p
    if not ck.is_file():
        raise FileNotFoundError(f"{ck} missing: pass a finished run directory or a checkpoint file")
    return ck


def figure(per_image: dict[tuple[str, str], pd.DataFrame], scale: dict):
    """Per-image real cost, one panel per model: images in split / sequence / frame order, each point as % of the
    model's mean on the first split, coloured by sequence, so a flat split stands beside a varied one."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from .figstyle import FONT, LABEL, titled
    models = list(dict.fromkeys(m for m, _ in per_image))
    fig = Figure(figsize=(10, 2.6 * len(models) + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(len(models), 1, squeeze=False)[:, 0])
    colors = {}
    for ax, m in zip(axes, models):
        splits = [s for mm, s in per_image if mm == m]
        ref = per_image[(m, splits[0])]["real_gflops"].mean()
        x0 = 0
        for s in splits:
            d = per_image[(m, s)].sort_values("image")
            seq = d["image"].map(sequence_of)
            for q in dict.fromkeys(seq):
                sel = (seq == q).to_numpy()
                idx = x0 + np.flatnonzero(sel)
                c = colors.setdefault(q, f"C{len(colors)}")
                ax.scatter(idx, 100 * d["real_gflops"].to_numpy()[sel] / ref, s=6, color=c)
            ax.text(x0 + len(d) / 2, 1.0, f"{s} ({len(d)})", transform=ax.get_xaxis_transform(), ha="center",
                    va="bottom", fontsize=FONT)
            x0 += len(d)
            ax.axvline(x0 - 0.5, color="0.5", lw=0.8)
        ax.set_ylabel(f"{m}\n% of {splits[0]} mean", fontsize=LABEL)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("image (split, sequence, frame order)", fontsize=LABEL)
    # one legend for the figure, below the panels: inside a panel it covered the first split's points
    handles = [Line2D([], [], ls="", marker="o", markersize=4, color=c, label=q) for q, c in colors.items()]
    fig.legend(handles=handles, fontsize=FONT, loc="outside lower center", ncols=len(colors),
               title="sequence", title_fontsize=FONT)
    return titled(fig, "Per-image real cost of the same checkpoints on each CamVid split", scale)


def read_folder(out: Path) -> tuple[pd.DataFrame, dict, dict[tuple[str, str], pd.DataFrame]]:
    """A spread_sets output folder's ``summary.csv``, ``run.json`` and per-image tables (keyed ``(model, split)``)."""
    out = Path(out)
    for need in ("summary.csv", "run.json"):
        if not (out / need).is_file():
            raise FileNotFoundError(f"{out / need} missing: not a spread_sets output folder")
    summary = pd.read_csv(out / "summary.csv", dtype={"model": str, "split": str})
    per_image = {}
    for m, s in zip(summary["model"], summary["split"]):
        f = out / "per_image" / f"{m}_{s}.csv"
        if not f.is_file():
            raise FileNotFoundError(f"{f} missing: summary.csv names it")
        per_image[(m, s)] = pd.read_csv(f)
    return summary, json.loads((out / "run.json").read_text()), per_image


def replot(out: Path, argv: list[str] | None = None) -> Path:
    """Redraw ``out/spread_sets.png`` from ``summary.csv``, ``per_image/`` and ``run.json`` (no checkpoint needed);
    ``run.json`` gets a ``replotted`` entry."""
    from .replot import mark_replotted
    _, run, per_image = read_folder(out)
    png = io.save_figure(out / "spread_sets.png", figure(per_image, run["scale"]))
    mark_replotted(out / "run.json", [png.name], io.command_line("dynroute_lib.analysis.spread_sets", argv))
    return png


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib.analysis.spread_sets",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", help="train --eval run directories or checkpoint files")
    ap.add_argument("--replot", metavar="DIR", help="only redraw DIR/spread_sets.png from DIR's committed CSVs")
    ap.add_argument("--labels", nargs="+", help="one name per run (default: the directory's name)")
    ap.add_argument("--splits", nargs="+", default=["val", "train"])
    ap.add_argument("--data", default="camvid")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"), default=[240, 320])
    ap.add_argument("--subset", type=int, default=101, help="random-subset size (default: CamVid val's 101)")
    ap.add_argument("--window", type=int, default=30, help="consecutive frames per within-sequence window")
    ap.add_argument("--limit", type=int, help="first N images of each split only (smoke runs)")
    ap.add_argument("--out", help="output folder (required unless --replot or --add-to)")
    ap.add_argument("--add-to", metavar="DIR", help="extend a committed output folder: its models are kept, re-scored "
                    "from DIR's committed per-image costs and gate records (no checkpoints), and DIR is rewritten")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    if a.replot:
        try:
            print(replot(Path(a.replot), argv))
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0
    a.out = a.out or a.add_to
    if not (a.runs or a.add_to) or not a.out:
        ap.error("pass run directories or checkpoints and --out or --add-to (or --replot DIR)")
    with tempfile.TemporaryDirectory(prefix="spread_sets_") as t:
        return _run(a, argv, Path(t))


def _flag(command: str, flag: str) -> str | None:
    """The value of ``flag`` in a recorded command line (None when absent)."""
    toks = command.split()
    return toks[toks.index(flag) + 1] if flag in toks[:-1] else None


def kept(study: Path, drop: set[str], *, subset: int, window: int) -> tuple[dict, list, list, dict, dict]:
    """The models of a committed spread_sets folder not in ``drop``, re-scored from its committed per-image costs and
    gate records (no checkpoint needed): per-image tables, summary rows, per-sequence rows, their run.json lists,
    and the folder's run.json."""
    study = Path(study)
    old, run, tables = read_folder(study)
    if set(old["window"]) != {window} or old["subset_size"].max() > subset:
        raise ValueError(f"--add-to {study}: it was scored with --window {old['window'].iloc[0]} and --subset "
                         f"{old['subset_size'].max()}; pass the same")
    models = list(dict.fromkeys(old["model"]))
    roots = run.get("eval_data_roots") or [_flag(run["command"], "--data-root")] * len(models)
    lists = {k: dict(zip(models, run.get(k) or [None] * len(models)))
             for k in ("checkpoints", "train_commands", "train_data_roots")}
    lists["eval_data_roots"] = dict(zip(models, roots))
    per_image, rows, seqs = {}, [], []
    for _, r in old[~old["model"].isin(drop)].iterrows():
        m, s = r["model"], r["split"]
        d = per_image[(m, s)] = tables[(m, s)]
        rows.append({"model": m, "split": s, "miou_pct": r["miou_pct"],
                     **set_spread(d, subset=subset, window=window),
                     **conditional(study / "route_records" / f"{m}_{s}.npz")})
        seqs.append(by_sequence(d).assign(model=m, split=s))
    keep = [m for m in models if m not in drop]
    return per_image, rows, seqs, {k: [v[m] for m in keep] for k, v in lists.items()}, run


def _run(a, argv, tmp: Path) -> int:
    from ..engine.evaluate import evaluate_checkpoint
    try:
        if a.labels and len(a.labels) != len(a.runs):
            raise ValueError(f"--labels: {len(a.labels)} names for {len(a.runs)} runs")
        if a.subset < 2 or a.window < 2:
            raise ValueError("--subset and --window must be at least 2")
        cks = [resolve(r) for r in a.runs]
        labels = a.labels or [Path(r).name if Path(r).is_dir() else Path(r).stem for r in a.runs]
        per_image, rows, seqs, before, before_run = {}, [], [], {}, {}
        if a.add_to:
            per_image, rows, seqs, before, before_run = kept(Path(a.add_to), set(labels), subset=a.subset,
                                                             window=a.window)
            if Path(a.out).resolve() != Path(a.add_to).resolve():
                raise ValueError(f"--out {a.out}: with --add-to the folder is rewritten in place; omit --out")
        for lab, ck in zip(labels, cks):
            for s in a.splits:
                rec = tmp / f"{lab}_{s}"          # records go to results/ only once every evaluation succeeded
                res = evaluate_checkpoint(ck, data=a.data, data_root=a.data_root, split=s, resize_hw=a.resize,
                                          limit=a.limit, true_macs=False, device=a.device, records_dir=rec)
                d = per_image[(lab, s)] = pd.read_csv(rec / "per_image.csv")
                rows.append({"model": lab, "split": s, "miou_pct": res["miou_pct"],
                             **set_spread(d, subset=a.subset, window=a.window), **conditional(rec / "records.npz")})
                seqs.append(by_sequence(d).assign(model=lab, split=s))
                print(f"{lab} {s}: {rows[-1]['num_images']} images, spread {rows[-1]['spread_pct']:.1f} %, "
                      f"{a.subset}-image subsets {rows[-1]['subset_spread_median']:.1f} %", flush=True)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    for (lab, s), d in per_image.items():
        if lab not in labels:                          # a kept model: its committed files stay as they are
            continue
        io.save_csv(out / "per_image" / f"{lab}_{s}.csv", d)
        if (tmp / f"{lab}_{s}" / "records.npz").is_file():
            io.copy_file(tmp / f"{lab}_{s}" / "records.npz", out / "route_records" / f"{lab}_{s}.npz")
    for lab, ck in zip(labels, cks):   # the training curves, so each model's convergence can be read from results/
        copy_curves(ck.parent, out / "curves", lab)
    # each run's train.json (when there is one): its training command belongs beside the spread it explains
    metas = [json.loads((c.parent / "train.json").read_text()) if (c.parent / "train.json").is_file() else None
             for c in cks]
    ckmeta = metas[0] if metas else None
    summary = pd.DataFrame(rows)
    io.save_csv(out / "summary.csv", summary)
    seq_df = pd.concat(seqs, ignore_index=True)
    io.save_csv(out / "by_sequence.csv", seq_df[["model", "split", *[c for c in seq_df if c not in ("model", "split")]]])
    scale = {**(scale_record(ckmeta["model_config"], ckmeta["train_config"]) if ckmeta else {"data": a.data}),
             "resolution": "x".join(map(str, a.resize)), "split": " / ".join(a.splits), "note": "eval mode"}
    scale = scale if metas or not a.add_to else before_run["scale"]     # only re-scored: the folder's own scale
    io.save_figure(out / "spread_sets.png", figure(per_image, scale))
    lists = {"checkpoints": [str(c) for c in cks],
             "train_commands": [m.get("command") if m else None for m in metas],
             "train_data_roots": [m["train_config"].get("data_root") if m else None for m in metas],
             "eval_data_roots": [a.data_root] * len(cks)}
    lists = {k: before.get(k, []) + v for k, v in lists.items()}       # kept models first, as in summary.csv
    history = {"earlier_commands": before_run.get("earlier_commands", []) + [before_run["command"]]} if a.add_to else {}
    io.save_json(out / "run.json", io.provenance({"scale": scale, **lists, **history,
                                                  "command": io.command_line("dynroute_lib.analysis.spread_sets", argv)},
                                                 device=pick_device(a.device)))
    cols = ["model", "split", "num_images", "miou_pct", "spread_pct", "subset_spread_median", "window_spread_median"]
    print(summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
