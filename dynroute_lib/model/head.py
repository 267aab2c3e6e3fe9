"""Fixed 4-node upsampling decoder (paper Fig. 2 grey nodes; spec Sec. 2.7) with the dead-scale rule.

A scale that arrives dead for a sample contributes nothing; each stage's 1x1 conv runs whenever the running
sum exists; if every coarser scale is dead the sum starts at the first live scale. This removes the official
crash on a dead intermediate scale (spec Sec. 7, pitfall 10).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm, upsample2
from .node import Edge, RowCtx, row_mask, sum_parts


class Decoder(nn.Module):
    def __init__(self, base_channels: int, num_classes: int, io: int | None = None):
        super().__init__()
        c, w = base_channels, io or base_channels
        # index = scale; stage s maps C_s -> C_{s-1} (scale 0: 64 -> 64), as in the official head; ``io``
        # widens stage 0's output and the predictor's input (ModelConfig.io_channels)
        self.layer_decoder_list = nn.ModuleList(
            [ConvNorm(c, w, 1, relu=True)] + [ConvNorm(c * 2 ** s, c * 2 ** (s - 1), 1, relu=True) for s in (1, 2, 3)])
        self.predictor = nn.Conv2d(w, num_classes, 3, padding=1, bias=True)

    def _out(self, feat: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.predictor(feat), scale_factor=4, mode="bilinear", align_corners=False)

    def forward_dense(self, feats: dict[int, Edge]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns logits and the per-sample 'stage exists' mask [N, 4] (for executed-FLOPs accounting)."""
        run, exists, stages = None, None, {}
        for s in (3, 2, 1, 0):
            e = feats[s]
            exists = e.notdead if exists is None else exists | e.notdead
            parts = [t for t in (run, e.value) if t is not None]
            if not parts:
                stages[s] = exists.clone()
                continue
            acc = parts[0] if len(parts) == 1 else parts[0] + parts[1]
            y = self.layer_decoder_list[s](acc) * exists.view(-1, 1, 1, 1).to(acc.dtype)
            run = upsample2(y) if s > 0 else y
            stages[s] = exists.clone()
        return self._out(run), torch.stack([stages[s] for s in range(4)], 1)

    def forward_plain(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Every scale live for every sample: no masks (the plain all-open network)."""
        run = None
        for s in (3, 2, 1, 0):
            y = self.layer_decoder_list[s](feats[s] if run is None else run + feats[s])
            run = upsample2(y) if s > 0 else y
        return self._out(run)

    def forward_sparse(self, feats: dict, ctx: RowCtx):
        """Per-sample sparse decoder (feats: scale -> SparseEdge of the last layer's keep outputs). Stage s runs
        on the samples whose running sum exists (host bookkeeping: no sync). The running sum is the left
        operand, as in the dense decoder (summation rules: ``node.sum_parts``).

        Returns ``(run, stages)``: the stage-0 output as a ``(value, rows)`` pair (None: no sample has a
        feature), and per scale the bitmask of samples whose stage exists (executed-FLOPs accounting).
        """
        run, stages, exists = None, {}, 0
        for s in (3, 2, 1, 0):
            e = feats[s]
            exists |= row_mask(e.value_rows())
            stages[s] = exists
            if not exists:
                continue
            rows = ctx.rows(exists)
            acc = sum_parts(([run] if run is not None else []) + list(e.parts), rows, ctx)
            y = self.layer_decoder_list[s](acc)
            run = ((upsample2(y) if s > 0 else y), rows, 1.0)
        return (None if run is None else run[:2]), stages

    def sparse_logits(self, run, n_batch: int, out_hw: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """Logits from the stage-0 features of the rows that have one; a sample with no feature at all (only
        possible for broken forced routes) gets the predictor bias only."""
        if run is not None and len(run[1]) == n_batch:           # every sample has a feature
            return self._out(run[0])
        logits = self.predictor.bias.view(1, -1, 1, 1).expand(n_batch, -1, *out_hw).to(dtype).clone()
        if run is not None:
            logits[list(run[1])] = self._out(run[0])
        return logits
