"""Baseline for the CPU comparison run (issue 5; not in the paper): torchvision LR-ASPP MobileNetV3-Large, untrained.

Wrapped to the dynroute interface ``forward(x) -> (logits, aux)`` so the same trainer and evaluator drive it;
``aux`` reports the static true MACs (FlopCounterMode, /2) as both real and executed GFLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models.segmentation import lraspp_mobilenet_v3_large


@dataclass
class StaticAux:
    real_gflops: torch.Tensor
    exec_gflops: torch.Tensor
    expected_gflops: torch.Tensor
    expected_full_gflops: float
    gates: dict


class LRASPPBaseline(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=cfg.num_classes)
        self._gmacs: dict = {}

    def gmacs(self, height: int, width: int) -> float:
        if (height, width) not in self._gmacs:
            with torch.device("meta"):
                m = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                              num_classes=self.cfg.num_classes).eval()
                x = torch.empty(1, 3, height, width)
            with FlopCounterMode(display=False) as fc, torch.no_grad():
                m(x)
            self._gmacs[(height, width)] = fc.get_total_flops() / 2e9
        return self._gmacs[(height, width)]

    def forward(self, x: torch.Tensor):
        logits = self.net(x)["out"]
        g = torch.full((x.shape[0],), self.gmacs(*x.shape[-2:]), device=x.device)
        return logits, StaticAux(g, g, g, float(g[0]), {})

    def loss(self, logits, target, aux, budget_w: float, ignore_index: int = 255, weight=None) -> dict:
        ce = F.cross_entropy(logits, target, weight=weight, ignore_index=ignore_index)
        return {"loss": ce, "ce": ce, "budget": ce.new_zeros(())}
