"""Soft conditional gate (paper Sec. 3.2, Eq. 3 and the activation delta; spec Sec. 2.6; Table 3 variants)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNorm


def make_gate(c: int, n_paths: int) -> nn.Sequential:
    """1x1 conv C->C/2 + BN + ReLU, global average pooling, 1x1 conv C/2->n with bias (official layout)."""
    return nn.Sequential(ConvNorm(c, c // 2, 1, relu=True), nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(c // 2, n_paths, 1, bias=True))


def gate_input(x: torch.Tensor, small: bool) -> torch.Tensor:
    """The small gate sees X resized by scale factor 0.25 (not by size: matches the official sampling).

    Maps under 4 px (tiny smoke inputs only) would shrink to 0 px and crash, so those go to >= 1 px.
    """
    if not small:
        return x
    h, w = x.shape[-2:]
    if h < 4 or w < 4:
        return F.interpolate(x, size=small_gate_hw(h, w), mode="bilinear", align_corners=False)
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)   # fast in this layout
    return quarter_bilinear(x)


def quarter_bilinear(x: torch.Tensor) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)`` by strided sums.

    At scale 1/4 output pixel i samples input coordinate 4i + 1.5, halfway between pixels 4i + 1 and 4i + 2
    in both directions, so the result is the mean of that 2x2 block (equal up to float rounding). On
    contiguous (NCHW) CPU tensors this is ~30x faster than the generic interpolation kernel, which would
    otherwise cost a quarter of a cell at 512x1024.
    """
    return _quarter_sum(x).mul_(0.25)


