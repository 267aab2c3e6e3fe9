"""Costs of a route: unit cost tables and the per-sample expected cost (paper Sec. 3.3, Eq. 7-8; spec Sec. 4.1-4.8).

``cost_table`` prices every cell, transform and gate of the space with the official counting rules;
``route_costs`` turns one forward pass's per-sample gates into the three per-sample counts of ``RoutingAux``:
the differentiable *expected* cost (Eq. 7: a node costs max(alpha) * C(cell) + sum_j alpha_j * C(T_j), Eq. 8:
summed over the nodes of the space), the official *real* FLOPs (spec Sec. 4.5) and the *executed* FLOPs (what the
executor ran, spec Sec. 4.8). ``full_expected_flops`` is C of Eq. 9 (every node and path open).

Costs are multiply-adds counted once: conv k*k*Cin/groups*Cout*(H/stride)*(W/stride), BN 2*H*W*C, ReLU
H*W*C, global pooling H*W*C; interpolation, sums, gate products and biases are free. Unlike the official
``FIX_SIZE_FOR_FLOPS``, every table here is computed from the padded input of the current forward pass, so
the budget normaliser and the reported FLOPs can never refer to a different resolution (pitfall 1).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from ..routes.space import NUM_SCALES, all_nodes, node_paths
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


OFFICIAL_EPS = 1e-4                     # thresholds of the official real-FLOPs count


@dataclass(frozen=True)
class CostTable:
    """Unit costs in FLOPs for one input size. Per scale: cell, keep/up/down transforms, gate(n paths)."""
    cell: tuple[float, ...]
    trans: tuple[dict, ...]            # per scale {"keep": f, "up": f, "down": f}
    gate: tuple[dict, ...]             # per scale {n_paths: f}; zeros when there are no gates
    stem: float
    head_official: float               # quirk 2: maps counted as (H/k) x (H/k)
    head_true_stage: tuple[float, ...] # per decoder stage (scale), true map sizes; predictor in stage 0


def table_for(cfg, gated: bool, height: int, width: int) -> CostTable:
    """The cost table of a ModelConfig at this input size (``gated``: learned gates run and count)."""
    return cost_table(cfg.base_channels, cfg.cell_type, gated, cfg.small_gate, cfg.num_classes, height, width,
                      cfg.io_channels)


@lru_cache(maxsize=64)
def cost_table(base_channels: int, cell_type: str, gated: bool, small_gate: bool, num_classes: int,
               height: int, width: int, io_channels: int = 0) -> CostTable:
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
        stem = official_flops(Stem(base_channels, io_channels), 3, height, width)[0]
        dec = _decoder_stages(base_channels, num_classes, io_channels or base_channels)
        head_off = sum(official_flops(m, 0, height // 2 ** (s + 2), height // 2 ** (s + 2))[0]
                       for s, m in enumerate(dec))
        head_true = tuple(official_flops(m, 0, h0 >> s, w0 >> s)[0] for s, m in enumerate(dec))
    return CostTable(tuple(cells), tuple(trans), tuple(gates), stem, head_off, head_true)


def _decoder_stages(c: int, k: int, w: int) -> list[nn.Module]:
    """Decoder stage s as a Sequential for counting (stage 0 includes the 3x3 predictor, bias not counted)."""
    stages = [nn.Sequential(ConvNorm(c, w, 1, relu=True), nn.Conv2d(w, k, 3, padding=1))]
    stages += [ConvNorm(c * 2 ** s, c * 2 ** (s - 1), 1, relu=True) for s in (1, 2, 3)]
    return stages


def full_expected_flops(t: CostTable, num_layers: int) -> float:
    """C of Eq. 9: expected cost with every node and path of the whole space open (official bookkeeping)."""
    L, total = num_layers, 0.0
    for layer, s in all_nodes(L):
        total += t.cell[s] if layer >= 0 else 0.0
        total += sum(t.trans[s][p] for p in node_paths(layer, s, L)) if layer < L - 1 else 0.0
    return total


def route_costs(t: CostTable, states: dict, stages: torch.Tensor, num_layers: int, *, gated: bool, training: bool,
                eps_path: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample (expected, real, executed) FLOPs of one forward pass, each [N].

    Args:
        t: Unit costs at this input size.
        states: ``(layer, scale) -> NodeState`` (alpha [N, n], live [N], computed [N]).
        stages: [N, 4] bool, decoder stage s ran for the sample.
        num_layers: Depth L of the space.
        gated: Learned gates ran (their FLOPs count); False for fixed and forced routes.
        training: Training mode: every node counts in the expected cost (dense soft masks).
        eps_path: A transform is executed when its gate is above this.
    """
    L, dev, n_batch = num_layers, stages.device, stages.shape[0]
    expected = torch.zeros(n_batch, device=dev)
    real = torch.full((n_batch,), t.stem + t.head_official, device=dev, dtype=torch.float64)
    execd = t.stem + (stages.double() * torch.tensor(t.head_true_stage, device=dev, dtype=torch.float64)).sum(1)
    for (layer, s), st in states.items():
        a, comp = st.alpha, st.computed
        paths = node_paths(layer, s, L)
        w = comp.to(a.dtype) if not training else torch.ones_like(a[:, 0])
        gate_f = t.gate[s][len(paths)] if gated else 0.0
        execd = execd + gate_f * st.live + t.cell[s] * comp
        if layer >= 0:
            expected = expected + w * a.max(1).values * t.cell[s]                  # Eq. 7, cell term
            real = real + gate_f + t.cell[s] * (comp & (a.sum(1) > OFFICIAL_EPS))
        for j, p in enumerate(paths):
            execd = execd + t.trans[s][p] * (comp & (a[:, j] > eps_path))
            if layer < L - 1:
                expected = expected + w * a[:, j] * t.trans[s][p]                  # Eq. 7, path terms
                real = real + t.trans[s][p] * (comp & (a[:, j] > OFFICIAL_EPS))
    return expected, real, execd


