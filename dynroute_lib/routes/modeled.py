"""Classic static architectures as fixed routes in the routing space (paper Sec. 4.3, Table 1, Fig. 3).

The paper models FCN-32s, DeepLabV3, U-Net, HRNetV2 and Auto-DeepLab as hand-picked routes of the Layer16
space but prints no masks. The routes below are reasoned out from each architecture's shape, then their
stage lengths are tuned so that the parameter counts land near Table 1. Conventions:

* A route is a union of *paths*: scale strings over consecutive layers, starting at the init cell (layer -1).
  Between neighbouring layers the scale keeps (same digit), goes down (+1) or up (-1); a path reaching the
  last layer opens that node's keep path (the decoder input). Every node on a route is *computed*: the
  routes use no pass-through nodes, so a line in Fig. 3 is always an open path of a computed node.
* The decoder fuses whatever last-layer scales are live; single-output architectures (FCN-32s, DeepLabV3,
  U-Net, Auto-DeepLab) leave the other scales dead, HRNetV2 feeds all four (its V2 head uses every scale).
* Stage lengths are written for Layer16 and stretched proportionally (largest remainder) for other depths.

Parameters and official GFLOPs at 1024x2048 (``flops.static_route_flops``), ours / paper Table 1:

============  ===========  ===========  ===================================================================
route         params (M)   GFLOPs       shape, gap
============  ===========  ===========  ===================================================================
fcn32s        2.85 / 2.9   25.2 / 35.1  one path, 16 cells; -9.9 G
deeplabv3     3.72 / 3.7   28.5 / 42.5  one path + 3-cell 1/32 branch (ASPP context); -14.0 G
unet          6.08 / 6.1   58.4 / 53.9  U with computed lateral (skip) streams; +4.5 G
hrnetv2       5.44 / 5.4   62.2 / 62.5  4 parallel streams, neighbour exchanges; -0.3 G
autodeeplab   2.51 / 2.5   26.3 / 33.1  the searched path + 1/8 tail; -6.8 G
============  ===========  ===========  ===================================================================

Parameters (unambiguous: conv weights + BN affine) match within 2%. The FLOPs of the single-path routes
cannot match: no single path of Layer16 exceeds 29.6 G under the official count (a 1/4-1/8 zigzag with 16
transforms), below Table 1's 35.1 G (FCN-32s) and 33.1 G (Auto-DeepLab). The paper's count for these rows
must include something a fixed route does not have here (e.g. gate FLOPs); we cannot tell what.

(The table is checked by ``tests/test_routes.py``; the numbers come from ``flops.static_route_flops``, the
paper's from ``analysis.paper``.) This module is pure Python: it builds masks and imports no model.
"""
from __future__ import annotations

from .masks import RouteMask, liveness
from .space import layer_scales, node_key, node_paths

# Auto-DeepLab's searched network-level path (Liu et al., CVPR 2019, Fig. 3; the backbone list of the official
# TensorFlow DeepLab nas_network). Index 0 = 1/4 ... 3 = 1/32.
AUTODEEPLAB_PATH = (0, 0, 0, 1, 2, 1, 2, 2, 3, 3, 2, 1)


