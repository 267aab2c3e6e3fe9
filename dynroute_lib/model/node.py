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
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..routes.space import node_paths
from .gates import make_gate, run_gate
from .layers import make_cell_op, make_down, make_up, upsample2


# ---- sparse executor: host-side row bookkeeping --------------------------------------------------------------
# Which batch rows carry a tensor is decided on the host: forced and fixed routes are host constants, learned
# gates are copied to the host once per node (the one device->host sync of a node). Row sets are Python
# tuples and bitmasks; device index tensors are made only where a strict subset of rows is gathered or
# scattered, and cached per forward pass.
class RowCtx:
    """Per-forward cache of device index tensors for row tuples."""

    def __init__(self, n_batch: int, device: torch.device):
        self.n_batch, self.device, self._index = n_batch, device, {}

    def index(self, rows: tuple[int, ...]) -> torch.Tensor:
        t = self._index.get(rows)
        if t is None:
            t = self._index[rows] = torch.tensor(rows, dtype=torch.long, device=self.device)
        return t

    def rows(self, mask: int) -> tuple[int, ...]:
        """Batch rows of a bitmask, ascending."""
        return tuple(b for b in range(self.n_batch) if mask >> b & 1)


def row_mask(rows) -> int:
    m = 0
    for b in rows:
        m |= 1 << b
    return m


