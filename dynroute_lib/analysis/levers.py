"""Gate lever experiments of the CPU reproduction (issue 13, done-when 2-3; paper Sec. 3.3 gates, Eq. 9-10 budget).

Each experiment is one ``python -m dynroute_lib train dynamic_a --profile P --eval --out DIR`` run with one gate knob
changed (``--gate-lr-mult``, ``--gate-init-bias``). This module puts such runs beside the suite's committed
Dynamic-A and Dynamic-Raw rows of the same profile and scores them the way issue 13 does: mIoU, real cost vs Raw,
per-image (max - min) / mean, conditional paths and cell ops (open in 10-90 % of the val images) and the last-20 %
val gain. Usage (writes ``summary.csv``, the curves, gate records and ``run.json`` under ``--out``)::

    python -m dynroute_lib.analysis.levers runs/lever/glr2p5 runs/lever/gbias0p5 \\
        --suite results/repro --out results/repro_exploration/gate_levers_t6000
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..config import for_run
from ..engine.val_curve import converged
from .curves import copy_curves, curve_path
from .figstyle import scale_record
from .route_stats import flops_summary, gate_summary, read_gates

KNOBS = ("gate_lr_mult", "gate_init_bias")      # the levers this study varies (model or train config fields)


def _gates(npz: Path) -> dict[str, np.ndarray]:
    if not npz.is_file():
        raise FileNotFoundError(f"{npz} missing: the run must be evaluated with records (train --eval)")
    return read_gates(npz)


def _curve(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if Path(path).is_file() else None


def score(name: str, gates: dict, per_image: pd.DataFrame, val_curve: pd.DataFrame | None, **extra) -> dict:
    """One row: real-cost mean / max / min and spread, conditional paths / cells, convergence of ``val_curve``."""
    s = gate_summary(gates)
    f = flops_summary(per_image.assign(model=name)).iloc[0]
    conv = converged(val_curve)
    return {"row": name, **extra, **{k: float(f[k]) for k in ("gflops_mean", "gflops_max", "gflops_min")},
            "spread_pct": float(f["max_min_gap_pct"]), "conditional_paths": int(s["conditional_paths"]), "conditional_cells": int(s["conditional_cells"]),
            "cells_running_pct": float(s["cells_running_pct"]), "mean_gate": float(s["mean_gate"]),
            "tail_gain_points": conv["tail_gain_points"], "converged": conv["converged"]}


def run_meta(run_dir: Path) -> dict:
    """A finished ``train --eval`` run's ``train.json`` (configs, command, eval record)."""
    meta_path = Path(run_dir) / "train.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} missing: the run has not finished (train ... --eval)")
    meta = json.loads(meta_path.read_text())
    if "eval" not in meta:
        raise ValueError(f"{meta_path}: no 'eval' record; train with --eval")
    return meta


def run_score(run_dir: Path, meta: dict | None = None) -> dict:
    """Score a ``train --eval`` run directory (``train.json``, ``records.npz``, ``per_image.csv``, ``val_log.csv``);
    ``meta`` is its :func:`run_meta` when already read."""
    run_dir = Path(run_dir)
    meta = meta or run_meta(run_dir)
    knobs = {k: {**meta["model_config"], **meta["train_config"]}.get(k) for k in KNOBS}
    return score(run_dir.name, _gates(run_dir / "records.npz"), pd.read_csv(run_dir / "per_image.csv"),
                 _curve(run_dir / "val_log.csv"), source=str(run_dir), **knobs,
                 miou_pct=meta["eval"]["miou_pct"], pixel_acc_pct=meta["eval"]["pixel_acc_pct"],
                 train_wall_s=meta.get("train_wall_s"), git_sha=meta.get("git_sha"))


