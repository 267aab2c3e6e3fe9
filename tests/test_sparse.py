"""Sparse per-sample, per-path eval executor vs the dense masked reference (issue 6; spec Sec. 3.3-3.5, 4.8).

Small models (C0 = 8, 5 classes, 4 layers where the preset allows), inputs 64x96, BN statistics calibrated
first (random-init activations explode through residual layers otherwise).

The equivalence checks run the models in float64. In float32 the sparse executor runs convolutions on
sub-batches, and CPU kernels are not bit-identical across batch sizes (at these tiny sizes PyTorch even
switches kernel at batch 1: Slow2d below 20480 input elements, oneDNN above; BLAS results depend on
alignment), which moves logits of magnitude ~50 by up to ~6e-5 for reasons unrelated to the executor. In
float64 those rounding differences are ~1e-13, so "max abs <= 1e-5" tests the routing semantics alone. One
test keeps float32 and the default backend (tolerance 1e-5 relative to the logit scale); the benchmark
reports the float32 sparse-vs-dense difference at 512x1024.
"""
from __future__ import annotations

import dataclasses
import random

import pytest
import torch
from torch import nn

from dynroute_lib.config import PRESETS, get_preset
from dynroute_lib.model import build_model
from dynroute_lib.model.costs import cost_table
from dynroute_lib.model.node import Node
from dynroute_lib.routes.random_masks import keep_rate, random_routes, routing_flops
from dynroute_lib.routes import RouteMask, all_nodes, layer_scales, liveness, node_paths

TOL = 1e-5
H, W = 64, 96
BATCHING = ["batched", "per_image"]      # sparse_batching modes at batch > 1 (auto picks one by map size)
SMALL = dict(base_channels=8, num_classes=5)


pytestmark = pytest.mark.usefixtures("one_thread")


def _reduced(name: str):
    """Preset reduced to C0 = 8, 5 classes and 4 layers (modeled routes that need more keep their depth)."""
    cfg = get_preset(name, **SMALL)
    if getattr(cfg, "arch", "dynamic") != "dynamic":
        pytest.skip(f"{name}: arch {cfg.arch!r} is not a routing network (no sparse executor)")
    if cfg.gate_mode == "fixed" and cfg.route not in ("all",) and not cfg.route.endswith(".json"):
        try:
            from dynroute_lib.routes.modeled import modeled_route
        except ImportError as e:
            pytest.skip(f"{name}: dynroute_lib.routes.modeled not importable yet ({e})")
        try:
            modeled_route(cfg.route, 4)
        except ValueError:
            return cfg                                      # this route needs its full depth
    return dataclasses.replace(cfg, num_layers=4)


def _calibrated(cfg, seed: int = 0, dtype: torch.dtype = torch.float64):
    """Model with cumulative BN statistics from a few train-mode forwards (no grad), then eval mode."""
    torch.manual_seed(seed)
    net = build_model(cfg).to(dtype)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.inference_mode():                            # (no_grad runs float64 convs ~100x slower here)
        for _ in range(3):
            net(torch.randn(2, 3, H, W, dtype=dtype))
    return net.eval()


def _randomize_gates(net, seed: int = 0, x: torch.Tensor | None = None) -> None:
    """Input-dependent gates, plus a few paths shut for everyone (bias -10).

    With images ``x``, each gate bias is centred on the median logit of those images (dense executor, all
    gates open), so that each path is open for about half of the samples: routes then differ per sample.
    """
    g = torch.Generator().manual_seed(seed)
    lasts = [m.gate_conv_beta[2] for m in net.modules() if isinstance(m, Node) and m.gate_conv_beta is not None]
    with torch.no_grad():
        for last in lasts:
            last.weight.normal_(0.0, (3.0 if x is not None else 1.5) / last.weight.shape[1] ** 0.5, generator=g)
            last.bias.uniform_(-0.6, 1.0, generator=g)
        if x is not None:
            logits = {}
            hooks = [m.register_forward_hook(lambda m, i, o: logits.__setitem__(m, o.flatten(1))) for m in lasts]
            net.executor = "dense"
            net(x)
            for h in hooks:
                h.remove()
            for last in lasts:
                last.bias -= logits[last].median(0).values - 0.05
        for last in lasts:
            last.bias[torch.rand(last.bias.shape, generator=g) < 0.15] = -10.0