def host_route_costs(t: CostTable, records: list, stage_masks: dict, n_batch: int, num_layers: int, *,
                     gated: bool, eps_path: float, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`route_costs` from host records (the sparse and plain executors decide on the host).

    ``records``: ``[((layer, scale), live mask, computed mask, alpha rows [N][n])]`` in ``all_nodes`` order,
    ``stage_masks``: scale -> bitmask of the samples whose decoder stage ran. Real and executed FLOPs are
    bit-identical to :func:`route_costs` (the same float64 operations in the same order; a unit cost times a
    bool tensor is a float32 tensor there, so it is rounded to float32 here); the expected cost (not
    differentiable in eval) is summed in float64.
    """
    L, f32 = num_layers, _f32
    stages = torch.tensor([[bool(stage_masks[s] >> b & 1) for s in range(NUM_SCALES)] for b in range(n_batch)],
                          device=device)
    head = torch.tensor(t.head_true_stage, device=device, dtype=torch.float64)
    execd = (t.stem + (stages.double() * head).sum(1)).tolist()
    real = [t.stem + t.head_official] * n_batch
    expected = [0.0] * n_batch
    eps_c, off_c = f32(eps_path), f32(OFFICIAL_EPS)             # alpha is float32: compared in float32
    for (layer, s), live, comp, alpha in records:
        paths = node_paths(layer, s, L)
        gate_f = t.gate[s][len(paths)] if gated else 0.0
        gate32, cell32 = f32(gate_f), f32(t.cell[s])
        trans = [(f32(t.trans[s][p]), t.trans[s][p]) for p in paths]
        for b in range(n_batch):
            lv, cp, a = live >> b & 1, comp >> b & 1, alpha[b]
            execd[b] = execd[b] + (gate32 if lv else 0.0) + (cell32 if cp else 0.0)
            if layer >= 0:
                if cp:
                    expected[b] += max(a) * t.cell[s]
                real[b] = real[b] + gate_f + (cell32 if cp and _sum32(a) > off_c else 0.0)
            for j, (tr32, tr) in enumerate(trans):
                execd[b] = execd[b] + (tr32 if cp and a[j] > eps_c else 0.0)
                if layer < L - 1:
                    if cp:
                        expected[b] += a[j] * tr
                    real[b] = real[b] + (tr32 if cp and a[j] > off_c else 0.0)
    f64 = dict(device=device, dtype=torch.float64)
    return (torch.tensor(expected, device=device, dtype=torch.float32), torch.tensor(real, **f64),
            torch.tensor(execd, **f64))


def _f32(v: float) -> float:
    """``v`` rounded to float32."""
    return struct.unpack("f", struct.pack("f", v))[0]


def _sum32(a: list[float]) -> float:
    """Left-to-right float32 sum (the dense executor sums a node's float32 gates in float32)."""
    acc = 0.0
    for v in a:
        acc = _f32(acc + v)
    return acc