def _cl(t: torch.Tensor) -> bool:
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def take_rows(x: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """``x[loc]`` along the batch dimension (index_select); channels_last stays channels_last."""
    if _cl(x):
        return x.permute(0, 2, 3, 1).index_select(0, loc).permute(0, 3, 1, 2)
    return x.index_select(0, loc)


def _empty_like_rows(v: torch.Tensor, k: int) -> torch.Tensor:
    n, c, h, w = v.shape
    return v.new_empty((k, h, w, c)).permute(0, 3, 1, 2) if _cl(v) else v.new_empty((k, c, h, w))


def _index_rows_(buf: torch.Tensor, pos: torch.Tensor, v: torch.Tensor, add: bool, alpha: float = 1.0) -> None:
    """``buf[pos] = v`` (index_copy) or ``buf[pos] += alpha * v`` (index_add), rows ``pos`` distinct."""
    if _cl(buf) and _cl(v):
        buf, v = buf.permute(0, 2, 3, 1), v.permute(0, 2, 3, 1)
    if add:
        buf.index_add_(0, pos, v, alpha=alpha)
    else:
        buf.index_copy_(0, pos, v)


def sum_parts(parts, rows: tuple[int, ...], ctx: RowCtx) -> torch.Tensor | None:
    """Sum of ``(value, value_rows, scale)`` parts into a tensor holding the batch rows ``rows`` (None: no part).

    A part stands for ``scale * value`` on the batch rows ``value_rows``. The sum starts from a part that
    covers ``rows`` exactly with scale 1 when there is one (no copy, no multiply; with every part like that,
    the dense executor's left-to-right arithmetic); further covering parts are added with ``add(alpha=scale)``
    (the gate product fused into the sum), other parts are scattered by index_copy / index_add. Shared by
    the node input aggregation (Eq. 1) and the sparse decoder.
    """
    parts = [p for p in parts if p[1]]
    if not parts:
        return None
    first = next((i for i, (_, r, sc) in enumerate(parts) if sc == 1.0 and r == rows), 0)
    if first:
        parts.insert(0, parts.pop(first))
    k = len(rows)
    acc, owned, where = None, False, None
    for val, r, sc in parts:
        if r == rows:
            if acc is None:
                acc, owned = (val, False) if sc == 1.0 else (val * sc, True)
            elif owned:
                acc.add_(val, alpha=sc)
            else:
                acc, owned = torch.add(acc, val, alpha=sc), True
            continue
        if where is None:
            where = {b: i for i, b in enumerate(rows)}
        pos_t = tuple(where[b] for b in r)
        pos = ctx.index(pos_t)
        if acc is None:
            acc = _empty_like_rows(val, k)
            if sc == 1.0:                  # copy the rows, zero only the uncovered ones
                _index_rows_(acc, pos, val, add=False)
                covered = set(pos_t)
                uncovered = tuple(i for i in range(k) if i not in covered)
                if uncovered:
                    acc.index_fill_(0, ctx.index(uncovered), 0)
            else:
                acc.zero_()
                _index_rows_(acc, pos, val, add=True, alpha=sc)
        else:
            if not owned:
                acc = acc.clone()
            _index_rows_(acc, pos, val, add=True, alpha=sc)
        owned = True
    return acc


@dataclass
class SparseEdge:
    """An edge of the sparse executor. ``parts``: ``(value, rows, scale)`` with ``value`` [len(rows), C, h, w]
    standing for ``scale * value`` on the batch rows ``rows`` (live and pass-through samples); ``notdead``:
    bitmask over the batch, which also includes *zero* edges (computed sender, closed path: no tensor, but
    the receiver stays input-live, official batch-1 behaviour)."""
    parts: list
    notdead: int

    def value_rows(self) -> tuple[int, ...]:
        return tuple(b for _, r, _ in self.parts for b in r)


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
        self.fixed_gates = tuple(float(v) for v in open_paths) if fixed else None   # host copy (sparse executor)
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

    def transform(self, path: str, h: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """T_path(H); times ``scale`` (gate values > 0: a float, or one per sample) when given. On up/down
        paths a float scale is folded into the BN affine, a per-sample one multiplies the low-resolution map
        before the x2 upsampling (bilinear interpolation is linear)."""
        if path == "keep":
            y = F.relu(h)
            if scale is None:
                return y
            return y.mul_(scale.to(y.dtype).view(-1, 1, 1, 1) if isinstance(scale, torch.Tensor) else scale)
        seq = self.res_up if path == "up" else self.res_down
        y = seq(h) if scale is None else seq[1](seq[0](h), scale=scale)
        return upsample2(y) if path == "up" else y

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

    # ---- plain executor (the all-open network) ----------------------------------------------------------
    def forward_plain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every path of the node on every sample, no gate and no mask: T_j(O(X) + X) for each path j."""
        h = self.hidden(x)
        return {p: self.transform(p, h) for p in self.paths}

    # ---- sparse executor (eval) ---------------------------------------------------------------------
    def forward_sparse(self, x: torch.Tensor, rows: tuple[int, ...], live: int, ctx: RowCtx, *, forced=None,
                       gate_rows=None, eps_node: float = 1e-4, eps_path: float = 1e-4, strict: bool = False):
        """x: aggregated input of the input-live batch rows ``rows`` only ([k, C, h, w], k >= 1; ``live`` is
        their bitmask). ``forced``: one host tuple of 0/1 gate constants per row, or None. ``gate_rows``: the
        learned gates of the k rows already on the host (computed for a whole layer at once), or None.

        Returns ``({path: SparseEdge}, (alpha, computed))``: the thresholded gates of the k rows (host lists)
        and the bitmask of computed rows. The gate decisions are made on the host (learned gates: one copy
        to the host); sub-batches are gathered only when a path or the cell serves a strict subset of the
        rows. A gate value other than 1 is applied without an extra pass where possible: folded into the
        transform's BN (up/down) or carried by the edge into the receiver's sum (keep).
        """
        k, dev = len(rows), x.device
        if forced is not None:
            a = [[float(v) for v in f] for f in forced]
        elif self.gate_conv_beta is None:
            a = [list(self.fixed_gates) for _ in range(k)]
        elif gate_rows is not None and eps_path >= eps_node:
            a = [list(r) for r in gate_rows]
        else:
            a_t = self.gates(x)
            if eps_path < eps_node:      # borderline sums: decide on the device, exactly as the dense executor
                a_t = torch.where(a_t > eps_path, a_t, torch.zeros_like(a_t))
                a_t = torch.cat([a_t, (a_t.sum(1, keepdim=True) < eps_node).to(a_t.dtype)], 1)
            a = a_t.tolist()                                     # the node's one device -> host sync
        ep = _in_dtype(eps_path, x.dtype)                        # compared as the dense executor does
        if forced is None and self.gate_conv_beta is not None and eps_path < eps_node:
            resid = [bool(r.pop()) for r in a]
            a = [[v if v > ep else 0.0 for v in r] for r in a]
        else:
            a = [[v if v > ep else 0.0 for v in r] for r in a]
            resid = [not any(r) for r in a]                  # sum < eps_node <=> no path left (eps_path >= eps_node)
        comp = [i for i in range(k) if not resid[i]]
        res = [i for i in range(k) if resid[i]]
        comp_rows = tuple(rows[i] for i in comp)
        computed = row_mask(comp_rows)
        if len(comp) == k:
            xc = x
        elif comp:
            xc = take_rows(x, ctx.index(tuple(comp)))
        h = self.hidden(xc) if comp else None
        out = {}
        for j, p in enumerate(self.paths):
            sel = [q for q, i in enumerate(comp) if a[i][j] > 0.0]
            sel_rows = tuple(comp_rows[q] for q in sel)
            parts = []
            if sel and self.has_module(p):
                hs = h if len(sel) == len(comp) else take_rows(h, ctx.index(tuple(sel)))
                al = [a[comp[q]][j] for q in sel]
                if all(v == 1.0 for v in al):
                    scale = None
                elif all(v == al[0] for v in al):
                    scale = al[0]
                else:
                    scale = torch.tensor(al, dtype=hs.dtype, device=dev)
                if p == "keep" and not isinstance(scale, torch.Tensor):   # alpha rides on the edge
                    parts.append((self.transform(p, hs), sel_rows, 1.0 if scale is None else scale))
                else:
                    parts.append((self.transform(p, hs, scale), sel_rows, 1.0))
            sent = row_mask(sel_rows)
            if p == "keep":
                if res:                                      # skipped samples pass X through
                    xr = x if len(res) == k else take_rows(x, ctx.index(tuple(res)))
                    parts.insert(0, (xr, tuple(rows[i] for i in res), 1.0))
                notdead = (live & ~computed) | sent if strict else live
            else:
                notdead = sent if strict else computed
            out[p] = SparseEdge(parts, notdead)
        return out, (a, computed)


@lru_cache(maxsize=None)
def _in_dtype(v: float, dtype: torch.dtype) -> float:
    """``v`` rounded to ``dtype``: torch compares a tensor with a Python scalar in the tensor's dtype."""
    return torch.tensor(v, dtype=dtype).item() if dtype != torch.float64 else v
