"""Paper Tables 1-4 rebuilt from our runs: cache-or-train, evaluation, table builders (Li et al., CVPR 2020, Sec. 4).

One trained model per distinct configuration: presets that differ only by name (``cell_sep2``, ``act_relu_tanh``
and ``dynamic_raw_l16``) are trained once and shared. A run is cached under
``checkpoints/<profile>/<preset>-<model config hash>-<train recipe hash>/`` (smoke: under the smoke results
root) and reused when its ``model_final.pt`` carries the same config hash and recipe. Common-A/B/C are the
fixed routes Dynamic-A/B/C keep in >= 95 % of the evaluation passes (``routes_common``), trained as static nets.

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

from . import io
from .session import Ctx, content_hash

# ---- the paper's numbers (model_spec Sec. 6.1-6.4) ------------------------------------------------------------
# preset -> (mIoU %, GFLOPs avg, max, min, params M); max/min only where Table 1 prints them.
PAPER = {
    "fcn32s": (66.9, 35.1, 35.1, 35.1, 2.9), "deeplabv3": (67.0, 42.5, 42.5, 42.5, 3.7),
    "unet": (71.6, 53.9, 53.9, 53.9, 6.1), "hrnetv2": (72.5, 62.5, 62.5, 62.5, 5.4),
    "autodeeplab": (67.2, 33.1, 33.1, 33.1, 2.5), "common_a": (71.6, 41.6, 41.6, 41.6, 4.1),
    "common_b": (73.0, 53.7, 53.7, 53.7, 4.3), "common_c": (73.2, 57.1, 57.1, 57.1, 4.5),
    "dynamic_a": (72.8, 44.9, 48.2, 43.5, 17.8), "dynamic_b": (73.8, 58.7, 63.5, 56.8, 17.8),
    "dynamic_c": (74.6, 66.6, 71.6, 64.3, 17.8),
    "cell_bottleneck": (73.7, 1134.8, None, None, 203.9), "cell_mbconv": (75.0, 323.8, None, None, 48.2),
    "cell_sep1": (71.2, 81.4, None, None, 12.6), "cell_sep2": (76.1, 119.5, None, None, 17.8),
    "cell_sep3": (75.2, 153.8, None, None, 22.9),
    "fix_l16": (74.5, 103.1, 103.1, 103.1, 15.3), "act_softmax": (74.1, 120.0, None, None, 17.8),
    "act_sigmoid": (75.9, 120.0, None, None, 17.8), "act_relu_tanh": (76.1, 119.5, None, None, 17.8),
    "dynamic_raw_l16": (76.1, 119.5, None, None, 17.8),
}
# Rows of each table: (preset, label, extra columns).
TABLES = {
    "table_1": [("fcn32s", "FCN-32s", {"dynamic": False, "modeled_from": "FCN-32s"}),
                ("deeplabv3", "DeepLabV3", {"dynamic": False, "modeled_from": "DeepLabV3"}),
                ("unet", "U-Net", {"dynamic": False, "modeled_from": "U-Net"}),
                ("hrnetv2", "HRNetV2", {"dynamic": False, "modeled_from": "HRNetV2"}),
                ("autodeeplab", "Auto-DeepLab", {"dynamic": False, "modeled_from": "Auto-DeepLab"}),
                ("common_a", "Common-A", {"dynamic": False, "modeled_from": "Dynamic-A"}),
                ("common_b", "Common-B", {"dynamic": False, "modeled_from": "Dynamic-B"}),
                ("common_c", "Common-C", {"dynamic": False, "modeled_from": "Dynamic-C"}),
                ("dynamic_a", "Dynamic-A", {"dynamic": True, "modeled_from": "Routing-Space"}),
                ("dynamic_b", "Dynamic-B", {"dynamic": True, "modeled_from": "Routing-Space"}),
                ("dynamic_c", "Dynamic-C", {"dynamic": True, "modeled_from": "Routing-Space"})],
    "table_2": [("cell_bottleneck", "BottleNeck", {}), ("cell_mbconv", "MBConv", {}),
                ("cell_sep1", "SepConv3x3", {}), ("cell_sep2", "SepConv3x3x2", {}),
                ("cell_sep3", "SepConv3x3x3", {})],
    "table_3": [("fix_l16", "Fix", {}), ("act_softmax", "Softmax", {}), ("act_sigmoid", "Sigmoid", {}),
                ("act_relu_tanh", "max(0, Tanh)", {})],
    "table_4": [("fix_l16", "Network-Fix", {"budget_lambda2_mu": "-"}),
                ("dynamic_a", "Dynamic-A", {"budget_lambda2_mu": "0.8/0.1"}),
                ("dynamic_b", "Dynamic-B", {"budget_lambda2_mu": "0.5/0.1"}),
                ("dynamic_c", "Dynamic-C", {"budget_lambda2_mu": "0.5/0.2"}),
                ("dynamic_raw_l16", "Dynamic-Raw", {"budget_lambda2_mu": "0.0/0.0"})],
}
COMMON = {"common_a": "dynamic_a", "common_b": "dynamic_b", "common_c": "dynamic_c"}
# Training order: cheap, widely shared models first; the Common nets need their dynamic source; BottleNeck
# (~11x the cost of Raw) last.
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
    from .config import get_preset
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


def run_dir_for(mcfg, tcfg, ctx: Ctx) -> Path:
    return ctx.checkpoints_root / f"{mcfg.name}-{mcfg.hash()}-{content_hash(tcfg.to_dict(), 6)}"


def _header(path: Path) -> dict | None:
    import torch
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable cache entry is retrained, not trusted
        return None
    return {k: ck.get(k) for k in ("config_hash", "train_config", "step")} if isinstance(ck, dict) else None


def train_or_load(preset: str, ctx: Ctx, **train_overrides) -> Path:
    """Cache-or-train: the run dir of ``preset`` for this run (trained now unless cached).

    A cached ``model_final.pt`` is reused when its ``config_hash`` equals the model config's hash and its
    train recipe equals this run's; an interrupted run resumes from ``last.pt``.
    """
    from .train import train
    mcfg, tcfg = ctx.run_config(preset, **train_overrides)
    out = run_dir_for(mcfg, tcfg, ctx)
    head = _header(out / "model_final.pt")
    same_recipe = head and json.dumps(io._jsonable(head["train_config"]), sort_keys=True) == \
        json.dumps(io._jsonable(tcfg.to_dict()), sort_keys=True)
    if head and head["config_hash"] == mcfg.hash() and same_recipe:
        print(f"[{preset}] cached: {out}")
        return out
    resume = (out / "last.pt").is_file() and (_header(out / "last.pt") or {}).get("config_hash") == mcfg.hash()
    print(f"[{preset}] training {tcfg.iters} iters on {tcfg.data} ({'resume' if resume else 'new'}) -> {out}")
    with io.Timer() as t:
        summary = train(mcfg, tcfg, out, resume=resume, device=ctx.device, progress_bar=False)
    io.save_json(out / "train.json", io.provenance({
        "model_config": mcfg.to_dict(), "train_config": tcfg.to_dict(), "config_hash": mcfg.hash(),
        **summary, "wall_s": t.wall_s}, device=ctx.device))
    return out


def load_configs(run_dir: Path):
    """(ModelConfig, train-config dict) stored in a run's final checkpoint."""
    from .config import ModelConfig
    ck = io.load_checkpoint(Path(run_dir) / "model_final.pt")
    return ModelConfig.from_dict(ck["config"]), ck["train_config"]