def _images(n: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Noise images with per-sample contrast and colour offsets, so that learned gates differ per sample."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, 3, H, W, generator=g) * (0.5 + torch.rand(n, 1, 1, 1, generator=g))
         + 1.5 * torch.randn(n, 3, 1, 1, generator=g))
    return x.to(dtype)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    """max abs <= 1e-5 (float64), or 1e-5 relative to the logit scale in float32 (see the module docstring)."""
    scale = 1.0 if a.dtype == torch.float64 else max(1.0, b.abs().max().item())
    return (a - b).abs().max().item() <= TOL * scale


def _run(net, x, executor: str):
    net.executor = executor
    with torch.inference_mode():
        return net(x)


def _compare(net, x):
    lo_s, aux_s = _run(net, x, "sparse")
    lo_d, aux_d = _run(net, x, "dense")
    assert torch.isfinite(lo_d).all()
    assert (lo_s - lo_d).abs().max().item() <= TOL
    assert lo_s.dtype == torch.float64
    assert torch.equal(aux_s.real_gflops, aux_d.real_gflops)
    assert torch.equal(aux_s.exec_gflops, aux_d.exec_gflops)
    for n, st in aux_d.states.items():
        assert torch.equal(st.live, aux_s.states[n].live) and torch.equal(st.computed, aux_s.states[n].computed), n
        assert (st.alpha - aux_s.states[n].alpha).abs().max().item() <= 1e-6, n
    return lo_s, aux_s


# ----------------------------------------------------------------------------- every preset
@pytest.mark.parametrize("name", list(PRESETS))
def test_sparse_matches_dense_every_preset(name):
    cfg = _reduced(name)
    net = _calibrated(cfg)
    x = _images(4, seed=1)
    _randomize_gates(net, x=x)
    _compare(net, x)
    if cfg.gate_mode == "fixed":                            # spec 3.5.5: no gate modules, no dead nodes
        assert not any(isinstance(m, Node) and m.gate_conv_beta is not None for m in net.modules())
        live, _ = liveness(net.route)
        built = {(m.layer, m.scale) for m in net.modules() if isinstance(m, Node)}
        assert built <= live


# ----------------------------------------------------------------------------- mixed routes in a batch
def _special_masks(L: int) -> list[RouteMask]:
    """Closures that make whole nodes and whole scales input-dead, pass-through chains, all open."""
    full = RouteMask.full(L)
    no_s3 = dict(full.paths)                                # nobody goes down into scale 3
    for layer, s in all_nodes(L):
        if s == 2 and "down" in node_paths(layer, s, L):
            no_s3[(layer, s)] = tuple(0 if p == "down" else 1 for p in node_paths(layer, s, L))
    node_dead = dict(full.paths)                            # (1, 1) receives nothing: input-dead
    for layer, s in ((0, 0), (0, 1)):
        names = node_paths(layer, s, L)
        node_dead[(layer, s)] = tuple(0 if (p, s) in (("down", 0), ("keep", 1)) else 1 for p in names)
    resid = dict(full.paths)                                # skipped nodes: X passes through on keep
    for n in ((0, 0), (1, 1), (2, 2), (L - 1, 0)):
        resid[n] = (0,) * len(node_paths(*n, L))
    keep_only = {n: tuple(int(p == "keep") for p in node_paths(*n, L)) for n in all_nodes(L)}
    return [full, RouteMask(L, no_s3, "no_s3"), RouteMask(L, node_dead, "node_dead"),
            RouteMask(L, resid, "resid"), RouteMask(L, keep_only, "keep_only"),
            RouteMask(L, {}, "all_closed")]


