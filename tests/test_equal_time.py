"""Equal-CPU-time comparison (analysis.equal_time, issue 13 item 6): time accounting and the whole path at smoke size."""
from __future__ import annotations

import json

import pandas as pd

from dynroute_lib import equal_time_cmd, notebook
from dynroute_lib.analysis import equal_time, tables


def test_missing_row_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(equal_time_cmd, "RESULTS_DIR", tmp_path)
    assert equal_time_cmd.main(["--row", "nope_s0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope_s0.json" in err and not (tmp_path / "_local" / "camvid_equal_time").exists()


def test_baseline_gets_the_rows_time_and_both_are_evaluated(tmp_path):
    ctx = notebook.setup("99_test", smoke=True, device="cpu", results_root=str(tmp_path))
    run = tables.train_or_load("dynamic_raw_l16", ctx)
    row = tmp_path / "row.json"
    row.write_text(json.dumps({"row": "dynamic_raw_l16_s0", "preset": "dynamic_raw_l16", "run_dir": str(run),
                               "iters": 3}))
    df = equal_time.compare(row, "lraspp_mbv3", ctx).set_index("model")
    assert list(df.index) == ["dynamic_raw_l16", "lraspp_mbv3"]
    assert (df["miou_pct"].between(0, 100)).all() and (df["real_gflops_mean"] > 0).all()
    budget = equal_time.train_wall_s(run / "train_log.csv") / 60
    assert df["budget_cpu_min"].iloc[0] == budget and df.loc["lraspp_mbv3", "iters"] >= 1


def test_lraspp_trains_with_a_val_curve(tmp_path):
    from dynroute_lib.config import for_run
    from dynroute_lib.engine.train import train
    m, t = for_run("lraspp_mbv3", smoke=True, iters=3, val_interval=2, eval_limit=1)
    train(m, t, tmp_path / "r", device="cpu", progress_bar=False)
    val = pd.read_csv(tmp_path / "r" / "val_log.csv")
    assert val["step"].tolist() == [2, 3] and (val["val_real_ratio"] == 1.0).all()
