"""Routing-space topology and route masks (paper Sec. 3.1, Fig. 2-3; spec Sec. 2.4, 2.12).

A *route mask* fixes, for every node (layer, scale), which of its output paths are open. Layer -1 is the
init cell. Path order inside a node is [keep, up, down] with absent paths removed (the official gate order).
Semantics (Eq. 5/6): a node with every path closed passes its input through on keep; a node that is
computed with its keep path closed sends nothing on keep (in fixed routes that edge is dead).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

NUM_SCALES = 4
PATH_NAMES = ("keep", "up", "down")


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
    return f"l{layer}_s{scale}"


@dataclass
class RouteMask:
    """Open paths per node: ``paths[(layer, scale)]`` is a tuple of 0/1 in node_paths order."""

    num_layers: int
    paths: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    name: str = "custom"

    @classmethod
    def full(cls, num_layers: int, name: str = "all") -> "RouteMask":
        return cls(num_layers, {n: (1,) * len(node_paths(*n, num_layers)) for n in all_nodes(num_layers)}, name)

    def __post_init__(self) -> None:
        space = set(all_nodes(self.num_layers))
        outside = sorted(n for n in self.paths if n not in space)
        if outside:
            raise ValueError(f"route mask names nodes outside the {self.num_layers}-layer space: "
                             + ", ".join(node_key(*n) for n in outside))
        for n in all_nodes(self.num_layers):
            want = len(node_paths(*n, self.num_layers))
            got = self.paths.setdefault(n, (0,) * want)
            if len(got) != want:
                raise ValueError(f"route mask node {node_key(*n)}: {len(got)} paths given, node has {want}")
            self.paths[n] = tuple(int(bool(v)) for v in got)

    def is_open(self, layer: int, scale: int, path: str) -> bool:
        names = node_paths(layer, scale, self.num_layers)
        return path in names and bool(self.paths[(layer, scale)][names.index(path)])

    def open_paths(self) -> int:
        return sum(sum(v) for v in self.paths.values())

    # ---- JSON round trip -------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": "dynroute-route-mask/1", "name": self.name, "num_layers": self.num_layers,
                "path_order": list(PATH_NAMES),
                "nodes": {node_key(*n): list(v) for n, v in sorted(self.paths.items())}}

    @classmethod
    def from_json(cls, obj: dict) -> "RouteMask":
        try:
            nodes = {}
            for key, v in obj["nodes"].items():
                layer, scale = key[1:].split("_s")
                nodes[(int(layer), int(scale))] = tuple(v)
            return cls(int(obj["num_layers"]), nodes, obj.get("name", "custom"))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"not a route mask: {e}") from None

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.to_json(), f, indent=1)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "RouteMask":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"route mask file not found: {path}")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (json.JSONDecodeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from None


def liveness(mask: RouteMask) -> tuple[set, set]:
    """Static liveness of a fixed route: (input-live nodes, computed nodes).

    Strict semantics: a closed path of a computed node carries nothing; a node with every path closed
    passes its input through on keep (Eq. 5/6).
    """
    live, computed = {(-1, 0)}, set()
    for layer, s in all_nodes(mask.num_layers):
        if layer >= 0 and not any(_edge_alive(mask, live, computed, e) for e in incoming(layer, s)):
            continue
        live.add((layer, s))
        if any(mask.paths[(layer, s)]):
            computed.add((layer, s))
    return live, computed


def _edge_alive(mask: RouteMask, live: set, computed: set, edge: tuple[int, int, str]) -> bool:
    layer, s, path = edge
    if (layer, s) not in live:
        return False
    if (layer, s) not in computed:
        return path == "keep"          # pass-through
    return mask.is_open(layer, s, path)