def _mixed_masks(cfg, count: int, seed: int) -> list[RouteMask]:
    rng = random.Random(seed)
    specials = _special_masks(cfg.num_layers)
    masks = []
    for i in range(count):
        if i < len(specials) and i % 2 == 0:
            masks.append(specials[i // 2 * 2 % len(specials)])
        else:
            p = rng.choice([0.3, 0.5, 0.7, 0.9])
            masks.append(RouteMask(cfg.num_layers, {n: tuple(int(rng.random() < p) for _ in node_paths(*n, cfg.num_layers))
                                                    for n in all_nodes(cfg.num_layers)}))
    return masks


@pytest.fixture(scope="module")
def raw():
    return _calibrated(dataclasses.replace(get_preset("dynamic_raw_l16", **SMALL), num_layers=4))


def test_special_masks_cover_dead_nodes_and_scales():
    L = 4
    by = {m.name: liveness(m) for m in _special_masks(L)}
    assert not any(s == 3 for _, s in by["no_s3"][0])                 # whole scale input-dead
    assert (1, 1) not in by["node_dead"][0] and (2, 1) in by["node_dead"][0]
    assert by["all_closed"][1] == set() and len(by["all_closed"][0]) == L + 1   # pass-through chain on scale 0


@pytest.mark.parametrize("batching", BATCHING)
def test_sparse_matches_dense_mixed_forced_routes(raw, batching):
    masks = _special_masks(4) + _mixed_masks(raw.cfg, 6, seed=3)
    x = _images(len(masks), seed=2)
    raw.set_forced_route(masks)
    raw.sparse_batching = batching
    try:
        lo, aux = _compare(raw, x)
        for b, m in enumerate(masks):                        # batch invariance: batch-N row == batch-1 run
            raw.set_forced_route([m])
            lo1, aux1 = _run(raw, x[b:b + 1], "sparse")
            assert _close(lo1[0], lo[b]), m.name
            assert aux1.exec_gflops[0] == aux.exec_gflops[b]
            raw.set_forced_route(m)                          # one mask for the batch == per-sample list of one
            assert torch.equal(_run(raw, x[b:b + 1], "sparse")[0], lo1)
        with pytest.raises(ValueError, match="per-sample"):
            raw.set_forced_route(masks[:3])
            _run(raw, x, "sparse")
    finally:
        raw.set_forced_route(None)
        raw.sparse_batching = "auto"


@pytest.mark.parametrize("batching", BATCHING)
def test_channels_last_sparse_matches_contiguous(raw, batching):
    """The sparse row ops keep channels_last (permuted index_select / cat / index_add); same numbers."""
    masks = _special_masks(4) + _mixed_masks(raw.cfg, 4, seed=8)
    x = _images(len(masks), seed=8)
    raw.set_forced_route(masks)
    try:
        ref, _ = _run(raw, x, "sparse")
        raw.sparse_batching = batching
        raw.to(memory_format=torch.channels_last)
        lo, _ = _run(raw, x.contiguous(memory_format=torch.channels_last), "sparse")
        dense, _ = _run(raw, x.contiguous(memory_format=torch.channels_last), "dense")
    finally:
        raw.to(memory_format=torch.contiguous_format)
        raw.set_forced_route(None)
        raw.sparse_batching = "auto"
    assert (lo - ref).abs().max().item() <= TOL and (lo - dense).abs().max().item() <= TOL


@pytest.mark.parametrize("batching", BATCHING)
@pytest.mark.parametrize("preset", ["dynamic_raw_l16", "dynamic_a"])
def test_batch_invariance_learned_gates(batching, preset):
    """Learned gates differ per sample (per-sample gate values: per-row scales in batched mode, folded or
    carried scalars per image); the small gate of Dynamic-A takes the fast eval gate path."""
    net = _calibrated(dataclasses.replace(get_preset(preset, **SMALL), num_layers=4), seed=4)
    net.sparse_batching = batching
    x = _images(8, seed=5)
    _randomize_gates(net, seed=4, x=x)
    lo, aux = _compare(net, x)
    opened = torch.cat([st.alpha > 0 for st in aux.states.values()], 1)              # [N, all paths]
    computed = torch.stack([st.computed for st in aux.states.values()], 1)
    live = torch.stack([st.live for st in aux.states.values()], 1)
    for mask in (opened, computed, live):                   # routes really differ inside the batch
        assert mask.any(0).sum() > mask.all(0).sum()
    for b in range(8):
        lo1, aux1 = _run(net, x[b:b + 1], "sparse")
        assert _close(lo1[0], lo[b])
        assert aux1.real_gflops[0] == aux.real_gflops[b]


@pytest.mark.parametrize("batching", BATCHING)
def test_sparse_matches_dense_float32(batching):
    """float32, default backend: mixed forced routes, then learned gates; 1e-5 relative to the logit scale."""
    net = _calibrated(dataclasses.replace(get_preset("dynamic_raw_l16", **SMALL), num_layers=4), dtype=torch.float32)
    net.sparse_batching = batching
    masks = _special_masks(4) + _mixed_masks(net.cfg, 4, seed=9)
    x = _images(len(masks), seed=9, dtype=torch.float32)
    net.set_forced_route(masks)
    lo_s, _ = _run(net, x, "sparse")
    lo_d, _ = _run(net, x, "dense")
    assert lo_s.dtype == torch.float32 and _close(lo_s, lo_d)
    net.set_forced_route(None)
    _randomize_gates(net, seed=9, x=x)
    lo_s, aux_s = _run(net, x, "sparse")
    lo_d, aux_d = _run(net, x, "dense")
    assert _close(lo_s, lo_d) and torch.equal(aux_s.real_gflops, aux_d.real_gflops)


# ----------------------------------------------------------------------------- executed FLOPs
def _expected_from_mask(cfg, mask: RouteMask) -> tuple[float, float]:
    """(official real, executed) FLOPs of a forced route, from the mask alone (spec 4.5 and 3.3 rule 8)."""
    t = cost_table(cfg.base_channels, cfg.cell_type, False, cfg.small_gate, cfg.num_classes, H, W)
    L = cfg.num_layers
    live, comp = liveness(mask)
    real = t.stem + t.head_official
    execd = t.stem
    for layer, s in comp:
        opened = [p for p, o in zip(node_paths(layer, s, L), mask.paths[(layer, s)]) if o]
        execd += t.cell[s] + sum(t.trans[s][p] for p in opened)               # quirks 1 and 9 off
        real += (t.cell[s] if layer >= 0 else 0.0) + (sum(t.trans[s][p] for p in opened) if layer < L - 1 else 0.0)
    feeds = [(L - 1, s) in live and ((L - 1, s) not in comp or mask.paths[(L - 1, s)][0]) for s in range(4)]
    execd += sum(t.head_true_stage[s] for s in range(4) if any(feeds[s:]))      # quirk 2 off
    return real / 1e9, execd / 1e9


class _Counter:
    """Counts the official primitives of every module call that really happens (hooks + keep ReLUs)."""

    def __init__(self, net):
        self.total, self.handles = 0, []
        stem = set(net.backbone.stem.modules())             # counted from the table: quirk 6 (511 vs 512 rows)
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ReLU, nn.AdaptiveAvgPool2d)) and m not in stem:
                self.handles.append(m.register_forward_hook(self.hook))
            if isinstance(m, Node):
                m.transform = self.wrap(m.transform)
        c = net.cfg
        self.stem = cost_table(c.base_channels, c.cell_type, True, c.small_gate, c.num_classes, H, W).stem
        self.stem_module = net.backbone.stem
        self.handles.append(self.stem_module.register_forward_hook(self.hook))

    def hook(self, m, inputs, out):
        n, c, h, w = inputs[0].shape
        if m is self.stem_module:
            self.total += n * self.stem
            return
        if isinstance(m, nn.Conv2d):
            s = m.stride[0]
            h, w = h // s, w // s                            # official primitive: (H/stride)
            f = m.kernel_size[0] * m.kernel_size[1] * c // m.groups * m.out_channels * h * w
            f += 2 * h * w * m.out_channels if getattr(m, "norm", None) is not None else 0
            f += h * w * m.out_channels if getattr(m, "relu", False) else 0
            self.total += n * f
        else:
            self.total += n * c * h * w

    def wrap(self, fn):
        def transform(path, h, *scale):
            if path == "keep":
                self.total += h.numel()
            return fn(path, h, *scale)
        return transform

    def remove(self, net):
        for hd in self.handles:
            hd.remove()
        for m in net.modules():
            if isinstance(m, Node):
                del m.transform


