"""Unit tests of the notebook library: notebook session, table builders, statistics, plots (seconds, headless)."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from dynroute_lib import notebook
from dynroute_lib.analysis import data_overview, figstyle, paper, plots, route_stats, static_costs, tables
from dynroute_lib.paths import RESULTS_DIR
from dynroute_lib.data import DATASETS

matplotlib.use("Agg")


# ---- notebook session ------------------------------------------------------------------------------------------
@pytest.fixture
def fake_results(tmp_path, monkeypatch):
    res = tmp_path / "results"
    monkeypatch.setattr(notebook, "RESULTS_DIR", res)
    monkeypatch.setattr(notebook, "SMOKE_RESULTS_DIR", res / "_smoke")
    monkeypatch.setattr(notebook, "LOCAL_RESULTS_DIR", res / "_local")
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    return res


def test_smoke_never_writes_into_results(fake_results):
    smoke = notebook.resolve_results_root("", smoke=True)
    assert smoke == (fake_results / "_smoke").resolve()
    assert notebook.resolve_results_root(str(fake_results), smoke=True) == smoke
    assert (smoke / ".gitignore").read_text().strip().endswith("*")


def test_default_and_interactive_runs_never_write_the_tracked_results(fake_results, tmp_path, monkeypatch, capsys):
    local = (fake_results / "_local").resolve()
    assert notebook.resolve_results_root("", smoke=False) == local
    assert notebook.resolve_results_root(str(fake_results), smoke=False) == local     # asked for, still refused
    assert "--commit-results" in capsys.readouterr().out
    assert (local / ".gitignore").read_text().strip().endswith("*")
    assert notebook.resolve_results_root(str(tmp_path / "mine"), smoke=False) == (tmp_path / "mine").resolve()
    ctx = notebook.setup("99_test", device="cpu")
    assert ctx.out == local / "99_test" and not (fake_results / "99_test").exists()
    monkeypatch.setenv("DYNROUTE_COMMIT_RESULTS", "1")                               # runner --commit-results
    assert notebook.resolve_results_root(str(fake_results), smoke=False) == fake_results.resolve()
    assert notebook.resolve_results_root(str(fake_results), smoke=True) == (fake_results / "_smoke").resolve()


def test_input_dir_falls_back_to_the_committed_results(fake_results, tmp_path):
    (fake_results / "03_tables").mkdir(parents=True)
    ctx = notebook.setup("04_test", device="cpu")
    assert ctx.input_dir("03_tables") == fake_results / "03_tables"
    (ctx.results_root / "03_tables").mkdir()
    assert ctx.input_dir("03_tables") == ctx.results_root / "03_tables"
    smoke = notebook.setup("04_test", smoke=True, device="cpu")
    assert smoke.input_dir("03_tables") == smoke.results_root / "03_tables"            # never real results


def test_setup_env_forces_smoke_and_finish_writes_run_json(fake_results, tmp_path, monkeypatch):
    monkeypatch.setenv("DYNROUTE_SMOKE", "1")
    ctx = notebook.setup("99_test", smoke=False, seed=3, device="cpu", results_root=str(tmp_path / "r"))
    assert ctx.smoke and ctx.out == (tmp_path / "r" / "99_test").resolve()
    assert ctx.train_config.data == "synthetic" and ctx.checkpoints_root.is_relative_to(tmp_path / "r")
    ctx.save_csv("a.csv", pd.DataFrame({"x_m": [1]}))
    ctx.finish({"SMOKE": False, "SEED": 3, "DATASETS": DATASETS, "ctx": ctx, "_hidden": 1})
    run = json.loads((ctx.out / "run.json").read_text())
    assert run["smoke"] is True and run["parameters"] == {"SMOKE": False, "SEED": 3}
    assert run["files"] == ["a.csv"] and run["wall_s"] >= 0 and "git_sha" in run


def test_setup_rejects_unknown_profile_and_data(tmp_path):
    with pytest.raises(ValueError, match="PROFILE"):
        notebook.setup("99_test", profile="tpu", results_root=str(tmp_path))
    with pytest.raises(ValueError, match="cityscapes"):
        notebook.setup("99_test", data="kitti", results_root=str(tmp_path))


def test_run_config_overrides(tmp_path):
    ctx = notebook.setup("99_test", smoke=False, profile="cpu", results_root=str(tmp_path), data="synthetic")
    m, t = ctx.run_config("dynamic_a", iters=None)
    assert t.data == "synthetic" and t.iters == 100 and m.num_classes == DATASETS["synthetic"].num_classes
    assert ctx.run_config("dynamic_a", iters=7)[1].iters == 7


# ---- cache-or-train --------------------------------------------------------------------------------------------
def test_train_or_load_reuses_matching_checkpoint(tmp_path, monkeypatch):
    ctx = notebook.setup("99_test", smoke=True, device="cpu", results_root=str(tmp_path))
    run = tables.train_or_load("fcn32s", ctx)
    assert (run / "model_final.pt").is_file() and (run / "train_log.csv").is_file()
    import dynroute_lib.engine.train as train_mod
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("cached run retrained"))
    assert tables.train_or_load("fcn32s", ctx) == run
    assert tables.run_dir_for(*ctx.run_config("fcn32s", iters=2), ctx) != run    # another recipe, another entry


def test_cached_only_tables_load_finished_runs_and_mark_the_rest_pending(tmp_path, monkeypatch):
    ctx = notebook.setup("99_test", smoke=True, device="cpu", results_root=str(tmp_path))
    tables.train_or_load("fcn32s", ctx)
    assert tables.is_cached("fcn32s", ctx) and not tables.is_cached("unet", ctx)
    import dynroute_lib.engine.train as train_mod
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: pytest.fail("cached_only trained a model"))
    runs = tables.run_all(tables.plan_runs(["fcn32s", "unet"]), ctx, cached_only=True).set_index("preset")
    assert runs.loc["fcn32s", "miou_pct"] >= 0 and runs.loc["unet", "note"] == "pending (not trained yet)"
    assert pd.isna(runs.loc["unet"].get("miou_pct"))


# ---- planning and tables ---------------------------------------------------------------------------------------
def test_plan_dedupes_aliases_limit_and_skip():
    plan = tables.plan_runs()
    assert plan["model"].tolist()[0] == "dynamic_raw_l16"
    raw = plan.set_index("model").loc["dynamic_raw_l16", "aliases"].split()
    assert set(raw) == {"dynamic_raw_l16", "cell_sep2", "act_relu_tanh"}
    every = {p for rows in paper.TABLES.values() for p, _, _ in rows}
    assert {a for al in plan["aliases"] for a in al.split()} == every
    assert plan["model"].tolist().index("common_a") > plan["model"].tolist().index("dynamic_a")
    limited = tables.plan_runs(limit=2, skip=["dynamic_raw_l16"])
    assert limited["run"].tolist()[:3] == [False, True, False]


def _runs(presets, miou=50.0):
    return pd.DataFrame([{"preset": p, "trained_as": p, "config_hash": "abc", "miou_pct": miou + i,
                          "gflops_mean": 2.0 + i, "gflops_max": 2.5 + i, "gflops_min": 1.5 + i, "params_m": 1.0,
                          "true_gmacs_mean": 1.9, "allopen_run": 4.0 + i, "allopen_1024": 400.0 + 100 * i,
                          "resolution": "128x160", "iters": 100, "note": ""} for i, p in enumerate(presets)])


SCALE = {"data": "camvid", "resolution": "120x160", "iters": 100, "device": "cpu (test)"}


def test_build_tables_schema_and_values():
    runs = _runs(["fix_l16", "dynamic_a", "dynamic_b", "dynamic_c", "dynamic_raw_l16"])
    tabs = tables.build_tables(runs, SCALE)
    assert [len(t) for t in tabs.values()] == [11, 5, 4, 5]
    t4 = tabs["table_4"].set_index("preset")
    assert t4.loc["dynamic_a", "paper_miou_pct"] == 72.8 and t4.loc["dynamic_a", "ours_miou_pct"] == 51.0
    assert t4.loc["dynamic_raw_l16", "ours_cost_vs_raw_pct"] == pytest.approx(100)
    assert t4.loc["dynamic_c", "paper_cost_vs_raw_pct"] == pytest.approx(55.73, abs=0.01)   # paper's statement
    assert t4.loc["dynamic_a", "ours_cost_pct"] == pytest.approx(100 * 3 / 5)
    assert t4.loc["dynamic_a", "ours_gflops_1024x2048_est"] == pytest.approx(3 * 500 / 5)
    t1 = tabs["table_1"].set_index("preset")
    assert np.isnan(t1.loc["fcn32s", "ours_miou_pct"]) and t1.loc["fcn32s", "paper_gflops_min"] == 35.1
    assert (tabs["table_2"]["data"] == "camvid").all() and (tabs["table_2"]["iters"] == 100).all()
    assert list(tables.show(tabs["table_1"]).columns)[:3] == ["method", "paper_miou_pct", "ours_miou_pct"]


def test_a_row_names_the_machine_that_trained_it():
    runs = _runs(["fix_l16", "dynamic_a"]).assign(device_name=["Trainer CPU", None])
    t4 = tables.build_tables(runs, SCALE)["table_4"].set_index("preset")
    assert t4.loc["fix_l16", "device"] == "Trainer CPU" and t4.loc["dynamic_a", "device"] == SCALE["device"]
    assert t4.loc["dynamic_b", "device"] == SCALE["device"]   # pending row: the scale it would be trained at


def test_build_tables_with_no_runs():
    tabs = tables.build_tables(pd.DataFrame(columns=["preset"]), SCALE)
    assert tabs["table_3"]["ours_miou_pct"].isna().all() and len(tabs["table_3"]) == 4


# ---- statistics ------------------------------------------------------------------------------------------------
def test_regions_four_connectivity_and_ignore():
    lab = np.zeros((6, 6), np.uint8)
    lab[0:2, 0:2] = 1            # square of 4
    lab[2, 2] = 1                # diagonal neighbour only: separate region
    lab[4:6, 0:6] = 1            # bar of 12
    lab[3, 5] = 255              # ignored
    lab[1:4, 4] = 2              # U-shaped class 2 joined through the bottom
    lab[3, 3] = 2
    lab[1:4, 3] = 2
    got = sorted(data_overview.regions(lab))
    assert (1, 4) in got and (1, 1) in got and (1, 12) in got
    assert sum(n for c, n in got if c == 2) == 6 and len([c for c, _ in got if c == 2]) == 1
    assert sum(n for _, n in got) == 36 - 1


def test_region_tables():
    reg = pd.DataFrame({"split": "val", "image": [0, 0, 1], "class_id": [0, 1, 1], "area_px": [100, 20, 4000],
                        "area_frac": [0.01, 0.002, 0.4], "class": ["road", "car", "car"]})
    s = data_overview.region_size_summary(reg).set_index("class")
    assert s.loc["car", "num_regions"] == 2 and s.loc["car", "area_max_pct"] == pytest.approx(40)
    h = data_overview.region_size_hist(reg, bins=4)
    assert h.groupby("class")["count"].sum().to_dict() == {"road": 1, "car": 2}


def _records(n_img=5):
    rng = np.random.default_rng(0)
    return {"dynamic_a": {"l-1_s0": rng.random((n_img, 2)), "l0_s0": np.zeros((n_img, 2)),
                          "l0_s1": np.ones((n_img, 3)), "l15_s0": rng.random((n_img, 1))}}


def test_activation_and_flops_summaries():
    act = route_stats.activation_table(_records())
    assert len(act) == 2 + 2 + 3 + 1 and act["activation_prob"].between(0, 1).all()
    row = act[(act["node"] == "l0_s1") & (act["path"] == "down")].iloc[0]
    assert row["activation_prob"] == 1.0 and row["mean_gate"] == 1.0
    summ = route_stats.activation_summary(act).iloc[0]
    assert summ["paths"] == 8 and 0 <= summ["open_majority_pct"] <= 100
    assert "conditional_cells" not in summ


def test_conditional_cells_count_nodes_whose_cell_op_runs_in_some_images():
    open_2of5 = np.array([[0.3, 0.0], [0.0, 0.2], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])   # cell runs in 2 of 5
    records = {"m": {"l-1_s0": np.ones((5, 2)), "l0_s0": open_2of5, "l0_s1": np.ones((5, 3)),
                     "l15_s0": np.zeros((5, 1))}}
    cells = route_stats.cell_table(records).set_index("node")["cell_prob"]
    assert "l-1_s0" not in cells.index                      # the init cell has no cell op
    assert cells.to_dict() == {"l0_s0": 0.4, "l0_s1": 1.0, "l15_s0": 0.0}
    summ = route_stats.activation_summary(route_stats.activation_table(records), route_stats.cell_table(records))
    row = summ.set_index("model").loc["m"]
    # both l0_s0 paths are open in 1 of 5 images (20 %): conditional; the cell opens in 40 %: conditional
    assert row["conditional_paths"] == 2 and row["conditional_cells"] == 1
    assert row["cells_running_pct"] == pytest.approx(100 * 1.4 / 3)
    per = pd.DataFrame({"model": ["a", "a", "b"], "real_gflops": [1.0, 3.0, 2.0]})
    fl = route_stats.flops_summary(per).set_index("model")
    assert fl.loc["a", "gflops_mean"] == 2.0 and fl.loc["a", "max_min_gap_pct"] == 100.0


def test_real_cost_parts_rebuild_the_committed_per_image_cost_from_the_gate_records():
    """The committed gate records and per-image real costs of a T = 12000 budget row agree (spec Sec. 4.5), and
    closing every gate of one node removes that node's cell op and its outgoing transforms, nothing else."""
    from dynroute_lib.config import for_run
    from dynroute_lib.model.costs import table_for
    from dynroute_lib.routes import node_paths, parse_node_key
    rows = RESULTS_DIR / "repro_t12000"
    with np.load(rows / "route_records" / "dynamic_b_s0.npz") as z:
        gates = {k: z[k] for k in z.files if k != "image"}
    cfg, _ = for_run("dynamic_b", profile="repro_t12000")
    parts = route_stats.real_cost_parts(gates, cfg, 256, 320)          # 240x320 padded to a multiple of 32
    per_image = pd.read_csv(rows / "per_image" / "dynamic_b_s0.csv")["real_gflops"].to_numpy()
    np.testing.assert_allclose(parts["real"], per_image, rtol=1e-6)
    np.testing.assert_allclose(parts[["fixed", "cells", "transforms"]].sum(axis=1), parts["real"], rtol=1e-12)
    assert parts["fixed"].nunique() == 1 and parts["cells"].nunique() > 1   # B's conditional cells move the cost
    # a node below the last layer whose paths are all open in every image
    node = next(k for k, g in gates.items() if 0 <= parse_node_key(k)[0] < 15 and (g > 1e-4).all())
    layer, scale = parse_node_key(node)
    closed = route_stats.real_cost_parts({**gates, node: np.zeros_like(gates[node])}, cfg, 256, 320)
    t = table_for(cfg, True, 256, 320)
    np.testing.assert_allclose(parts["cells"] - closed["cells"], t.cell[scale] / 1e9, rtol=1e-6)
    np.testing.assert_allclose(parts["transforms"] - closed["transforms"],
                               sum(t.trans[scale][p] for p in node_paths(layer, scale, 16)) / 1e9, rtol=1e-6)
    assert (closed["fixed"] == parts["fixed"]).all()


