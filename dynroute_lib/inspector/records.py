"""Per-image route inspection: what the inspector shows for one image, computed once (paper Sec. 4.3, Fig. 5).

A *record* holds what the inspector shows for one image, computed once per (model, image) and cached:
``image`` (uint8 RGB [H, W, 3]), ``gt`` (int [H, W] or None), ``pred`` (int [H, W]), ``gates`` (node key ->
float32 [n], path order keep/up/down), ``live`` / ``computed`` (node key -> bool), ``real_gflops`` (official
accounting) and ``exec_gflops`` (executed), ``activity`` (per-scale open paths / active nodes) plus ``index``,
``name``, ``num_layers`` and ``source``. Models come from a checkpoint (``engine.checkpoint.load_model``) or
fresh from a preset at the run's scale (``config.for_run``: smoke runs get the smoke width). Figures live in
:mod:`inspector.view`, the widget in :mod:`inspector.widget`; this module has no UI dependency.
"""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..analysis.route_plot import scale_activity
from ..config import for_run
from ..data import build_dataset, denormalize, normalize, pad_to_multiple
from ..engine.checkpoint import load_model
from ..model import build_model
from ..paths import CHECKPOINTS_DIR, PROJ_ROOT, RESULTS_DIR
from ..routes import node_key

_CACHE: dict[tuple, dict] = {}
SMOKE_IMAGES = 4            # images inspected in smoke runs (the model's smoke width comes from config.for_run)


# ---- data and models -------------------------------------------------------------------------------
def inspection_dataset(ctx, n_images: int = 8):
    """The run's validation images to inspect: the first ``n_images`` (at most ``SMOKE_IMAGES`` when smoke)."""
    tcfg = ctx.train_config
    n = min(n_images, SMOKE_IMAGES) if ctx.smoke else n_images
    return build_dataset(tcfg.data, root=tcfg.data_root or None, split="val", train=False, limit=n)