def evaluate_run(run_dir: Path, ctx: Ctx) -> dict:
    """Evaluate ``model_final.pt`` on val (the run's resolution and image limit); cached in ``eval.json``."""
    from .data import build_dataset
    from .evaluate import evaluate_checkpoint
    run_dir = Path(run_dir)
    head = _header(run_dir / "model_final.pt") or {}
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


def static_costs(mcfg, height: int, width: int) -> dict:
    """Params (M) and all-open official GFLOPs of a config at (height, width) and at 1024x2048 (meta device)."""
    import torch

    from .flops import route_flops
    from .model import build_model
    with torch.device("meta"):
        net = build_model(mcfg)
    return {"params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "allopen_run": route_flops(net, height, width)["gflops_official"],
            "allopen_1024": route_flops(net, 1024, 2048)["gflops_official"]}


# ---- Common-A/B/C ----------------------------------------------------------------------------------------------
def common_route(source_run: Path, name: str, ctx: Ctx, keep_ratio: float = KEEP_RATIO) -> tuple[str | None, str]:
    """Extract the common route of a dynamic run from its evaluation gates; ``(mask path or None, note)``.

    The mask is stored under ``<checkpoints>/routes/<content hash>/<name>.json`` (its path is part of the
    fixed net's config hash, so a different route never reuses a stale checkpoint) and copied to
    ``<out>/common_routes/``.
    """
    from .routes_common import extract_common, path_frequencies
    mcfg, _ = load_configs(source_run)
    with np.load(Path(source_run) / "eval" / "records.npz") as z:
        keys = [k for k in z.files if k.startswith("l")]
        n = len(z[keys[0]])
        per_image = [{k: z[k][i] for k in keys} for i in range(n)]
    try:
        mask = extract_common(path_frequencies(per_image), mcfg.num_layers, keep_ratio, name=name)
    except ValueError as e:
        return None, f"no common route: {e}"
    digest = content_hash(mask.to_json(), 10)
    path = mask.save(ctx.checkpoints_root.parent / "routes" / digest / f"{name}.json")
    shutil.copyfile(path, _mkdir(ctx.out / "common_routes") / f"{name}.json")
    return str(path), f"{mask.open_paths()} open paths kept in >= {keep_ratio:.0%} of {n} passes"


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- all runs --------------------------------------------------------------------------------------------------
def run_all(plan: pd.DataFrame, ctx: Ctx, **train_overrides) -> pd.DataFrame:
    """Train (or load) and evaluate every planned model; one row per table preset (aliases expanded)."""
    rows, done = [], {}
    todo = plan[plan["run"]]
    for i, r in enumerate(plan.itertuples(), 1):
        note, preset = "", r.model
        if r.run and r.model in COMMON:
            src = done.get(COMMON[r.model])
            preset, note = common_route(src, r.model, ctx) if src else (None, f"{COMMON[r.model]} not trained")
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
    return {"trained_as": model, "config_hash": mcfg.hash(), "gate_mode": mcfg.gate_mode, "run_dir": str(run_dir),
            "note": note,
            "miou_pct": ev["miou_pct"], "gflops_mean": ev["mean_real_gflops"], "gflops_max": ev["max_real_gflops"],
            "gflops_min": ev["min_real_gflops"], "true_gmacs_mean": ev["mean_true_gmacs"],
            "params_m": st["params_m"], "allopen_run": st["allopen_run"], "allopen_1024": st["allopen_1024"],
            "resolution": f"{h}x{w}", "iters": tc["iters"], "eval_images": ev["num_images"],
            "train_wall_s": tj.get("wall_s"), "eval_wall_s": ev.get("eval_wall_s")}


