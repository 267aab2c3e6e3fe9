"""The CPU reproduction of Tables 1-4 and Fig. 5 (Li et al., CVPR 2020, Sec. 4; issue 13): rows, seeds, results.

``python -m dynroute_lib repro [--only PRESET ...] [--seeds 0 1 2] [--list] [--commit-results]`` (``reproduce``) trains (or resumes, or loads from
the cache) every row of the reproduction at the ``repro`` profile (or ``--profile repro_t12000`` / ``repro_t24000``, the same at
T = 12000 / 24000, into ``results/<profile>/``) (``config.TRAIN_PROFILES``: reduced routing
space C_0 = 16, CamVid 240x320), one run directory per model and seed under ``checkpoints/repro/``, evaluates
it on the 101 val images and writes, as soon as that row is done, ``results/repro/runs/<row>.json`` (with
``--commit-results``; else under ``results/_local/``) (mIoU,
per-image real cost, convergence, provenance) and its curves ``results/repro/curves/<row>_train.csv.gz`` /
``<row>_val.csv``.
Killed at any point, the same command continues where it stopped (``last.pt`` every 100 iterations).
Dynamic-A/B/C of one seed share their budget-free first 40 % (``tables.budget_trunk``). Common-A/B/C are
extracted from the seed-0 Dynamic-A/B/C runs (paths kept in >= 95 % of val images; from the
rows' committed gate records when the checkpoints are gone, e.g. on a new machine) and retrained.
Notebooks 03/04 with ``PROFILE="repro"`` read the same cache and build the tables from it.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from .. import io
from ..engine.val_curve import converged
from . import wall_time
from .curves import TRAIN_SUFFIX, copy_curves, curve_path
from .tables import (COMMON, common_route, common_route_from_records, evaluate_run, is_cached, run_row,
                     train_or_load)

PROFILE = "repro"
# Profiles that run this suite; each keeps its own rows (results/<profile>/) and checkpoints (checkpoints/<profile>/).
REPRO_PROFILES = ("repro", "repro_t12000", "repro_t24000")
# (preset, seeds), in training order: the rows the paper's findings rest on first, costly cells last.
SUITE = [("dynamic_raw_l16", (0,)), ("dynamic_a", (0,)), ("dynamic_b", (0,)), ("dynamic_c", (0,)),
         ("fix_l16", (0,)), ("dynamic_raw_l16", (1, 2)), ("dynamic_a", (1, 2)), ("fix_l16", (1, 2)),
         ("common_a", (0,)), ("common_b", (0,)), ("common_c", (0,)),
         ("cell_sep1", (0,)), ("cell_sep3", (0,)), ("act_softmax", (0,)), ("act_sigmoid", (0,)),
         ("fcn32s", (0,)), ("deeplabv3", (0,)), ("unet", (0,)), ("hrnetv2", (0,)), ("autodeeplab", (0,)),
         ("cell_mbconv", (0,)), ("cell_bottleneck", (0,))]


def plan(only=(), seeds=()) -> list[tuple[str, int]]:
    """``(preset, seed)`` pairs of the suite, filtered by preset names and seeds (empty = all).

    Named rows with named seeds run those seeds even where the suite has fewer (``--only hrnetv2 --seeds 1``
    adds a seed to a one-seed row); seeds alone filter the suite's own pairs.
    """
    pairs = [(p, s) for p, ss in SUITE for s in ss]
    presets = list(dict.fromkeys(p for p, _ in pairs))   # suite order, each preset once
    unknown = sorted(set(only) - set(presets))
    if unknown:
        raise ValueError(f"--only: {unknown} not in the reproduction suite ({', '.join(presets)})")
    if any(s < 0 for s in seeds):
        raise ValueError(f"--seeds: {sorted(seeds)} must be >= 0")
    if only and seeds:
        return [(p, s) for p in presets if p in only for s in dict.fromkeys(seeds)]
    return [(p, s) for p, s in pairs if (not only or p in only) and (not seeds or s in seeds)]


def row_name(preset: str, seed: int) -> str:
    return f"{preset}_s{seed}"


def run_one(preset: str, seed: int, ctx) -> dict:
    """Train-or-load, evaluate and summarise one row; its files land under ``ctx.out`` at once."""
    t0 = time.perf_counter()
    note, target = "", preset
    if preset in COMMON:
        target, note = _common_target(preset, seed, ctx)
        if target is None:
            return {"preset": preset, "seed": seed, "note": note}
    run_dir = train_or_load(target, ctx, seed=seed)
    ev = evaluate_run(run_dir, ctx)
    row = {"preset": preset, "seed": seed, **run_row(run_dir, ev, preset, note)}
    name = row_name(preset, seed)
    copy_curves(run_dir, ctx.out / "curves", name)
    val = pd.read_csv(Path(run_dir) / "val_log.csv") if (Path(run_dir) / "val_log.csv").is_file() else None
    row.update(converged(val), pixel_acc_pct=ev["pixel_acc_pct"], cost_vs_allopen=row["gflops_mean"] / row["allopen_run"],
               gflops_spread=(row["gflops_max"] - row["gflops_min"]) / row["gflops_mean"],
               per_class_iou_pct=ev["per_class_iou_pct"], suite_wall_s=time.perf_counter() - t0)
    if (Path(run_dir) / "eval" / "per_image.csv").is_file():
        io.save_csv(ctx.out / "per_image" / f"{name}.csv", pd.read_csv(Path(run_dir) / "eval" / "per_image.csv"))
    if (Path(run_dir) / "eval" / "records.npz").is_file():
        io.copy_file(Path(run_dir) / "eval" / "records.npz", ctx.out / "route_records" / f"{name}.npz")
    io.save_json(ctx.out / "runs" / f"{name}.json", io.provenance({"row": name, **row, "profile": ctx.profile},
                                                                 device=ctx.device))
    return row


def _common_target(preset: str, seed: int, ctx) -> tuple[str | None, str]:
    """Route mask of a Common row: from its parent's cached run, else from the parent's committed row (its
    ``route_records/*.npz``, when that row's config hash is this run's), else by training the parent now.

    Checkpoints are not committed and do not survive a new machine; the committed gate records do, and give
    the same mask (the extraction only reads them)."""
    parent = COMMON[preset]
    name = row_name(parent, seed)
    records, row_json = ctx.out / "route_records" / f"{name}.npz", ctx.out / "runs" / f"{name}.json"
    if not is_cached(parent, ctx, seed=seed) and records.is_file() and row_json.is_file():
        mcfg, _ = ctx.run_config(parent, seed=seed)
        if json.loads(row_json.read_text()).get("config_hash") == mcfg.hash():
            target, note = common_route_from_records(records, mcfg.num_layers, preset, ctx)
            return target, f"{note} (from the committed {name} gate records)" if target else note
    src = train_or_load(parent, ctx, seed=seed)
    evaluate_run(src, ctx)
    return common_route(src, preset, ctx)


def collect(results_dir: Path) -> pd.DataFrame:
    """Every finished row of ``results/repro/runs/*.json`` as one DataFrame (one line per preset and seed)."""
    rows = [json.loads(p.read_text()) for p in sorted(Path(results_dir).glob("runs/*.json"))]
    return pd.DataFrame(rows)


def seed_summary(rows: pd.DataFrame, cols=("miou_pct", "gflops_mean", "cost_vs_allopen")) -> pd.DataFrame:
    """Mean, std and count over seeds per preset (the tables' ``mean +- std`` for Raw, Fix and Dynamic-A)."""
    cols = [c for c in cols if c in rows]
    g = rows.dropna(subset=cols[:1]).groupby("preset")[cols]
    out = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_std")).join(g.size().rename("n_seeds"))
    return out.reset_index()


def with_seeds(tabs: dict[str, pd.DataFrame], summary: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Tables with ``ours_miou_seed_mean`` / ``ours_miou_std`` / ``ours_n_seeds`` from :func:`seed_summary`
    (NaN for presets without finished seeds) beside the seed-0 ``ours_*`` columns. Rows join on ``trained_as``
    where a table has it, so an alias row (Table 2's SepConv3x3x2 and Table 3's max(0, Tanh) are Raw) shows the
    seed mean of the model it reports."""
    if summary is None or not len(summary) or "miou_pct_mean" not in summary:
        return tabs
    s = summary.set_index("preset")
    cols = {"miou_pct_mean": "ours_miou_seed_mean", "miou_pct_std": "ours_miou_std", "n_seeds": "ours_n_seeds"}
    extra = s[[c for c in cols if c in s]].rename(columns=cols)
    return {name: t.drop(columns=[c for c in extra if c in t]).join(extra, on="trained_as" if "trained_as" in t else "preset")
            for name, t in tabs.items()}


def read_curves(results_dir: Path) -> dict[str, tuple[pd.DataFrame, pd.DataFrame | None]]:
    """``{row: (train curve, val curve or None)}`` of ``results/repro/curves/`` (for ``plots.convergence_curves``)."""
    out = {}
    for train in sorted(Path(results_dir).glob(f"curves/*{TRAIN_SUFFIX}")):
        row = train.name[: -len(TRAIN_SUFFIX)]
        val = curve_path(train.parent, row, "val")
        out[row] = (pd.read_csv(train), pd.read_csv(val) if val.is_file() else None)
    return out


# ---- Tables 1-4 and Fig. 5 from the committed rows (no checkpoints: they are never committed) -----------------
RUN_FIELDS = ("config_hash", "gate_mode", "note", "miou_pct", "gflops_mean", "gflops_max",
              "gflops_min", "true_gmacs_mean", "params_m", "allopen_run", "allopen_1024", "resolution", "iters",
              "eval_images", "train_wall_s", "eval_wall_s", "converged", "tail_gain_points", "pixel_acc_pct",
              "row", "git_sha", "device_name")   # provenance: which run, which code, which machine trained it


def committed_runs(results_dir: Path, plan_df: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """What ``tables.run_all`` returns, read from ``<results_dir>/runs/<preset>_s<seed>.json`` instead of
    checkpoints: one line per table preset (aliases expanded); rows not finished yet are ``pending``.

    This is how notebooks 03/04 show the reproduction on any machine: the suite's checkpoints live only where
    they were trained, its per-row results are committed.
    """
    rows = []
    for r in plan_df.itertuples():
        path = Path(results_dir) / "runs" / f"{row_name(r.model, seed)}.json"
        if not (r.run and path.is_file()):
            note = "pending (not trained yet)" if r.run else "not run"
            rows += [{"preset": a, "trained_as": r.model, "note": note} for a in r.aliases.split()]
            continue
        d = json.loads(path.read_text())
        keep = {"trained_as": r.model, **{k: d.get(k) for k in RUN_FIELDS}}   # the plan names the model
        rows += [{**keep, "preset": a} for a in r.aliases.split()]
    return pd.DataFrame(rows)


def committed_records(results_dir: Path, runs: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Copy the gated rows' gate records to ``<out>/route_records/<model>.npz`` (what notebook 04 reads) and
    return the per-image FLOPs of every finished row (``tables.export_records`` for committed rows)."""
    from .tables import per_image_frame
    shutil.rmtree(Path(out) / "route_records", ignore_errors=True)   # mirror the finished rows: no stale records
    frames = []
    done = runs.dropna(subset=["row"]) if "row" in runs else runs.iloc[:0]
    for r in done.drop_duplicates("trained_as").itertuples():
        rec = Path(results_dir) / "route_records" / f"{r.row}.npz"
        if r.gate_mode == "soft" and rec.is_file():
            io.copy_file(rec, Path(out) / "route_records" / f"{r.trained_as}.npz")
        csv = Path(results_dir) / "per_image" / f"{r.row}.csv"
        if csv.is_file():
            frames.append(per_image_frame(pd.read_csv(csv), r.trained_as, r.resolution))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_markdown(results_dir: Path) -> str:
    """The finished rows as the Markdown table of the docs (``python -m dynroute_lib repro --summary``):
    paper mIoU / GFLOPs beside ours, real cost vs the seed-0 Raw row, per-image spread, convergence."""
    from .paper import PAPER
    rows = collect(results_dir)
    if not len(rows):
        return "(no finished rows)"
    raw = rows.set_index("row")["gflops_mean"].get("dynamic_raw_l16_s0", float("nan"))
    out = ["| row | paper mIoU % / GFLOPs | ours mIoU % | pixel acc % | params M | real GFLOPs/image mean (max, min) "
           "| cost vs Raw s0 | (max − min) / mean | converged (last-20 % gain) |", "|---" * 9 + "|"]
    for r in rows.itertuples():
        p = PAPER.get(r.preset, (None, None))
        paper = f"{p[0]} / {p[1]}" if p[0] is not None else "–"
        conv = f"{'yes' if r.converged else 'no'} ({r.tail_gain_points:+.1f})"
        out.append(f"| {r.row} | {paper} | **{r.miou_pct:.1f}** | {r.pixel_acc_pct:.1f} | {r.params_m:.3f} | "
                   f"{r.gflops_mean:.3f} ({r.gflops_max:.3f}, {r.gflops_min:.3f}) | {100 * r.gflops_mean / raw:.1f} % | "
                   f"{100 * r.gflops_spread:.1f} % | {conv} |")
    h = wall_time.suite_hours(results_dir)
    out.append(f"\nTraining wall time, {h['rows']} rows: **{h['total_h']:.1f} h** ({h['own_h']:.1f} h their own "
               f"training, summed over resumed segments, + {h['trunk_h']:.1f} h of budget-free trunks, each seed's "
               "once; `analysis.wall_time`).")
    return "\n".join(out)
