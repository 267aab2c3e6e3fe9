"""Official DynamicRouting checkpoints <-> dynroute models (paper Sec. 3 network; spec Sec. 2; official key layout).

Our module tree mirrors the official one, so the mapping is two renames: the official cell op lives at
``cell_ops._ops.0.op`` (a one-op MixedOp list) and ours at ``cell_op``. Loads detectron2-style
``{"model": state_dict}`` or bare state dicts, float16 or float32; never a silent partial load.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

OFFICIAL_CELL = "cell_ops._ops.0.op."
OURS_CELL = "cell_op."
_SKIP = ("num_batches_tracked",)


class CheckpointMismatch(ValueError):
    """Raised with the full list of missing / unexpected / mis-shaped keys."""


def to_ours(official: dict) -> dict:
    return {k.replace(OFFICIAL_CELL, OURS_CELL): v for k, v in official.items()}


def to_official(ours: dict) -> dict:
    return {k.replace(OURS_CELL, OFFICIAL_CELL): v for k, v in ours.items()}


def read_state_dict(path: str | Path) -> dict:
    """State dict from an official checkpoint file (detectron2 {"model": ...} or bare), cast to float32."""
    from ..io import load_checkpoint
    path = Path(path)
    obj = load_checkpoint(path)             # weights_only; one clear line for missing / untrusted files
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state dict (expected {{'model': state_dict}} or a bare state dict)")
    sd = {re.sub(r"^module\.", "", k): v for k, v in sd.items()}     # DDP-wrapped saves
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def is_official(sd: dict) -> bool:
    return any(OFFICIAL_CELL in k for k in sd)


def load_into(model: torch.nn.Module, sd: dict, *, source: str = "checkpoint") -> list[str]:
    """Load ``sd`` (official or ours) into ``model`` exactly; returns info messages.

    A classification checkpoint (no ``sem_seg_head`` keys: ImageNet pre-training) loads the backbone only.
    Anything else must match key for key and shape for shape, or CheckpointMismatch lists the problems.
    """
    sd = to_ours(sd) if is_official(sd) else dict(sd)
    target = model.state_dict()
    messages = []
    backbone_only = not any(k.startswith("sem_seg_head.") for k in sd)
    if backbone_only:
        dropped = [k for k in sd if not k.startswith("backbone.")]
        sd = {k: v for k, v in sd.items() if k.startswith("backbone.")}
        target = {k: v for k, v in target.items() if k.startswith("backbone.")}
        messages.append(f"{source}: no decoder weights (classification checkpoint): loaded the backbone only; "
                        f"decoder keeps its initialisation; ignored {len(dropped)} non-backbone keys")
    missing = sorted(k for k in target if k not in sd and not k.endswith(_SKIP))
    unexpected = sorted(k for k in sd if k not in target)
    shapes = sorted(f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(target[k].shape)}"
                    for k in sd if k in target and sd[k].shape != target[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{name} ({len(v)}): " + ", ".join(v[:20]) + (" ..." if len(v) > 20 else "")
                 for name, v in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if v]
        raise CheckpointMismatch(f"{source} does not match preset {getattr(model.cfg, 'name', '?')}: " + "; ".join(parts))
    model.load_state_dict(sd, strict=not backbone_only)
    return messages


def load_official(model: torch.nn.Module, path: str | Path) -> list[str]:
    return load_into(model, read_state_dict(path), source=str(path))


def save_official(model: torch.nn.Module, path: str | Path) -> Path:
    """Write the model in the official layout ({"model": state_dict} with official key names), atomically."""
    from ..io import save_torch
    return save_torch(Path(path), {"model": to_official(model.state_dict())})