def suite_score(suite: Path, row: str) -> dict:
    """Score a committed suite row (``runs/<row>.json``, ``route_records``, ``per_image``, ``curves``)."""
    suite = Path(suite)
    meta_path = suite / "runs" / f"{row}.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} missing: no committed row {row!r} in {suite}")
    meta = json.loads(meta_path.read_text())
    mcfg, tcfg = for_run(meta["preset"], profile=meta["profile"])     # the knobs the row was trained with
    knobs = {k: {**mcfg.to_dict(), **tcfg.to_dict()}.get(k) for k in KNOBS}
    return score(row, _gates(suite / "route_records" / f"{row}.npz"), pd.read_csv(suite / "per_image" / f"{row}.csv"),
                 _curve(suite / "curves" / f"{row}_val.csv"), source=str(meta_path), **knobs,
                 miou_pct=meta["miou_pct"], pixel_acc_pct=meta["pixel_acc_pct"],
                 train_wall_s=meta.get("train_wall_s"), git_sha=meta.get("git_sha"))


def committed_score(study: Path, row: pd.Series) -> dict:
    """Re-score a run kept in a committed study (``study/summary.csv`` row ``row``) from the evidence committed
    beside it (``per_image/``, ``route_records/``, ``curves/``): its checkpoint need not exist any more."""
    study, name = Path(study), str(row["row"])
    per_image = study / "per_image" / f"{name}.csv"
    if not per_image.is_file():
        raise FileNotFoundError(f"{per_image} missing: {study / 'summary.csv'} names run {name!r}")
    keep = {k: row[k] for k in ("source", *KNOBS, "miou_pct", "pixel_acc_pct", "train_wall_s", "git_sha")}
    scored = score(name, _gates(study / "route_records" / f"{name}.npz"), pd.read_csv(per_image), None, **keep)
    # the committed curves are rounded copies (repro.copy_curve): the convergence verdict stays the one computed
    # from the run's own val_log.csv
    return {**scored, "tail_gain_points": row["tail_gain_points"], "converged": row["converged"]}


def kept_runs(study: Path, drop: set[str]) -> tuple[list[dict], list[str | None], dict]:
    """The runs of a committed study (not its suite rows, not those named in ``drop``), re-scored from their
    committed evidence, their training commands (``run.json``'s ``train_commands``, in run order) and the study's
    ``run.json``."""
    study = Path(study)
    for need in ("summary.csv", "run.json"):
        if not (study / need).is_file():
            raise FileNotFoundError(f"{study / need} missing: --add-to needs a levers output folder")
    old = pd.read_csv(study / "summary.csv", dtype={"row": str, "source": str, "git_sha": str})
    # suite rows were scored from results/<suite>/runs/<row>.json (suite_score), runs from their directory
    runs = old[[not src.endswith(f"/runs/{r}.json") for r, src in zip(old["row"], old["source"])]]
    before = json.loads((study / "run.json").read_text())
    commands = dict(zip(runs["row"], before.get("train_commands", [])))
    runs = runs[~runs["row"].isin(drop)]
    return [committed_score(study, r) for _, r in runs.iterrows()], [commands.get(n) for n in runs["row"]], before


def summarize(runs: list[dict], raw: dict) -> pd.DataFrame:
    """Rows with the issue's done-when 2/3 columns against ``raw`` (a Dynamic-Raw score)."""
    df = pd.DataFrame([raw, *runs])
    df["cost_vs_raw_pct"] = 100 * df["gflops_mean"] / raw["gflops_mean"]
    df["miou_gap_to_raw"] = df["miou_pct"] - raw["miou_pct"]
    cand = df.index > 0                                     # Raw is the reference, not a candidate
    df["done_when_2"] = ((df["cost_vs_raw_pct"] <= 55) & (df["miou_gap_to_raw"] >= -5)).where(cand)
    df["done_when_3"] = ((df["spread_pct"] >= 10) & (df["conditional_paths"] > 0)).where(cand)
    return df