def load_model_for_inspection(ckpt_path: str | Path | None = None, preset: str | None = "dynamic_raw_l16",
                              num_classes: int = 19, smoke: bool = False,
                              seed: int = 0) -> tuple[torch.nn.Module, str]:
    """Model in eval mode plus a one-line banner saying what it is.

    Args:
        ckpt_path: Checkpoint (``{"model": state_dict, "config": dict, ...}``); None = fresh random init.
        preset: Expected preset; a checkpoint of another preset is refused (None accepts any).
        num_classes: Classes of the data set; a checkpoint with another count is refused.
        smoke: A fresh model gets the smoke width of ``config.for_run``; a checkpoint keeps its own config.
        seed: Initialisation seed of a fresh model.

    Raises:
        ValueError: Unreadable checkpoint, other preset or class count, or mismatched weights.
        FileNotFoundError: ``ckpt_path`` does not exist.
    """
    if not ckpt_path:
        cfg, _ = for_run(preset or "dynamic_raw_l16", smoke=smoke, num_classes=num_classes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(cfg).eval()
        model.inspect_id, model.inspect_step = f"init:{cfg.hash()}:seed{seed}", None
        what = ("a fixed route (no gates) with random weights" if cfg.gate_mode == "fixed"
                else "routes are random, not learned")
        return model, (f"untrained model ({cfg.name}, random init, seed {seed}): {what}; "
                       f"set CHECKPOINT to inspect a trained model")
    path = Path(ckpt_path).expanduser()
    model, cfg, ckpt = load_model(path, preset=preset, num_classes=num_classes)
    model.eval().inspect_id = f"ckpt:{path.resolve()}:{path.stat().st_mtime_ns}"
    step = ckpt.get("step", "?")
    model.inspect_step = step
    fixed = ": a fixed route (no gates)" if cfg.gate_mode == "fixed" else ""
    return model, f"checkpoint {path.name} ({cfg.name}, step {step}){fixed}"


def available_sources(preset: str = "dynamic_raw_l16", extra_presets=("dynamic_raw_l16", "dynamic_a", "fix_l16"),
                      checkpoint: str = "", max_found: int = 20) -> list[tuple[str, str]]:
    """Dropdown choices ``(label, value)``: ``"ckpt:<path>"`` for ``checkpoint`` and the checkpoints found under
    ``checkpoints/``, ``results/02_train/`` and ``runs/`` (at most ``max_found``), then ``"preset:<name>"`` for
    untrained presets."""
    found = [Path(checkpoint).expanduser()] if checkpoint else []
    for root in (CHECKPOINTS_DIR, RESULTS_DIR / "02_train", PROJ_ROOT / "runs"):
        found += sorted(p for ext in ("*.pt", "*.pth") for p in root.rglob(ext)) if root.is_dir() else []
    out = [(f"checkpoint: {p.parent.name}/{p.name}", f"ckpt:{p}") for p in list(dict.fromkeys(found))[:max_found]]
    names = dict.fromkeys([preset, *extra_presets])
    return out + [(f"untrained: {n}", f"preset:{n}") for n in names]


def current_source(preset: str, checkpoint: str = "") -> str:
    """The :func:`available_sources` value for a notebook's PRESET / CHECKPOINT parameters."""
    return f"ckpt:{Path(checkpoint).expanduser()}" if checkpoint else f"preset:{preset}"


def load_source(value: str, *, num_classes: int, smoke: bool = False, seed: int = 0):
    """Load a dropdown value from :func:`available_sources` -> ``(model, banner)``."""
    kind, _, arg = value.partition(":")
    if kind == "ckpt":
        return load_model_for_inspection(arg, preset=None, num_classes=num_classes, smoke=smoke, seed=seed)
    return load_model_for_inspection(None, preset=arg, num_classes=num_classes, smoke=smoke, seed=seed)


def _model_id(model) -> str:
    return getattr(model, "inspect_id", None) or f"obj:{id(model)}"


# ---- records ---------------------------------------------------------------------------------------
@torch.inference_mode()
def _forward(model, x: torch.Tensor, hw: tuple[int, int], device: str) -> dict:
    """Run one normalised, padded image [3, H, W]; per-image routing record without image/gt."""
    model.to(device).eval()
    logits, aux = model(x[None].to(device))
    h, w = hw
    gates = {k: v[0].detach().float().cpu().numpy() for k, v in aux.gates.items()}
    keys = {n: node_key(*n) for n in aux.states}
    live = {keys[n]: bool(st.live[0]) for n, st in aux.states.items()}
    computed = {keys[n]: bool(st.computed[0]) for n, st in aux.states.items()}
    L = model.cfg.num_layers
    return dict(pred=logits[0, :, :h, :w].argmax(0).to(torch.uint8).cpu().numpy(), gates=gates, live=live,
                computed=computed, real_gflops=float(aux.real_gflops[0]), exec_gflops=float(aux.exec_gflops[0]),
                activity=scale_activity(gates, L, computed=computed, live=live), num_layers=L, source=model.cfg.name)


def _npz_path(cache_dir, mid: str, tag: str) -> Path | None:
    if cache_dir is None or mid.startswith("obj:"):
        return None                                   # object ids are not stable across sessions
    digest = hashlib.sha1(f"{mid}|{tag}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"record_{digest}.npz"


def _save_npz(path: Path, rec: dict) -> None:
    arrays = {"image": rec["image"], "pred": rec["pred"], **{f"g:{k}": v for k, v in rec["gates"].items()}}
    if rec["gt"] is not None:
        arrays["gt"] = rec["gt"]
    meta = {k: v for k, v in rec.items() if k not in ("image", "pred", "gt", "gates")}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)


def _load_npz(path: Path) -> dict:
    with np.load(path) as z:
        rec = json.loads(str(z["meta"]))
        rec.update(image=z["image"], pred=z["pred"], gt=z["gt"] if "gt" in z.files else None,
                   gates={k[2:]: z[k] for k in z.files if k.startswith("g:")})
    return rec


def collect_records(model, dataset, indices, device: str = "cpu", cache_dir: str | Path | None = None) -> list[dict]:
    """One record per data set index (see the module docstring), cached per (model id, data set, index).

    Args:
        model: Network from :func:`load_model_for_inspection` (or any ``build_model`` result).
        dataset: Eval data set (``build_dataset(..., train=False)``): ``ds[i] -> (image, mask, meta)``.
        indices: Data set indices to inspect.
        device: Device to run on ("cpu", "cuda").
        cache_dir: Optional folder for ``.npz`` copies of the records (reused across sessions).
    """
    info = getattr(dataset, "info", None)
    mode = getattr(getattr(dataset, "transform", None), "normalization", model.cfg.normalization)
    samples = getattr(dataset, "samples", None)
    mid, out = _model_id(model), []
    for i in map(int, indices):
        tag = str(samples[i].image) if samples is not None else f"{getattr(info, 'name', 'data')}:{i}"
        key = (mid, tag, i)
        npz = _npz_path(cache_dir, mid, tag)
        if key not in _CACHE and npz is not None and npz.is_file():
            _CACHE[key] = _load_npz(npz)
        if key not in _CACHE:
            x, y, meta = dataset[i]
            h, w = meta.get("orig_hw", tuple(x.shape[-2:]))
            rec = _forward(model, x, (h, w), device)
            rec.update(index=i, name=str(meta.get("name", i)), image=denormalize(x[:, :h, :w], mode)
                       .permute(1, 2, 0).numpy(), gt=y[:h, :w].to(torch.uint8).numpy())
            _CACHE[key] = rec
            if npz is not None:
                _save_npz(npz, rec)
        out.append(_CACHE[key])
    return out


def image_record(model, data: bytes, *, name: str = "upload", device: str = "cpu",
                 max_hw: tuple[int, int] = (512, 1024)) -> dict:
    """Record for an uploaded image file (no ground truth); large images are shrunk to fit ``max_hw``.

    Raises:
        ValueError: ``data`` is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(bytes(data))) as im:
            im = im.convert("RGB")
            scale = min(1.0, max_hw[0] / im.height, max_hw[1] / im.width)
            if scale < 1.0:
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))))
            rgb = np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"{name}: not an image file PIL can read ({type(e).__name__})") from None
    x, _ = pad_to_multiple(normalize(torch.from_numpy(rgb).permute(2, 0, 1), model.cfg.normalization))
    rec = _forward(model, x, rgb.shape[:2], device)
    rec.update(index=-1, name=name, image=rgb, gt=None)
    return rec


def inspection_scale(model, info, records: list[dict]) -> dict:
    """Scale record of an inspection (figure subtitles): data set, image size, model width, training iterations."""
    h, w = records[0]["image"].shape[:2] if records else (0, 0)
    step = getattr(model, "inspect_step", None)
    return {"data": getattr(info, "name", ""), "split": "val", "images": len(records), "resolution": f"{h}x{w}",
            "base_channels": model.cfg.base_channels,
            "iters": "untrained (random init)" if step is None else f"trained {step} iterations"}


def threshold_range(records: list[dict], lo_q: float = 0.01, hi_q: float = 0.99) -> tuple[float, float] | None:
    """Log-slider range for the "active" threshold over the gate values the records hold.

    From just below the 1 % quantile of the positive gates (at least 99 % of the open paths count as
    active) to their 99 % quantile, so that each step of a log slider closes a visible share of the paths
    instead of sweeping decades that hold no gate value. None when the gates hold fewer than two distinct
    positive values (a fixed route: nothing to threshold).
    """
    vals = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for r in records for g in r["gates"].values()]
                          or [np.zeros(0)])
    pos = vals[vals > 0]
    if np.unique(pos).size < 2:
        return None
    lo, hi = float(np.quantile(pos, lo_q)) * 0.9, float(np.quantile(pos, hi_q))
    lo = max(lo, 1e-6)
    return (lo, hi) if hi > lo * 1.01 else None


def flops_summary(records: list[dict], kind: str = "official") -> dict[str, float]:
    """Mean / min / max per-image GFLOPs over ``records`` (``kind``: "official" or "executed")."""
    if kind not in ("official", "executed"):
        raise ValueError(f"unknown FLOPs kind {kind!r}; valid: official, executed")
    if not records:
        raise ValueError("flops_summary needs at least one record")
    v = np.array([r["real_gflops" if kind == "official" else "exec_gflops"] for r in records], dtype=np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def per_image_table(records: list[dict]) -> pd.DataFrame:
    """One row per record: ``index, name, real_gflops, exec_gflops``."""
    return pd.DataFrame([{k: r[k] for k in ("index", "name", "real_gflops", "exec_gflops")} for r in records])


def flops_table(records: list[dict]) -> pd.DataFrame:
    """Mean / min / max per-image GFLOPs, one row per kind (official, executed)."""
    return pd.DataFrame({kind: flops_summary(records, kind) for kind in ("official", "executed")}).T