@pytest.mark.parametrize("batching", BATCHING)
def test_executed_flops_equal_counted_flops(raw, batching):
    masks = _special_masks(4) + _mixed_masks(raw.cfg, 4, seed=7)
    x = _images(len(masks), seed=3)
    raw.set_forced_route(masks)
    raw.sparse_batching = batching
    counter = _Counter(raw)
    try:
        _, aux = _run(raw, x, "sparse")
    finally:
        counter.remove(raw)
        raw.set_forced_route(None)
        raw.sparse_batching = "auto"
    for b, m in enumerate(masks):
        real, execd = _expected_from_mask(raw.cfg, m)
        assert aux.real_gflops[b].item() == pytest.approx(real, rel=1e-6), m.name
        assert aux.exec_gflops[b].item() == pytest.approx(execd, rel=1e-6), m.name
        routing = routing_flops(m, raw.cfg, H, W) / 1e9
        t = cost_table(8, "sep2", False, False, 5, H, W)
        assert real == pytest.approx(routing + (t.stem + t.head_official) / 1e9, rel=1e-9)
    assert counter.total / 1e9 == pytest.approx(aux.exec_gflops.double().sum().item(), rel=1e-6)


def test_executed_flops_learned_gates_counted_by_hooks():
    net = _calibrated(dataclasses.replace(get_preset("dynamic_a", **SMALL), num_layers=4), seed=6)
    x = _images(4, seed=7)
    _randomize_gates(net, seed=6, x=x)
    counter = _Counter(net)
    try:
        _, aux = _run(net, x, "sparse")
    finally:
        counter.remove(net)
    assert counter.total / 1e9 == pytest.approx(aux.exec_gflops.double().sum().item(), rel=1e-6)