def curves_figure(curves: dict[str, pd.DataFrame], scale: dict):
    """Val mIoU and real cost (share of the all-open cost) over training, one line per run: where each lever's
    budget phase (from 40 % of training) moves accuracy and cost."""
    from matplotlib.figure import Figure
    from .figstyle import FONT, LABEL, titled
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax_m, ax_c = fig.subplots(1, 2)
    for name, c in curves.items():
        ax_m.plot(c["step"], c["val_miou_pct"], label=name, lw=1.2)
        ax_c.plot(c["step"], 100 * c["val_real_ratio"], label=name, lw=1.2)
    for ax, ylabel in ((ax_m, "val mIoU %"), (ax_c, "val real cost, % of all-open")):
        ax.set_xlabel("iteration", fontsize=LABEL)
        ax.set_ylabel(ylabel, fontsize=LABEL)
        ax.tick_params(labelsize=FONT)
        ax.grid(alpha=0.3)
    ax_c.legend(fontsize=FONT)
    return titled(fig, "Dynamic-A gate levers: val mIoU and real cost during training", scale)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib.analysis.levers", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="*", help="train --eval run directories (one lever each)")
    ap.add_argument("--add-to", metavar="DIR", help="a committed study to extend: its runs are kept, re-scored from "
                    "DIR's committed per-image costs, gate records and curves (no checkpoints), and DIR is rewritten")
    ap.add_argument("--suite", default="results/repro", help="committed suite of the same profile")
    ap.add_argument("--baseline", nargs="+", default=["dynamic_a_s0"],
                    help="the suite's rows with the paper's gate settings (e.g. one per seed)")
    ap.add_argument("--raw", default="dynamic_raw_l16_s0", help="the suite's Dynamic-Raw row (cost reference)")
    ap.add_argument("--out", help="results directory to write (default: --add-to)")
    ap.add_argument("--what", default="", help="one line for run.json: what the study asks")
    a = ap.parse_args(argv)
    a.out = a.out or a.add_to
    if not a.out or not (a.runs or a.add_to):
        ap.error("pass run directories and --out, or --add-to DIR")
    try:
        metas = [run_meta(r) for r in a.runs]
        kept, kept_commands, before = (kept_runs(a.add_to, {Path(r).name for r in a.runs}) if a.add_to
                                       else ([], [], {}))
        runs = ([suite_score(a.suite, b) for b in a.baseline] + kept
                + [run_score(r, m) for r, m in zip(a.runs, metas)])
        df = summarize(runs, suite_score(a.suite, a.raw))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    if a.add_to and out.resolve() != Path(a.add_to).resolve():    # the kept runs' evidence travels with them
        for r in kept:
            for name in (f"per_image/{r['row']}.csv", f"route_records/{r['row']}.npz",
                         *(curve_path("curves", r["row"], k) for k in ("val", "train"))):
                if (Path(a.add_to) / name).is_file():
                    io.copy_file(Path(a.add_to) / name, out / name)
    for r in map(Path, a.runs):       # the evidence behind each row, so the numbers can be rebuilt from results/
        copy_curves(r, out / "curves", r.name)
        io.save_csv(out / "per_image" / f"{r.name}.csv", pd.read_csv(r / "per_image.csv"))
        io.copy_file(r / "records.npz", out / "route_records" / f"{r.name}.npz")
    io.save_csv(out / "summary.csv", df)
    scale = ({**scale_record(metas[0]["model_config"], metas[0]["train_config"]), "split": "val"} if metas
             else before["scale"])
    curves = {b: _curve(Path(a.suite) / "curves" / f"{b}_val.csv") for b in [a.raw, *a.baseline]}
    curves.update({r["row"]: _curve(out / "curves" / f"{r['row']}_val.csv") for r in kept})
    curves.update({r.name: _curve(r / "val_log.csv") for r in map(Path, a.runs)})
    io.save_figure(out / "lever_curves.png", curves_figure({k: v for k, v in curves.items() if v is not None}, scale))
    history = {"earlier_commands": before.get("earlier_commands", []) + [before["command"]]} if a.add_to else {}
    io.save_json(out / "run.json", io.provenance({"what": a.what or before.get("what", ""), "scale": scale, **history,
                                                  "train_commands": kept_commands + [m.get("command") for m in metas],
                                                  "command": io.command_line("dynroute_lib.analysis.levers", argv)}))
    cols = ["row", "gate_lr_mult", "gate_init_bias", "miou_pct", "cost_vs_raw_pct", "spread_pct",
            "conditional_paths", "conditional_cells", "tail_gain_points"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
