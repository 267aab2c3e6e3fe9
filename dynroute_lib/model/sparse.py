"""Network passes of the eval executors that only run what a route needs (spec Sec. 3.3-3.4; issues 6, 15).

* :func:`sparse_forward`: per sample and per path, only the live nodes and open paths (``executor="sparse"``).
  The routing decisions are made on the host (``model.node``: row tuples and bitmasks, one host copy of the
  learned gates per node, none for forced or fixed routes), so a pass costs no per-node tensor bookkeeping.
  At batch > 1 it either runs once on the whole batch, gathering and scattering the row subsets where the
  samples' routes differ, or loops over the images at batch 1 (no row copies; ``DynamicRoutingNet._per_image``
  decides), then runs the predictor once on the batch.
* :func:`plain_forward`: the all-open network, every node and path with no gate and no mask
  (``executor="plain"``): the fastest way to compute the whole routing space, and the speed reference.

Both return host records for ``DynamicRoutingNet.routing_aux_host``: per node ``(live mask, computed mask,
alpha rows)`` and per decoder scale the bitmask of samples whose stage ran.
"""
from __future__ import annotations

import torch

from ..routes.space import all_nodes, incoming, layer_scales, node_key, node_paths
from .gates import fast_gate_ok, gates_of_layer
from .node import RowCtx, SparseEdge, sum_parts


def sparse_forward(net, x: torch.Tensor, per_image: bool):
    """``(logits, records, stage masks)`` of the sparse executor on ``x`` (``net`` in eval mode)."""
    n_batch, _, height, width = x.shape
    if isinstance(net.forced_route, (list, tuple)) and len(net.forced_route) != n_batch:
        raise ValueError(f"{len(net.forced_route)} per-sample route masks forced, batch has {n_batch} samples")
    dtype = net.sem_seg_head.predictor.weight.dtype          # model precision (an input may carry no tensor)
    if not per_image:
        run, stages, recs = _sparse_pass(net, x, 0)
    else:                                                    # a loop of batch-1 passes, one predictor call
        runs, stages, recs = [], {s: 0 for s in range(4)}, {}
        for i in range(n_batch):
            run_i, st_i, rec_i = _sparse_pass(net, x[i:i + 1], i)
            if run_i is not None:
                runs.append((run_i[0], i))
            for s, m in st_i.items():
                stages[s] |= m << i
            for n, (live, comp, alpha) in rec_i.items():
                lv, cp, al = recs.get(n, (0, 0, []))
                recs[n] = (lv | live << i, cp | comp << i, al + alpha)
        run = None
        if runs:
            run = (runs[0][0] if len(runs) == 1 else torch.cat([v for v, _ in runs]), tuple(i for _, i in runs))
    return net.sem_seg_head.sparse_logits(run, n_batch, (height, width), dtype), recs, stages


