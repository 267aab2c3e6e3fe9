"""Paper Tables 1-4 rebuilt from our runs: cache-or-train, evaluation, table builders (Li et al., CVPR 2020, Sec. 4).

One trained model per distinct configuration: presets that differ only by name (``cell_sep2``, ``act_relu_tanh``
and ``dynamic_raw_l16``) are trained once and shared. A run is cached under
``checkpoints/<profile>/<preset>-<model config hash>-<train recipe hash>/`` (smoke: under the smoke results
root) and reused when its ``model_final.pt`` carries the same config hash and recipe. Common-A/B/C are the
fixed routes Dynamic-A/B/C keep in >= 95 % of the evaluation passes (``routes.common``), trained as static nets.
The paper's numbers and the rows of each table are ``analysis.paper``; ``ctx`` is the notebook session
(``notebook.Ctx``: run configs, device, output and checkpoint directories).

FLOP columns (see ``results/README.md``): ``ours_gflops_mean|max|min`` are per-image official-rule real GFLOPs
at the run's evaluation resolution (column ``resolution``); ``ours_gflops_allopen`` is the all-paths-open
ceiling at that size; ``ours_gflops_1024x2048_allopen`` the ceiling at the paper's size and
``ours_gflops_1024x2048_est`` the measured mean scaled by the ratio of the two ceilings (exact for fixed routes).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..engine.checkpoint import read_configs, read_header
from ..io import content_hash
from . import wall_time
from .paper import PAPER, TABLES
from .static_costs import static_costs

COMMON = {"common_a": "dynamic_a", "common_b": "dynamic_b", "common_c": "dynamic_c"}
# Training order: cheap, shared models first; the Commons after their dynamic source; BottleNeck (~11x Raw) last.
TRAIN_ORDER = ["dynamic_raw_l16", "dynamic_a", "dynamic_b", "dynamic_c", "fix_l16", "fcn32s", "deeplabv3",
               "unet", "hrnetv2", "autodeeplab", "cell_sep1", "cell_sep3", "act_softmax", "act_sigmoid",
               "common_a", "common_b", "common_c", "cell_mbconv", "cell_bottleneck"]
KEEP_RATIO = 0.95
TRUE_MACS_IMAGES = 8          # true MACs (FlopCounterMode) are counted on the first N val images only


# ---- distinct models -------------------------------------------------------------------------------------------
def plan_runs(presets=None, limit: int = 0, skip=()) -> pd.DataFrame:
    """One row per distinct model to train, in TRAIN_ORDER: ``model, aliases, run`` (False = skipped).

    Args:
        presets: Table presets to cover (default: every row of Tables 1-4).
        limit: > 0 trains only the first ``limit`` distinct models (the other rows stay NaN).
        skip: Presets not to train (rows kept, ours = NaN).
    """
    from ..config import get_preset
    wanted = list(dict.fromkeys(presets or [p for rows in TABLES.values() for p, _, _ in rows]))
    groups: dict[str, list[str]] = {}
    key_of: dict = {}
    for p in sorted(wanted, key=lambda n: TRAIN_ORDER.index(n) if n in TRAIN_ORDER else len(TRAIN_ORDER)):
        key = p if p in COMMON else replace(get_preset(p), name="")
        groups.setdefault(key_of.setdefault(key, p), []).append(p)
    rows = [{"model": m, "aliases": " ".join(a), "run": m not in skip} for m, a in groups.items()]
    df = pd.DataFrame(rows)
    if limit > 0:
        df.loc[df.index >= limit, "run"] = False
    return df


def run_dir_for(mcfg, tcfg, ctx) -> Path:
    return ctx.checkpoints_root / f"{mcfg.name}-{mcfg.hash()}-{content_hash(tcfg.to_dict(), 6)}"


def is_cached(preset: str, ctx, **train_overrides) -> bool:
    """True when ``preset`` has a finished run of this run's model config and recipe (what ``train_or_load``
    would load without training)."""
    mcfg, tcfg = ctx.run_config(preset, **train_overrides)
    return _finished(mcfg, tcfg, run_dir_for(mcfg, tcfg, ctx))


def _finished(mcfg, tcfg, out: Path) -> bool:
    head = read_header(out / "model_final.pt")
    return bool(head) and head["config_hash"] == mcfg.hash() and \
        json.dumps(io._jsonable(head["train_config"]), sort_keys=True) == \
        json.dumps(io._jsonable(tcfg.to_dict()), sort_keys=True)


def train_or_load(preset: str, ctx, **train_overrides) -> Path:
    """Cache-or-train: the run dir of ``preset`` for this run (trained now unless cached).

    A cached ``model_final.pt`` is reused when its ``config_hash`` equals the model config's hash and its
    train recipe equals this run's; an interrupted run resumes from ``last.pt``.
    """
    from ..engine.train import train
    mcfg, tcfg = ctx.run_config(preset, **train_overrides)
    out = run_dir_for(mcfg, tcfg, ctx)
    if _finished(mcfg, tcfg, out):
        print(f"[{preset}] cached: {out}")
        return out
    resume = (out / "last.pt").is_file() and (read_header(out / "last.pt") or {}).get("config_hash") == mcfg.hash()
    trunk = None if resume else budget_trunk(mcfg, tcfg, ctx)
    how = "resume" if resume else f"branch from {trunk.parent.name}" if trunk else "new"
    print(f"[{preset}] training {tcfg.iters} iters on {tcfg.data} ({how}) -> {out}", flush=True)
    with io.Timer() as t:
        summary = train(mcfg, tcfg, out, resume=resume, device=ctx.device, progress_bar=False, branch_from=trunk)
    io.save_json(out / "train.json", io.provenance({
        "model_config": mcfg.to_dict(), "train_config": tcfg.to_dict(), "config_hash": mcfg.hash(),
        **summary, "wall_s": t.wall_s}, device=ctx.device))
    return out


def budget_trunk(mcfg, tcfg, ctx) -> Path | None:
    """``last.pt`` of the budget-free trunk a budget row continues from (trained now unless cached), or None.

    Dynamic-A/B/C of one seed differ only in lambda_2 / mu, and w(t) = 0 before 40 % of training: their first
    ``0.4 T`` iterations are one shared run (``engine.branch.check_branch``), trained once per seed and recipe.
    """
    from ..engine.branch import branches, trunk_stop
    from ..engine.train import train
    if not branches(mcfg):
        return None
    stop = trunk_stop(tcfg.iters)
    if stop == 0:
        return None
    tm = replace(mcfg, name="budget_trunk", budget_weight=0.0, budget_mu=0.0)
    out = run_dir_for(tm, tcfg, ctx)
    head = read_header(out / "last.pt") or {}
    if head.get("config_hash") == tm.hash() and head.get("step") == stop:
        return out / "last.pt"
    # resume only this trunk's own unfinished state; anything else there (another config) is trained over
    resume = head.get("config_hash") == tm.hash() and head.get("step", 0) < stop
    print(f"[{mcfg.name}] budget-free trunk: {stop} iters -> {out}", flush=True)
    train(tm, tcfg, out, resume=resume, device=ctx.device, progress_bar=False, stop_at=stop)
    return out / "last.pt"


def load_configs(run_dir: Path):
    """(ModelConfig, train-config dict) stored in a run's final checkpoint."""
    return read_configs(Path(run_dir) / "model_final.pt")


