"""Drawing one route through the routing space (paper Fig. 2-3 grid, Fig. 5 per-image routes).

The space is drawn as a layer (x) by scale (y) grid, 1/4 at the top and 1/32 at the bottom; the init cell
is column ``-1`` and the decoder ("head") the column after the last layer. Every output path of every node
is a line: keep is horizontal, up and down are diagonals to the neighbouring scale of the next layer. Open
paths are coloured by kind with width and opacity following the gate value; closed paths (gate at most
``threshold``) are faint dotted grey, and the keep path of a skipped node is thin and dashed (pass-through).
Nodes are filled when computed, hollow when skipped (every gate closed: the input passes through on keep,
Eq. 5/6) and crossed when input-dead (nothing reaches them).

``draw_route_grid`` takes per-image soft gates or a 0/1 route mask (Table 1 route figures) alike.
``scale_activity`` summarises the same data per scale for the inspector.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..routes import NUM_SCALES, RouteMask, all_nodes, liveness, node_key, node_paths
from .figstyle import FONT, LABEL

SCALE_LABELS = ("1/4", "1/8", "1/16", "1/32")
PATH_COLORS = {"keep": "#1f5fa8", "up": "#2e9e44", "down": "#d9731a"}
CLOSED_STYLE = dict(color="0.72", lw=0.8, ls=(0, (1, 2)), alpha=0.9, zorder=1)
PASS_STYLE = dict(color=PATH_COLORS["keep"], lw=1.0, ls=(0, (4, 2)), alpha=0.7, zorder=1.5)
_DY = {"keep": 0, "up": -1, "down": 1}


# ---- input normalisation ---------------------------------------------------------------------------
def _key(node) -> str:
    return node_key(*node) if isinstance(node, tuple) else str(node)


def node_values(gates, num_layers: int) -> dict[tuple[int, int], np.ndarray]:
    """Gate (or 0/1 mask) values per node as float arrays in ``node_paths`` order.

    Args:
        gates: ``{"l{layer}_s{scale}" or (layer, scale): values}``, values of shape ``[n]`` or ``[1, n]``;
            a :class:`~dynroute_lib.routes.RouteMask` is accepted too. Missing nodes count as closed.
        num_layers: Number of routing layers of the space.

    Raises:
        ValueError: A node has the wrong number of path values.
    """
    if isinstance(gates, RouteMask):
        gates = gates.paths
    by_key = {_key(k): v for k, v in gates.items()}
    out = {}
    for node in all_nodes(num_layers):
        n = len(node_paths(*node, num_layers))
        v = by_key.get(node_key(*node))
        arr = np.zeros(n) if v is None else np.asarray(v, dtype=np.float64).reshape(-1)
        if arr.size != n:
            raise ValueError(f"node {node_key(*node)}: {arr.size} gate values given, the node has {n} paths")
        out[node] = arr
    return out


def node_states(values: dict, num_layers: int, threshold: float, live: Mapping | None = None,
                computed: Mapping | None = None) -> tuple[dict, dict]:
    """Per-node (live, computed) flags: given ones win, missing ones follow the static rules of ``routes``."""
    mask = RouteMask(num_layers, {n: tuple(int(x > threshold) for x in v) for n, v in values.items()})
    live_set, comp_set = liveness(mask)
    given_live = {_key(k): bool(v) for k, v in (live or {}).items()}
    given_comp = {_key(k): bool(v) for k, v in (computed or {}).items()}
    lv = {n: given_live.get(node_key(*n), n in live_set) for n in values}
    cp = {n: given_comp.get(node_key(*n), n in comp_set) and lv[n] for n in values}
    return lv, cp


def scale_activity(gates, num_layers: int, *, threshold: float = 1e-4,
                   computed: Mapping | None = None, live: Mapping | None = None) -> dict[str, list[float]]:
    """Fraction of open paths and of active (computed, some gate open) nodes per scale, layers 0.. only.

    Returns:
        ``{"open_paths": [4 floats], "active_nodes": [4 floats]}``, index = scale (1/4 first).
    """
    values = node_values(gates, num_layers)
    _, comp = node_states(values, num_layers, threshold, live, computed)
    opened, paths, active, nodes = (np.zeros(NUM_SCALES) for _ in range(4))
    for (layer, s), v in values.items():
        if layer < 0:
            continue
        on = (v > threshold) & comp[(layer, s)]
        opened[s] += on.sum()
        paths[s] += v.size
        active[s] += bool(on.any())
        nodes[s] += 1
    return {"open_paths": (opened / np.maximum(paths, 1)).tolist(),
            "active_nodes": (active / np.maximum(nodes, 1)).tolist()}


# ---- drawing ---------------------------------------------------------------------------------------
def legend_handles() -> list:
    """Legend entries of the route grid (path kinds, closed and pass-through paths, node states)."""
    h = [Line2D([], [], color=c, lw=2.2, label=p) for p, c in PATH_COLORS.items()]
    h.append(Line2D([], [], label="closed", **{k: v for k, v in CLOSED_STYLE.items() if k != "zorder"}))
    h.append(Line2D([], [], label="pass-through (keep)", **{k: v for k, v in PASS_STYLE.items() if k != "zorder"}))
    h.append(Line2D([], [], ls="", marker="o", ms=5, mfc="#222222", mec="#222222", label="computed node"))
    h.append(Line2D([], [], ls="", marker="o", ms=5, mfc="white", mec="#222222", label="skipped node"))
    h.append(Line2D([], [], ls="", marker="x", ms=5, color="0.5", label="input-dead node"))
    return h


def _style_axes(ax: Axes, num_layers: int) -> None:
    step = 1 if num_layers <= 16 else 4
    ticks = [-1, *range(0, num_layers, step), num_layers]
    ax.set_xticks(ticks, ["init", *map(str, ticks[1:-1]), "head"], fontsize=FONT)
    ax.set_yticks(range(NUM_SCALES), SCALE_LABELS, fontsize=FONT)
    ax.set_xlim(-1.6, num_layers + 0.6)
    ax.set_ylim(NUM_SCALES - 0.5, -0.5)            # 1/4 at the top
    ax.set_xlabel("layer", fontsize=LABEL)
    ax.set_ylabel("scale", fontsize=LABEL)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def draw_route_grid(gates, num_layers: int, *, ax: Axes | None = None, threshold: float = 1e-4,
                    title: str | None = None, live: Mapping | None = None,
                    computed: Mapping | None = None, legend: bool = True) -> Figure:
    """Draw one route (soft gates of one image, or a 0/1 route mask) on the layer x scale grid.

    Args:
        gates: ``{"l{layer}_s{scale}": values}`` in path order keep/up/down (absent paths removed), values of
            shape ``[n]`` or ``[1, n]``; tuple keys and a ``RouteMask`` work too.
        num_layers: Number of routing layers (16 for Layer16).
        ax: Axes to draw into; None creates a new headless Figure.
        threshold: A path is open when its gate value is above this.
        title: Axes title (default: a short description).
        live: Optional per-node input-live flags (keys like ``gates``), e.g. from ``aux.states``; missing
            nodes are derived from the route itself (strict semantics of ``routes.liveness``).
        computed: Optional per-node "cell executed" flags, same rules.
        legend: Draw the legend under the grid (False: the caller draws one for several grids,
            from :func:`legend_handles`).

    Returns:
        The Figure holding ``ax``. Each path is one ``Line2D`` with ``gid="path:<node>:<kind>"``; node
        markers use ``gid="nodes:computed" | "nodes:skipped" | "nodes:dead"``.
    """
    if ax is None:
        fig = Figure(figsize=(max(8.0, 0.45 * (num_layers + 3)), 3.8), layout="constrained")
        ax = fig.add_subplot()
    values = node_values(gates, num_layers)
    lv, cp = node_states(values, num_layers, threshold, live, computed)
    for (layer, s), v in values.items():
        for p, g in zip(node_paths(layer, s, num_layers), v):
            x1, y1 = layer + 1, s + _DY[p]
            gid = f"path:{node_key(layer, s)}:{p}"
            if g > threshold and cp[(layer, s)]:
                g1 = float(np.clip(g, 0.0, 1.0))
                ax.plot([layer, x1], [s, y1], color=PATH_COLORS[p], lw=0.6 + 3.4 * g1,
                        alpha=0.35 + 0.65 * g1, solid_capstyle="round", zorder=2, gid=gid)
            elif p == "keep" and lv[(layer, s)] and not cp[(layer, s)]:
                ax.plot([layer, x1], [s, y1], gid=gid, **PASS_STYLE)      # skipped node: input passes on keep
            else:
                ax.plot([layer, x1], [s, y1], gid=gid, **CLOSED_STYLE)
    groups = {"computed": dict(marker="o", c="#222222"), "skipped": dict(marker="o", facecolors="white",
              edgecolors="#222222"), "dead": dict(marker="x", c="0.5")}
    for name, style in groups.items():
        pts = [n for n in values if (name == "computed") == cp[n] and (name == "dead") == (not lv[n])]
        if pts:
            ax.scatter([n[0] for n in pts], [n[1] for n in pts], s=16, lw=0.9, zorder=3, gid=f"nodes:{name}",
                       **style)
    _style_axes(ax, num_layers)
    ax.set_title(title if title is not None else f"route (open: gate > {threshold:g})", fontsize=LABEL)
    if legend:
        ax.legend(handles=legend_handles(), loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4,
                  fontsize=FONT, frameon=False, handlelength=1.8, columnspacing=1.0)
    return ax.figure
