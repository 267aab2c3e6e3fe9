"""The dynamic routing network: stem, gated routing space, fixed decoder (paper Sec. 3, Fig. 2).

``forward(x) -> (logits, aux)``. Training: dense soft masks, every op on every sample (Sec. 3.1 of the spec).
Eval: per-sample Eq. 5/6 semantics, executed sparsely (only live nodes/paths run; ``executor="dense"`` gives
the masked dense reference; ``executor="plain"`` the all-open network without gates, the speed reference; the
sparse and plain passes are ``model.sparse``). ``aux`` carries per-sample gates, the differentiable expected cost (Eq. 7-8,
``model.costs``) and per-sample real FLOPs (official accounting and executed); ``loss`` is Eq. 10
(``model.budget``). Nodes (Eq. 1-6) are ``model.node``, the decoder ``model.head``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..routes.masks import RouteMask, liveness
from ..routes.modeled import modeled_route
from ..routes.space import all_nodes, incoming, layer_scales, node_key, node_paths
from .budget import budget_loss, total_loss
from .costs import full_expected_flops, host_route_costs, route_costs, table_for
from .head import Decoder
from .layers import Stem, init_weights
from .node import Edge, Node, NodeState
from .sparse import plain_forward, sparse_forward

EXECUTORS = ("sparse", "dense", "plain")  # eval executors (training is always dense); docs/sparse_inference.md
PER_IMAGE_MIN_ELEMENTS = 1 << 19          # sparse_batching="auto": loop over images from this stem output size


@dataclass
class RoutingAux:
    gates: dict[str, torch.Tensor]              # "l{layer}_s{scale}" -> [N, n] (path order keep, up, down)
    expected_gflops: torch.Tensor               # [N], differentiable (Eq. 7-8, official bookkeeping)
    expected_full_gflops: float                 # full-space expected cost at this input size (C of Eq. 9)
    real_gflops: torch.Tensor                   # [N], official accounting (spec Sec. 4.5)
    exec_gflops: torch.Tensor                   # [N], what this executor ran (spec Sec. 4.8 "executed")
    states: dict = field(default_factory=dict)  # (layer, scale) -> NodeState
    input_hw: tuple = (0, 0)


class DynamicRoutingNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        L, c0 = cfg.num_layers, cfg.base_channels
        self.fixed = cfg.gate_mode == "fixed"
        if cfg.gate_mode not in ("soft", "fixed"):
            raise ValueError(f"unknown gate_mode {cfg.gate_mode!r}; valid: soft, fixed")
        self.route = resolve_route(cfg) if self.fixed else None
        built = liveness(self.route)[1] if self.fixed else set(all_nodes(L))

        def make(layer: int, s: int) -> Node:
            return Node(layer, s, cfg, self.route.paths[(layer, s)] if self.fixed else None)

        self.backbone = nn.Module()
        self.backbone.stem = Stem(c0, cfg.io_channels)
        self.backbone.init_layer = make(-1, 0) if (-1, 0) in built else None
        self.backbone.all_cell_list = nn.ModuleList(
            nn.ModuleDict({str(s): make(layer, s) for s in layer_scales(layer) if (layer, s) in built})
            for layer in range(L))
        self.sem_seg_head = Decoder(c0, cfg.num_classes, cfg.io_channels)
        init_weights(self, cfg.gate_init_bias)
        self.executor = "sparse"                # eval executor: "sparse" (default), "dense" masked reference, or
                                                # "plain" (all-open network, no gates: the speed reference)
        self.forced_route: RouteMask | None = None
        self._forced: dict = {}
        self._forced_host: dict = {}
        # sparse executor at batch > 1: "batched" (gather/scatter of row subsets), "per_image" (a loop of
        # batch-1 passes: no row copies), or "auto" (per image when the maps are large, see _per_image)
        self.sparse_batching = "auto"

    # ---- routes ---------------------------------------------------------------------------------------
    def node(self, layer: int, scale: int) -> Node | None:
        if layer < 0:
            return self.backbone.init_layer
        return self.backbone.all_cell_list[layer][str(scale)] if str(scale) in self.backbone.all_cell_list[layer] else None

    def set_forced_route(self, mask) -> None:
        """Replace every gate by the 0/1 constants of ``mask`` (None restores learned gates).

        ``mask`` is one :class:`RouteMask` for every sample, or a list of N masks, one per sample of the
        batch (mixed routes; the batch passed to ``forward`` must then have exactly N samples).
        """
        if mask is None:
            self.forced_route, self._forced, self._forced_host = None, {}, {}
            return
        masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
        if not masks:
            raise ValueError("empty list of route masks")
        for m in masks:
            if m.num_layers != self.cfg.num_layers:
                raise ValueError(f"route mask has {m.num_layers} layers, model has {self.cfg.num_layers}")
        self.forced_route = mask
        if isinstance(mask, (list, tuple)):          # [N, n_paths] per node
            self._forced = {n: torch.tensor([m.paths[n] for m in masks], dtype=torch.float32) for n in masks[0].paths}
        else:
            self._forced = {n: torch.tensor(v, dtype=torch.float32) for n, v in mask.paths.items()}
        # host copy for the sparse executor: node -> one tuple per sample (a single mask: one tuple for all)
        self._forced_host = {n: [tuple(float(v) for v in m.paths[n]) for m in masks] for n in masks[0].paths}

    # ---- forward --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor):
        n_batch, _, height, width = x.shape
        if height % 32 or width % 32:
            raise ValueError(f"input {height}x{width} must be padded to a multiple of 32 (use data.pad_to_multiple)")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; valid: {', '.join(EXECUTORS)}")
        if not self.training and self.executor in ("sparse", "plain"):
            if self.executor == "plain":
                logits = plain_forward(self, x)
                everyone = (1 << n_batch) - 1
                L = self.cfg.num_layers
                recs = {n: (everyone, everyone, [[1.0] * len(node_paths(*n, L))] * n_batch) for n in all_nodes(L)}
                return logits, self.routing_aux_host(recs, {s: everyone for s in range(4)}, n_batch, height, width,
                                                     x.device, gated=False)
            logits, recs, stages = sparse_forward(self, x, self._per_image(x))
            return logits, self.routing_aux_host(recs, stages, n_batch, height, width, x.device)
        strict = self.fixed or self.forced_route is not None       # dense: training, or the masked eval reference
        feat = self.backbone.stem(x)
        h0, w0 = feat.shape[-2:]
        ones = torch.ones(n_batch, dtype=torch.bool, device=x.device)
        prev = {0: self._run(-1, 0, [Edge(feat, None, ones)], (n_batch, feat.shape[1], h0, w0), strict)}
        states = {(-1, 0): prev[0][1]}
        for layer in range(self.cfg.num_layers):
            cur = {}
            for s in layer_scales(layer):
                edges = [prev[s2][0][p] for _, s2, p in incoming(layer, s)]
                shape = (n_batch, self.cfg.base_channels * 2 ** s, h0 >> s, w0 >> s)
                cur[s] = self._run(layer, s, edges, shape, strict)
                states[(layer, s)] = cur[s][1]
            prev = cur
        feats = {s: prev[s][0]["keep"] for s in range(4)}
        logits, stages = self.sem_seg_head.forward_dense(feats)
        return logits, self.routing_aux(states, stages, height, width)

    def _per_image(self, x: torch.Tensor) -> bool:
        """Whether the sparse executor runs a batch as a loop of batch-1 passes.

        Batched execution gathers and scatters row subsets wherever the samples' routes differ: one copy of
        the rows per op, which costs as much as a cheap op on large maps. A batch-1 pass copies nothing but
        repeats the per-op overhead N times, which matters on small maps only. ``auto`` loops when the
        stem output of one image has at least ``PER_IMAGE_MIN_ELEMENTS`` elements, unless every sample is known
        to share one route (a single forced route, or a fixed route: no row subsets at all).
        """
        if self.sparse_batching not in ("auto", "batched", "per_image"):
            raise ValueError(f"unknown sparse_batching {self.sparse_batching!r}; valid: auto, batched, per_image")
        if x.shape[0] == 1 or self.sparse_batching == "batched":
            return False
        if self.sparse_batching == "per_image":
            return True
        if self.fixed or (self.forced_route is not None and not isinstance(self.forced_route, (list, tuple))):
            return False
        return self.cfg.base_channels * (x.shape[2] // 4) * (x.shape[3] // 4) >= PER_IMAGE_MIN_ELEMENTS

    def _run(self, layer, s, edges, shape, strict):
        """Dense executor: aggregate the inputs (Eq. 1) and run node (layer, s), or pass through if not built."""
        node = self.node(layer, s)
        eps = dict(eps_node=self.cfg.eps_node, eps_path=self.cfg.eps_path, strict=strict)
        forced = self._forced.get((layer, s))
        n_paths = len(node_paths(layer, s, self.cfg.num_layers))
        dtype = self.sem_seg_head.predictor.weight.dtype    # model precision (an input may carry no tensor)
        live = edges[0].notdead.clone()
        for e in edges[1:]:
            live |= e.notdead
        if forced is not None:
            forced = forced.to(live.device)
            if forced.dim() == 2 and forced.shape[0] != shape[0]:
                raise ValueError(f"{forced.shape[0]} per-sample route masks forced, batch has {shape[0]} samples")
        vals = [e.value for e in edges if e.value is not None]
        x = vals[0] if vals else torch.zeros(shape, dtype=dtype, device=live.device)
        for v in vals[1:]:
            x = x + v                                       # official order: (down + keep) + up
        if node is None:
            keep = x * live.view(-1, 1, 1, 1).to(x.dtype)
            return self._pass_through(layer, s, Edge(keep, None, live)), self._idle(live, n_paths)
        return node.forward_dense(x, live, eval_rules=not self.training, forced=forced, **eps)

    def _pass_through(self, layer, s, keep: Edge) -> dict:
        dead = Edge(None, None, torch.zeros_like(keep.notdead))
        return {p: (keep if p == "keep" else dead) for p in node_paths(layer, s, self.cfg.num_layers)}

    @staticmethod
    def _idle(live: torch.Tensor, n_paths: int) -> NodeState:
        return NodeState(torch.zeros(live.shape[0], n_paths, device=live.device), live, torch.zeros_like(live))

    # ---- costs ----------------------------------------------------------------------------------------
    def cost_table(self, height: int, width: int):
        return table_for(self.cfg, not self.fixed, height, width)

    def full_expected_flops(self, height: int, width: int) -> float:
        """C of Eq. 9: expected cost with every node and path of the whole space open (official bookkeeping)."""
        return full_expected_flops(self.cost_table(height, width), self.cfg.num_layers)

    def routing_aux(self, states: dict, stages: torch.Tensor, height: int, width: int) -> RoutingAux:
        """``RoutingAux`` of one forward from its node states and decoder stages (costs: ``model.costs``)."""
        t = self.cost_table(height, width)
        gated = not self.fixed and self.forced_route is None
        expected, real, execd = route_costs(t, states, stages, self.cfg.num_layers, gated=gated,
                                            training=self.training, eps_path=self.cfg.eps_path)
        gates = {node_key(*n): st.alpha for n, st in states.items()}
        return RoutingAux(gates, expected / 1e9, full_expected_flops(t, self.cfg.num_layers) / 1e9,
                          (real / 1e9).float(), (execd / 1e9).float(), states, (height, width))

    def routing_aux_host(self, recs: dict, stage_masks: dict, n_batch: int, height: int, width: int, device,
                         gated: bool | None = None) -> RoutingAux:
        """``RoutingAux`` from host records ``node -> (live mask, computed mask, alpha rows)`` and per-scale
        decoder stage bitmasks (sparse and plain executors: their routing decisions are on the host already;
        costs: ``model.costs.host_route_costs``, bit-identical real/executed FLOPs to ``routing_aux``)."""
        t, L = self.cost_table(height, width), self.cfg.num_layers
        gated = (not self.fixed and self.forced_route is None) if gated is None else gated
        order = [n for n in all_nodes(L) if n in recs]
        expected, real, execd = host_route_costs(t, [(n, *recs[n]) for n in order], stage_masks, n_batch, L,
                                                 gated=gated, eps_path=self.cfg.eps_path, device=device)
        sizes = [len(node_paths(*n, L)) for n in order]
        flat = torch.tensor([v for n in order for row in recs[n][2] for v in row], dtype=torch.float32, device=device)
        alphas = [a.view(n_batch, k) for a, k in zip(flat.split([n_batch * k for k in sizes]), sizes)]
        masks = torch.tensor([[bool(recs[n][i] >> b & 1) for b in range(n_batch)] for n in order for i in (0, 1)],
                             dtype=torch.bool, device=device).view(len(order), 2, n_batch)
        states = {n: NodeState(a, m[0], m[1]) for n, a, m in zip(order, alphas, masks.unbind(0))}
        gates = {node_key(*n): st.alpha for n, st in states.items()}
        return RoutingAux(gates, expected / 1e9, full_expected_flops(t, L) / 1e9, (real / 1e9).float(),
                          (execd / 1e9).float(), states, (height, width))

    # ---- losses ---------------------------------------------------------------------------------------
    def budget_loss(self, aux: RoutingAux, budget_w: float) -> torch.Tensor:
        """lambda_2 * w * (mean_b E_b / C - mu)^2 (Eq. 9-10); ``budget_w`` = w(t) of the training schedule."""
        return budget_loss(self.cfg, aux, budget_w, fixed=self.fixed)

    def loss(self, logits, target, aux: RoutingAux, budget_w: float, ignore_index: int = 255, weight=None) -> dict:
        """Eq. 10: cross-entropy + budget term; ``budget_w`` = ``engine.schedule.budget_weight_at(t / T)``."""
        return total_loss(logits, target, self.budget_loss(aux, budget_w), ignore_index, weight)


def resolve_route(cfg) -> RouteMask:
    """The fixed route of a config: "all" (Network-Fix), a modeled architecture name, or a route-mask JSON."""
    if cfg.route == "all":
        return RouteMask.full(cfg.num_layers)
    if cfg.route.endswith(".json"):
        return RouteMask.load(cfg.route)
    return modeled_route(cfg.route, cfg.num_layers)
