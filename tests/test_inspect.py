"""Tests of the per-image route inspector: route grid, records, figures, model loading, widget (headless Agg)."""
from __future__ import annotations

from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from dynroute_lib import notebook
from dynroute_lib.analysis.route_plot import draw_route_grid, node_states, node_values, scale_activity
from dynroute_lib.config import for_run, get_preset
from dynroute_lib.data import DATASETS, build_dataset
from dynroute_lib.inspector import records as insp
from dynroute_lib.inspector import view
from dynroute_lib.io import save_torch
from dynroute_lib.model import build_model
from dynroute_lib.routes import RouteMask, all_nodes, node_key, node_paths

INFO = DATASETS["synthetic"]
L = 16
N_PATHS = sum(len(node_paths(*n, L)) for n in all_nodes(L))


def _paths(fig: Figure) -> list:
    return [ln for ax in fig.axes for ln in ax.lines if (ln.get_gid() or "").startswith("path:")]


def _gids(fig: Figure) -> set:
    return {c.get_gid() for ax in fig.axes for c in ax.collections}


def synthetic_record(seed: int = 0, index: int = 0) -> dict:
    """A record as collect_records builds it, with random gates (about a third of them closed)."""
    rng = np.random.default_rng(seed)
    gates = {}
    for n in all_nodes(L):
        g = rng.uniform(0, 1, len(node_paths(*n, L)))
        gates[node_key(*n)] = np.where(rng.uniform(size=g.size) < 0.35, 0.0, g).astype(np.float32)
    gates[node_key(5, 1)][:] = 0.0                                   # one skipped node for sure
    image = rng.integers(0, 255, (64, 128, 3), dtype=np.uint8)
    labels = rng.integers(0, INFO.num_classes, (64, 128)).astype(np.uint8)
    real = 1.0 + seed
    return dict(index=index, name=f"img{index}", image=image, gt=labels, pred=labels[::-1].copy(), gates=gates,
                live={}, computed={}, real_gflops=real, exec_gflops=real * 1.1, num_layers=L, source="test",
                activity=scale_activity(gates, L))


@pytest.fixture(scope="module")
def tiny():
    cfg = get_preset("dynamic_raw_l16", base_channels=8, num_classes=INFO.num_classes)
    torch.manual_seed(0)
    return cfg, build_model(cfg).eval()


@pytest.fixture(scope="module")
def val2():
    return build_dataset("synthetic", split="val", train=False, limit=2)


# ---- route grid ------------------------------------------------------------------------------------
def test_route_grid_soft_gates_draws_every_path():
    rec = synthetic_record()
    fig = draw_route_grid(rec["gates"], L, threshold=1e-4)
    assert isinstance(fig, Figure)
    lines = _paths(fig)
    assert len(lines) == N_PATHS
    values = node_values(rec["gates"], L)
    live, comp = node_states(values, L, 1e-4)
    n_open = sum(int((v > 1e-4).sum()) for n, v in values.items() if comp[n])
    n_pass = sum(1 for n in values if live[n] and not comp[n])
    solid = [ln for ln in lines if ln.get_linestyle() == "-"]
    closed = [ln for ln in lines if ln.get_color() == "0.72"]
    assert len(solid) == n_open > 0 and n_pass > 0
    assert len(closed) == N_PATHS - n_open - n_pass
    assert "nodes:skipped" in _gids(fig)
    assert fig.axes[0].get_legend() is not None


def test_route_grid_all_ones_mask():
    fig = draw_route_grid(RouteMask.full(L).paths, L, title="all ones")
    lines = _paths(fig)
    assert len(lines) == N_PATHS
    assert all(ln.get_linestyle() == "-" for ln in lines)
    assert max(ln.get_linewidth() for ln in lines) == pytest.approx(4.0)
    assert _gids(fig) == {"nodes:computed"}
    computed = next(c for c in fig.axes[0].collections if c.get_gid() == "nodes:computed")
    assert len(computed.get_offsets()) == len(all_nodes(L))