# ---- tables ----------------------------------------------------------------------------------------------------
OURS = ["miou_pct", "gflops_mean", "gflops_max", "gflops_min", "params_m", "true_gmacs_mean"]


def build_table(name: str, runs: pd.DataFrame, scale: dict) -> pd.DataFrame:
    """Table ``name`` (``table_1`` .. ``table_4``): paper columns beside ours, plus the scale of our run."""
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
               "iters": o.get("iters", scale["iters"]), "device": scale["device"], "note": o.get("note") or ""}
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


def run_scale(ctx: Ctx) -> dict:
    """Data set, resolution, schedule and device of a run (stated beside every table)."""
    from .io import device_name
    mcfg, tcfg = ctx.run_config("dynamic_raw_l16")
    res = tcfg.resize_hw or "native"
    return {"data": tcfg.data, "resolution": "x".join(map(str, res)) if res != "native" else res,
            "train_crop": "x".join(map(str, tcfg.crop_hw)), "iters": tcfg.iters, "batch": tcfg.batch,
            "base_channels": mcfg.base_channels, "profile": "smoke" if ctx.smoke else ctx.profile,
            "device": f"{ctx.device} ({device_name(ctx.device)})", "eval_limit": tcfg.eval_limit}


# ---- records for Fig. 5 ----------------------------------------------------------------------------------------
def export_records(runs: pd.DataFrame, ctx: Ctx) -> pd.DataFrame:
    """Copy gated models' gate records to ``<out>/route_records/<model>.npz``; per-image FLOPs of every model."""
    frames = []
    if "run_dir" not in runs:
        return pd.DataFrame()
    for r in runs.dropna(subset=["run_dir"]).drop_duplicates("trained_as").itertuples():
        ev = Path(r.run_dir) / "eval"
        if r.gate_mode == "soft" and (ev / "records.npz").is_file():
            dst = _mkdir(ctx.out / "route_records") / f"{r.trained_as}.npz"
            shutil.copyfile(ev / "records.npz", dst)
        df = pd.read_csv(ev / "per_image.csv")
        frames.append(df.assign(model=r.trained_as, resolution=r.resolution))
    per_image = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    cols = {"real_gflops": "real_gflops", "exec_gflops": "exec_gflops", "expected_gflops": "expected_gflops",
            "macs_gflops": "true_gmacs"}
    return per_image.rename(columns=cols)


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
