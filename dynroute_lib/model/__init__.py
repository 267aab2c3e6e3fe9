"""Dynamic routing model (Li et al., CVPR 2020, Sec. 3). ``build_model(cfg)`` is the only constructor callers need.

One module per piece of the paper: ``layers`` (stem, cell op of Eq. 2, scale transforms), ``gates`` (Eq. 3 and
the activation delta), ``node`` (Eq. 1-6: input sum, cell, gated paths, skip rules; dense and sparse executors),
``head`` (the fixed decoder), ``net`` (the whole network, Fig. 2), ``costs`` (unit costs and the expected cost of
Eq. 7-8), ``budget`` (Eq. 9-10), ``official`` (official checkpoint import/export) and ``lraspp`` (the torchvision
baseline of the CPU comparison).
"""
from __future__ import annotations

from .net import DynamicRoutingNet, RoutingAux


def build_model(cfg) -> DynamicRoutingNet:
    """Build the network for a :class:`dynroute_lib.config.ModelConfig` (CPU, float32, official init).

    Returns a module whose forward maps normalised images [N, 3, H, W] (H, W multiples of 32) to
    ``(logits [N, num_classes, H, W], RoutingAux)``.
    """
    if getattr(cfg, "arch", "dynamic") == "lraspp_mbv3":
        from .lraspp import LRASPPBaseline
        return LRASPPBaseline(cfg)
    if getattr(cfg, "arch", "dynamic") != "dynamic":
        raise ValueError(f"unknown arch {cfg.arch!r}; valid: dynamic, lraspp_mbv3")
    return DynamicRoutingNet(cfg)


__all__ = ["build_model", "DynamicRoutingNet", "RoutingAux"]