def test_route_grid_dead_and_skipped_nodes():
    mask = RouteMask(4, {(-1, 0): (1, 0), (0, 0): (1, 0), (1, 0): (0, 0)})      # only the 1/4 keep path
    fig = draw_route_grid(mask, 4)
    assert {"nodes:computed", "nodes:skipped", "nodes:dead"} <= _gids(fig)
    with pytest.raises(ValueError, match="paths"):
        draw_route_grid({"l0_s0": [1, 1, 1]}, 4)


# ---- figures ---------------------------------------------------------------------------------------
def test_render_inspection_synthetic_record():
    rec, other = synthetic_record(0, 0), synthetic_record(1, 1)
    stats = insp.flops_summary([rec, other])
    assert stats == {"mean": 1.5, "min": 1.0, "max": 2.0}
    fig = view.render_inspection(rec, info=INFO, flops_stats=stats)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    fig = view.render_inspection(rec, info=INFO, flops_stats=insp.flops_summary([rec, other], "executed"),
                                 show_gt=True, threshold=0.5, flops_kind="executed", compare=other)
    assert len(fig.axes) == 10 and len(_paths(fig)) == 2 * N_PATHS
    fig.canvas.draw()
    no_gt = dict(rec, gt=None, index=-1)
    assert isinstance(view.render_inspection(no_gt, info=INFO, flops_stats=None, show_gt=True), Figure)
    with pytest.raises(ValueError, match="FLOPs kind"):
        view.render_inspection(rec, info=INFO, flops_stats=stats, flops_kind="wall")
    with pytest.raises(ValueError):
        insp.flops_summary([])
    assert isinstance(view.render_records_grid([rec, other], INFO), Figure)


# ---- records ---------------------------------------------------------------------------------------
def test_collect_records_tiny_model(tiny, val2, tmp_path):
    cfg, model = tiny
    recs = insp.collect_records(model, val2, [0, 1], cache_dir=tmp_path)
    assert len(recs) == 2
    for i, r in enumerate(recs):
        assert r["index"] == i and r["image"].dtype == np.uint8 and r["image"].shape == (128, 256, 3)
        assert r["pred"].shape == r["gt"].shape == (128, 256) and r["pred"].max() < INFO.num_classes
        assert set(r["gates"]) == {node_key(*n) for n in all_nodes(L)}
        assert all(((v >= 0) & (v <= 1)).all() for v in r["gates"].values())
        assert all(isinstance(v, bool) for v in [*r["live"].values(), *r["computed"].values()])
        assert 0 < r["real_gflops"] < 10 and 0 < r["exec_gflops"] < 10
        assert len(r["activity"]["open_paths"]) == 4
    again = insp.collect_records(model, val2, [1, 0])
    assert again[0] is recs[1] and again[1] is recs[0]               # in-memory cache
    model.inspect_id = "test:tiny"
    first = insp.collect_records(model, val2, [0], cache_dir=tmp_path)[0]
    insp._CACHE.clear()
    loaded = insp.collect_records(model, val2, [0], cache_dir=tmp_path)[0]  # from the .npz copy
    assert loaded is not first and list(tmp_path.glob("record_*.npz"))
    np.testing.assert_array_equal(loaded["pred"], first["pred"])
    np.testing.assert_array_equal(loaded["gates"]["l3_s1"], first["gates"]["l3_s1"])
    assert loaded["computed"] == first["computed"] and loaded["real_gflops"] == first["real_gflops"]


def test_image_record_and_bad_upload(tiny):
    import io

    from PIL import Image
    _, model = tiny
    buf = io.BytesIO()
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(buf, format="PNG")
    rec = insp.image_record(model, buf.getvalue(), name="mine.png")
    assert rec["gt"] is None and rec["pred"].shape == (50, 70) and rec["index"] == -1
    with pytest.raises(ValueError, match="not an image"):
        insp.image_record(model, b"plain text, not a picture", name="notes.txt")


# ---- model loading ---------------------------------------------------------------------------------
def test_load_model_untrained_banner():
    model, banner = insp.load_model_for_inspection(None, num_classes=INFO.num_classes, smoke=True)
    assert "untrained" in banner and "random" in banner
    assert model.cfg.base_channels == for_run("dynamic_raw_l16", smoke=True)[0].base_channels and not model.training