def evaluate_run(run_dir: Path, ctx) -> dict:
    """Evaluate ``model_final.pt`` on val (the run's resolution and image limit); cached in ``eval.json``."""
    from ..data import build_dataset
    from ..engine.evaluate import evaluate_checkpoint
    run_dir = Path(run_dir)
    head = read_header(run_dir / "model_final.pt") or {}
    tc = head.get("train_config") or {}
    key = {"config_hash": head.get("config_hash"), "step": head.get("step"), "data": tc.get("data"),
           "data_root": tc.get("data_root"), "resize_hw": tc.get("resize_hw"), "limit": tc.get("eval_limit"),
           "true_macs_images": TRUE_MACS_IMAGES}
    cache = run_dir / "eval.json"
    if cache.is_file():
        res = json.loads(cache.read_text())
        if res.get("cache_key") == io._jsonable(key):
            return res
    mcfg, _ = load_configs(run_dir)
    ds = build_dataset(tc["data"], tc["data_root"] or None, "val", train=False, normalization=mcfg.normalization,
                       resize_hw=tuple(tc["resize_hw"]) if tc.get("resize_hw") else None)
    kw = dict(data=tc["data"], data_root=tc["data_root"] or None, split="val", resize_hw=tc.get("resize_hw"),
              device=ctx.device)
    with io.Timer() as t:
        res = evaluate_checkpoint(run_dir / "model_final.pt", limit=tc.get("eval_limit"), true_macs=False,
                                  records_dir=run_dir / "eval", **kw)
        n = min(TRUE_MACS_IMAGES, res["num_images"])     # FlopCounterMode costs ~6x a forward: a subset
        sub = evaluate_checkpoint(run_dir / "model_final.pt", limit=n, true_macs=True, **kw)
    res.update({k: sub[k] for k in ("mean_true_gmacs", "max_true_gmacs", "min_true_gmacs")},
               true_macs_images=n, true_macs_subset_mean_real_gflops=sub["mean_real_gflops"])
    res.update(cache_key=key, eval_wall_s=t.wall_s, input_hw=list(ds[0][0].shape[-2:]))
    io.save_json(cache, res)
    return json.loads(cache.read_text())


