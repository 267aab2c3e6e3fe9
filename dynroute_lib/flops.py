"""FLOPs and params of any preset or route at any input size (paper Sec. 3.3, Tables 1-4 static columns; spec Sec. 4).

``python -m dynroute_lib flops PRESET [--size H W] [--json]`` prints, with every path of the preset open
(its fixed route for static networks), ``params_m``, ``gflops_official`` (official counting rules at the
actual size, Sec. 4.1-4.6) and ``gmacs_true`` (torch.utils.flop_counter on the meta device: conv/matmul
multiply-adds actually executed by the dense forward, FLOPs / 2). ``--table`` prints every preset against
the paper (``analysis.paper``). ``static_route_flops`` prices a fixed route without running it (Table 1 routes).
The counting itself is the model's own bookkeeping (``model.costs``), fed with a route's static liveness.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .analysis.paper import STATIC as PAPER
from .config import PRESETS, get_preset
from .model import build_model
from .model.costs import table_for
from .model.node import NodeState
from .routes import RouteMask, all_nodes, liveness, node_paths


def route_flops(net, height: int, width: int, mask: RouteMask | None = None) -> dict:
    """Official / executed GFLOPs of one static route through the net's own bookkeeping (no forward pass).

    ``mask`` defaults to the net's fixed route, or every path open for a gated net.
    """
    L = net.cfg.num_layers
    mask = mask or net.route or RouteMask.full(L)
    live, computed = liveness(mask)
    states = {}
    for n in all_nodes(L):
        alpha = torch.tensor([mask.paths[n]], dtype=torch.float32) * (n in computed)
        states[n] = NodeState(alpha, torch.tensor([n in live]), torch.tensor([n in computed]))
    last_live = [s for s in range(4) if (L - 1, s) in live]
    stages = torch.tensor([[any(ls >= s for ls in last_live) for s in range(4)]])
    was = net.training
    net.eval()
    aux = net.routing_aux(states, stages, height, width)
    net.train(was)
    return {"gflops_official": aux.real_gflops.item(), "gflops_executed": aux.exec_gflops.item(),
            "expected_full_gflops": aux.expected_full_gflops}


def dense_flops(cfg, height: int, width: int, gates: bool) -> float:
    """FLOPs the dense executor runs per image: every cell (init cell too), every transform (last keep ReLUs
    too), the head at true sizes, the stem, and every gate when learned gates run (official primitives)."""
    t = table_for(cfg, gates, height, width)
    L = cfg.num_layers
    total = t.stem + sum(t.head_true_stage)
    for layer, s in all_nodes(L):
        paths = node_paths(layer, s, L)
        total += t.cell[s] + sum(t.trans[s][p] for p in paths) + (t.gate[s][len(paths)] if gates else 0.0)
    return total


def true_gmacs(cfg, height: int, width: int) -> float:
    """Multiply-adds of the dense forward (all built paths) counted by FlopCounterMode on the meta device."""
    with torch.device("meta"):
        net = build_model(cfg).train()        # training mode = dense: every built op runs (upper bound)
        x = torch.empty(1, 3, height, width)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        net(x)
    return fc.get_total_flops() / 2e9


def count(preset: str, height: int = 1024, width: int = 2048, true_macs: bool = True) -> dict:
    cfg = get_preset(preset)
    net = build_model(cfg)
    params = sum(p.numel() for p in net.parameters())
    out = {"preset": preset, "height": height, "width": width, "params_m": params / 1e6,
           **route_flops(net, height, width)}
    if true_macs:
        out["gmacs_true"] = true_gmacs(cfg, height, width)
    return out


def static_route_flops(cfg_or_mask, height: int = 1024, width: int = 2048, **overrides) -> dict:
    """Parameters and official real FLOPs of a fixed-route network, without running it.

    Official accounting (spec Sec. 4.5): stem + head (official, square maps) + the cell op of every
    computed routing node + every open transform of a computed sender below the last layer (init cell
    included, its cell op not); no gates in fixed mode.

    Args:
        cfg_or_mask: A fixed-mode ModelConfig, a preset name / mask path for ``get_preset``, or a RouteMask
            (built with the ``fix_l16`` defaults at the mask's depth).
        height: Padded input height.
        width: Padded input width.
        **overrides: ModelConfig field diffs (e.g. ``base_channels=8``) applied before building.

    Returns:
        ``{"params_m": float, "gflops_official": float}``.
    """
    if isinstance(cfg_or_mask, RouteMask):
        with tempfile.TemporaryDirectory() as tmp:
            path = cfg_or_mask.save(Path(tmp) / "route.json")
            return static_route_flops(get_preset(str(path), **overrides), height, width)
    if isinstance(cfg_or_mask, str):
        cfg = get_preset(cfg_or_mask, **overrides)
    else:
        cfg = replace(cfg_or_mask, **overrides) if overrides else cfg_or_mask
    if cfg.gate_mode != "fixed":
        raise ValueError(f"static_route_flops needs a fixed-route config, got gate_mode={cfg.gate_mode!r}")
    with torch.device("meta"):
        net = build_model(cfg)
    params = sum(p.numel() for p in net.parameters())
    flops = route_flops(net, height, width)["gflops_official"] * 1e9     # the net's own bookkeeping
    return {"params_m": params / 1e6, "gflops_official": flops / 1e9}


def paper_table(height: int = 1024, width: int = 2048, true_macs: bool = True):
    """Every preset: ours vs the paper (params and official GFLOPs with every path open)."""
    import pandas as pd
    rows = []
    for name in PRESETS:
        if PRESETS[name].arch != "dynamic":
            continue
        try:
            r = count(name, height, width, true_macs)
        except Exception as e:  # noqa: BLE001 - a preset that cannot build is reported, not hidden
            rows.append({"preset": name, "error": f"{type(e).__name__}: {e}"})
            continue
        p_params, p_gflops = PAPER.get(name, (None, None))
        rows.append({"preset": name, "paper_params_m": p_params, "ours_params_m": round(r["params_m"], 2),
                     "paper_gflops": p_gflops, "ours_gflops_official": round(r["gflops_official"], 2),
                     "ours_gflops_executed": round(r["gflops_executed"], 2),
                     "ours_gmacs_true": round(r.get("gmacs_true", float("nan")), 2),
                     "params_gap_pct": _gap(r["params_m"], p_params),
                     "gflops_gap_pct": _gap(r["gflops_official"], p_gflops)})
    return pd.DataFrame(rows)


def _gap(ours: float, paper: float | None) -> float | None:
    return None if paper is None else round(100.0 * (ours - paper) / paper, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib flops", description=__doc__.split("\n\n")[0])
    ap.add_argument("preset", nargs="?", help="preset name or route-mask .json")
    ap.add_argument("--size", nargs=2, type=int, default=(1024, 2048), metavar=("H", "W"))
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--table", action="store_true", help="every preset against the paper")
    ap.add_argument("--csv", help="with --table: also write the table to this CSV (atomically)")
    ap.add_argument("--no-true-macs", action="store_true", help="skip the FlopCounterMode cross-check")
    a = ap.parse_args(argv)
    h, w = a.size
    if h <= 0 or w <= 0 or h % 32 or w % 32:
        print(f"error: --size {h} {w}: both must be positive multiples of 32", file=sys.stderr)
        return 2
    if a.table:
        df = paper_table(h, w, not a.no_true_macs)
        if a.csv:
            from .io import save_csv
            save_csv(a.csv, df)
        print(df.to_json(orient="records", indent=1) if a.json else df.to_string(index=False))
        return 0
    if not a.preset:
        ap.error("give a PRESET or --table")
    try:
        r = count(a.preset, h, w, not a.no_true_macs)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(r))
    else:
        print("\n".join(f"{k:>22}: {v:.3f}" if isinstance(v, float) else f"{k:>22}: {v}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
