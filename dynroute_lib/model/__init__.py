"""Dynamic routing model (Li et al., CVPR 2020). ``build_model(cfg)`` is the only constructor callers need."""
from __future__ import annotations

from .net import DynamicRoutingNet, RoutingAux


def build_model(cfg) -> DynamicRoutingNet:
    """Build the network for a :class:`dynroute_lib.config.ModelConfig` (CPU, float32, official init).

    Returns a module whose forward maps normalised images [N, 3, H, W] (H, W multiples of 32) to
    ``(logits [N, num_classes, H, W], RoutingAux)``.
    """
    if getattr(cfg, "arch", "dynamic") == "lraspp_mbv3":
        from ..baselines import LRASPPBaseline
        return LRASPPBaseline(cfg)
    if getattr(cfg, "arch", "dynamic") != "dynamic":
        raise ValueError(f"unknown arch {cfg.arch!r}; valid: dynamic, lraspp_mbv3")
    return DynamicRoutingNet(cfg)


__all__ = ["build_model", "DynamicRoutingNet", "RoutingAux"]