def test_load_model_checkpoint_and_bad_ones(tiny, tmp_path):
    cfg, model = tiny
    good = save_torch(tmp_path / "good.pt", {"model": model.state_dict(), "config": cfg.to_dict(), "step": 7})
    loaded, banner = insp.load_model_for_inspection(good, num_classes=INFO.num_classes)
    assert "checkpoint good.pt" in banner and "step 7" in banner
    other = save_torch(tmp_path / "other.pt", {"model": model.state_dict(),
                                               "config": {**cfg.to_dict(), "name": "dynamic_a"}})
    with pytest.raises(ValueError, match="preset 'dynamic_a'"):
        insp.load_model_for_inspection(other, preset="dynamic_raw_l16", num_classes=INFO.num_classes)
    wide = save_torch(tmp_path / "wide.pt", {"model": model.state_dict(),
                                             "config": {**cfg.to_dict(), "base_channels": 16}})
    with pytest.raises(ValueError, match="do not fit"):
        insp.load_model_for_inspection(wide, num_classes=INFO.num_classes)
    with pytest.raises(ValueError, match="classes"):
        insp.load_model_for_inspection(good, num_classes=19)
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ValueError):
        insp.load_model_for_inspection(junk, num_classes=INFO.num_classes)
    bare = save_torch(tmp_path / "bare.pt", {"weights": 1})
    with pytest.raises(ValueError, match="not a dynroute checkpoint"):
        insp.load_model_for_inspection(bare, num_classes=INFO.num_classes)


def test_inspection_dataset_and_model_follow_the_session(monkeypatch, tmp_path):
    res = (tmp_path / "results").resolve()
    monkeypatch.setattr(notebook, "RESULTS_DIR", res)
    monkeypatch.setattr(notebook, "SMOKE_RESULTS_DIR", res / "_smoke")
    monkeypatch.setattr(notebook, "LOCAL_RESULTS_DIR", res / "_local")
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    monkeypatch.setenv("DYNROUTE_SMOKE", "1")
    ctx = notebook.setup("05_x", device="cpu", data="synthetic")
    assert ctx.smoke and ctx.out == res / "_smoke" / "05_x"
    assert len(insp.inspection_dataset(ctx, 8)) == insp.SMOKE_IMAGES
    monkeypatch.delenv("DYNROUTE_SMOKE")
    assert notebook.setup("05_x", device="cpu", data="synthetic").out == res / "_local" / "05_x", \
        "defaults never write results/"
    ctx = notebook.setup("05_x", device="cpu", data="synthetic", results_root=str(tmp_path / "elsewhere"))
    assert not ctx.smoke and len(insp.inspection_dataset(ctx, 6)) == 6


# ---- widget (headless: no front end, only the kernel-side objects) ----------------------------------
def test_widget_headless(tiny, val2, tmp_path):
    pytest.importorskip("ipywidgets")
    _, model = tiny
    recs = insp.collect_records(model, val2, [0, 1])
    from dynroute_lib.inspector import widget
    ui = widget.make_inspector(recs, info=INFO, dataset=val2, model=model, banner="tiny",
                             sources=[("tiny", "current"), ("bad", f"ckpt:{tmp_path / 'missing.pt'}")])
    first = ui.out.outputs[0]["data"]["image/png"]
    assert ui.slider.continuous_update is False and ui.selected_index == 0
    ui.slider.value = 1
    assert ui.selected_index == 1 and ui.out.outputs[0]["data"]["image/png"] != first
    assert "image #1" in ui.message.value
    ui.upload.set_trait("value", ({"name": "notes.txt", "type": "text/plain", "size": 4,
                                   "content": memoryview(b"text"),
                                   "last_modified": datetime.now(timezone.utc)},))
    assert "not an image" in ui.message.value and ui.upload_record is None and ui.upload.value == ()
    ui.source.value = f"ckpt:{tmp_path / 'missing.pt'}"
    assert "checkpoint not found" in ui.message.value and ui.model is model
    ui.pin.click()
    assert ui.pinned is not None and ui.pin.description == "unpin"
    ui.flops_kind.value, ui.show_gt.value, ui.threshold.value = "executed", True, 0.3
    assert "pinned" in ui.message.value
    assert "application/vnd.jupyter.widget-view+json" in ui._repr_mimebundle_()


