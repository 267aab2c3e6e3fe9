"""Static routes (issue 7): mask JSON IO, modeled routes (paper Table 1, Fig. 3), common routes (Sec. 4.3).

Tiny models (C0 = 8, 5 classes, 64x96 inputs); BN statistics are recalibrated on random data before any
logits comparison (random-init activations explode through 16 residual layers otherwise).
"""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from dynroute_lib.analysis.paper import TABLE1_MODELED
from dynroute_lib.config import get_preset
from dynroute_lib.engine import common_route
from dynroute_lib.engine.common_route import collect_gate_records
from dynroute_lib.engine.precise_bn import recompute_bn_stats
from dynroute_lib.flops import static_route_flops
from dynroute_lib.model import build_model
from dynroute_lib.routes import RouteMask, all_nodes, liveness, node_key, node_paths, parse_node_key
from dynroute_lib.routes.common import extract_common, path_frequencies
from dynroute_lib.routes.modeled import MODELED, modeled_route

SMALL = dict(base_channels=8, num_classes=5)
H, W = 64, 96
OUTPUT_SCALES = {"fcn32s": {3}, "deeplabv3": {2}, "unet": {0}, "hrnetv2": {0, 1, 2, 3}, "autodeeplab": {1}}
# Documented in routes/modeled.py's docstring: (params M, official GFLOPs at 1024x2048).
OURS = {"fcn32s": (2.85, 25.2), "deeplabv3": (3.72, 28.5), "unet": (6.08, 58.4), "hrnetv2": (5.44, 62.2),
        "autodeeplab": (2.51, 26.3)}


pytestmark = pytest.mark.usefixtures("one_thread")


def _calibrated_fixed(name: str, seed: int = 0):
    torch.manual_seed(seed)
    net = build_model(get_preset(name, **SMALL))
    g = torch.Generator().manual_seed(seed)
    recompute_bn_stats(net, [(torch.randn(2, 3, 64, 64, generator=g),) for _ in range(2)], num_iters=2)
    return net.eval()


# ---- mask JSON ---------------------------------------------------------------------------------------------
def test_mask_json_round_trip(tmp_path):
    for mask in [modeled_route(n) for n in MODELED] + [RouteMask.full(4, name="all4")]:
        back = RouteMask.load(mask.save(tmp_path / f"{mask.name}.json"))
        assert (back.num_layers, back.name, back.paths) == (mask.num_layers, mask.name, mask.paths)


def test_mask_json_bad_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"num_layers": 16, "nodes": {"l0_s0": [1, 1, 1]}}))  # l0_s0 has 2 paths
    for path in (bad, wrong):
        with pytest.raises(ValueError, match=re.escape(str(path))):
            RouteMask.load(path)
    with pytest.raises(ValueError, match=re.escape(str(bad))):
        get_preset(str(bad))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        RouteMask.load(tmp_path / "missing.json")


# ---- modeled routes ------------------------------------------------------------------------------------------
def test_unknown_modeled_route_lists_valid_names():
    with pytest.raises(ValueError, match="valid: fcn32s, deeplabv3, unet, hrnetv2, autodeeplab"):
        modeled_route("segnet")


@pytest.mark.parametrize("name", list(MODELED))
def test_modeled_route_valid_and_builds(name):
    mask = modeled_route(name)
    live, computed = liveness(mask)
    assert live == computed                                  # no pass-through nodes, nothing orphaned
    assert {s for s in range(4) if (15, s) in live} == OUTPUT_SCALES[name]
    net = build_model(get_preset(name, **SMALL)).eval()
    built = {(-1, 0)} if net.backbone.init_layer is not None else set()
    built |= {(layer, int(s)) for layer, d in enumerate(net.backbone.all_cell_list) for s in d}
    assert built == computed
    with torch.no_grad():
        logits, aux = net(torch.randn(1, 3, 64, 64))
    assert logits.shape == (1, 5, 64, 64) and torch.isfinite(logits).all()


