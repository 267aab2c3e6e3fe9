"""Route-activation statistics of trained dynamic models: Fig. 5 of Li et al. (CVPR 2020, Sec. 4.5) in numbers.

Reads what ``03_tables`` writes (``route_records/<model>.npz`` gate arrays, ``per_image_gflops.csv``) and turns it
into tidy tables: per-path activation probability, per-cell share of images where the cell op runs, per-model
summaries, per-image FLOPs mean / max / min, and the per-image real cost split into cell ops and transforms.
Used by ``04_route_distribution``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..routes import is_node_key

FIG5_MODELS = ["dynamic_raw_l16", "dynamic_a", "dynamic_b", "dynamic_c"]   # the gated models of Fig. 5


def read_gates(path: Path) -> dict[str, np.ndarray]:
    """The gate arrays (``[num_images, n_paths]`` per node key) of one ``records.npz``."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files if is_node_key(k)}


def read_records(results_dir: Path, models=FIG5_MODELS) -> dict[str, dict[str, np.ndarray]]:
    """Gate arrays per model from 03's ``route_records/`` (fails loudly, naming what is missing)."""
    out = {}
    for m in models:
        path = Path(results_dir) / "route_records" / f"{m}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: run 03_tables (with {m} trained) before 04")
        out[m] = read_gates(path)
    return out


def activation_table(records: dict[str, dict[str, np.ndarray]], threshold: float = 1e-4) -> pd.DataFrame:
    """One row per (model, path): activation probability (share of images with gate > threshold), mean gate."""
    from ..routes import node_paths, parse_node_key
    rows = []
    for model, gates in records.items():
        L = 1 + max(parse_node_key(k)[0] for k in gates)
        for key, arr in gates.items():
            layer, scale = parse_node_key(key)
            for j, path in enumerate(node_paths(layer, scale, L)):
                g = np.asarray(arr)[:, j]
                rows.append({"model": model, "node": key, "layer": layer, "scale": scale, "path": path,
                             "activation_prob": float((g > threshold).mean()), "mean_gate": float(g.mean()),
                             "num_images": len(g)})
    return pd.DataFrame(rows)


def read_per_image(results_dir: Path, models=FIG5_MODELS) -> pd.DataFrame:
    """03's per-image FLOPs of ``models`` (fails loudly when one is missing)."""
    path = Path(results_dir) / "per_image_gflops.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run 03_tables before 04")
    df = pd.read_csv(path)
    missing = [m for m in models if m not in set(df["model"])]
    if missing:
        raise FileNotFoundError(f"{path}: no rows for {missing}; train them in 03_tables first")
    return df[df["model"].isin(models)]


def cell_table(records: dict[str, dict[str, np.ndarray]], threshold: float = 1e-4) -> pd.DataFrame:
    """One row per (model, node with a cell op): share of images whose cell op runs (its gates sum above
    ``threshold``, the official real-cost rule of spec Sec. 4.5; a dead node's gates are recorded as 0)."""
    from ..routes import parse_node_key
    rows = []
    for model, gates in records.items():
        for key, arr in gates.items():
            layer, scale = parse_node_key(key)
            if layer >= 0:                     # the init cell books only its transforms, never a cell op
                rows.append({"model": model, "node": key, "layer": layer, "scale": scale,
                             "cell_prob": float((np.asarray(arr).sum(1) > threshold).mean())})
    return pd.DataFrame(rows)


# An image-dependent path or cell: open in 10-90 % of images (issue 13's "fires conditionally").
CONDITIONAL = (0.1, 0.9)


def _conditional(prob: pd.Series) -> int:
    return int(prob.between(*CONDITIONAL, inclusive="neither").sum())


