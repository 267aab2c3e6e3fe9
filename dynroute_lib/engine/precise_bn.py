"""Precise BatchNorm statistics (Li et al., CVPR 2020, Sec. 4.1 training recipe; spec §5.4 "Precise BN").

At the end of training the official recipe replaces the exponential running averages of
every BN layer with true averages over 200 training-mode forward passes, because EMA
statistics lag behind the final weights. Same approach as detectron2's ``update_bn_stats``.
Under DDP with SyncBatchNorm the batch statistics are already synchronised, so every rank
ends with identical buffers.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def images_as(fmt: torch.memory_format | None = None) -> Callable[[Any, torch.device], torch.Tensor]:
    """``to_input`` for ``(images, masks, meta)`` batches (or bare image tensors); ``fmt``: the model's memory format
    (None keeps the loader's layout)."""
    def to_input(batch: Any, device: torch.device) -> torch.Tensor:
        images = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device, non_blocking=True)
        return images if fmt is None else images.contiguous(memory_format=fmt)
    return to_input


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches_iterable: Iterable, num_iters: int = 200,
                       to_input: Callable[[Any, torch.device], torch.Tensor] | None = None) -> int:
    """Recomputes BN running statistics as cumulative averages over ``num_iters`` batches.

    Running stats are reset and ``momentum=None`` makes PyTorch keep a cumulative average
    (mean of the per-batch means and unbiased variances). The forward runs in train mode,
    because that is the mode whose statistics the BN layers must match at evaluation time;
    no gradients are built. Momentum and each module's train/eval flag are restored
    afterwards. If the forward raises or the iterable is empty, the old buffers come back.

    Args:
        model: Network called as ``model(images) -> (logits, aux)``.
        batches_iterable: Yields ``(images, masks, meta)`` tuples (e.g. a training loader).
        num_iters: Number of batches to average over; fewer is accepted with a warning.
        to_input: Maps ``(batch, device)`` to the model input; the default takes ``batch[0]``
            and moves it to the model's device (override e.g. for channels_last).

    Returns:
        The number of batches actually used.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not bns or num_iters <= 0:
        return 0
    to_input = to_input or images_as()
    device = bns[0].running_mean.device  # buffers exist even for affine=False BN
    modes = [(m, m.training) for m in model.modules()]
    saved = [(bn.momentum, {k: v.clone() for k, v in bn.state_dict().items()}) for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    done = 0
    try:
        for batch in batches_iterable:
            if done >= num_iters:
                break
            model(to_input(batch, device))
            done += 1
        if done == 0:
            raise ValueError("recompute_bn_stats: the batch iterable yielded no batches")
    except BaseException:
        for bn, (_, state) in zip(bns, saved):
            bn.load_state_dict(state)
        raise
    finally:
        for bn, (momentum, _) in zip(bns, saved):
            bn.momentum = momentum
        for module, training in modes:
            module.training = training
    if done < num_iters:
        warnings.warn(f"recompute_bn_stats: iterable stopped after {done} of {num_iters} batches",
                      stacklevel=2)
    return done