def test_table1_params_and_flops():
    for name, (params, gflops) in OURS.items():
        r = static_route_flops(name)
        assert r["params_m"] == pytest.approx(params, abs=0.005), name
        assert r["gflops_official"] == pytest.approx(gflops, abs=0.05), name
        assert abs(r["params_m"] / TABLE1_MODELED[name][0] - 1) < 0.02, name


@pytest.mark.parametrize("name", list(MODELED))
def test_static_model_equals_gated_model_with_forced_route(name):
    fixed = _calibrated_fixed(name)
    gated = build_model(get_preset("dynamic_raw_l16", **SMALL))
    state = {k: v for k, v in fixed.state_dict().items() if "gate_weights_beta" not in k}
    gstate = gated.state_dict()
    assert all(k in gstate and gstate[k].shape == v.shape for k, v in state.items())
    gated.load_state_dict(state, strict=False)
    gated.set_forced_route(modeled_route(name))
    gated.eval()
    x = torch.randn(2, 3, H, W, generator=torch.Generator().manual_seed(1))
    for executor in ("sparse", "dense"):
        fixed.executor = gated.executor = executor
        with torch.no_grad():
            a, aux_a = fixed(x)
            b, aux_b = gated(x)
        assert (a - b).abs().max().item() <= 1e-5, executor
        assert torch.equal(aux_a.real_gflops, aux_b.real_gflops)


@pytest.mark.parametrize("name", list(MODELED))
def test_params_drop_when_a_node_closes(name):
    mask = modeled_route(name)
    _, computed = liveness(mask)
    node = min((n for n in computed if n[0] == 8), key=lambda n: n[1])
    fewer = RouteMask(mask.num_layers, dict(mask.paths), name)
    fewer.paths[node] = (0,) * len(fewer.paths[node])        # closed node: passes its input through
    a, b = static_route_flops(mask, H, W, **SMALL), static_route_flops(fewer, H, W, **SMALL)
    assert b["params_m"] < a["params_m"] and b["gflops_official"] < a["gflops_official"]


def test_params_drop_from_full_space():
    full = RouteMask.full(4)
    fewer = RouteMask(4, dict(full.paths))
    fewer.paths[(1, 1)] = (0, 0, 0)
    assert static_route_flops(fewer, H, W, **SMALL)["params_m"] < static_route_flops(full, H, W, **SMALL)["params_m"]


@pytest.mark.parametrize("name", list(MODELED))
def test_static_route_flops_equals_real_forward(name):
    net = build_model(get_preset(name, **SMALL)).eval()
    with torch.no_grad():
        _, aux = net(torch.randn(1, 3, 64, 128))
    r = static_route_flops(net.cfg, 64, 128)
    assert r["gflops_official"] == pytest.approx(aux.real_gflops[0].item(), rel=1e-6)
    assert r["params_m"] * 1e6 == sum(p.numel() for p in net.parameters())


# ---- common routes ---------------------------------------------------------------------------------------------
def _freqs(num_layers: int, value: float) -> dict:
    return {n: np.full(len(node_paths(*n, num_layers)), value) for n in all_nodes(num_layers)}


def test_extract_common_keeps_frequent_paths_only():
    freqs = _freqs(4, 0.96)
    freqs[(1, 1)] = np.array([0.96, 0.94, 0.95])             # keep, up, down
    mask = extract_common(freqs, 4, name="c")
    assert mask.paths[(1, 1)] == (1, 0, 1) and mask.name == "c"
    assert mask.open_paths() == RouteMask.full(4).open_paths() - 1
    assert extract_common(freqs, 4, keep_ratio=0.9).paths[(1, 1)] == (1, 1, 1)
    assert extract_common(freqs, 4, keep_ratio=0.955).paths[(1, 1)] == (1, 0, 0)
    with pytest.raises(ValueError, match="no routing node"):
        extract_common(_freqs(4, 0.5), 4)                    # stem + pass-through + decoder only