# ---- readability and the issue-16 defects ----------------------------------------------------------------
SCALE = {"data": "synthetic", "split": "val", "images": 2, "resolution": "64x128", "base_channels": 8,
         "iters": "untrained (random init)"}


def test_inspector_figures_readable_and_named():
    from figure_checks import assert_readable
    rec, other = synthetic_record(0, 0), synthetic_record(1, 1)
    stats = insp.flops_summary([rec, other])
    for fig in (view.render_inspection(rec, info=INFO, flops_stats=stats, scale=SCALE),
                view.render_inspection(rec, info=INFO, flops_stats=stats, show_gt=True, compare=other, scale=SCALE),
                view.render_records_grid([rec, other], INFO, scale=SCALE),
                draw_route_grid(rec["gates"], L)):
        assert_readable(fig, None if fig.axes[0].get_title().startswith("route") else "synthetic")
    assert "64×128 px" in view.render_records_grid([rec], INFO, scale=SCALE)._suptitle.get_text()


def test_pinned_record_is_compared_with_its_own_model():
    rec, wide = synthetic_record(0, 0), dict(synthetic_record(1, 1), real_gflops=40.0)
    fig = view.render_inspection(rec, info=INFO, flops_stats={"mean": 1.0, "min": 0.5, "max": 1.5}, compare=wide,
                                 compare_stats={"mean": 40.0, "min": 39.0, "max": 41.0})
    titles = [ax.get_title() for ax in fig.axes if "GFLOPs" in ax.get_title()]
    assert titles == ["1 GFLOPs, +0.0 % vs mean", "40 GFLOPs, +0.0 % vs mean"], titles


def test_threshold_range_spans_the_gate_values():
    rec = synthetic_record(0, 0)
    lo, hi = insp.threshold_range([rec])
    pos = np.concatenate([g[g > 0] for g in rec["gates"].values()])
    assert lo < np.quantile(pos, 0.02) and np.quantile(pos, 0.98) <= hi <= pos.max()
    shares = [np.mean(pos > t) for t in np.geomspace(lo, hi, 41)]
    assert shares[0] >= 0.99 and shares[-1] <= 0.02
    assert max(np.abs(np.diff(shares))) < 0.25, "no single step hides a large share of the paths"
    changed = sum(np.diff(shares) < 0)
    old = [np.mean(pos > t) for t in np.geomspace(1e-4, 10 ** -0.3, 38)]   # the former fixed 1e-4..0.5 range
    assert changed >= 20 and changed > sum(np.diff(old) < 0), "most steps change what is drawn"
    fixed = dict(rec, gates={k: np.ones_like(v) for k, v in rec["gates"].items()})
    assert insp.threshold_range([fixed]) is None


def test_untrained_fixed_route_banner():
    _, banner = insp.load_model_for_inspection(None, preset="fix_l16", num_classes=INFO.num_classes, smoke=True)
    assert "fixed route (no gates)" in banner and "routes are random" not in banner


def test_widget_sizes_output_pins_stats_and_fits_threshold(tiny, val2):
    pytest.importorskip("ipywidgets")
    import base64
    import io as _io

    from dynroute_lib.inspector import widget

    from PIL import Image
    _, model = tiny
    recs = insp.collect_records(model, val2, [0, 1])
    ui = widget.make_inspector(recs, info=INFO, dataset=val2, model=model, banner="tiny")
    png = base64.b64decode(ui.out.outputs[0]["data"]["image/png"])
    with Image.open(_io.BytesIO(png)) as im:
        w, h = im.size
        assert im.info["dpi"][0] >= 99.5
    assert abs(int(ui.out.layout.height.removesuffix("px")) - h) <= 10, "no blank band under the figure"
    lo, hi = insp.threshold_range(recs)
    assert ui.threshold.min == pytest.approx(np.log10(lo)) and ui.threshold.max == pytest.approx(np.log10(hi))
    assert not ui.threshold.disabled
    ui.pin.click()
    assert ui.pinned_stats["official"] == insp.flops_summary(recs, "official")
    assert int(ui.out.layout.height.removesuffix("px")) > h + 300, "two blocks: the output grows"
