"""Common networks: the static routes a dynamic model keeps in most forward passes (paper Sec. 4.3, Table 1).

Common-A/B/C are built "from the routes that Dynamic-A/B/C keep in more than 95% of forward passes": count for
each path (node, keep/up/down) in how many passes its gate was open (:func:`path_frequencies` over per-image
gate records), keep the paths at or above the ratio (:func:`extract_common`), and train the result as a fixed
route (a mask JSON is a preset). This module is pure mask algebra on gate arrays; the records come from
evaluation (``engine.evaluate`` writes ``records.npz``; ``engine.common_route`` is the checkpoint-to-mask CLI,
``python -m dynroute_lib routes common CKPT --data camvid --out mask.json``).
"""
from __future__ import annotations

import numpy as np

from .masks import RouteMask, liveness
from .space import all_nodes, is_node_key, node_key, node_paths, parse_node_key


def _gate_dict(record: dict) -> dict:
    """The gate part of a record: ``record["gates"]`` if present, else the ``l*_s*`` keys of the record."""
    gates = record.get("gates", record)
    return {k: v for k, v in gates.items() if is_node_key(k)}


def path_frequencies(gate_records: list[dict], threshold: float = 1e-4) -> dict[tuple[int, int], np.ndarray]:
    """Fraction of forward passes in which each path is open.

    Args:
        gate_records: One dict per forward pass (image): either the gate dict itself
            (``{"l{layer}_s{scale}": array[n_paths]}``, path order keep/up/down as in ``aux.gates``) or a
            record of ``engine.common_route.collect_gate_records`` holding it under ``"gates"``. Other keys
            are ignored.
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
            layer, scale = parse_node_key(key)
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
