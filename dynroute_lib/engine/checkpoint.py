"""Checkpoints of trained runs: the one place that writes them and turns them back into models (paper Sec. 4.1).

A dynroute checkpoint is ``{"model": state_dict, "optimizer", "step", "max_iter", "config": ModelConfig dict,
"train_config": TrainConfig dict, "config_hash"}``, written atomically by :func:`save_checkpoint` and read with
``weights_only=True`` (``io.load_checkpoint``). Every consumer (trainer, evaluator, Common-route extraction,
the inspector, the notebook tables) goes through :func:`load_model` (ours), :func:`load_any` (ours or an official
DynamicRouting checkpoint, ``model.official``), :func:`read_configs` or :func:`read_header` (cache keys).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from .. import io
from ..config import ModelConfig, TrainConfig, get_preset
from ..model import build_model
from ..model.official import is_official, load_into, read_state_dict


def save_checkpoint(path: Path, model, optimizer, step: int, max_iter: int, mcfg: ModelConfig,
                    tcfg: TrainConfig) -> Path:
    """Write a resumable checkpoint (a DDP wrapper is unwrapped; ``optimizer=None`` for final weights)."""
    net = model.module if isinstance(model, DDP) else model
    return io.save_torch(path, {
        "model": net.state_dict(), "optimizer": optimizer.state_dict() if optimizer else None,
        "step": step, "max_iter": max_iter, "config": mcfg.to_dict(), "train_config": tcfg.to_dict(),
        "config_hash": mcfg.hash()})


def _is_ours(ck) -> bool:
    return isinstance(ck, dict) and "model" in ck and "config" in ck


def read_checkpoint(path: str | Path) -> dict:
    """One of our checkpoints as a dict (CPU tensors, weights only).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unreadable, or not a dynroute checkpoint (no ``model`` and ``config`` entries).
    """
    ck = io.load_checkpoint(path)
    if not _is_ours(ck):
        raise ValueError(f"{Path(path).name}: not a dynroute checkpoint (needs 'model' and 'config' entries; "
                         "for official checkpoints give a preset)")
    return ck


def read_header(path: str | Path) -> dict | None:
    """``config_hash``, ``train_config`` and ``step`` of a checkpoint (memory-mapped), or None if unreadable."""
    try:
        ck = io.load_checkpoint(path, mmap=True)
    except (FileNotFoundError, ValueError):          # an unreadable cache entry is retrained, not trusted
        return None
    return {k: ck.get(k) for k in ("config_hash", "train_config", "step")} if isinstance(ck, dict) else None


def read_configs(path: str | Path) -> tuple[ModelConfig, dict]:
    """(ModelConfig, train-config dict) stored in a checkpoint."""
    ck = io.load_checkpoint(path)
    return ModelConfig.from_dict(ck["config"]), ck["train_config"]


def _build(ck: dict, path: Path, preset: str | None, num_classes: int | None):
    cfg = ModelConfig.from_dict(dict(ck["config"]))
    if preset and cfg.name != preset:
        raise ValueError(f"{path.name} is a checkpoint of preset {cfg.name!r}, not {preset!r}")
    if num_classes is not None and cfg.num_classes != num_classes:
        raise ValueError(f"{path.name} predicts {cfg.num_classes} classes, the data set has {num_classes}")
    net = build_model(cfg)
    state = ck["model"]
    if state and all(k.startswith("module.") for k in state):      # saved from a DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise ValueError(f"{path.name}: weights do not fit preset {cfg.name!r} ({first})") from None
    return net, cfg


def load_model(path: str | Path, device: str | torch.device = "cpu", *, preset: str | None = None,
               num_classes: int | None = None):
    """Rebuild the model of one of our checkpoints (config carried inside) -> ``(net, cfg, checkpoint dict)``.

    Args:
        path: Checkpoint file.
        device: Device the model is moved to.
        preset: If given, refuse a checkpoint of another preset.
        num_classes: If given, refuse a checkpoint with another class count.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Unreadable, not ours, another preset or class count, or weights that do not fit.
    """
    path = Path(path)
    ck = read_checkpoint(path)
    net, cfg = _build(ck, path, preset, num_classes)
    return net.to(device), cfg, ck


def load_any(path: str | Path, preset: str | None = None, num_classes: int | None = None):
    """Our checkpoint (config inside) or an official one (``preset`` required; classes from the predictor).

    Returns:
        ``(net, cfg, messages)``; the messages say what was loaded from an official or bare checkpoint.
    """
    path = Path(path)
    ck = io.load_checkpoint(path)
    if _is_ours(ck):
        net, cfg = _build(ck, path, None, None)
        return net, cfg, []
    if preset is None:
        raise ValueError(f"{path}: official/bare checkpoint: pass --preset (e.g. dynamic_raw_l16, dynamic_a, fix_l16)")
    sd = read_state_dict(path)
    pred = next((v for k, v in sd.items() if k.endswith("sem_seg_head.predictor.weight")), None)
    k = pred.shape[0] if pred is not None else (num_classes or 19)
    cfg = get_preset(preset, num_classes=k, normalization="official_bgr")
    net = build_model(cfg)
    msgs = load_into(net, sd, source=str(path))
    if not is_official(sd):
        msgs.append(f"{path}: bare state dict with dynroute key names")
    return net, cfg, msgs
