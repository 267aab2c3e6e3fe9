"""Papermill smoke runs of every numbered notebook (handbook Sec. 3, layer 2; marker ``notebooks``, minutes).

All notebooks run in numeric order through the runner's own ``run_notebook`` **with their defaults** (no
parameter injected, not even ``RESULTS_ROOT``; ``DYNROUTE_SMOKE=1`` in the environment, as any executor can set
it), so they write where a user's default run writes: ``results/_smoke/`` (wiped first). After each one,
``git status --porcelain results/`` must be unchanged: a default run never touches the committed results
(issue 16). The assertions are on the files each notebook wrote (columns, row counts, value ranges), never on
cell outputs; tolerances are wide because a smoke run checks plumbing and schema, not accuracy. The last test
renders every figure of the run into ``results/_smoke/contact_sheet.png`` and checks each saved PNG's dpi.
"""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time

import pandas as pd
import pytest

from dynroute_lib import runner
from dynroute_lib.data import DATASETS
from dynroute_lib.paths import NOTEBOOKS_DIR, PROJ_ROOT, SMOKE_RESULTS_DIR

pytestmark = pytest.mark.notebooks
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
TIMINGS: dict[str, float] = {}
SYN = DATASETS["synthetic"]


def results_status() -> str:
    """``git status --porcelain results/`` of this checkout (untracked files included)."""
    out = subprocess.run(["git", "-C", str(PROJ_ROOT), "status", "--porcelain", "--untracked-files=all", "results/"],
                         capture_output=True, text=True, check=True)
    return out.stdout


@pytest.fixture(scope="module")
def smoke_root():
    if shutil.which("git") is None or not (PROJ_ROOT / ".git").exists():
        pytest.skip("needs a git checkout (the test compares git status before and after)")
    shutil.rmtree(SMOKE_RESULTS_DIR, ignore_errors=True)     # git-ignored scratch: stale files must not pass
    mp = pytest.MonkeyPatch()
    mp.setenv("DYNROUTE_SMOKE", "1")
    mp.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    yield SMOKE_RESULTS_DIR
    mp.undo()
    if TIMINGS:
        print("\nsmoke timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in TIMINGS.items()) +
              f"; total {sum(TIMINGS.values()):.1f}")


def _csv(out, name, columns=(), rows=None) -> pd.DataFrame:
    df = pd.read_csv(out / name)
    assert set(columns) <= set(df.columns), f"{name}: missing columns {sorted(set(columns) - set(df.columns))}"
    if rows is not None:
        assert len(df) == rows, f"{name}: {len(df)} rows, expected {rows}"
    assert len(df), f"{name} is empty"
    return df


def _between(s: pd.Series, lo: float, hi: float, name: str) -> None:
    s = s.dropna()
    assert len(s) and s.between(lo, hi).all(), f"{name} outside [{lo}, {hi}]: {s.tolist()[:8]}"


def check_00(out):
    summary = _csv(out, "data_summary.csv", ["data", "split", "num_images", "image_hw", "num_classes"], rows=2)
    assert (summary["data"] == "synthetic").all() and (summary["num_images"] > 0).all()
    freq = _csv(out, "class_frequency.csv", ["class", "pixels_pct", "images_with_class_pct"], rows=SYN.num_classes)
    assert abs(freq["pixels_pct"].sum() - 100) < 0.1
    _between(freq["images_with_class_pct"], 0, 100, "images_with_class_pct")
    sizes = _csv(out, "object_sizes_by_class.csv", ["class", "num_regions", "area_p50_pct", "area_max_pct"])
    _between(sizes["area_p50_pct"], 0, 100, "area_p50_pct")
    hist = _csv(out, "object_size_hist.csv", ["class", "log10_area_frac_lo", "log10_area_frac_hi", "count"])
    assert (hist["log10_area_frac_hi"] <= 0).all() and (hist["count"] >= 0).all()
    return ["samples.png", "class_frequency.png", "object_sizes.png"]


def check_01(out):
    from dynroute_lib.config import PRESETS
    n = sum(cfg.arch == "dynamic" for cfg in PRESETS.values())
    df = _csv(out, "flops_vs_paper.csv", ["preset", "paper_params_m", "ours_params_m", "paper_gflops",
                                          "ours_gflops_official", "ours_gmacs_true", "gflops_gap_pct"], rows=n)
    assert (df["ours_params_m"] > 0).all() and (df["ours_gflops_official"] > 0).all()
    raw = df.set_index("preset").loc["dynamic_raw_l16"]
    assert abs(raw["gflops_gap_pct"]) < 5 and abs(raw["params_gap_pct"]) < 5, "Layer16 must match the paper"
    assert not math.isnan(raw["ours_gmacs_true"])
    return ["routing_space.png", "flops_vs_paper.png"]