# ----------------------------------------------------------------------------- forced routes
def test_all_gates_forced_open_is_dense(raw):
    x = _images(2, seed=4)
    raw.set_forced_route(RouteMask.full(4))
    try:
        lo, aux = _compare(raw, x)
        dense, _ = _run(raw, x, "dense")
        assert torch.equal(lo, dense)
        t = cost_table(8, "sep2", False, False, 5, H, W)
        full = (t.stem + sum(t.cell[s] for _, s in all_nodes(4)) + t.head_true_stage[0] + sum(t.head_true_stage[1:])
                + sum(t.trans[s][p] for n in all_nodes(4) for p, s in [(p, n[1]) for p in node_paths(*n, 4)]))
        assert aux.exec_gflops[0].item() == pytest.approx(full / 1e9, rel=1e-6)
    finally:
        raw.set_forced_route(None)


def test_forced_route_json_round_trip(raw, tmp_path):
    mask = random_routes(raw.cfg, H, W, 0.5, 1, seed=11)[0]
    assert abs(keep_rate(mask, raw.cfg, H, W) - 0.5) <= 0.05
    x = _images(2, seed=5)
    try:
        raw.set_forced_route(mask)
        before, _ = _run(raw, x, "sparse")
        loaded = RouteMask.load(mask.save(tmp_path / "route.json"))
        assert loaded.paths == mask.paths
        raw.set_forced_route(loaded)
        after, _ = _run(raw, x, "sparse")
        assert torch.equal(before, after)
    finally:
        raw.set_forced_route(None)


