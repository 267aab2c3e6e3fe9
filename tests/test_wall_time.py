"""Training wall time of resumed and branched runs (analysis.wall_time; issue 13 done-when 7)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dynroute_lib.analysis import equal_time, tables, wall_time
from dynroute_lib.config import PRESETS, for_run
from dynroute_lib.engine.branch import trunk_stop
from dynroute_lib.engine.schedule import budget_weight_at
from dynroute_lib.engine.train import train

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _log(walls):
    return pd.DataFrame({"step": range(1, len(walls) + 1), "wall_s": walls})


def test_segments_split_a_branched_and_resumed_log_into_own_and_trunk_time():
    # trunk 1-4 (4 s), branch 5-6 (1 s), killed and resumed 7-10 (0.8 s)
    log = _log([1.0, 2.0, 3.0, 4.0, 0.5, 1.0, 0.2, 0.4, 0.6, 0.8])
    assert wall_time.segments(log) == [(1, 4, 4.0), (5, 6, 1.0), (7, 10, 0.8)]
    assert wall_time.split(log, stop=4) == pytest.approx((1.8, 4.0))
    assert wall_time.split(log) == pytest.approx((5.8, 0.0))           # not a budget row: all its own
    assert wall_time.split(_log([1.0, 2.0, 3.0, 4.0, 5.0]), stop=2) == (5.0, 0.0)   # trained its first 40 % itself


def test_equal_time_uses_the_whole_run_including_its_trunk(tmp_path):
    log = tmp_path / "train_log.csv"
    _log([1.0, 2.0, 3.0, 0.5, 1.5, 0.2, 4.0]).to_csv(log, index=False)
    assert equal_time.train_wall_s(log) == 3.0 + 1.5 + 4.0


@pytest.mark.parametrize("iters", [5, 100, 6000, 12000, 24000])
def test_trunk_stop_is_the_last_step_without_budget(iters):
    stop = trunk_stop(iters)
    assert 0 < stop < iters and budget_weight_at(stop / iters) == 0.0 < budget_weight_at((stop + 1) / iters)


def test_committed_budget_rows_branch_exactly_at_the_trunk_stop():
    """Every committed Dynamic-A/B/C curve restarts its clock right after ``trunk_stop``: the split is real."""
    curves = sorted(RESULTS.glob("repro*/curves/dynamic_[abc]_s*_train.csv.gz"))
    if not curves:
        pytest.skip(f"no committed budget-row curves under {RESULTS}")
    for c in curves:
        row = json.loads((c.parents[1] / "runs" / c.name.replace("_train.csv.gz", ".json")).read_text())
        stop = wall_time.row_stop(PRESETS[row["preset"]], row["iters"])
        assert stop > 0 and any(last == stop for _, last, _ in wall_time.segments(pd.read_csv(c))), c.name


def test_suite_hours_count_each_seeds_trunk_once(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "curves").mkdir()
    trunk = [900.0, 1800.0]                  # iters 5 -> trunk_stop 2
    logs = {"dynamic_a_s0": trunk + [600.0, 1200.0, 1800.0], "dynamic_b_s0": trunk + [1200.0, 600.0, 1800.0],
            "dynamic_raw_l16_s0": [1800.0, 3600.0, 1800.0, 3600.0, 5400.0]}
    for row, walls in logs.items():
        (tmp_path / "runs" / f"{row}.json").write_text(json.dumps({"row": row, "preset": row[:-3], "seed": 0,
                                                                    "iters": 5}))
        _log(walls).to_csv(tmp_path / "curves" / f"{row}_train.csv.gz", index=False)
    w = wall_time.suite_wall(tmp_path).set_index("row")
    assert w.loc["dynamic_b_s0", "own_s"] == 3000.0 and w.loc["dynamic_b_s0", "trunk_s"] == 1800.0
    assert w.loc["dynamic_raw_l16_s0", "own_s"] == 9000.0 and w.loc["dynamic_raw_l16_s0", "trunk_s"] == 0.0
    h = wall_time.suite_hours(tmp_path)
    assert h["rows"] == 3 and h["trunk_h"] == 0.5 and h["total_h"] == pytest.approx((1800 + 3000 + 9000 + 1800) / 3600)


def test_run_row_sums_a_resumed_branch_and_keeps_the_trunk_apart(tmp_path):
    """The row's ``train_wall_s`` covers every process that trained it, not only the last (``train.json``)."""
    from dataclasses import replace
    m, t = for_run("dynamic_a", smoke=True, iters=6, ckpt_interval=1, precise_bn_iters=0)
    trunk = replace(m, name="budget_trunk", budget_weight=0.0, budget_mu=0.0)
    train(trunk, t, tmp_path / "trunk", device="cpu", progress_bar=False, stop_at=trunk_stop(6))
    run = tmp_path / "a"     # two iterations per process: a restart's first time is below the last one's clock
    train(m, t, run, device="cpu", progress_bar=False, stop_at=4, branch_from=tmp_path / "trunk" / "last.pt")
    train(m, t, run, resume=True, device="cpu", progress_bar=False)
    (run / "train.json").write_text(json.dumps({"wall_s": 1e-9}))     # what the last process alone timed
    segs = wall_time.segments(pd.read_csv(run / "train_log.csv"))
    assert [s[:2] for s in segs] == [(1, 2), (3, 4), (5, 6)]
    ev = {"input_hw": [64, 64], "miou_pct": 1.0, "mean_real_gflops": 0.1, "max_real_gflops": 0.1,
          "min_real_gflops": 0.1, "mean_true_gmacs": 0.1, "num_images": 1}
    row = tables.run_row(run, ev, "dynamic_a")
    assert row["train_wall_s"] == pytest.approx(segs[1][2] + segs[2][2])
    assert row["trunk_wall_s"] == pytest.approx(segs[0][2])