def test_read_records_fails_loudly(tmp_path):
    with pytest.raises(FileNotFoundError, match="03_tables"):
        route_stats.read_records(tmp_path, ["dynamic_a"])
    with pytest.raises(FileNotFoundError, match="03_tables"):
        route_stats.read_per_image(tmp_path)


# ---- plots -----------------------------------------------------------------------------------------------------
def _all_figures(scale):
    info = DATASETS["synthetic"]
    img = np.zeros((32, 64, 3), np.uint8)
    lab = np.ones((32, 64), np.uint8)
    lab[0] = 255
    act = route_stats.activation_table({m: _records()["dynamic_a"] for m in ("dynamic_raw_l16", "dynamic_a")})
    log = pd.DataFrame({"step": [1, 2], "loss": [2.0, 1.5], "ce_loss": [2.0, 1.4], "budget_loss": [0, 0.1],
                        "lr": [0.01, 0.02], "expected_cost_ratio": [0.9, 0.8]})
    table = tables.build_table("table_1", _runs(["fcn32s", "dynamic_a"]), SCALE)
    flops = pd.DataFrame({"preset": ["a", "b"], "paper_gflops": [10.0, 20.0], "ours_gflops_official": [11.0, 19.0],
                          "ours_gmacs_true": [10.5, np.nan], "paper_params_m": [1.0, 2.0], "ours_params_m": [1.1, 2.1]})
    return {
        "samples": plots.sample_overlays([(img, lab)] * 2, info, scale=scale),
        "class_frequency": plots.class_frequency(pd.DataFrame({"class": ["a", "b"], "pixels_pct": [60, 40],
                                                               "images_with_class_pct": [100, 50]}), scale=scale),
        "object_sizes": plots.object_sizes(data_overview.region_size_hist(pd.DataFrame(
            {"class": ["car", "car"], "area_px": [20, 400], "area_frac": [0.01, 0.2]}), bins=4), scale=scale),
        "routing_space": plots.routing_space({k: v for k, v in list(static_costs.route_masks().items())[:2]},
                                             scale=scale),
        "flops_vs_paper": plots.flops_vs_paper(flops, scale=scale),
        "training_curves": plots.training_curves(log, "t", scale=scale),
        "miou_vs_gflops": plots.miou_vs_gflops(table, scale=scale),
        "route_activation": plots.route_activation(act, scale=scale),
        "route_activation_grids": plots.route_activation_grids(act, scale=scale),
        "flops_distribution": plots.flops_distribution(pd.DataFrame({"model": ["a", "a", "b"],
                                                                     "real_gflops": [1.0, 2.0, 3.0]}), scale=scale),
        "sparse_speed": plots.sparse_speed(pd.DataFrame({"batch": [1, 8], "case": ["keep30", "keep30"],
                                                         "dense_ms": [10.0, 70.0], "sparse_ms": [5.0, 40.0],
                                                         "flops_ratio": [0.4, 0.4], "time_ratio": [0.5, 0.57],
                                                         "goal": [1.15, 1.25]}), scale=scale)}


