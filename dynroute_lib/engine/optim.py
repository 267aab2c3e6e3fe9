"""SGD parameter groups and gradient clipping for Li et al., CVPR 2020 (paper Sec. 4.1; spec §5.3, §5.4).

* Normalisation parameters (BN/SyncBN/GroupNorm/LayerNorm affine) get no weight decay;
  biases of convolutions keep it, as in the official configs.
* Every parameter inside a gate module (qualified name containing ``gate_conv_beta``,
  gate BN included) gets ``lr * gate_lr_mult`` (``GATE_LR_MULTI``: 2.5 with ImageNet init).
* Each group stores its ``lr_mult`` so the per-iteration schedule sets
  ``group["lr"] = lr * group["lr_mult"]`` (see ``set_lr``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

GATE_KEY = "gate_conv_beta"
_NORM_TYPES: tuple[type, ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm) + (
    (nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def param_groups(model: nn.Module, base_lr: float, weight_decay: float = 1e-4,
                 gate_lr_mult: float = 1.0) -> list[dict]:
    """Splits trainable parameters into SGD groups by (weight decay, LR multiplier).

    Args:
        model: The network (a DDP wrapper is fine: its ``module.`` prefix does not matter).
        base_lr: Initial LR; each group's ``lr`` is ``base_lr * lr_mult``.
        weight_decay: Decay for all non-normalisation parameters.
        gate_lr_mult: LR multiplier for parameters of gate modules.

    Returns:
        Non-empty groups, each a dict with ``params``, ``lr``, ``lr_mult``, ``weight_decay``
        and a descriptive ``name`` (torch keeps extra keys in ``optimizer.param_groups``).
    """
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for mod_name, module in model.named_modules():
        is_norm = isinstance(module, _NORM_TYPES)
        # Substring test on the qualified module name catches every descendant of a gate.
        is_gate = GATE_KEY in mod_name
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue  # frozen, or shared weights already assigned by their first owner
            seen.add(id(param))
            buckets.setdefault((is_norm, is_gate), []).append(param)
    groups = []
    for (is_norm, is_gate), params in sorted(buckets.items()):
        lr_mult = gate_lr_mult if is_gate else 1.0
        groups.append({
            "params": params,
            "lr": base_lr * lr_mult,
            "lr_mult": lr_mult,
            "weight_decay": 0.0 if is_norm else weight_decay,
            "name": f"{'gate' if is_gate else 'main'}_{'norm' if is_norm else 'other'}",
        })
    return groups


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def build_optimizer(model: nn.Module, cfg_like: Any) -> torch.optim.SGD:
    """Builds SGD with momentum 0.9 over ``param_groups``.

    Args:
        model: The network.
        cfg_like: Object or mapping with ``base_lr`` (required) and optionally
            ``weight_decay`` (1e-4), ``gate_lr_mult`` (1.0) and ``momentum`` (0.9).
    """
    base_lr = _get(cfg_like, "base_lr")
    if base_lr is None:
        raise ValueError(f"build_optimizer: {type(cfg_like).__name__} has no 'base_lr'")
    groups = param_groups(model, float(base_lr),
                          weight_decay=float(_get(cfg_like, "weight_decay", 1e-4)),
                          gate_lr_mult=float(_get(cfg_like, "gate_lr_mult", 1.0)))
    return torch.optim.SGD(groups, lr=float(base_lr), momentum=float(_get(cfg_like, "momentum", 0.9)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Sets every group's LR to ``lr * group["lr_mult"]`` (multiplier 1 if absent)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)


def clip_grad(model: nn.Module, max_norm: float = 5.0) -> float:
    """Clips the total L2 gradient norm of all parameters to ``max_norm`` (spec §5.4).

    Returns:
        The total norm before clipping; non-finite when a gradient is (the caller's
        non-finite-loss guard decides what to do, spec §7 #7).
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
