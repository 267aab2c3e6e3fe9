"""Soft conditional gate (paper Sec. 3.2, Eq. 3 and the activation delta; spec Sec. 2.6; Table 3 variants)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm


def make_gate(c: int, n_paths: int) -> nn.Sequential:
    """1x1 conv C->C/2 + BN + ReLU, global average pooling, 1x1 conv C/2->n with bias (official layout)."""
    return nn.Sequential(ConvNorm(c, c // 2, 1, relu=True), nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(c // 2, n_paths, 1, bias=True))


def gate_input(x: torch.Tensor, small: bool) -> torch.Tensor:
    """The small gate sees X resized by scale factor 0.25 (not by size: matches the official sampling).

    Maps under 4 px (tiny smoke inputs only) would shrink to 0 px and crash, so those go to >= 1 px.
    """
    if not small:
        return x
    h, w = x.shape[-2:]
    if h >= 4 and w >= 4:
        return F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=small_gate_hw(h, w), mode="bilinear", align_corners=False)


def small_gate_hw(h: int, w: int) -> tuple[int, int]:
    return max(1, h // 4), max(1, w // 4)


def activate(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Gate activation on [N, n] logits. relu_tanh = max(0, tanh) lets each path close on its own."""
    if kind == "relu_tanh":
        return torch.tanh(logits).clamp_min(0.0)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    if kind == "softmax":
        return torch.softmax(logits, dim=1)
    raise ValueError(f"unknown gate_activation {kind!r}; valid: relu_tanh, sigmoid, softmax")


def run_gate(gate: nn.Sequential, x: torch.Tensor, small: bool, kind: str) -> torch.Tensor:
    return activate(gate(gate_input(x, small)).flatten(1), kind)