def test_plots_return_figures():
    for name, fig in _all_figures(SCALE).items():
        assert isinstance(fig, Figure) and fig.axes, name


def test_every_figure_is_readable_and_names_its_run():
    """Smallest text >= 9 pt, and a title naming the data set, the resolution and the iterations passed in."""
    from figure_checks import assert_readable
    for data in ("camvid", "cityscapes"):
        scale = {**SCALE, "data": data, "resolution": "96x128", "iters": 123, "base_channels": 16}
        for name, fig in _all_figures(scale).items():
            assert_readable(fig, data, name)
            heads = figstyle.title_text(fig)
            assert "96×128" in heads and "123 iterations" in heads and "C0=16" in heads, (name, heads)


def _label_boxes(fig):
    r = fig.canvas.get_renderer()
    return [a.get_window_extent(r) for ax in fig.axes for a in ax.texts if a.get_gid() == "point-label"]


def test_point_labels_do_not_overlap():
    # the paper's Table 1 cluster (many rows within a few GFLOPs) and the ~120 G cluster of presets
    t1 = pd.read_csv(RESULTS_DIR / "03_tables" / "table_1.csv") if (RESULTS_DIR / "03_tables" / "table_1.csv").is_file() \
        else tables.build_table("table_1", _runs([p for p, _, _ in paper.TABLES["table_1"]]), SCALE)
    fig = plots.miou_vs_gflops(t1, scale=SCALE)
    flops = pd.DataFrame({"preset": [f"p{i}" for i in range(8)],
                          "paper_gflops": [119.5, 120.0, 120.0, 119.5, 119.5, 103.1, 81.4, 153.8],
                          "ours_gflops_official": [118.1] * 5 + [101.2, 82.4, 153.8],
                          "ours_gmacs_true": [117.9] * 5 + [101.3, 82.3, 153.5],
                          "paper_params_m": [17.8] * 8, "ours_params_m": [17.8] * 8})
    fig2 = plots.flops_vs_paper(flops, scale=SCALE)
    for f, n in ((fig, len(t1.dropna(subset=["paper_gflops"]))), (fig2, None)):
        boxes = _label_boxes(f)
        assert boxes and (n is None or len(boxes) >= n)
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), (a, b)
    texts = [a.get_text() for ax in fig2.axes for a in ax.texts if a.get_gid() == "point-label"]
    assert any(t.count("\n") == 4 for t in texts), "the five presets at one point share one label"
    legend = fig.axes[0].get_legend()
    assert legend is not None and {t.get_text() for t in legend.get_texts()} == {
        "dynamic route (gated, per image)", "static route (fixed)"}


def test_caption_and_save_figure_dpi(tmp_path):
    from dynroute_lib import io
    assert figstyle.caption({"data": "camvid", "resolution": "120x160", "base_channels": 64, "iters": 100}) == \
        "CamVid · 120×160 px · width C0=64 · 100 iterations per model"
    assert figstyle.caption(None) == "scale of the run not recorded"
    fig = Figure()
    fig.subplots()
    with pytest.raises(ValueError, match="dpi 80"):
        io.save_figure(tmp_path / "x.png", fig, dpi=80)
    assert not (tmp_path / "x.png").exists()
