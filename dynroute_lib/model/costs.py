"""FLOPs accounting with the official counting rules, at the actual input size (spec Sec. 4.1-4.8).

Costs are multiply-adds counted once: conv k*k*Cin/groups*Cout*(H/stride)*(W/stride), BN 2*H*W*C, ReLU
H*W*C, global pooling H*W*C; interpolation, sums, gate products and biases are free. Unlike the official
``FIX_SIZE_FOR_FLOPS``, every table here is computed from the padded input of the current forward pass, so
the budget normaliser and the reported FLOPs can never refer to a different resolution (pitfall 1).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ..routes import NUM_SCALES
from .gates import make_gate, small_gate_hw
from .layers import ConvNorm, Stem, make_cell_op, make_down, make_up


def official_flops(module: nn.Module, c: int, h: int, w: int) -> tuple[float, int, int, int]:
    """Official-rule cost of a Sequential/ConvNorm/ReLU/pool stack on a c x h x w input -> (flops, c, h, w)."""
    if isinstance(module, nn.Conv2d):
        s = module.stride[0]
        h, w = h // s, w // s
        k = module.kernel_size[0] * module.kernel_size[1]
        cout = module.out_channels
        f = k * module.in_channels // module.groups * cout * h * w
        if getattr(module, "norm", None) is not None:
            f += 2 * h * w * cout
        if getattr(module, "relu", False):
            f += h * w * cout
        return f, cout, h, w
    if isinstance(module, nn.ReLU):
        return c * h * w, c, h, w
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return c * h * w, c, 1, 1
    if isinstance(module, (nn.Sequential, Stem)):
        total = 0
        for m in module.children():
            f, c, h, w = official_flops(m, c, h, w)
            total += f
        return total, c, h, w
    raise TypeError(f"no official FLOPs rule for {type(module).__name__}")


@dataclass(frozen=True)
class CostTable:
    """Unit costs in FLOPs for one input size. Per scale: cell, keep/up/down transforms, gate(n paths)."""
    cell: tuple[float, ...]
    trans: tuple[dict, ...]            # per scale {"keep": f, "up": f, "down": f}
    gate: tuple[dict, ...]             # per scale {n_paths: f}; zeros when there are no gates
    stem: float
    head_official: float               # quirk 2: maps counted as (H/k) x (H/k)
    head_true_stage: tuple[float, ...] # per decoder stage (scale), true map sizes; predictor in stage 0


@lru_cache(maxsize=64)
def cost_table(base_channels: int, cell_type: str, gated: bool, small_gate: bool, num_classes: int,
               height: int, width: int) -> CostTable:
    with torch.device("meta"):                       # shapes only: no memory, no compute
        cells, trans, gates = [], [], []
        h0, w0 = height // 4, width // 4
        for s in range(NUM_SCALES):
            c, h, w = base_channels * 2 ** s, h0 >> s, w0 >> s
            cells.append(official_flops(make_cell_op(c, cell_type), c, h, w)[0])
            trans.append({"keep": c * h * w, "up": official_flops(make_up(c), c, h, w)[0],
                          "down": official_flops(make_down(c), c, h, w)[0]})
            hg, wg = small_gate_hw(h, w) if small_gate else (h, w)
            gates.append({n: (official_flops(make_gate(c, n), c, hg, wg)[0] if gated else 0.0) for n in (1, 2, 3)})
        stem = official_flops(Stem(base_channels), 3, height, width)[0]
        dec = _decoder_stages(base_channels, num_classes)
        head_off = sum(official_flops(m, 0, height // 2 ** (s + 2), height // 2 ** (s + 2))[0]
                       for s, m in enumerate(dec))
        head_true = tuple(official_flops(m, 0, h0 >> s, w0 >> s)[0] for s, m in enumerate(dec))
    return CostTable(tuple(cells), tuple(trans), tuple(gates), stem, head_off, head_true)


def _decoder_stages(c: int, k: int) -> list[nn.Module]:
    """Decoder stage s as a Sequential for counting (stage 0 includes the 3x3 predictor, bias not counted)."""
    stages = [nn.Sequential(ConvNorm(c, c, 1, relu=True), nn.Conv2d(c, k, 3, padding=1))]
    stages += [ConvNorm(c * 2 ** s, c * 2 ** (s - 1), 1, relu=True) for s in (1, 2, 3)]
    return stages
