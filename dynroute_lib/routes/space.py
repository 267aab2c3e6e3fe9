"""The routing space: layers x scales, node keys and each node's paths (paper Sec. 3.1, Fig. 2; spec Sec. 2.4).

Layer -1 is the init cell; layer l holds the first ``min(l + 2, 4)`` scales (1/4 ... 1/32). A node's output
paths are ``keep`` (same scale), ``up`` (coarser to finer) and ``down`` (finer to coarser), in the official gate
order [keep, up, down] with absent paths removed. A node is named by its key ``"l{layer}_s{scale}"``
(:func:`node_key`, read back by :func:`parse_node_key`): the keys of ``aux.gates``, of route-mask JSON files and
of the gate records written by evaluation.
"""
from __future__ import annotations

import re

NUM_SCALES = 4
PATH_NAMES = ("keep", "up", "down")
_NODE_KEY = re.compile(r"^l(-?\d+)_s(\d+)$")


def layer_scales(layer: int) -> range:
    """Scales present in a layer: init -> {0}; layer l -> the first min(l + 2, 4) scales ([2, 3, 4, 4, ...])."""
    return range(1) if layer < 0 else range(min(layer + 2, NUM_SCALES))


def node_paths(layer: int, scale: int, num_layers: int) -> tuple[str, ...]:
    """Output paths of node (layer, scale) in official gate order."""
    if layer < 0:
        return ("keep", "down")
    if layer == num_layers - 1:
        return ("keep",)
    paths = ["keep"]
    if scale > 0:
        paths.append("up")
    if scale < NUM_SCALES - 1:
        paths.append("down")
    return tuple(paths)


def all_nodes(num_layers: int) -> list[tuple[int, int]]:
    """Every node (layer, scale) of the space, init cell first."""
    return [(layer, s) for layer in range(-1, num_layers) for s in layer_scales(layer)]


def incoming(layer: int, scale: int) -> list[tuple[int, int, str]]:
    """Senders of node (layer, scale) as (layer-1, sender scale, path), in the official sum order down, keep, up."""
    prev = layer - 1
    prev_scales = layer_scales(prev)
    edges = []
    if scale - 1 in prev_scales:
        edges.append((prev, scale - 1, "down"))
    if scale in prev_scales:
        edges.append((prev, scale, "keep"))
    if scale + 1 in prev_scales:
        edges.append((prev, scale + 1, "up"))
    return edges


def node_key(layer: int, scale: int) -> str:
    """The key ``"l{layer}_s{scale}"`` of a node (``l-1_s0`` is the init cell)."""
    return f"l{layer}_s{scale}"


def is_node_key(key) -> bool:
    """True for a string of the form ``"l{layer}_s{scale}"``."""
    return bool(_NODE_KEY.match(str(key)))


def parse_node_key(key: str) -> tuple[int, int]:
    """``(layer, scale)`` of a node key (inverse of :func:`node_key`).

    Raises:
        ValueError: ``key`` is not of the form ``"l{layer}_s{scale}"``.
    """
    m = _NODE_KEY.match(str(key))
    if m is None:
        raise ValueError(f"not a node key (expected 'l<layer>_s<scale>'): {key!r}")
    return int(m.group(1)), int(m.group(2))
