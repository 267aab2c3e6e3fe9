"""Random route masks at a target keep rate of the routing-space FLOPs (issue 6; paper Sec. 3.1; spec Sec. 3.3, 4.5).

A random route opens each path of each node independently with probability ``p`` (Bernoulli). The cost of a
route is its *official real FLOPs of the routing space*: stem, head and gates excluded (a forced route runs no
gate), i.e. the cell op of every computed routing node plus every open transform of a computed node, init cell
transforms included, last-layer keep ReLUs not counted (spec Sec. 4.5). Liveness is strict (a closed path of a
computed node carries nothing; a node with every path closed passes its input through on keep), as for
``DynamicRoutingNet.set_forced_route``. ``p`` is tuned by bisection on the mean keep rate of a fixed set of
draws, then masks are drawn until one lands within ``tol`` of the target. The only routes module that prices a
mask, so the only one that imports the model (its cost tables, ``model.costs``).
"""
from __future__ import annotations

import random

from ..model.costs import table_for
from .masks import RouteMask, liveness
from .space import all_nodes, node_paths


def routing_flops(mask: RouteMask, cfg, height: int, width: int) -> float:
    """Official real FLOPs of the routing space for a forced (strict) route at this input size."""
    t = table_for(cfg, False, height, width)
    L = mask.num_layers
    _, computed = liveness(mask)
    total = 0.0
    for layer, s in computed:
        if layer >= 0:
            total += t.cell[s]
        if layer < L - 1:
            total += sum(t.trans[s][p] for p, o in zip(node_paths(layer, s, L), mask.paths[(layer, s)]) if o)
    return total


def keep_rate(mask: RouteMask, cfg, height: int, width: int) -> float:
    """Routing-space real FLOPs of ``mask`` / those of the all-open route."""
    return routing_flops(mask, cfg, height, width) / routing_flops(RouteMask.full(mask.num_layers), cfg, height, width)


def _draw(num_layers: int, u: dict, p: float, name: str) -> RouteMask:
    return RouteMask(num_layers, {n: tuple(int(v < p) for v in vals) for n, vals in u.items()}, name)


def _uniforms(num_layers: int, rng: random.Random) -> dict:
    return {n: [rng.random() for _ in node_paths(*n, num_layers)] for n in all_nodes(num_layers)}


def tune_probability(cfg, height: int, width: int, target: float, *, draws: int = 64, seed: int = 0,
                     iters: int = 20) -> float:
    """Bernoulli path probability whose mean keep rate over ``draws`` fixed draws is ``target`` (bisection)."""
    rng = random.Random(seed)
    us = [_uniforms(cfg.num_layers, rng) for _ in range(draws)]   # common random numbers: smooth in p
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        mean = sum(keep_rate(_draw(cfg.num_layers, u, mid, ""), cfg, height, width) for u in us) / draws
        lo, hi = (mid, hi) if mean < target else (lo, mid)
    return (lo + hi) / 2


def random_routes(cfg, height: int, width: int, target: float, count: int = 1, *, seed: int = 0,
                  tol: float = 0.02, max_tries: int = 2000, p: float | None = None) -> list[RouteMask]:
    """``count`` different random routes whose routing-space keep rate is within ``tol`` of ``target``.

    If no draw lands within ``tol`` after ``max_tries`` draws, the closest draws are returned (check
    :func:`keep_rate` on the result; the benchmark reports the achieved value).
    """
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target keep rate must be in (0, 1], got {target}")
    if target == 1.0:
        return [RouteMask.full(cfg.num_layers, name="all_open") for _ in range(count)]
    p = tune_probability(cfg, height, width, target, seed=seed) if p is None else p
    rng = random.Random(seed + 1)
    found, spare = [], []
    for i in range(max_tries):
        m = _draw(cfg.num_layers, _uniforms(cfg.num_layers, rng), p, f"random_keep{round(100 * target)}_{len(found)}")
        err = abs(keep_rate(m, cfg, height, width) - target)
        (found if err <= tol else spare).append((err, i, m))
        if len(found) == count:
            break
    if len(found) < count:
        found += sorted(spare)[: count - len(found)]
    return [m for _, _, m in found]