def test_random_routes_hit_target_keep_rate():
    cfg = get_preset("dynamic_raw_l16")
    for target in (0.3, 0.5, 0.7):
        masks = random_routes(cfg, 512, 1024, target, 3, seed=0)
        assert len({tuple(sorted(m.paths.items())) for m in masks}) == 3
        assert all(abs(keep_rate(m, cfg, 512, 1024) - target) <= 0.02 for m in masks)
    assert keep_rate(RouteMask.full(16), cfg, 512, 1024) == 1.0
    assert routing_flops(RouteMask(16, {}), cfg, 512, 1024) == 0.0
    assert all(len(layer_scales(l)) for l in range(16))


# ----------------------------------------------------------------------------- plain executor (speed reference)
def test_plain_executor_is_the_all_open_network(raw):
    """executor="plain" computes every node and path with no gate and no mask: bit-equal to the dense
    executor on the all-open forced route, the route is ignored, and its FLOPs are the whole space's."""
    x = _images(3, seed=12)
    try:
        raw.set_forced_route(RouteMask.full(4))
        dense, aux_d = _run(raw, x, "dense")
        plain, aux_p = _run(raw, x, "plain")
        assert torch.equal(plain, dense)
        assert torch.equal(aux_p.exec_gflops, aux_d.exec_gflops) and torch.equal(aux_p.real_gflops, aux_d.real_gflops)
        raw.set_forced_route(_mixed_masks(raw.cfg, 3, seed=1))
        assert torch.equal(_run(raw, x, "plain")[0], plain)
    finally:
        raw.set_forced_route(None)
    gated, _ = _run(raw, x, "plain")                      # learned gates are not run either (no gate FLOPs)
    assert torch.equal(gated, plain)


def test_plain_executor_needs_every_path_built():
    net = _calibrated(dataclasses.replace(get_preset("unet", **SMALL)))
    with pytest.raises(ValueError, match="every node and path"):
        _run(net, _images(1, seed=0), "plain")
    net.executor = "nonsense"
    with pytest.raises(ValueError, match="unknown executor"):
        net(_images(1, seed=0))


def test_auto_batching_loops_over_large_maps_with_per_sample_routes():
    from dynroute_lib.model.net import PER_IMAGE_MIN_ELEMENTS
    with torch.device("meta"):
        net = build_model(get_preset("dynamic_raw_l16")).eval()
        fixed = build_model(get_preset("fix_l16")).eval()
    side = int((PER_IMAGE_MIN_ELEMENTS / 64) ** 0.5) * 4 + 32           # stem output just above the threshold
    big, small = torch.empty(2, 3, side, side, device="meta"), torch.empty(2, 3, 64, 64, device="meta")
    assert net._per_image(big) and not net._per_image(small) and not net._per_image(big[:1])
    assert not fixed._per_image(big)                                     # one route for every sample
    net.set_forced_route(RouteMask.full(16))
    assert not net._per_image(big)
    net.set_forced_route([RouteMask.full(16)] * 2)
    assert net._per_image(big)
    net.sparse_batching = "batched"
    assert not net._per_image(big)
    net.sparse_batching = "sideways"
    with pytest.raises(ValueError, match="sparse_batching"):
        net._per_image(big)


# ----------------------------------------------------------------------------- fast eval gate
def test_quarter_bilinear_equals_interpolate():
    from dynroute_lib.model.gates import quarter_bilinear
    for h, w in [(4, 4), (5, 7), (6, 9), (7, 11), (16, 24), (33, 35)]:
        x = torch.randn(2, 3, h, w, dtype=torch.float64)
        ref = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="bilinear", align_corners=False)
        out = quarter_bilinear(x)
        assert out.shape == ref.shape and (out - ref).abs().max().item() <= 1e-12, (h, w)