def check_02(out):
    log = _csv(out, "train_log.csv", ["step", "loss", "ce_loss", "budget_loss", "lr", "expected_cost_ratio"])
    assert log["step"].is_monotonic_increasing and len(log) >= 2
    _between(log["expected_cost_ratio"], 0, 1.0001, "expected_cost_ratio")
    m = _csv(out, "metrics.csv", ["preset", "config_hash", "miou_pct", "gflops_mean", "gflops_max", "gflops_min",
                                  "resolution", "iters", "device"], rows=1).iloc[0]
    assert 0 <= m["miou_pct"] <= 100 and m["gflops_min"] <= m["gflops_mean"] <= m["gflops_max"]
    _csv(out, "per_class_iou.csv", ["class", "iou_pct"], rows=SYN.num_classes)
    return ["train_curves.png"]


TABLE_COLS = ["preset", "paper_miou_pct", "ours_miou_pct", "paper_gflops", "ours_gflops_mean", "ours_gflops_max",
              "ours_gflops_min", "paper_params_m", "ours_params_m", "ours_gflops_1024x2048_allopen", "data",
              "resolution", "iters", "device"]


def check_03(out):
    from dynroute_lib.analysis.paper import PAPER, TABLES
    from dynroute_lib.analysis.route_stats import FIG5_MODELS
    for name, rows in TABLES.items():
        df = _csv(out, f"{name}.csv", TABLE_COLS, rows=len(rows))
        assert df["preset"].tolist() == [p for p, _, _ in rows]
        assert df["paper_miou_pct"].tolist() == [PAPER[p][0] for p, _, _ in rows]
        _between(df["ours_miou_pct"], 0, 100, f"{name} ours_miou_pct")
        assert df["ours_miou_pct"].notna().all(), f"{name}: every row is trained in smoke"
        assert (df["ours_gflops_min"] <= df["ours_gflops_mean"] + 1e-9).all()
        assert (df["ours_gflops_mean"] <= df["ours_gflops_max"] + 1e-9).all()
        assert (df["data"] == "synthetic").all() and (df["iters"] > 0).all()
    t4 = pd.read_csv(out / "table_4.csv").set_index("preset")
    assert t4.loc["dynamic_raw_l16", "ours_cost_vs_raw_pct"] == pytest.approx(100)
    runs = _csv(out, "runs.csv", ["preset", "trained_as", "config_hash", "miou_pct"])
    alias = runs.set_index("preset")["trained_as"]
    assert alias["cell_sep2"] == alias["act_relu_tanh"] == "dynamic_raw_l16", "aliases share one model"
    per_image = _csv(out, "per_image_gflops.csv", ["model", "image", "real_gflops"])
    assert set(FIG5_MODELS) <= set(per_image["model"])
    for m in FIG5_MODELS:
        assert (out / "route_records" / f"{m}.npz").is_file()
    for c in ("common_a", "common_b", "common_c"):
        assert json.loads((out / "common_routes" / f"{c}.json").read_text())["num_layers"] == 16
    return ["table_1_miou_vs_gflops.png"]


def check_04(out):
    act = _csv(out, "route_activation.csv", ["model", "node", "layer", "scale", "path", "activation_prob",
                                             "mean_gate"])
    assert act["model"].nunique() == 4
    _between(act["activation_prob"], 0, 1, "activation_prob")
    _between(act["mean_gate"], 0, 1, "mean_gate")
    summ = _csv(out, "activation_summary.csv", ["model", "paths", "open_majority_pct", "conditional_paths",
                                                "conditional_cells"], rows=4)
    cells = _csv(out, "cell_activation.csv", ["model", "node", "layer", "scale", "cell_prob"])
    _between(cells["cell_prob"], 0, 1, "cell_prob")
    assert (summ["conditional_cells"] <= cells.groupby("model").size().reindex(summ["model"]).to_numpy()).all()
    fl = _csv(out, "flops_distribution.csv", ["model", "gflops_mean", "gflops_max", "gflops_min",
                                              "max_min_gap_pct"], rows=4)
    assert (fl["gflops_min"] <= fl["gflops_max"]).all()
    return ["route_activation.png", "route_activation_grids.png", "flops_distribution.png"]


def check_05(out):
    _csv(out, "per_image_gflops.csv", ["real_gflops"])
    return ["inspector_grid.png"]


def check_06(out):
    df = _csv(out, "sparse_speed.csv", ["batch", "case", "flops_ratio", "dense_ms", "sparse_ms", "time_ratio",
                                        "time_over_flops"])
    assert (df["dense_ms"] > 0).all() and (df["sparse_ms"] > 0).all()
    _between(df["flops_ratio"], 0, 1.0001, "flops_ratio")
    assert (out / "bench" / "sparse_speed.json").is_file(), "the benchmark's own record"
    return ["sparse_speed.png"]