# ---- Common-A/B/C ----------------------------------------------------------------------------------------------
def common_route(source_run: Path, name: str, ctx, keep_ratio: float = KEEP_RATIO) -> tuple[str | None, str]:
    """Extract the common route of a dynamic run from its evaluation gates; ``(mask path or None, note)``.

    The mask is stored under ``<checkpoints>/routes/<content hash>/<name>.json`` (its path is part of the
    fixed net's config hash, so a different route never reuses a stale checkpoint) and copied to
    ``<out>/common_routes/``.
    """
    mcfg, _ = load_configs(source_run)
    return common_route_from_records(Path(source_run) / "eval" / "records.npz", mcfg.num_layers, name, ctx,
                                     keep_ratio)


def common_route_from_records(records: Path, num_layers: int, name: str, ctx,
                              keep_ratio: float = KEEP_RATIO) -> tuple[str | None, str]:
    """:func:`common_route` from a gate-records file (``eval/records.npz`` or its committed copy under
    ``results/<profile>/route_records/``), so a Common row can be retrained without its parent's checkpoint."""
    from ..routes import is_node_key
    from ..routes.common import extract_common, path_frequencies
    with np.load(records) as z:
        keys = [k for k in z.files if is_node_key(k)]
        n = len(z[keys[0]])
        per_image = [{k: z[k][i] for k in keys} for i in range(n)]
    try:
        mask = extract_common(path_frequencies(per_image), num_layers, keep_ratio, name=name)
    except ValueError as e:
        return None, f"no common route: {e}"
    digest = content_hash(mask.to_json(), 10)
    path = mask.save(ctx.checkpoints_root.parent / "routes" / digest / f"{name}.json")
    io.copy_file(path, ctx.out / "common_routes" / f"{name}.json")
    return str(path), f"{mask.open_paths()} open paths kept in >= {keep_ratio:.0%} of {n} passes"


