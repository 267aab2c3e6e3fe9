"""Gate lever study summaries (analysis.levers; issue 13 done-when 2-3), built from the committed T = 6000 rows."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dynroute_lib import io
from dynroute_lib.analysis import levers
from dynroute_lib.config import for_run
from dynroute_lib.routes import is_node_key, parse_node_key
from figure_checks import MIN_DPI, assert_readable, png_dpi

SUITE = Path(__file__).resolve().parents[1] / "results" / "repro"
ROW = "dynamic_a_s0"


def _run_dir(tmp_path: Path, gates: dict | None = None, miou: float = 30.0) -> Path:
    """A finished ``train --eval`` directory whose records are the committed Dynamic-A row's (or ``gates``)."""
    d = tmp_path / "lever"
    d.mkdir(parents=True)
    with np.load(SUITE / "route_records" / f"{ROW}.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(gates or {})
    np.savez(d / "records.npz", **arrays)
    shutil.copyfile(SUITE / "per_image" / f"{ROW}.csv", d / "per_image.csv")
    shutil.copyfile(SUITE / "curves" / f"{ROW}_val.csv", d / "val_log.csv")
    pd.read_csv(SUITE / "curves" / f"{ROW}_train.csv.gz").to_csv(d / "train_log.csv", index=False)
    mcfg, tcfg = for_run("dynamic_a", profile="repro")      # what train.json holds for such a run
    (d / "train.json").write_text(json.dumps(io._jsonable({
        "command": "dynroute_lib train dynamic_a --gate-init-bias 0.5",
        "model_config": {**mcfg.to_dict(), "gate_init_bias": 0.5}, "train_config": tcfg.to_dict(),
        "train_wall_s": 1.0, "eval": {"miou_pct": miou, "pixel_acc_pct": 70.0}})))
    return d


def test_suite_row_scores_match_the_committed_row_and_its_config():
    a, raw = levers.suite_score(SUITE, ROW), levers.suite_score(SUITE, "dynamic_raw_l16_s0")
    meta = json.loads((SUITE / "runs" / f"{ROW}.json").read_text())
    assert a["gflops_mean"] == pytest.approx(meta["gflops_mean"], rel=1e-6)
    assert a["spread_pct"] == pytest.approx(100 * meta["gflops_spread"], rel=1e-6)
    assert a["tail_gain_points"] == pytest.approx(meta["tail_gain_points"])
    assert (a["gate_lr_mult"], a["gate_init_bias"]) == (1.0, 1.5)
    df = levers.summarize([a], raw)
    assert df.loc[1, "cost_vs_raw_pct"] == pytest.approx(100 * meta["gflops_mean"] / raw["gflops_mean"])
    assert pd.isna(df.loc[0, "done_when_2"]) and df.loc[1, "done_when_2"] == False  # noqa: E712 (56 % of Raw)


def test_a_cell_closed_on_half_the_images_counts_as_conditional(tmp_path):
    with np.load(SUITE / "route_records" / f"{ROW}.npz") as z:
        key = next(k for k in z.files if is_node_key(k) and parse_node_key(k)[0] >= 0 and (z[k].sum(1) > 1e-4).all())
        g = z[key].copy()
    base = levers.run_score(_run_dir(tmp_path / "a"))
    g[: len(g) // 2] = 0.0                   # the node's gates all shut on the first half of the images
    changed = levers.run_score(_run_dir(tmp_path / "b", {key: g}))
    assert changed["conditional_cells"] == base["conditional_cells"] + 1
    assert (base["gate_init_bias"], base["gate_lr_mult"], base["miou_pct"]) == (0.5, 1.0, 30.0)


def test_main_writes_summary_and_evidence_and_rejects_unfinished_runs(tmp_path, capsys):
    run = _run_dir(tmp_path)
    out = tmp_path / "out"
    assert levers.main([str(run), "--suite", str(SUITE), "--out", str(out)]) == 0
    df = pd.read_csv(out / "summary.csv")
    assert list(df["row"]) == ["dynamic_raw_l16_s0", ROW, "lever"]
    assert (out / "route_records" / "lever.npz").is_file() and (out / "curves" / "lever_val.csv").is_file()
    assert png_dpi(out / "lever_curves.png") >= MIN_DPI
    rec = json.loads((out / "run.json").read_text())
    assert rec["train_commands"] == ["dynroute_lib train dynamic_a --gate-init-bias 0.5"]
    assert (rec["scale"]["resolution"], rec["scale"]["train_crop"], rec["scale"]["iters"]) == ("240x320", "128x160", 6000)
    (run / "train.json").unlink()
    assert levers.main([str(run), "--suite", str(SUITE), "--out", str(tmp_path / "out2")]) == 2
    assert "train.json missing" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def test_curves_figure_is_readable_and_names_the_scale():
    curves = {"dynamic_a_s0": pd.read_csv(SUITE / "curves" / f"{ROW}_val.csv")}
    fig = levers.curves_figure(curves, {"data": "camvid", "resolution": "240x320", "iters": 6000})
    assert_readable(fig, "camvid", "lever_curves")
    assert "6000 iterations" in fig._suptitle.get_text()
    assert len(fig.axes[0].lines) == 1 and fig.axes[1].lines[0].get_ydata().max() <= 100


def test_add_to_keeps_the_committed_runs_rescored_from_their_evidence(tmp_path, capsys):
    first = _run_dir(tmp_path / "a", miou=31.0)
    out = tmp_path / "study"
    assert levers.main([str(first), "--suite", str(SUITE), "--out", str(out), "--what", "q"]) == 0
    before = pd.read_csv(out / "summary.csv")
    shutil.rmtree(first)                                   # the checkpoint dir is gone, as on a new machine
    second = _run_dir(tmp_path / "b", miou=29.0).rename(tmp_path / "b" / "lever2")
    assert levers.main([str(second), "--suite", str(SUITE), "--add-to", str(out)]) == 0
    after = pd.read_csv(out / "summary.csv")
    assert list(after["row"]) == ["dynamic_raw_l16_s0", ROW, "lever", "lever2"]
    pd.testing.assert_frame_equal(after.iloc[:3], before)        # the kept run is scored exactly as before
    assert after.loc[3, "miou_pct"] == 29.0 and (out / "per_image" / "lever2.csv").is_file()
    rec = json.loads((out / "run.json").read_text())
    assert rec["what"] == "q" and len(rec["train_commands"]) == 2 and "--out" in rec["earlier_commands"][0]
    (out / "per_image" / "lever.csv").unlink()                    # evidence missing: one line, nothing written
    mtime = (out / "summary.csv").stat().st_mtime_ns
    assert levers.main([str(second), "--suite", str(SUITE), "--add-to", str(out)]) == 2
    assert "lever.csv missing" in capsys.readouterr().err and (out / "summary.csv").stat().st_mtime_ns == mtime
