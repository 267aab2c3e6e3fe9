"""Static costs: params/FLOPs of every preset vs the paper's static columns of Tables 1-4 (notebook 01; spec Sec. 4).

Each routing-space preset is built on the ``meta`` device with all paths open (fixed routes: their route) and
counted with the official rules at 1024x2048 (``flops.route_flops``), with true MACs from FlopCounterMode as the
cross-check, and optionally at the run's evaluation size. ``static_costs`` gives the same two ceilings for one
trained config (the ``allopen`` columns of the notebook tables); ``route_masks`` the routes drawn in Fig. 2-3.
"""
from __future__ import annotations

import pandas as pd

from .paper import PAPER, STATIC

SMOKE_TRUE_MACS = ("dynamic_raw_l16", "fix_l16")   # smoke runs count true MACs (~2 s a preset) for these only


def static_flops_table(run_hw: tuple[int, int] | None = None, *, smoke: bool = False) -> pd.DataFrame:
    """Every routing-space preset with all paths open (fixed routes: their route) vs the paper's static columns.

    Args:
        run_hw: Also give the official GFLOPs at this input size (the run's evaluation size).
        smoke: Count true MACs (FlopCounterMode / 2 on the meta device, ~2 s a preset) for
            ``SMOKE_TRUE_MACS`` only; the other rows get NaN there.
    """
    true_macs_presets = SMOKE_TRUE_MACS if smoke else None
    import torch

    from ..config import PRESETS
    from ..flops import route_flops, true_gmacs
    from ..model import build_model
    rows = []
    for name, cfg in PRESETS.items():
        if cfg.arch != "dynamic":
            continue
        with torch.device("meta"):
            net = build_model(cfg)
        r = route_flops(net, 1024, 2048)
        p_params, p_gflops = STATIC.get(name, (None, None))
        p_params = p_params if p_params is not None else (PAPER.get(name) or (None,) * 5)[4]
        params = sum(p.numel() for p in net.parameters()) / 1e6
        count = true_macs_presets is None or name in true_macs_presets
        row = {"preset": name, "gate_mode": cfg.gate_mode, "paper_params_m": p_params, "ours_params_m": params,
               "paper_gflops": p_gflops, "ours_gflops_official": r["gflops_official"],
               "ours_gflops_executed": r["gflops_executed"],
               "ours_gmacs_true": true_gmacs(cfg, 1024, 2048) if count else float("nan")}
        if run_hw:
            row[f"ours_gflops_official_{run_hw[0]}x{run_hw[1]}"] = route_flops(net, *run_hw)["gflops_official"]
        rows.append(row)
    df = pd.DataFrame(rows)
    df["params_gap_pct"] = 100 * (df["ours_params_m"] - df["paper_params_m"]) / df["paper_params_m"]
    df["gflops_gap_pct"] = 100 * (df["ours_gflops_official"] - df["paper_gflops"]) / df["paper_gflops"]
    df["true_vs_official_pct"] = 100 * (df["ours_gmacs_true"] - df["ours_gflops_official"]) / df["ours_gflops_official"]
    return df


def route_masks(num_layers: int = 16) -> dict:
    """The full routing space and the five modeled routes of Table 1 (for the grid figure)."""
    from ..routes import RouteMask
    from ..routes.modeled import MODELED, modeled_route
    return {f"routing space, Layer{num_layers} (all paths)": RouteMask.full(num_layers),
            **{name: modeled_route(name, num_layers) for name in MODELED}}


def eval_hw(ctx) -> tuple[int, int]:
    """Padded evaluation input size of this run (resize, then pad to a multiple of 32)."""
    from ..data import DATASETS
    tcfg = ctx.train_config
    hw = tcfg.resize_hw or {"cityscapes": (1024, 2048), "camvid": (360, 480), "voc": (512, 512),
                            "synthetic": (128, 256)}[DATASETS[tcfg.data].name]
    return tuple(-(-int(v) // 32) * 32 for v in hw)


def static_costs(mcfg, height: int, width: int) -> dict:
    """Params (M) and all-open official GFLOPs of a config at (height, width) and at 1024x2048 (meta device)."""
    import torch

    from ..flops import route_flops
    from ..model import build_model
    with torch.device("meta"):
        net = build_model(mcfg)
    return {"params_m": sum(p.numel() for p in net.parameters()) / 1e6,
            "allopen_run": route_flops(net, height, width)["gflops_official"],
            "allopen_1024": route_flops(net, 1024, 2048)["gflops_official"]}


def count_scale() -> dict:
    """Scale record of the static counts (figure subtitle): the paper's Cityscapes input size, full width."""
    from ..config import get_preset
    return {"data": "Cityscapes-sized input (no data)", "resolution": "1024x2048",
            "base_channels": get_preset("dynamic_raw_l16").base_channels,
            "iters": "untrained: static count on the meta device"}