@pytest.mark.parametrize("kind", ["relu_tanh", "sigmoid", "softmax"])
def test_fast_gate_matches_modules(kind):
    """The eval fast path (BN folded, 1x1 convs as matmuls) equals the module path; cached folded weights
    follow in-place weight updates and load_state_dict."""
    from dynroute_lib.model.gates import make_gate, run_gate
    g = make_gate(16, 3)
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_()
                m.bias.normal_()
    g = g.double().eval()
    shapes = [(1, 16, 12, 20), (3, 16, 7, 9), (2, 16, 3, 5), (1, 16, 1, 1)]
    for shape in shapes:
        for cl in (False, True):
            x = torch.randn(*shape, dtype=torch.float64)
            x = x.contiguous(memory_format=torch.channels_last) if cl else x
            for small in (False, True):
                ref = run_gate(g, x, small, kind)                      # grad enabled: module path
                with torch.inference_mode():
                    fast = run_gate(g, x, small, kind)
                assert (fast - ref).abs().max().item() <= 1e-12, (shape, cl, small)
    x = torch.randn(2, 16, 12, 20, dtype=torch.float64)
    with torch.inference_mode():
        before = run_gate(g, x, True, kind)
    with torch.no_grad():
        g[0].weight.mul_(-1.0)                                        # in place: the cache must notice
    with torch.inference_mode():
        after = run_gate(g, x, True, kind)
    assert (after - run_gate(g, x, True, kind)).abs().max().item() <= 1e-12
    assert not torch.allclose(after, before)
    g2 = make_gate(16, 3).double().eval()
    g2.load_state_dict(g.state_dict())
    with torch.inference_mode():
        assert (run_gate(g2, x, True, kind) - after).abs().max().item() <= 1e-12


# ----------------------------------------------------------------------------- the benchmark's plumbing
def test_bench_cli_writes_local_results_and_one_json_line(tmp_path, capsys):
    """Structure only (no timing assertions): every variant is timed each round, rows carry the quotient
    against the plain network and its spread, the result is one JSON object on the last stdout line."""
    import json

    from dynroute_lib.bench import sparse as bench
    assert bench.LOCAL_DIR.relative_to(bench.RESULTS_DIR).parts[0] == "_local"
    out = tmp_path / "b"
    code = bench.main(["--no-reexec", "--size", "64", "96", "--batches", "1", "2", "--rounds", "2",
                       "--keep", "0.5", "--threads", "1", "--out", str(out), "--json"])
    assert code == 0
    obj = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = obj["rows"]
    assert [(r["batch"], r["case"]) for r in rows] == [(1, "keep50"), (2, "keep50")]
    for r in rows:
        assert len(r["sparse_times_s"]) == len(r["plain_times_s"]) == len(r["dense_times_s"]) == 2
        assert r["sparse_ms_min"] <= r["sparse_ms"] <= r["sparse_ms_max"]
        assert r["time_over_flops_rounds_min"] <= r["time_over_flops_rounds_max"]
        assert 0 < r["flops_ratio"] < 1 and r["max_rel_diff"] <= 1e-5
        assert r["time_over_flops"] == pytest.approx(r["time_ratio"] / r["flops_ratio"], rel=1e-3)
    prov = obj["provenance"]
    assert prov["torch_threads"] == 1 and len(prov["load_start"]) == 3 and prov["rounds"] == 2
    assert {ref["batch"] for ref in obj["references"]} == {1, 2}
    assert all(ref["plain_vs_masked_dense_max_abs_diff"] == 0.0 for ref in obj["references"])
    for suffix in ("csv", "json", "md"):
        assert (out / f"sparse_speed.{suffix}").is_file()
    assert "| batch |" in (out / "sparse_speed.md").read_text()