def test_extract_common_drops_unreachable_paths():
    freqs = _freqs(4, 0.0)
    freqs[(-1, 0)] = np.array([1.0, 0.0])                    # init keeps only
    for layer in range(4):
        freqs[(layer, 0)][0] = 1.0                           # the 1/4 stream
    freqs[(2, 2)] = np.array([1.0, 1.0, 1.0])                # never reached: must not appear
    mask = extract_common(freqs, 4)
    assert mask.paths[(2, 2)] == (0, 0, 0)
    assert mask.open_paths() == 5


def test_path_frequencies_counts_open_passes():
    records = []
    for i in range(100):
        gates = {node_key(*n): np.full(len(node_paths(*n, 4)), 0.7) for n in all_nodes(4)}
        gates["l1_s1"] = np.array([0.7, 0.5 if i < 96 else 0.0, 0.3 if i < 94 else 0.0])
        gates["l0_s0"] = np.array([5e-5, 0.7])
        records.append({"name": str(i), "real_gflops": 1.0, "gates": gates} if i % 2 else gates)
    freqs = path_frequencies(records)
    assert np.allclose(freqs[(1, 1)], [1.0, 0.96, 0.94]) and np.allclose(freqs[(0, 0)], [0.0, 1.0])
    assert np.allclose(path_frequencies(records, threshold=1e-5)[(0, 0)], [1.0, 1.0])
    assert extract_common(freqs, 4).paths[(1, 1)] == (1, 1, 0)


def test_collect_records_and_cli_write_a_usable_preset(tmp_path, monkeypatch, capsys):
    cfg = get_preset("dynamic_raw_l16", num_layers=4, **SMALL)
    torch.manual_seed(0)
    net = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    ds = [(torch.randn(3, H, W, generator=g), torch.zeros(H, W, dtype=torch.long), {"name": f"im{i}"})
          for i in range(3)]
    records = collect_gate_records(net.train(), ds, limit=2)
    assert net.training and [r["name"] for r in records] == ["im0", "im1"]
    assert set(records[0]["gates"]) == {node_key(*n) for n in all_nodes(4)} and records[0]["real_gflops"] > 0

    ckpt = tmp_path / "dyn.pth"
    torch.save({"model": net.state_dict(), "config": cfg.to_dict()}, ckpt)
    monkeypatch.setattr(common_route, "build_dataset", lambda *a, **k: ds)
    out, freqs_out = tmp_path / "common_x.json", tmp_path / "freqs.json"
    mask = common_route.main([str(ckpt), "--data", "synthetic", "--threshold", "0.95", "--out", str(out),
                              "--freqs-out", str(freqs_out)])
    assert json.loads(capsys.readouterr().out)["images"] == 3
    assert RouteMask.load(out).paths == mask.paths and mask.name == "common_x"
    assert json.loads(freqs_out.read_text())["images"] == 3
    common = get_preset(str(out), **SMALL)
    assert common.gate_mode == "fixed" and common.num_layers == 4
    with torch.no_grad():
        logits, _ = build_model(common).eval()(ds[0][0][None])
    assert logits.shape == (1, 5, H, W)


# ---- figure ---------------------------------------------------------------------------------------------------
def test_draw_each_modeled_route():
    route_plot = pytest.importorskip("dynroute_lib.analysis.route_plot")
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    for name in MODELED:
        mask = modeled_route(name)
        fig = route_plot.draw_route_grid({node_key(*n): v for n, v in mask.paths.items()}, 16, title=name)
        assert isinstance(fig, Figure) and fig.axes and fig.axes[0].lines


def test_node_keys_round_trip():
    for n in all_nodes(16):
        assert parse_node_key(node_key(*n)) == n
    for bad in ("x0_s0", "l0s0", "l0_s", "gates", "l1_s2_x"):
        with pytest.raises(ValueError, match="node key"):
            parse_node_key(bad)


@pytest.mark.parametrize("obj", [{"num_layers": 4, "nodes": []}, {"num_layers": 4, "nodes": {"l9_s0": [1]}}])
def test_malformed_route_mask_file_is_a_clear_error(tmp_path, obj):
    path = tmp_path / "bad_mask.json"
    path.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match="bad_mask.json"):
        RouteMask.load(path)