CHECKS = {"00": check_00, "01": check_01, "02": check_02, "03": check_03, "04": check_04, "05": check_05,
          "06": check_06}


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_smoke(nb, smoke_root):
    before = results_status()
    t0 = time.perf_counter()
    executed = runner.run_notebook(nb, None, {}, timeout_s=600, log_output=False)     # the notebook's defaults
    TIMINGS[nb.stem] = time.perf_counter() - t0
    assert results_status() == before, f"{nb.name} with its defaults changed the committed results/"
    out = smoke_root / nb.stem
    assert executed == out / nb.name
    assert (out / nb.name).is_file(), "executed copy missing"
    run = json.loads((out / "run.json").read_text())
    assert run["smoke"] is True and run["wall_s"] > 0
    if "parameters" in run:        # the run.json parameters are exactly the declared ones
        assert set(run["parameters"]) == set(runner.declared(nb)), sorted(run["parameters"])
    for f in run.get("files", []):
        assert (out / f).is_file(), f"run.json lists {f}, not written"
    for csv in out.glob("*.csv"):
        cols = pd.read_csv(csv, nrows=0).columns
        assert all(re.fullmatch(r"[a-z0-9_]+", c) for c in cols), f"{csv.name}: snake_case columns {list(cols)}"
    check = CHECKS.get(nb.stem[:2])
    for png in (check(out) if check else []):
        assert (out / png).stat().st_size > 1000, f"{png} missing or empty"


def test_figures_of_the_smoke_run(smoke_root):
    """Every figure the run wrote: saved at >= 100 dpi, and all of them in one contact sheet to look at."""
    from figure_checks import MIN_DPI, contact_sheet, png_dpi
    pngs = sorted(p for p in smoke_root.rglob("*.png") if p.name != "contact_sheet.png")
    if len(TIMINGS) < len(NOTEBOOKS):
        pytest.skip("run together with test_notebook_smoke (all notebooks)")
    assert len(pngs) >= 12, [p.name for p in pngs]
    for p in pngs:
        assert png_dpi(p) >= MIN_DPI - 0.5, f"{p.relative_to(smoke_root)} saved at {png_dpi(p):.0f} dpi"
    sheet = contact_sheet(pngs, smoke_root / "contact_sheet.png", root=smoke_root)
    print(f"\ncontact sheet of {len(pngs)} figures: {sheet}")


@pytest.mark.parametrize("nb", [n for n in NOTEBOOKS if n.stem.startswith("05")], ids=lambda p: p.stem)
def test_inspector_full_defaults_leave_results_clean(nb, monkeypatch):
    """The reported case: 05 opened and run with its defaults (not smoke) must not rewrite results/05_*."""
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    before = results_status()
    executed = runner.run_notebook(nb, None, {}, timeout_s=600, log_output=False)
    assert results_status() == before, "05 with its defaults changed the committed results/"
    assert executed.parent.parent.name == "_local" and (executed.parent / "inspector_grid.png").is_file()


def test_tables_and_fig5_from_the_committed_reproduction(tmp_path, monkeypatch):
    """03 + 04 with PROFILE="repro", FROM_RESULTS=True on a machine without checkpoints: the tables and Fig. 5
    come from results/repro (committed rows) and match them; nothing under results/ changes."""
    import numpy as np
    from dynroute_lib.paths import RESULTS_DIR
    rows = {json.loads(p.read_text())["row"]: json.loads(p.read_text())
            for p in (RESULTS_DIR / "repro" / "runs").glob("*_s0.json")}
    if "dynamic_raw_l16_s0" not in rows:
        pytest.skip("no committed Dynamic-Raw row under results/repro/runs")
    monkeypatch.delenv("DYNROUTE_SMOKE", raising=False)
    monkeypatch.delenv("DYNROUTE_COMMIT_RESULTS", raising=False)
    before = results_status()
    nbs = [n for n in NOTEBOOKS if n.stem in ("03_tables", "04_route_distribution")]
    for nb, params in runner.resolve_params(nbs, {"PROFILE": "repro", "FROM_RESULTS": True}).items():
        runner.run_notebook(nb, tmp_path, params, timeout_s=600, log_output=False)
    assert results_status() == before
    t4 = pd.read_csv(tmp_path / "03_tables" / "table_4.csv").set_index("preset")
    for preset in t4.index:
        got, row = t4.loc[preset, "ours_miou_pct"], rows.get(f"{preset}_s0")
        assert (np.isnan(got) if row is None else got == pytest.approx(row["miou_pct"])), preset
    t2 = pd.read_csv(tmp_path / "03_tables" / "table_2.csv").set_index("preset")
    assert t2.loc["cell_sep2", "ours_miou_pct"] == pytest.approx(rows["dynamic_raw_l16_s0"]["miou_pct"])
    soft = {r["preset"] for r in rows.values() if r.get("gate_mode") == "soft"}    # every gated row, Fig. 5's among them
    assert sorted(p.stem for p in (tmp_path / "03_tables" / "route_records").glob("*.npz")) == sorted(soft)
    gated = [m for m in ("dynamic_raw_l16", "dynamic_a", "dynamic_b", "dynamic_c") if m in soft]
    if len(gated) == 4:
        summary = pd.read_csv(tmp_path / "04_route_distribution" / "activation_summary.csv")
        assert len(summary) == 4
