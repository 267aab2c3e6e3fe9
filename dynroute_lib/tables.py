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
FIG5_MODELS = ["dynamic_raw_l16", "dynamic_a", "dynamic_b", "dynamic_c"]
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


def read_records(results_dir: Path, models=FIG5_MODELS) -> dict[str, dict[str, np.ndarray]]:
    """Gate arrays per model from 03's ``route_records/`` (fails loudly, naming what is missing)."""
    out = {}
    for m in models:
        path = Path(results_dir) / "route_records" / f"{m}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: run 03_tables (with {m} trained) before 04")
        with np.load(path) as z:
            out[m] = {k: z[k] for k in z.files if k.startswith("l")}
    return out


def activation_table(records: dict[str, dict[str, np.ndarray]], threshold: float = 1e-4) -> pd.DataFrame:
    """One row per (model, path): activation probability (share of images with gate > threshold), mean gate."""
    from .routes import node_paths
    rows = []
    for model, gates in records.items():
        L = 1 + max(int(k[1:].split("_s")[0]) for k in gates)
        for key, arr in gates.items():
            layer, scale = map(int, key[1:].split("_s"))
            for j, path in enumerate(node_paths(layer, scale, L)):
                g = np.asarray(arr)[:, j]
                rows.append({"model": model, "node": key, "layer": layer, "scale": scale, "path": path,
                             "activation_prob": float((g > threshold).mean()), "mean_gate": float(g.mean()),
                             "num_images": len(g)})
    return pd.DataFrame(rows)


def read_per_image(results_dir: Path, models=FIG5_MODELS) -> pd.DataFrame:
    """03's per-image FLOPs of ``models`` (fails loudly when one is missing)."""
    path = Path(results_dir) / "per_image_gflops.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run 03_tables before 04")
    df = pd.read_csv(path)
    missing = [m for m in models if m not in set(df["model"])]
    if missing:
        raise FileNotFoundError(f"{path}: no rows for {missing}; train them in 03_tables first")
    return df[df["model"].isin(models)]


def activation_summary(act: pd.DataFrame) -> pd.DataFrame:
    """Per model: paths, share of paths open in more than half / in every image, mean gate (Fig. 5 in numbers)."""
    g = act.groupby("model", sort=False)
    return pd.DataFrame({"paths": g.size(),
                         "open_majority_pct": g["activation_prob"].apply(lambda s: 100 * (s > 0.5).mean()),
                         "open_always_pct": g["activation_prob"].apply(lambda s: 100 * (s >= 1.0).mean()),
                         "mean_activation_prob": g["activation_prob"].mean(),
                         "mean_gate": g["mean_gate"].mean()}).reset_index()