def _quarter_sum(x: torch.Tensor) -> torch.Tensor:
    """4 x :func:`quarter_bilinear` (the sum of each 2x2 block at offsets 1 and 2)."""
    h, w = x.shape[-2:]
    m, n = 4 * (h // 4), 4 * (w // 4)
    r = x[..., 1:m:4, :n] + x[..., 2:m:4, :n]
    return r[..., 1::4] + r[..., 2::4]


def small_gate_hw(h: int, w: int) -> tuple[int, int]:
    return max(1, h // 4), max(1, w // 4)


def activate(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Gate activation on [N, n] logits. relu_tanh = max(0, tanh) lets each path close on its own."""
    if kind == "relu_tanh":
        return torch.tanh(logits).clamp_min(0.0)
    if kind == "sigmoid":
        return torch.sigmoid(logits)
    if kind == "softmax":
        return torch.softmax(logits, dim=1)
    raise ValueError(f"unknown gate_activation {kind!r}; valid: relu_tanh, sigmoid, softmax")


def run_gate(gate: nn.Sequential, x: torch.Tensor, small: bool, kind: str) -> torch.Tensor:
    """Gate activations [N, n]. Evaluation without autograd takes :func:`_fast_gate` (same function)."""
    if fast_gate_ok(gate):
        return _fast_gate(gate, x, small, kind)
    return activate(gate(gate_input(x, small)).flatten(1), kind)


def fast_gate_ok(gate: nn.Sequential) -> bool:
    """The eval fast path applies: eval mode, no autograd, no module hooks."""
    return not gate.training and not torch.is_grad_enabled() and not _hooked(gate)


def gates_of_layer(gates: list[nn.Sequential], xs: list[torch.Tensor], small: bool, kind: str) -> list[list]:
    """Host gate activations of several nodes whose inputs hold the same batch rows (one layer of the sparse
    executor; every gate :func:`fast_gate_ok`): the pooled features of each gate, then one block-diagonal
    linear, one activation and one copy to the host for all of them (instead of one of each per node).
    Returns, per gate, the rows of its activations; the same numbers as :func:`run_gate` up to rounding.
    """
    pooled, heads = [], []
    for g, x in zip(gates, xs):
        p, w2, b2 = _fast_pooled(g, x, small)
        pooled.append(p)
        heads.append((w2, b2))
    w, b = _block_head(gates[0], heads)
    out = activate(F.linear(torch.cat(pooled, 1), w, b), kind).tolist()
    split, j = [], 0
    for w2, _ in heads:
        split.append([r[j:j + w2.shape[0]] for r in out])
        j += w2.shape[0]
    return split


def _block_head(owner: nn.Sequential, heads: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Block-diagonal weight and concatenated bias of several gates' last layers (cached on ``owner``)."""
    key = tuple((id(w), id(b), w.data_ptr(), b.data_ptr()) for w, b in heads)
    cache = owner.__dict__.setdefault("_block_head_cache", {})
    if key not in cache:
        if len(cache) > 64:
            cache.clear()
        cache[key] = (torch.block_diag(*[w for w, _ in heads]), torch.cat([b for _, b in heads]))
    return cache[key]


def _hooked(gate: nn.Sequential) -> bool:
    """Module hooks must see the module calls (e.g. FLOP counting by hooks): no fast path then."""
    from torch.nn.modules import module as m
    if m._global_forward_hooks or m._global_forward_pre_hooks or gate._forward_hooks or gate._forward_pre_hooks:
        return True
    return any(mod._forward_hooks or mod._forward_pre_hooks for mod in gate._modules.values())


def _fast_gate(gate: nn.Sequential, x: torch.Tensor, small: bool, kind: str) -> torch.Tensor:
    """The gate with its BN folded into the first 1x1 conv and both 1x1 convs as matrix products.

    A gate is ~10 small ops on a small map; as modules, each 1x1 conv on a small or 1x1 map takes PyTorch's
    slow convolution path and the pooling a generic reduction. Here: (the 2x2 sums of the small gate, with
    their 1/4 folded into the weights), one GEMM + bias, ReLU, mean, one linear, the activation. Same
    function as the modules up to float rounding; the folded weights are cached per parameter version.
    """
    pooled, w2, b2 = _fast_pooled(gate, x, small)
    return activate(F.linear(pooled, w2, b2), kind)


def _fast_pooled(gate: nn.Sequential, x: torch.Tensor, small: bool):
    """``(pooled [k, C/2], w2, b2)``: the gate up to its last 1x1 conv (= linear w2, b2), see _fast_gate."""
    k = x.shape[0]
    cl = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    quarter = small and not cl and min(x.shape[-2:]) >= 4
    w1, b1, w2, b2 = _folded(gate, x.dtype, x.device, 0.25 if quarter else 1.0)
    xs = _quarter_sum(x) if quarter else gate_input(x, small)
    c = xs.shape[1]
    if cl and xs.is_contiguous(memory_format=torch.channels_last):       # [k hw, C] @ [C, C/2]: one GEMM
        z = torch.addmm(b1, xs.permute(0, 2, 3, 1).reshape(-1, c), w1.t())
        pooled = z.relu_().view(k, -1, z.shape[1]).mean(1)
    elif k == 1:                                                         # [C/2, C] @ [C, hw]: one GEMM
        z = torch.addmm(b1.view(-1, 1), w1, xs.reshape(c, -1))
        pooled = z.relu_().mean(1).view(1, -1)
    else:                                                                # [C/2, C] @ [k, C, hw]
        z = torch.matmul(w1, xs.reshape(k, c, -1)).add_(b1.view(-1, 1))
        pooled = z.relu_().mean(2)
    return pooled, w2, b2


def _folded(gate: nn.Sequential, dtype: torch.dtype, device: torch.device, in_scale: float):
    """(w1 [C/2, C], b1 [C/2], w2 [n, C/2], b2 [n]): BN folded into the first conv, times ``in_scale``.

    Cached on the gate; the key holds every source tensor's identity, storage and version, so a weight
    update (optimizer step, load_state_dict, .to()) or a replaced parameter recomputes it.
    """
    mods = gate._modules
    conv, last = mods["0"], mods["2"]
    bn = conv._modules["norm"]
    tensors = (conv._parameters["weight"], bn._parameters["weight"], bn._parameters["bias"],
               bn._buffers["running_mean"], bn._buffers["running_var"], last._parameters["weight"],
               last._parameters["bias"])
    key = (dtype, device, in_scale, bn.eps) + tuple((id(t), t.data_ptr(), t._version) for t in tensors)
    cache = gate.__dict__.get("_fast_gate_cache")
    if cache is not None and cache[0] == key:
        return cache[1]
    w, gamma, beta, mean, var, w2, b2 = tensors
    with torch.no_grad():
        inv = gamma / torch.sqrt(var + bn.eps)
        w1 = w.flatten(1) * (inv * in_scale).view(-1, 1)
        b1 = beta - mean * inv
        folded = tuple(t.to(device=device, dtype=dtype).contiguous() for t in (w1, b1, w2.flatten(1), b2))
    gate.__dict__["_fast_gate_cache"] = (key, folded)
    return folded
