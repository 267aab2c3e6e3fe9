"""Building blocks: stem, cell operations and scale transforms (paper Sec. 3.1-3.2, Eq. 2; spec Sec. 2.3, 2.5).

``ConvNorm`` mimics detectron2's ``Conv2d(norm=...)`` so that state-dict keys read ``<name>.weight`` and
``<name>.norm.*`` exactly as in official DynamicRouting checkpoints.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvNorm(nn.Conv2d):
    """Conv2d with an optional BatchNorm child (``.norm``) and ReLU, bias off unless asked."""

    def __init__(self, cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0,
                 groups: int = 1, bias: bool = False, norm: bool = True, relu: bool = False):
        super().__init__(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=bias)
        self.norm = nn.BatchNorm2d(cout) if norm else None
        self.relu = relu

    def forward(self, x: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """``scale`` (sparse executor: a gate value > 0, a Python float or a per-sample [N] tensor) multiplies
        the output. A float is folded into the eval-mode BN affine (no extra pass over the map); ReLU commutes
        with a positive factor, so relu(s * BN(z)) = s * relu(BN(z))."""
        x = super().forward(x)
        norm = self.norm
        if scale is not None and not isinstance(scale, torch.Tensor) and norm is not None and not norm.training \
                and norm.affine and norm.track_running_stats:
            wb = torch.stack([norm.weight, norm.bias]).mul_(scale)     # one scaling op for weight and bias
            x = F.batch_norm(x, norm.running_mean, norm.running_var, wb[0], wb[1], False, 0.0, norm.eps)
            scale = None
        elif norm is not None:
            x = norm(x)
        x = F.relu(x) if self.relu else x
        if scale is None:
            return x
        if isinstance(scale, torch.Tensor):
            return x.mul_(scale.to(x.dtype).view(-1, 1, 1, 1))
        return x.mul_(scale)


def dw3x3(c: int, stride: int = 1) -> ConvNorm:
    """Depthwise 3x3, no BN/act (the official separable blocks have none after the depthwise conv)."""
    return ConvNorm(c, c, 3, stride=stride, padding=1, groups=c, norm=False)


class Stem(nn.Module):
    """Stem to stride 4 (spec Sec. 2.3): 3x3 s2 conv (padding 0) + two separable blocks, the second s2.

    ``io`` (default ``c``): width of the stem's inner layers; the last 1x1 maps it to the routing space's ``c``.
    """

    def __init__(self, c: int = 64, io: int | None = None):
        super().__init__()
        w = io or c
        self.stem_1 = ConvNorm(3, w, 3, stride=2, padding=0, relu=True)
        self.stem_2 = nn.Sequential(dw3x3(w), ConvNorm(w, w, 1, relu=True))
        self.stem_3 = nn.Sequential(dw3x3(w, stride=2), ConvNorm(w, c, 1, relu=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem_3(self.stem_2(self.stem_1(x)))


def make_cell_op(c: int, cell_type: str) -> nn.Sequential:
    """The non-identity branch of the cell (Eq. 2: H = O(X) + X). Table 2 variants.

    sepN: N stacked DARTS separable 3x3 blocks (dw 3x3, pw 1x1, BN), ReLU between blocks, none at the end.
    bottleneck / mbconv are not specified by the paper; our choices (documented in the README):
    bottleneck = 1x1 C->2C, 3x3 2C->2C, 1x1 2C->C; mbconv = inverted residual with expansion 4.
    """
    if cell_type.startswith("sep") and cell_type[3:].isdigit():
        n = int(cell_type[3:])
        layers: list[nn.Module] = []
        for i in range(n):
            layers += [dw3x3(c), ConvNorm(c, c, 1, relu=i < n - 1)]
        return nn.Sequential(*layers)
    if cell_type == "bottleneck":
        m = 2 * c
        return nn.Sequential(ConvNorm(c, m, 1, relu=True), ConvNorm(m, m, 3, padding=1, relu=True),
                             ConvNorm(m, c, 1))
    if cell_type == "mbconv":
        m = 4 * c
        return nn.Sequential(ConvNorm(c, m, 1, relu=True),
                             ConvNorm(m, m, 3, padding=1, groups=m, relu=True), ConvNorm(m, c, 1))
    raise ValueError(f"unknown cell_type {cell_type!r}; valid: sep1, sep2, sep3, bottleneck, mbconv")


def make_up(c: int) -> nn.Sequential:
    """Up path s -> s-1: ReLU, 1x1 C->C/2, BN, ReLU at the low resolution; bilinear x2 follows (see up())."""
    return nn.Sequential(nn.ReLU(), ConvNorm(c, c // 2, 1, relu=True))


def make_down(c: int) -> nn.Sequential:
    """Down path s -> s+1: ReLU, 1x1 stride-2 C->2C, BN, ReLU (no pooling, no 3x3)."""
    return nn.Sequential(nn.ReLU(), ConvNorm(c, 2 * c, 1, stride=2, relu=True))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def init_weights(module: nn.Module, gate_bias: float) -> None:
    """Kaiming-normal convs (fan_in, ReLU), zero biases, BN 1/0; gate last-conv bias = gate_bias (Sec. 2.9)."""
    for name, m in module.named_modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.constant_(m.bias, gate_bias if name.endswith("gate_conv_beta.2") else 0.0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