# ---- all runs --------------------------------------------------------------------------------------------------
def run_all(plan: pd.DataFrame, ctx, cached_only: bool = False, **train_overrides) -> pd.DataFrame:
    """Train (or load) and evaluate every planned model; one row per table preset (aliases expanded).

    ``cached_only``: load finished runs only (e.g. the ``repro`` suite while it is still training); every other
    row is kept with ``note="pending (not trained yet)"`` and NaN results instead of being trained now.
    """
    rows, done = [], {}
    todo = plan[plan["run"]]
    for i, r in enumerate(plan.itertuples(), 1):
        note, preset = "", r.model
        if r.run and r.model in COMMON:
            src = done.get(COMMON[r.model])
            preset, note = common_route(src, r.model, ctx) if src else (None, f"{COMMON[r.model]} not trained")
        if r.run and preset is not None and cached_only and not is_cached(preset, ctx, **train_overrides):
            preset, note = None, "pending (not trained yet)"
        if not r.run or preset is None:
            rows += [{"preset": a, "trained_as": r.model, "note": note or "not run"} for a in r.aliases.split()]
            continue
        t0 = time.perf_counter()
        run_dir = train_or_load(preset, ctx, **train_overrides)
        ev = evaluate_run(run_dir, ctx)
        done[r.model] = run_dir
        row = run_row(run_dir, ev, r.model, note)
        print(f"[{len(done)}/{len(todo)}] {r.model}: mIoU {row['miou_pct']:.1f} %, {row['gflops_mean']:.3f} "
              f"GFLOPs/image at {row['resolution']}, {time.perf_counter() - t0:.0f} s")
        rows += [{**row, "preset": a} for a in r.aliases.split()]
    ctx.record(runs={r["preset"]: r.get("config_hash") for r in rows})
    return pd.DataFrame(rows)


def run_row(run_dir: Path, ev: dict, model: str, note: str = "") -> dict:
    mcfg, tc = load_configs(run_dir)
    h, w = ev["input_hw"]
    st = static_costs(mcfg, h, w)
    tj = json.loads((Path(run_dir) / "train.json").read_text()) if (Path(run_dir) / "train.json").is_file() else {}
    own_wall, trunk_wall = wall_time.run_wall(run_dir, mcfg, tc["iters"], tj.get("wall_s"))
    return {"trained_as": model, "config_hash": mcfg.hash(), "gate_mode": mcfg.gate_mode, "run_dir": str(run_dir),
            "note": note,
            "miou_pct": ev["miou_pct"], "gflops_mean": ev["mean_real_gflops"], "gflops_max": ev["max_real_gflops"],
            "gflops_min": ev["min_real_gflops"], "true_gmacs_mean": ev["mean_true_gmacs"],
            "params_m": st["params_m"], "allopen_run": st["allopen_run"], "allopen_1024": st["allopen_1024"],
            "resolution": f"{h}x{w}", "iters": tc["iters"], "eval_images": ev["num_images"],
            "train_wall_s": own_wall, "trunk_wall_s": trunk_wall, "eval_wall_s": ev.get("eval_wall_s")}


# ---- tables ----------------------------------------------------------------------------------------------------
OURS = ["miou_pct", "gflops_mean", "gflops_max", "gflops_min", "params_m", "true_gmacs_mean"]


def build_table(name: str, runs: pd.DataFrame, scale: dict) -> pd.DataFrame:
    """Table ``name`` (``table_1`` .. ``table_4``): paper columns beside ours, our scale, who trained each row."""
    by = runs.set_index("preset") if len(runs) else pd.DataFrame()
    out = []
    for preset, label, extra in TABLES[name]:
        p = dict(zip(("miou", "gflops", "gflops_max", "gflops_min", "params"), PAPER[preset]))
        o = {k: v for k, v in (by.loc[preset].to_dict() if preset in by.index else {}).items() if not _missing(v)}
        g = lambda k: _num(o.get(k))  # noqa: E731
        row = {"preset": preset, "method": label, **extra,
               "paper_miou_pct": p["miou"], "ours_miou_pct": g("miou_pct"),
               "paper_gflops": p["gflops"], "ours_gflops_mean": g("gflops_mean"),
               "paper_gflops_max": _num(p["gflops_max"]), "ours_gflops_max": g("gflops_max"),
               "paper_gflops_min": _num(p["gflops_min"]), "ours_gflops_min": g("gflops_min"),
               "paper_params_m": p["params"], "ours_params_m": g("params_m"),
               "ours_true_gmacs_mean": g("true_gmacs_mean"), "ours_gflops_allopen": g("allopen_run"),
               "ours_cost_pct": 100 * g("gflops_mean") / g("allopen_run"),
               "ours_gflops_1024x2048_allopen": g("allopen_1024"),
               "ours_gflops_1024x2048_est": g("gflops_mean") * g("allopen_1024") / g("allopen_run"),
               "trained_as": o.get("trained_as", preset), "config_hash": o.get("config_hash"),
               "data": scale["data"], "resolution": o.get("resolution") or scale["resolution"],
               "iters": o.get("iters", scale["iters"]), "device": o.get("device_name") or scale["device"],
               "note": o.get("note") or ""}
        out.append(row)
    df = pd.DataFrame(out)
    if name == "table_4":
        raw = df.set_index("preset")
        df["paper_cost_vs_raw_pct"] = 100 * df["paper_gflops"] / raw.loc["dynamic_raw_l16", "paper_gflops"]
        df["ours_cost_vs_raw_pct"] = 100 * df["ours_gflops_mean"] / raw.loc["dynamic_raw_l16", "ours_gflops_mean"]
    return df