def _sparse_pass(net, x: torch.Tensor, offset: int):
    """One sparse pass over the rows of ``x`` (global batch rows ``offset``, ...). Returns the decoder's
    stage-0 ``(features, rows)`` (None: no sample has one), the decoder stage masks and the node records."""
    n_batch, cfg = x.shape[0], net.cfg
    L, c0 = cfg.num_layers, cfg.base_channels
    ctx = RowCtx(n_batch, x.device)
    eps = dict(eps_node=cfg.eps_node, eps_path=cfg.eps_path, strict=net.fixed or net.forced_route is not None)
    dtype = net.sem_seg_head.predictor.weight.dtype
    feat = net.backbone.stem(x)
    h0, w0 = feat.shape[-2:]
    recs = {}

    def prepare(layer: int, s: int, edges: list):
        """The node's input and rows, or its finished outputs when it runs no gate and no cell."""
        paths = node_paths(layer, s, L)
        node = net.node(layer, s)
        live = 0
        for e in edges:
            live |= e.notdead
        if not live:                                         # input-dead: no gate, no cell, all outputs dead
            recs[(layer, s)] = (0, 0, [[0.0] * len(paths)] * n_batch)
            dead = SparseEdge([], 0)
            return {p: dead for p in paths}
        rows = ctx.rows(live)
        xin = sum_parts([part for e in edges for part in e.parts], rows, ctx)
        if xin is None:                                      # only zero edges: the node runs on X = 0
            xin = torch.zeros((len(rows), c0 * 2 ** s, h0 >> s, w0 >> s), dtype=dtype, device=x.device)
        if node is None:                                     # not built (fixed route): pass-through
            recs[(layer, s)] = (live, 0, [[0.0] * len(paths)] * n_batch)
            dead = SparseEdge([], 0)
            return {p: (SparseEdge([(xin, rows, 1.0)], live) if p == "keep" else dead) for p in paths}
        forced = net._forced_host.get((layer, s))
        if forced is not None:
            forced = [forced[0]] * len(rows) if len(forced) == 1 else [forced[offset + b] for b in rows]
        return node, xin, rows, live, forced

    def finish(layer: int, s: int, prep, gate_rows) -> dict:
        if isinstance(prep, dict):
            return prep
        node, xin, rows, live, forced = prep
        out, (alpha, comp) = node.forward_sparse(xin, rows, live, ctx, forced=forced, gate_rows=gate_rows, **eps)
        if len(rows) < n_batch:
            full = [[0.0] * len(alpha[0]) for _ in range(n_batch)]
            for b, a in zip(rows, alpha):
                full[b] = a
            alpha = full
        recs[(layer, s)] = (live, comp, alpha)
        return out

    def run_layer(layer: int, inputs: dict) -> dict:
        preps = {s: prepare(layer, s, edges) for s, edges in inputs.items()}
        gate_rows = _layer_gates(net, preps) if batch_gates else {}
        return {s: finish(layer, s, p, gate_rows.get(s)) for s, p in preps.items()}

    batch_gates = (net.forced_route is None and not net.fixed and cfg.eps_path >= cfg.eps_node
                   and cfg.gate_activation in ("relu_tanh", "sigmoid"))
    prev = run_layer(-1, {0: [SparseEdge([(feat, tuple(range(n_batch)), 1.0)], (1 << n_batch) - 1)]})
    for layer in range(L):
        prev = run_layer(layer, {s: [prev[s2][p] for _, s2, p in incoming(layer, s)] for s in layer_scales(layer)})
    run0, stages = net.sem_seg_head.forward_sparse({s: prev[s]["keep"] for s in range(4)}, ctx)
    return run0, stages, recs


def _layer_gates(net, preps: dict) -> dict:
    """Learned gates of the nodes of one layer that share their input rows, computed together on the host
    (``gates.gates_of_layer``: one linear, activation and host copy per layer); ``{scale: gate rows}``.
    Nodes with an instance-level ``gates`` override, hooks or autograd keep their own gate call."""
    todo = [(s, p) for s, p in preps.items() if not isinstance(p, dict) and p[4] is None
            and p[0].gate_conv_beta is not None and "gates" not in p[0].__dict__ and fast_gate_ok(p[0].gate_conv_beta)]
    if len(todo) < 2 or len({p[2] for _, p in todo}) != 1:
        return {}
    nodes = [p[0] for _, p in todo]
    rows = gates_of_layer([n.gate_conv_beta for n in nodes], [p[1] for _, p in todo], nodes[0].small_gate,
                          nodes[0].activation)
    return {s: r for (s, _), r in zip(todo, rows)}


def plain_forward(net, x: torch.Tensor) -> torch.Tensor:
    """Logits of the plain all-open network: every node and every path on every sample, no gate, no mask, no
    liveness bookkeeping. The route is ignored (forced or learned); a fixed-route model must have every
    path built."""
    L = net.cfg.num_layers
    missing = [node_key(*n) for n in all_nodes(L) if net.node(*n) is None
               or not all(net.node(*n).has_module(p) for p in node_paths(*n, L))]
    if missing:
        raise ValueError(f"executor='plain' needs every node and path built; missing: {', '.join(missing[:5])}"
                         + (" ..." if len(missing) > 5 else ""))
    prev = {0: net.backbone.init_layer.forward_plain(net.backbone.stem(x))}
    for layer in range(L):
        cur = {}
        for s in layer_scales(layer):
            vals = [prev[s2][p] for _, s2, p in incoming(layer, s)]
            h = vals[0]
            for v in vals[1:]:
                h = h + v                                    # official order: (down + keep) + up
            cur[s] = net.node(layer, s).forward_plain(h)
        prev = cur
    return net.sem_seg_head.forward_plain([prev[s]["keep"] for s in range(4)])