def _split(total: int, weights: tuple[int, ...]) -> list[int]:
    """Integer stage lengths proportional to ``weights`` summing to ``total`` (largest remainder, >= 1)."""
    if total < len(weights):
        raise ValueError(f"need at least {len(weights)} layers, got {total}")
    raw = [total * w / sum(weights) for w in weights]
    out = [max(1, int(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - int(raw[i]), reverse=True)
    i = 0
    while sum(out) < total:
        out[order[i % len(out)]] += 1
        i += 1
    while sum(out) > total:
        j = max(range(len(out)), key=lambda k: out[k])
        out[j] -= 1
    return out


def _at(num_layers: int, fraction: float) -> int:
    """Layer index at ``fraction`` of the depth, rounded half up (Layer16 positions are given as k / 16)."""
    return int(fraction * num_layers + 0.5)


def _increasing(num_layers: int, fractions: tuple[float, ...], first: int, gaps: tuple[int, ...]) -> list[int]:
    """Layer positions at ``fractions``, pushed apart so that position i+1 >= position i + gaps[i]."""
    out = [max(first, _at(num_layers, fractions[0]))]
    for f, g in zip(fractions[1:], gaps):
        out.append(max(out[-1] + g, _at(num_layers, f)))
    return out


def route_from_paths(num_layers: int, name: str, paths: list[tuple[int, str]]) -> RouteMask:
    """Build a route from paths ``(first_layer, scale digits)`` and check that it is well formed.

    Args:
        num_layers: Depth L of the space.
        name: Route name stored in the mask.
        paths: Each path starts at ``first_layer`` (-1 = init cell); digit i is the scale at layer
            ``first_layer + i``. Neighbouring digits may differ by at most one.

    Returns:
        The RouteMask with exactly the paths' edges open.

    Raises:
        ValueError: A node outside the space, a jump of more than one scale, a route that does not
            reach the decoder, or a route whose liveness differs from its node set (a path starting at
            a node no other path reaches, or a live node with every path closed).
    """
    opened: set[tuple[int, int, str]] = set()
    on_route: set[tuple[int, int]] = set()
    for first, digits in paths:
        scales = [int(c) for c in digits]
        for i, s in enumerate(scales):
            layer = first + i
            if layer >= num_layers or s not in layer_scales(layer):
                raise ValueError(f"route {name}: node l{layer}_s{s} is not in the Layer{num_layers} space")
            on_route.add((layer, s))
            if layer == num_layers - 1:
                opened.add((layer, s, "keep"))
            elif i + 1 < len(scales):
                step = scales[i + 1] - s
                if abs(step) > 1:
                    raise ValueError(f"route {name}: jump {s}->{scales[i + 1]} after layer {layer}")
                opened.add((layer, s, {0: "keep", 1: "down", -1: "up"}[step]))
    nodes = {}
    for (layer, s) in on_route:
        names = node_paths(layer, s, num_layers)
        nodes[(layer, s)] = tuple(int((layer, s, p) in opened) for p in names)
    mask = RouteMask(num_layers, nodes, name)
    live, computed = liveness(mask)
    if live != computed or computed != on_route:
        odd = sorted((live ^ on_route) | (live - computed))
        raise ValueError(f"route {name}: liveness differs from the route at {[node_key(*n) for n in odd]}")
    if not any((num_layers - 1, s) in live for s in range(4)):
        raise ValueError(f"route {name}: no last-layer node is live (the decoder gets nothing)")
    return mask


# ---- the five architectures ---------------------------------------------------------------------------
def fcn32s(num_layers: int = 16) -> RouteMask:
    """FCN-32s: one path that descends stage by stage to 1/32 and predicts from 1/32 only.

    Shape: VGG16 after its stride-4 point has conv3 x3 (1/4), conv4 x3 (1/8), conv5 x3 (1/16) and fc6-fc7
    (1/32); no skip, no up path. Layer16 stages 4/4/5/3 (init keeps at 1/4, no init down path).
    Why not "descend as fast as the space allows and stay at 1/32": that puts 14 cells at 1/32 (7.9 M
    params, 2.7x Table 1); filling those layers with pass-through nodes instead gives 2.9 M but only 13 G.
    No single path of Layer16 exceeds 29.6 G, so Table 1's 35.1 G is out of reach here.
    """
    n = _split(num_layers, (4, 4, 5, 3))
    return route_from_paths(num_layers, "fcn32s", [(-1, "0" + "".join(str(s) * k for s, k in enumerate(n)))])


def deeplabv3(num_layers: int = 16) -> RouteMask:
    """DeepLabV3 (output stride 16): descend to 1/16 and stay; ASPP as a parallel 1/32 context branch.

    Shape: ResNet res2 (1/4) and res3 (1/8) are short, res4/res5 run dilated at 1/16; the ASPP head adds
    large-receptive-field parallel branches (atrous rates, image pooling) fused back at 1/16. The space has
    no dilation, so the larger context is a branch that goes down to 1/32 over the last layers and comes
    back up into the last 1/16 node. Layer16: 3 cells at 1/4, 2 at 1/8, 11 at 1/16; the branch leaves
    after layer 11 and runs 3 cells at 1/32 (layers 12-14). The output is 1/16 only.
    """
    n0, n1, n2 = _split(num_layers, (3, 2, 11))
    k = min(max(1, _at(num_layers, 3 / 16)), n2 - 2)        # the branch leaves and re-enters the 1/16 stretch
    if k < 1:
        raise ValueError(f"deeplabv3 needs at least 5 layers, got {num_layers}")
    main = "0" + "0" * n0 + "1" * n1 + "2" * n2
    branch_from = num_layers - 2 - k                      # last 1/16 node before the branch
    return route_from_paths(num_layers, "deeplabv3", [(-1, main), (branch_from, "2" + "3" * k + "2")])


def unet(num_layers: int = 16) -> RouteMask:
    """U-Net: descend 1/4 -> 1/32, ascend back to 1/4; every encoder scale stays open as a lateral stream.

    Shape: each encoder level sends down once and keeps its own scale open (the skip connection) until the
    decoder comes back up to it; the sum at the merge node is the U-Net fusion (the space sums instead of
    concatenating). Only the 1/4 output reaches the decoder. The lateral streams are computed nodes (lines
    of Fig. 3); making them pass-through nodes would give 5.9 M / 25 G, far below Table 1's 53.9 G.
    Layer16: 1/4 throughout; 1/8 enters at layer 2 and leaves (up) at 12; 1/16 at 3..11; 1/32 at 4..10.
    """
    L = num_layers
    e1, e2, e3, d3, d2, d1 = _increasing(L, (2 / 16, 3 / 16, 4 / 16, 10 / 16, 11 / 16, 12 / 16), 0,
                                         (1, 1, 0, 1, 1))
    if d1 > L - 2:
        raise ValueError(f"unet needs at least 10 layers, got {L}")
    paths = [(-1, "0" * (L + 1))]
    for s, (e, d) in enumerate(((e1, d1), (e2, d2), (e3, d3)), start=1):
        paths.append((e - 1, str(s - 1) + str(s) * (d - e + 1) + str(s - 1)))
    return route_from_paths(L, "unet", paths)


def hrnetv2(num_layers: int = 16) -> RouteMask:
    """HRNetV2: parallel streams added one scale per stage, repeated neighbour exchanges, all four out.

    Shape: stage 1 runs 1/4 only; each later stage adds the next coarser stream with a strided down path
    from the current coarsest one, and ends with an exchange unit (multi-resolution fusion). HRNet fuses
    every pair of resolutions; the space links neighbours only, so an exchange opens up and down between
    each pair of adjacent live scales. The V2 head concatenates all resolutions: here the decoder gets
    all four last-layer nodes. Layer16 stages: 1/4 alone at layers 0-2; + 1/8 at 3-6; + 1/16 at 7-10;
    + 1/32 at 11-15. Exchanges after layers 6 (end of stage 2), 8 and 10 (stage 3) and 13 (stage 4); the
    final fusion is the decoder.
    """
    L = num_layers
    starts = [0] + _increasing(L, (3 / 16, 7 / 16, 11 / 16), 1, (1, 1))
    if starts[3] > L - 1:
        raise ValueError(f"hrnetv2 needs at least 4 layers, got {L}")
    paths = [(-1, "0" * (L + 1))]
    for s in (1, 2, 3):
        paths.append((starts[s] - 1, str(s - 1) + str(s) * (L - starts[s])))
    for x in sorted({_at(L, f / 16) for f in (6, 8, 10, 13)}):
        for s in range(3):
            if starts[s + 1] <= x < L - 1:
                paths += [(x, f"{s}{s + 1}"), (x, f"{s + 1}{s}")]
    return route_from_paths(L, "hrnetv2", paths)


def autodeeplab(num_layers: int = 16) -> RouteMask:
    """Auto-DeepLab: the searched single path, then its 1/8 output stage.

    Shape: the published Cityscapes path over 12 layers, scales 1/4 1/4 1/4 1/8 1/16 1/8 1/16 1/16 1/32
    1/32 1/16 1/8 (down at the front, up at the back), is layers 0-11; Auto-DeepLab then applies ASPP at
    the last layer's scale (1/8), which here is the remaining L - 12 cells at 1/8. Output 1/8 only.
    """
    if num_layers < len(AUTODEEPLAB_PATH):
        raise ValueError(f"autodeeplab needs at least {len(AUTODEEPLAB_PATH)} layers, got {num_layers}")
    tail = num_layers - len(AUTODEEPLAB_PATH)
    digits = "0" + "".join(map(str, AUTODEEPLAB_PATH)) + str(AUTODEEPLAB_PATH[-1]) * tail
    return route_from_paths(num_layers, "autodeeplab", [(-1, digits)])


MODELED = {"fcn32s": fcn32s, "deeplabv3": deeplabv3, "unet": unet, "hrnetv2": hrnetv2,
           "autodeeplab": autodeeplab}


def modeled_route(name: str, num_layers: int = 16) -> RouteMask:
    """The route mask of a modeled architecture (one of ``MODELED``) in the Layer``num_layers`` space."""
    if name not in MODELED:
        raise ValueError(f"unknown modeled route {name!r}; valid: {', '.join(MODELED)}")
    return MODELED[name](num_layers)