def build_tables(runs: pd.DataFrame, scale: dict) -> dict[str, pd.DataFrame]:
    return {name: build_table(name, runs, scale) for name in TABLES}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _num(v) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


SHOW = ["method", "paper_miou_pct", "ours_miou_pct", "paper_gflops", "ours_gflops_mean", "ours_cost_pct",
        "paper_params_m", "ours_params_m"]


def show(df: pd.DataFrame, extra=()) -> pd.DataFrame:
    """The columns worth reading in a notebook, rounded."""
    return df[[c for c in [*SHOW, *extra] if c in df.columns]].round(2)


# ---- records for Fig. 5 ----------------------------------------------------------------------------------------
def export_records(runs: pd.DataFrame, ctx) -> pd.DataFrame:
    """Copy gated models' gate records to ``<out>/route_records/<model>.npz``; per-image FLOPs of every model."""
    frames = []
    shutil.rmtree(ctx.out / "route_records", ignore_errors=True)   # mirror these runs: no stale records
    if "run_dir" not in runs:
        return pd.DataFrame()
    for r in runs.dropna(subset=["run_dir"]).drop_duplicates("trained_as").itertuples():
        ev = Path(r.run_dir) / "eval"
        if r.gate_mode == "soft" and (ev / "records.npz").is_file():
            io.copy_file(ev / "records.npz", ctx.out / "route_records" / f"{r.trained_as}.npz")
        frames.append(per_image_frame(pd.read_csv(ev / "per_image.csv"), r.trained_as, r.resolution))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_image_frame(df: pd.DataFrame, model: str, resolution: str) -> pd.DataFrame:
    """An evaluation's ``per_image.csv`` as rows of ``per_image_gflops.csv`` (model, resolution, unit names)."""
    return df.assign(model=model, resolution=resolution).rename(columns={"macs_gflops": "true_gmacs"})


# ---- 02: training curves ---------------------------------------------------------------------------------------
def train_curve(run_dir: Path) -> pd.DataFrame:
    """The run's ``train_log.csv`` with unit-bearing, unambiguous column names."""
    log = pd.read_csv(Path(run_dir) / "train_log.csv")
    return log.rename(columns={"ce": "ce_loss", "budget": "budget_loss", "expected_ratio": "expected_cost_ratio"})


def metrics_row(preset: str, run_dir: Path, ev: dict, scale: dict) -> pd.DataFrame:
    """One-row summary of an evaluated run (mIoU, FLOPs mean/max/min, true MACs) with the run's scale."""
    row = run_row(run_dir, ev, preset)
    keep = {k: row[k] for k in ("config_hash", "miou_pct", "gflops_mean", "gflops_max", "gflops_min",
                                "true_gmacs_mean", "params_m", "allopen_run", "allopen_1024", "resolution",
                                "iters", "eval_images", "train_wall_s", "eval_wall_s")}
    keep = {("gflops_allopen" if k == "allopen_run" else "gflops_1024x2048_allopen" if k == "allopen_1024" else k): v
            for k, v in keep.items()}
    return pd.DataFrame([{"preset": preset, **keep, "pixel_acc_pct": ev["pixel_acc_pct"], "data": scale["data"],
                          "device": scale["device"]}])


def per_class_iou(ev: dict) -> pd.DataFrame:
    """Per-class IoU (%) of an evaluation result."""
    d = ev["per_class_iou_pct"]
    return pd.DataFrame({"class": list(d), "iou_pct": [_num(v) for v in d.values()]})