def flops_summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean / max / min per-image real GFLOPs per model (the paper's FLOPs_Avg/Max/Min), spread in %."""
    g = per_image.groupby("model", sort=False)["real_gflops"]
    df = pd.DataFrame({"gflops_mean": g.mean(), "gflops_max": g.max(), "gflops_min": g.min(),
                       "num_images": g.size()}).reset_index()
    df["max_min_gap_pct"] = 100 * (df["gflops_max"] - df["gflops_min"]) / df["gflops_mean"]
    return df


# ---- 00: data overview -----------------------------------------------------------------------------------------
def regions(label: np.ndarray, ignore: int = 255) -> list[tuple[int, int]]:
    """``(class, area px)`` of every 4-connected region of one label value (run-length union-find, no scipy)."""
    parent: list[int] = []

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    runs, prev = [], []
    width = label.shape[1]
    for row in label:
        cut = np.flatnonzero(np.diff(row)) + 1
        cur, j = [], 0
        for s, e in zip(np.r_[0, cut], np.r_[cut, width]):
            c = int(row[s])
            if c == ignore:
                continue
            rid = len(parent)
            parent.append(rid)
            runs.append((rid, int(e - s), c))
            while j < len(prev) and prev[j][1] <= s:
                j += 1
            k = j
            while k < len(prev) and prev[k][0] < e:
                if prev[k][2] == c:
                    a, b = find(rid), find(prev[k][3])
                    parent[max(a, b)] = min(a, b)
                k += 1
            cur.append((s, e, c, rid))
        prev = cur
    area: dict[int, list[int]] = {}
    for rid, n, c in runs:
        area.setdefault(find(rid), [c, 0])[1] += n
    return [(c, n) for c, n in area.values()]


def scan_dataset(data: str, data_root: str = "", splits=("train", "val"), limit: int | None = None):
    """Raw label statistics: ``(summary, class frequency, regions)`` DataFrames, plus a few val samples."""
    from .data import build_dataset
    summary, pix, regs, samples = [], [], [], []
    for split in splits:
        ds = build_dataset(data, data_root or None, split, train=False, limit=limit)
        sizes, ignored, total = set(), 0, 0
        for i in range(len(ds)):
            image, label, _ = ds.load_raw(i)
            h, w = label.shape
            sizes.add(f"{h}x{w}")
            counts = np.bincount(label.reshape(-1), minlength=256)
            ignored, total = ignored + counts[ds.info.ignore_index], total + h * w
            pix.append(counts[:ds.info.num_classes])
            regs += [(split, i, c, n, n / (h * w)) for c, n in regions(label, ds.info.ignore_index)]
            if split == splits[-1] and len(samples) < 4:
                samples.append((image, label))
        summary.append({"data": data, "split": split, "num_images": len(ds), "image_hw": " ".join(sorted(sizes)),
                        "num_classes": ds.info.num_classes, "ignored_pixels_pct": 100 * ignored / max(total, 1)})
    info = ds.info
    p = np.stack(pix)
    freq = pd.DataFrame({"class": info.class_names, "pixels_pct": 100 * p.sum(0) / p.sum(),
                         "images_with_class_pct": 100 * (p > 0).mean(0)})
    reg = pd.DataFrame(regs, columns=["split", "image", "class_id", "area_px", "area_frac"])
    reg["class"] = [info.class_names[c] for c in reg["class_id"]]
    return pd.DataFrame(summary), freq, reg, samples


def region_size_summary(reg: pd.DataFrame, min_area_px: int = 16) -> pd.DataFrame:
    """Per class: region count and area quantiles (% of the image), regions below ``min_area_px`` dropped."""
    r = reg[reg["area_px"] >= min_area_px]
    q = r.groupby("class", sort=False)["area_frac"].quantile([0.05, 0.25, 0.5, 0.75, 0.95]).unstack() * 100
    q.columns = [f"area_p{int(c * 100):02d}_pct" for c in q.columns]
    n = r.groupby("class", sort=False).agg(num_regions=("area_px", "size"), area_max_pct=("area_frac", "max"))
    n["area_max_pct"] *= 100
    return n.join(q).reset_index()


def region_size_hist(reg: pd.DataFrame, min_area_px: int = 16, bins: int = 24) -> pd.DataFrame:
    """Histogram of log10(region area / image area) per class (tidy: class, bin edges, count)."""
    r = reg[reg["area_px"] >= min_area_px]
    edges = np.linspace(np.log10(max(r["area_frac"].min(), 1e-7)) if len(r) else -6, 0, bins + 1)
    rows = []
    for cls, g in r.groupby("class", sort=False):
        counts, _ = np.histogram(np.log10(g["area_frac"]), bins=edges)
        rows += [{"class": cls, "log10_area_frac_lo": round(lo, 4), "log10_area_frac_hi": round(hi, 4),
                  "count": int(n)}
                 for lo, hi, n in zip(edges[:-1], edges[1:], counts)]
    return pd.DataFrame(rows)


# ---- 01: static FLOPs against the paper ------------------------------------------------------------------------
SMOKE_TRUE_MACS = ("dynamic_raw_l16", "fix_l16")


def static_flops_table(run_hw: tuple[int, int] | None = None, *, smoke: bool = False) -> pd.DataFrame:
    """Every routing-space preset with all paths open (fixed routes: their route) vs the paper's static columns.

    Args:
        run_hw: Also give the official GFLOPs at this input size (the run's evaluation size).
        smoke: Count true MACs (FlopCounterMode / 2 on the meta device, ~2 s a preset) for
            ``SMOKE_TRUE_MACS`` only; the other rows get NaN there.
    """
    true_macs_presets = SMOKE_TRUE_MACS if smoke else None
    import torch

    from .config import PRESETS
    from .flops import PAPER as STATIC, route_flops, true_gmacs
    from .model import build_model
    rows = []
    for name, cfg in PRESETS.items():
        if cfg.arch != "dynamic":
            continue
        with torch.device("meta"):
            net = build_model(cfg)
        r = route_flops(net, 1024, 2048)
        p_params, p_gflops = STATIC.get(name, (None, None))
        p_params = p_params if p_params is not None else (PAPER.get(name) or (None,) * 5)[4]
        params = sum(p.numel() for p in net.parameters()) / 1e6
        count = true_macs_presets is None or name in true_macs_presets
        row = {"preset": name, "gate_mode": cfg.gate_mode, "paper_params_m": p_params, "ours_params_m": params,
               "paper_gflops": p_gflops, "ours_gflops_official": r["gflops_official"],
               "ours_gflops_executed": r["gflops_executed"],
               "ours_gmacs_true": true_gmacs(cfg, 1024, 2048) if count else float("nan")}
        if run_hw:
            row[f"ours_gflops_official_{run_hw[0]}x{run_hw[1]}"] = route_flops(net, *run_hw)["gflops_official"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df["params_gap_pct"] = 100 * (df["ours_params_m"] - df["paper_params_m"]) / df["paper_params_m"]
    df["gflops_gap_pct"] = 100 * (df["ours_gflops_official"] - df["paper_gflops"]) / df["paper_gflops"]
    df["true_vs_official_pct"] = 100 * (df["ours_gmacs_true"] - df["ours_gflops_official"]) / df["ours_gflops_official"]
    return df


def route_masks(num_layers: int = 16) -> dict:
    """The full routing space and the five modeled routes of Table 1 (for the grid figure)."""
    from .routes import RouteMask
    from .routes_modeled import MODELED, modeled_route
    return {f"routing space, Layer{num_layers} (all paths)": RouteMask.full(num_layers),
            **{name: modeled_route(name, num_layers) for name in MODELED}}


def eval_hw(ctx: Ctx) -> tuple[int, int]:
    """Padded evaluation input size of this run (resize, then pad to a multiple of 32)."""
    from .data import DATASETS
    tcfg = ctx.train_config
    hw = tcfg.resize_hw or {"cityscapes": (1024, 2048), "camvid": (360, 480), "voc": (512, 512),
                            "synthetic": (128, 256)}[DATASETS[tcfg.data].name]
    return tuple(-(-int(v) // 32) * 32 for v in hw)


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


# ---- 06: sparse-inference benchmark ----------------------------------------------------------------------------
SMOKE_BENCH_ARGS = ("--quick", "--batches", "1", "--threads", "1")   # quick mode, batch 1: ~25 s (batch 8: ~6 min)


def sparse_bench(ctx: Ctx, run: bool = True, args=()) -> tuple[pd.DataFrame, Path]:
    """The sparse-inference benchmark table: run ``python -m dynroute_lib.bench sparse`` into ``<out>/bench/``
    (smoke: quick mode at batch 1 on one thread), or read the command line's ``results/bench/``.

    The benchmark runs in a child process: it sets its own process environment (OpenMP wait policy, malloc
    thresholds; it re-executes itself for that) and must not inherit the kernel's thread settings.

    Args:
        run: Run the benchmark now (False: read ``results/bench/sparse_speed.csv``).
        args: Extra benchmark arguments, e.g. ``["--threads", "1"]`` on a shared machine.

    Returns:
        ``(table, source directory)``.
    """
    import os
    import subprocess
    import sys

    from .paths import PROJ_ROOT, RESULTS_DIR
    src = ctx.out / "bench" if run else RESULTS_DIR / "bench"
    if run:
        extra = [*(SMOKE_BENCH_ARGS if ctx.smoke else ()), *map(str, args)]
        cmd = [sys.executable, "-m", "dynroute_lib.bench", "sparse", "--out", str(src), *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJ_ROOT),
                                                                        os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, cwd=PROJ_ROOT, env=env, capture_output=True, text=True)
        print("\n".join(proc.stdout.strip().splitlines()[-3:]))
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited with status {proc.returncode}:\n"
                               + "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
    path = src / "sparse_speed.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m dynroute_lib.bench sparse` or set RUN_BENCH=True")
    return pd.read_csv(path), src
