"""Route masks: which paths of which nodes a static route uses, and its liveness (paper Sec. 3.1, Eq. 5/6, Fig. 3).

A *route mask* fixes, for every node (layer, scale), which of its output paths are open, in the path order of
:func:`routes.space.node_paths`. Semantics (Eq. 5/6): a node with every path closed passes its input through on
keep; a node that is computed with its keep path closed sends nothing on keep (in fixed routes that edge is
dead). Masks round-trip through JSON (``dynroute-route-mask/1``); a mask file is also a preset
(``config.get_preset("route.json")``) and a forced route (``net.set_forced_route(mask)``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .space import PATH_NAMES, all_nodes, incoming, node_key, node_paths, parse_node_key


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
                nodes[parse_node_key(key)] = tuple(v)
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
