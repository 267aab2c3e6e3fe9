"""One routing node: input sum (Eq. 1), cell (Eq. 2), soft gate (Eq. 3), gated paths (Eq. 4), skip rules (Eq. 5/6).

Two executors share the modules:
* ``forward_dense``: every op on every sample, outputs multiplied by masks. Training (soft masks, official
  semantics, spec Sec. 3.1) and the dense reference for evaluation (same per-sample rules as sparse).
* ``forward_sparse``: evaluation only. Per sample and per path, only what the route needs is executed:
  the gate runs on input-live samples, the cell op on computed samples, each transform on the samples whose
  gate is open; sub-batches are gathered by index and scattered back with index_add (spec Sec. 3.3-3.4).

Edges are ``Edge(value, idx, notdead)``: ``value`` holds the rows ``idx`` of the batch that carry a tensor
(live or pass-through); ``notdead`` [N] also includes *zero* edges (computed sender, closed path), which carry
nothing but keep the receiver input-live (official batch-1 behaviour). Dense edges use idx = None (all rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..routes.space import node_paths
from .gates import make_gate, run_gate
from .layers import make_cell_op, make_down, make_up, upsample2


# ---- batch-row ops of the sparse executor that keep the memory format (channels_last stays channels_last) --
def _cl(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def take_rows(x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """``x[loc]`` along the batch dimension (index_select)."""
    if _cl(x):
        return x.permute(0, 2, 3, 1).index_select(0, loc).permute(0, 3, 1, 2)
    return x.index_select(0, loc)


def cat_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if _cl(a) and _cl(b):
        return torch.cat([a.permute(0, 2, 3, 1), b.permute(0, 2, 3, 1)]).permute(0, 3, 1, 2)
    return torch.cat([a, b])


def place_rows(v: torch.Tensor, pos: torch.Tensor, k: int) -> torch.Tensor:
    """A ``k``-row buffer holding ``v`` at rows ``pos`` (distinct) and zeros elsewhere.

    One index_copy pass, plus a memset of the uncovered rows only (cheaper than a zero fill of the whole
    buffer followed by index_add; 0 + v == v, so the numbers are the same).
    """
    n, c, h, w = v.shape
    cl = _cl(v)
    buf = v.new_empty((k, h, w, c)).permute(0, 3, 1, 2) if cl else v.new_empty((k, c, h, w))
    if cl:
        buf.permute(0, 2, 3, 1).index_copy_(0, pos, v.permute(0, 2, 3, 1))
    else:
        buf.index_copy_(0, pos, v)
    if n < k:                          # zero the uncovered rows in one op (no Python loop over the batch)
        uncovered = torch.ones(k, dtype=torch.bool, device=v.device)
        uncovered[pos] = False
        buf.index_fill_(0, uncovered.nonzero().squeeze(1), 0)
    return buf


def add_rows_(buf: torch.Tensor, pos: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``buf[pos] += v`` in place (index_add, rows ``pos`` distinct)."""
    if _cl(buf) and _cl(v):
        buf.permute(0, 2, 3, 1).index_add_(0, pos, v.permute(0, 2, 3, 1))
    else:
        buf.index_add_(0, pos, v)
    return buf


def sum_rows(parts, rows: torch.Tensor, n_batch: int) -> torch.Tensor | None:
    """Sum of ``(value, idx)`` parts into a tensor holding the batch rows ``rows`` only (None: no part).

    A part that covers exactly ``rows``, in order, is added directly (no copy: the dense executor's arithmetic,
    left to right); any other is scattered into an owned buffer (index_copy first, then index_add). Parts with
    no value or no rows are left out. Shared by the node input aggregation (Eq. 1) and the sparse decoder.
    """
    k = rows.numel()
    acc, owned, pos = None, False, None
    for val, idx in parts:
        if val is None or not val.shape[0]:
            continue
        if val.shape[0] == k and (idx is rows or torch.equal(idx, rows)):
            if acc is None:
                acc = val
            elif owned:
                acc.add_(val)
            else:
                acc, owned = acc + val, True
            continue
        if pos is None:
            pos = torch.full((n_batch,), -1, dtype=torch.long, device=rows.device)
            pos[rows] = torch.arange(k, device=rows.device)
        if acc is None:
            acc = place_rows(val, pos[idx], k)
        else:
            if not owned:
                acc = acc.clone()
            add_rows_(acc, pos[idx], val)
        owned = True
    return acc


