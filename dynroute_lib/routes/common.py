"""Common networks: the static routes a dynamic model keeps in most forward passes (paper Sec. 4.3, Table 1).

Common-A/B/C are built "from the routes that Dynamic-A/B/C keep in more than 95% of forward passes": run the
trained dynamic model over a data set at batch 1, count for each path (node, keep/up/down) in how many
passes its gate was open, keep the paths at or above the ratio, and train the result as a fixed route
(``python -m dynroute_lib.train mask.json ...``; ``config.get_preset`` accepts mask paths).

CLI::

    python -m dynroute_lib.routes_common CKPT --data camvid [--data-root DIR] [--split val]
        [--threshold 0.95] [--limit N] [--device cpu] [--freqs-out freqs.json] --out mask.json
"""
from __future__ import annotations

import argparse
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .routes import RouteMask, all_nodes, liveness, node_key, node_paths

_KEY = re.compile(r"^l(-?\d+)_s(\d+)$")


def _gate_dict(record: dict) -> dict:
    """The gate part of a record: ``record["gates"]`` if present, else the ``l*_s*`` keys of the record."""
    gates = record.get("gates", record)
    return {k: v for k, v in gates.items() if _KEY.match(str(k))}


def path_frequencies(gate_records: list[dict], threshold: float = 1e-4) -> dict[tuple[int, int], np.ndarray]:
    """Fraction of forward passes in which each path is open.

    Args:
        gate_records: One dict per forward pass (image): either the gate dict itself
            (``{"l{layer}_s{scale}": array[n_paths]}``, path order keep/up/down as in ``aux.gates``) or a
            record of ``collect_gate_records`` holding it under ``"gates"``. Other keys are ignored.
        threshold: A path counts as open when its gate value is strictly above this (official 1e-4).

    Returns:
        ``{(layer, scale): array[n_paths]}`` of frequencies in [0, 1].

    Raises:
        ValueError: No records, or one node with different path counts across records.
    """
    if not gate_records:
        raise ValueError("path_frequencies: no gate records")
    counts: dict[tuple[int, int], np.ndarray] = {}
    for i, rec in enumerate(gate_records):
        for key, value in _gate_dict(rec).items():
            layer, scale = map(int, _KEY.match(key).groups())
            a = np.asarray(value, dtype=np.float64).reshape(-1)
            c = counts.setdefault((layer, scale), np.zeros(a.shape[0]))
            if c.shape != a.shape:
                raise ValueError(f"record {i}: gate {key} has {a.shape[0]} paths, earlier records {c.shape[0]}")
            c += a > threshold
    return {n: c / len(gate_records) for n, c in counts.items()}


def extract_common(freqs: dict, num_layers: int, keep_ratio: float = 0.95, name: str = "common") -> RouteMask:
    """The common route: every path open in at least ``keep_ratio`` of the passes.

    Paths of nodes the kept paths never reach are closed too, so the mask lists only what the fixed
    network builds. A node missing from ``freqs`` has all paths closed.

    Args:
        freqs: Output of ``path_frequencies`` (keys (layer, scale)).
        num_layers: Depth L of the routing space.
        keep_ratio: Minimum fraction of forward passes (paper: 0.95).
        name: Name stored in the mask.

    Returns:
        The RouteMask of the common network.

    Raises:
        ValueError: A frequency vector of the wrong length, or no routing node left computed (the network
            would be stem + pass-through + decoder).
    """
    paths = {}
    for layer, s in all_nodes(num_layers):
        want = len(node_paths(layer, s, num_layers))
        f = np.asarray(freqs.get((layer, s), np.zeros(want)), dtype=np.float64).reshape(-1)
        if f.shape[0] != want:
            raise ValueError(f"frequencies of {node_key(layer, s)}: {f.shape[0]} paths, node has {want}")
        paths[(layer, s)] = tuple(int(v >= keep_ratio) for v in f)
    mask = RouteMask(num_layers, paths, name)
    live, computed = liveness(mask)
    for n in mask.paths:
        if n not in live:
            mask.paths[n] = (0,) * len(mask.paths[n])
    if not any(layer >= 0 for layer, _ in computed):
        raise ValueError(f"no routing node keeps a path at keep_ratio={keep_ratio}; lower the ratio")
    return mask


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
    from .data import build_dataset as build
    return build(*args, **kwargs)


def main(argv: list[str] | None = None) -> RouteMask:
    """Extract a common route from a dynamic checkpoint and write it as a route-mask JSON."""
    from .config import ModelConfig
    from .io import load_checkpoint, save_json
    from .model import build_model
    from .routes_modeled import static_route_flops

    ap = argparse.ArgumentParser(prog="python -m dynroute_lib.routes_common", description=__doc__.split("\n")[0])
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
    args = ap.parse_args(argv)

    try:
        ckpt = load_checkpoint(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(str(e)) from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise SystemExit(f"{args.checkpoint}: expected a dict with 'model' and 'config' keys")
    cfg = ModelConfig.from_dict(ckpt["config"])
    if cfg.gate_mode != "soft":
        raise SystemExit(f"{args.checkpoint}: gate_mode={cfg.gate_mode!r} has no learned gates to read")
    net = build_model(cfg)
    state = ckpt["model"]
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    net.load_state_dict(state)
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