def activation_summary(act: pd.DataFrame, cells: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model: paths, share of paths open in more than half / in every image, mean gate (Fig. 5 in numbers),
    and how many paths (and, given ``cells`` from :func:`cell_table`, cell ops) are conditional.

    Per-image real cost varies almost only through conditional *cells*: a path alone books its transform (keep,
    1x1 up or strided down), a cell its whole cell op, so the max-min FLOPs gap follows ``conditional_cells``."""
    g = act.groupby("model", sort=False)
    out = pd.DataFrame({"paths": g.size(),
                        "open_majority_pct": g["activation_prob"].apply(lambda s: 100 * (s > 0.5).mean()),
                        "open_always_pct": g["activation_prob"].apply(lambda s: 100 * (s >= 1.0).mean()),
                        "mean_activation_prob": g["activation_prob"].mean(),
                        "mean_gate": g["mean_gate"].mean(),
                        "conditional_paths": g["activation_prob"].apply(_conditional)})
    if cells is not None:
        c = cells.groupby("model", sort=False)["cell_prob"]
        out = out.join(pd.DataFrame({"cells_running_pct": c.mean() * 100, "conditional_cells": c.apply(_conditional)}))
    return out.reset_index()


def gate_summary(gates: dict[str, np.ndarray]) -> pd.Series:
    """:func:`activation_summary` of one model's gate arrays, cell columns included (one row)."""
    return activation_summary(activation_table({"model": gates}), cell_table({"model": gates})).iloc[0]


def spread_pct(gflops_max, gflops_min, gflops_mean):
    """The issue's per-image cost spread, ``(max - min) / mean`` in % (scalars or columns)."""
    return 100 * (gflops_max - gflops_min) / gflops_mean


def flops_summary(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean / max / min per-image real GFLOPs per model (the paper's FLOPs_Avg/Max/Min), spread in %."""
    g = per_image.groupby("model", sort=False)["real_gflops"]
    df = pd.DataFrame({"gflops_mean": g.mean(), "gflops_max": g.max(), "gflops_min": g.min(),
                       "num_images": g.size()}).reset_index()
    df["max_min_gap_pct"] = spread_pct(df["gflops_max"], df["gflops_min"], df["gflops_mean"])
    return df


def source_scale(results_dir: Path) -> dict | None:
    """The ``scale`` record of the 03_tables run these records come from (its ``run.json``), or None."""
    import json
    path = Path(results_dir) / "run.json"
    try:
        scale = json.loads(path.read_text()).get("scale")
    except (OSError, ValueError):
        return None
    return {**scale, "note": "val records of 03_tables"} if isinstance(scale, dict) else None


def real_cost_parts(gates: dict[str, np.ndarray], cfg, height: int, width: int) -> pd.DataFrame:
    """Per image: the official real cost (spec Sec. 4.5) rebuilt from one model's recorded gates, split into its
    constant part (stem, head, gates), its cell ops and its transforms, in GFLOPs.

    ``cfg``: the model's ``ModelConfig``; ``height`` x ``width``: the size the network ran at (padded to a multiple
    of 32). It uses the evaluator's own per-sample count (``model.costs.host_route_costs``), so ``real`` equals
    ``per_image/*.csv``'s ``real_gflops`` when the records and the size are the run's: a dead node's gates are
    recorded as 0, so every node can be passed as live."""
    from dataclasses import replace
    from ..model.costs import OFFICIAL_EPS, host_route_costs, table_for
    from ..routes import NUM_SCALES, all_nodes, node_key, parse_node_key
    layers = 1 + max(parse_node_key(k)[0] for k in gates)
    n = len(next(iter(gates.values())))
    everyone = (1 << n) - 1                              # bitmask: node live / computed / decoder stage ran for all
    records = [(node, everyone, everyone, np.asarray(gates[node_key(*node)], dtype=np.float32).tolist())
               for node in all_nodes(layers)]
    full = table_for(cfg, True, height, width)
    no_cells = replace(full, cell=(0.0,) * len(full.cell))
    const = replace(no_cells, trans=tuple(dict.fromkeys(d, 0.0) for d in full.trans))

    def real(table) -> np.ndarray:
        return host_route_costs(table, records, dict.fromkeys(range(NUM_SCALES), everyone), n, layers, gated=True,
                                eps_path=OFFICIAL_EPS, device="cpu")[1].numpy() / 1e9
    total, without_cells, fixed = real(full), real(no_cells), real(const)
    return pd.DataFrame({"real": total, "fixed": fixed, "cells": total - without_cells,
                         "transforms": without_cells - fixed})