@dataclass
class Edge:
    value: torch.Tensor | None      # [k, C, h, w] rows `idx` (sparse) or [N, C, h, w] (dense); None = nothing
    idx: torch.Tensor | None        # [k] batch rows of value; None for dense
    notdead: torch.Tensor           # [N] bool


@dataclass
class NodeState:
    """Per-sample routing record of one node (global batch size N)."""
    alpha: torch.Tensor             # [N, n] gate activations used (0 for input-dead samples in eval)
    live: torch.Tensor              # [N] input-live
    computed: torch.Tensor          # [N] cell op executed (input-live and sum(alpha) >= eps_node)


class Node(nn.Module):
    def __init__(self, layer: int, scale: int, cfg, open_paths: tuple[int, ...] | None = None):
        super().__init__()
        c = cfg.base_channels * 2 ** scale
        self.layer, self.scale, self.channels = layer, scale, c
        self.paths = node_paths(layer, scale, cfg.num_layers)
        self.small_gate, self.activation = cfg.small_gate, cfg.gate_activation
        self.drop_prob = cfg.drop_path if layer >= 0 else 0.0    # routing layers only, never the init cell
        fixed = cfg.gate_mode == "fixed"
        is_open = dict(zip(self.paths, open_paths if fixed else (1,) * len(self.paths)))
        self.cell_op = make_cell_op(c, cfg.cell_type)
        # Closed paths of a fixed route are not built at all (real savings in params and FLOPs).
        self.res_up = make_up(c) if is_open.get("up") else None
        self.res_down = make_down(c) if is_open.get("down") else None
        if fixed:
            self.gate_conv_beta = None
            self.register_buffer("gate_weights_beta", torch.tensor(open_paths, dtype=torch.float32).view(1, -1, 1, 1))
        else:
            self.gate_conv_beta = make_gate(c, len(self.paths))
        self.drop_keep_prob = 1.0       # set by the trainer each step (scheduled drop path)

    # ---- pieces ------------------------------------------------------------------------------------
    def gates(self, x: torch.Tensor, forced: torch.Tensor | None = None) -> torch.Tensor:
        """Gate activations [N, n]: learned (Eq. 3 + delta), forced constants, or the fixed route."""
        if forced is not None:                               # [n] for the batch, or [N, n] per sample
            forced = forced.to(x.device, x.dtype)
            return forced if forced.dim() == 2 else forced.view(1, -1).expand(x.shape[0], -1)
        if self.gate_conv_beta is None:
            return self.gate_weights_beta.to(x.dtype).view(1, -1).expand(x.shape[0], -1)
        return run_gate(self.gate_conv_beta, x, self.small_gate, self.activation)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """H = O(X) + X; drop path hits the SepConv branch only, per sample, in training."""
        h = self.cell_op(x)
        keep = self.drop_keep_prob
        if self.training and self.drop_prob > 0 and keep < 1.0:
            mask = (torch.rand(x.shape[0], 1, 1, 1, device=x.device) < keep).to(h.dtype)
            h = h * mask / keep
        return h + x

    def transform(self, path: str, h: torch.Tensor) -> torch.Tensor:
        if path == "keep":
            return F.relu(h)
        if path == "up":
            return upsample2(self.res_up(h))
        return self.res_down(h)

    def has_module(self, path: str) -> bool:
        return path == "keep" or (self.res_up if path == "up" else self.res_down) is not None

    # ---- dense executor ----------------------------------------------------------------------------
    def forward_dense(self, x: torch.Tensor, live: torch.Tensor, *, eval_rules: bool, forced=None,
                      eps_node: float = 1e-4, eps_path: float = 1e-4, strict: bool = False):
        a = self.gates(x, forced)
        if eval_rules:
            a = a * live.unsqueeze(1).to(a.dtype)           # an input-dead node runs no gate
            a = torch.where(a > eps_path, a, torch.zeros_like(a))
        resid = a.sum(1) < eps_node                          # Eq. 5/6 (official: sum < 1e-4)
        computed = live & ~resid
        h = self.hidden(x)
        out = {}
        for j, p in enumerate(self.paths):
            aj = a[:, j]
            y = aj.view(-1, 1, 1, 1) * self.transform(p, h) if self.has_module(p) else None
            if p == "keep":
                m = resid.view(-1, 1, 1, 1)
                if eval_rules:                               # dropped node: keep output is X itself
                    y = torch.where(m, x, y) * live.view(-1, 1, 1, 1).to(x.dtype)
                else:                                        # official training: m * X + alpha * ReLU(H)
                    y = m.to(x.dtype) * x + y
                notdead = live & (resid | (aj > eps_path)) if strict else live
            else:
                if y is not None and eval_rules:
                    y = y * computed.view(-1, 1, 1, 1).to(y.dtype)
                notdead = computed & (aj > eps_path) if strict else computed
            out[p] = Edge(y, None, notdead)
        return out, NodeState(a, live, computed)

    # ---- sparse executor (eval) ---------------------------------------------------------------------
    def forward_sparse(self, x: torch.Tensor, live: torch.Tensor, live_idx: torch.Tensor, *, forced=None,
                       eps_node: float = 1e-4, eps_path: float = 1e-4, strict: bool = False):
        """x: aggregated input of the input-live rows ``live_idx`` only ([k, C, h, w], k >= 1).

        The gate decisions of the k rows are copied to the host once (one sync); sub-batches are then
        formed with index_select only when a path or the cell serves a strict subset of the rows, and the
        alpha scaling is skipped when every selected alpha is exactly 1 (forced routes, fixed routes).
        """
        n_batch, k, dev = live.shape[0], x.shape[0], x.device
        n = len(self.paths)
        a = self.gates(x, forced)
        a = torch.where(a > eps_path, a, torch.zeros_like(a))
        resid = a.sum(1) < eps_node
        dec = torch.cat([a, (a > eps_path).to(a.dtype), resid.unsqueeze(1).to(a.dtype)], 1).cpu().tolist()
        full = k == n_batch                                  # live_idx == arange(N)
        a_full = a.float() if full else a.new_zeros(n_batch, n, dtype=torch.float32).index_copy_(0, live_idx, a.float())
        comp = [i for i in range(k) if not dec[i][2 * n]]
        res = [i for i in range(k) if dec[i][2 * n]]

        def rows(sel: list[int]) -> torch.Tensor:
            return torch.tensor(sel, dtype=torch.long, device=dev)

        if len(comp) == k:
            xc, comp_idx, computed = x, live_idx, live.clone()
        elif comp:
            loc = rows(comp)
            xc, comp_idx = take_rows(x, loc), live_idx.index_select(0, loc)
            computed = torch.zeros_like(live).index_fill_(0, comp_idx, True)
        else:
            xc, comp_idx, computed = None, None, torch.zeros_like(live)
        h = self.hidden(xc) if comp else None
        out = {}
        for j, p in enumerate(self.paths):
            sel = [q for q, i in enumerate(comp) if dec[i][n + j]]
            whole = len(sel) == len(comp)
            loc = None if whole else rows(sel)
            idx = (comp_idx if whole else comp_idx.index_select(0, loc)) if sel else None
            val = None
            if sel and self.has_module(p):
                val = self.transform(p, h if whole else take_rows(h, loc))
                if any(dec[comp[q]][j] != 1.0 for q in sel):     # alpha * T(H), in place on the fresh output
                    aj = a[:, j] if len(comp) == k else a[:, j].index_select(0, rows(comp))
                    val = val.mul_((aj if whole else aj.index_select(0, loc)).view(-1, 1, 1, 1))
            sent = torch.zeros_like(live) if idx is None else torch.zeros_like(live).index_fill_(0, idx, True)
            if p == "keep":
                if res:                                      # skipped samples pass X through
                    rl = rows(res)
                    xr = x if len(res) == k else take_rows(x, rl)
                    ridx = live_idx if len(res) == k else live_idx.index_select(0, rl)
                    val = xr if val is None else cat_rows(xr, val)
                    idx = ridx if idx is None else torch.cat([ridx, idx])
                notdead = (live & ~computed) | sent if strict else live
            else:
                notdead = sent if strict else computed
            out[p] = Edge(val, idx if val is not None else None, notdead)
        return out, NodeState(a_full, live, computed)
