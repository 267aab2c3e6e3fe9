"""Common-A/B/C from a trained dynamic checkpoint: gate records -> common route -> mask JSON (paper Sec. 4.3, Table 1).

Runs the trained model over a data set at batch 1 (eval forwards), counts how often each path's gate is open
(``routes.common.path_frequencies``), keeps the paths open in at least ``--threshold`` of the passes
(``routes.common.extract_common``) and writes the route as a mask JSON, which trains as a fixed network
(``python -m dynroute_lib train mask.json ...``; ``config.get_preset`` accepts mask paths).

CLI::

    python -m dynroute_lib routes common CKPT --data camvid [--data-root DIR] [--split val]
        [--threshold 0.95] [--limit N] [--device cpu] [--freqs-out freqs.json] --out mask.json
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..flops import static_route_flops
from ..io import save_json
from ..routes import RouteMask, node_key
from ..routes.common import extract_common, path_frequencies
from .checkpoint import load_model


@torch.no_grad()
def collect_gate_records(model, dataset, limit: int | None = None, device: str = "cpu") -> list[dict]:
    """Eval forwards at batch 1 over ``dataset``; per image its gates and real FLOPs.

    Args:
        model: A gated ``DynamicRoutingNet`` (its train/eval flag is restored afterwards).
        dataset: ``dataset[i] -> (image [3, H, W] normalised and padded to /32, mask, meta)``.
        limit: Use only the first ``limit`` samples.
        device: Device of the forward passes (the model is moved there).

    Returns:
        ``[{"name": str, "real_gflops": float, "gates": {"l{layer}_s{scale}": np.ndarray[n_paths]}}]``.
    """
    was_training = model.training
    model.to(device).eval()
    n = len(dataset) if limit is None else min(limit, len(dataset))
    records = []
    try:
        for i in range(n):
            image, _, meta = dataset[i]
            _, aux = model(image.unsqueeze(0).to(device))
            records.append({"name": str(meta.get("name", i)) if isinstance(meta, dict) else str(i),
                            "real_gflops": float(aux.real_gflops[0]),
                            "gates": {k: v[0].detach().cpu().numpy() for k, v in aux.gates.items()}})
    finally:
        model.train(was_training)
    return records


# ---- CLI --------------------------------------------------------------------------------------------------
def build_dataset(*args, **kwargs):
    """Indirection to ``data.build_dataset`` (kept here so tests can swap in a tiny data set)."""
    from ..data import build_dataset as build
    return build(*args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib routes common", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", help="checkpoint with 'model' (state dict) and 'config' (ModelConfig dict)")
    ap.add_argument("--data", required=True, help="data set name (see dynroute_lib.data.DATASETS)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--threshold", type=float, default=0.95, help="keep paths open in >= this fraction of passes")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default=None, help="route name (default: stem of --out)")
    ap.add_argument("--freqs-out", default=None, help="also write the per-path frequencies as JSON")
    ap.add_argument("--out", required=True, help="route-mask JSON to write")
    return ap


def main(argv: list[str] | None = None) -> RouteMask:
    """Extract a common route from a dynamic checkpoint and write it as a route-mask JSON."""
    args = _parser().parse_args(argv)
    try:
        net, cfg, _ = load_model(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if cfg.gate_mode != "soft":
        raise SystemExit(f"{args.checkpoint}: gate_mode={cfg.gate_mode!r} has no learned gates to read")
    ds = build_dataset(args.data, root=args.data_root, split=args.split, train=False,
                       normalization=cfg.normalization)
    records = collect_gate_records(net, ds, args.limit, args.device)
    freqs = path_frequencies(records)
    out = Path(args.out)
    mask = extract_common(freqs, cfg.num_layers, args.threshold, name=args.name or out.stem)
    mask.save(out)
    if args.freqs_out:
        save_json(args.freqs_out, {"checkpoint": str(args.checkpoint), "data": args.data, "split": args.split,
                                   "images": len(records), "threshold": args.threshold,
                                   "freqs": {node_key(*n): f.tolist() for n, f in sorted(freqs.items())}})
    real = np.array([r["real_gflops"] for r in records])
    h, w = ds[0][0].shape[-2:]
    static = static_route_flops(replace(cfg, gate_mode="fixed", route=str(out.resolve())), h, w)
    print(json.dumps({"out": str(out), "images": len(records), "open_paths": mask.open_paths(),
                      "dynamic_real_gflops_mean": float(real.mean()), "input_hw": [int(h), int(w)],
                      "common_params_m": round(static["params_m"], 3),
                      "common_gflops_official": round(static["gflops_official"], 3)}, indent=1))
    return mask


if __name__ == "__main__":
    main()
