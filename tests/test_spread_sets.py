"""Per-image cost spread by evaluation set (analysis.spread_sets; issue 13 done-when 3 diagnosis)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dynroute_lib.analysis import spread_sets
from dynroute_lib.engine.train import main as train_main
from dynroute_lib.routes import is_node_key

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sequence_of_reads_the_camvid_prefix():
    assert spread_sets.sequence_of("0016E5_07959") == "0016E5"
    assert spread_sets.sequence_of("0006R0_f00930") == "0006R0"
    assert spread_sets.sequence_of("frame7") == "-"
    assert spread_sets.frame_number("0006R0_f00930") == 930
    assert np.isnan(spread_sets.frame_number("frame7"))


def test_frame_step_is_the_median_gap_within_each_sequence():
    names = [f"A_{i:05d}" for i in range(0, 60, 2)] + [f"B_{i:05d}" for i in range(1000, 1300, 30)]
    df = pd.DataFrame({"image": names, "real_gflops": 1.0})
    assert spread_sets.frame_step(df) == 2.0                  # 29 gaps of 2 outnumber 9 gaps of 30
    assert spread_sets.frame_step(df[df["image"].str.startswith("B")]) == 30.0


def test_variation_between_sequences_is_not_counted_as_within_a_window():
    # two drives, each at a constant cost: the set spreads, no window inside one drive does
    df = pd.DataFrame({"image": [f"AAA_{i:03d}" for i in range(40)] + [f"BBB_{i:03d}" for i in range(40)],
                       "real_gflops": [1.0] * 40 + [1.2] * 40})
    s = spread_sets.set_spread(df, subset=20, window=10, draws=50)
    assert s["spread_pct"] == pytest.approx(100 * 0.2 / 1.1)
    assert s["window_spread_median"] == 0.0
    assert s["sequences"] == 2 and s["subset_size"] == 20
    assert 0 < s["subset_spread_median"] <= s["spread_pct"] + 1e-9   # a subset almost surely holds both drives
    seq = spread_sets.by_sequence(df)
    assert list(seq["sequence"]) == ["AAA", "BBB"] and (seq["spread_pct"] == 0).all()


def test_a_frame_that_jumps_shows_in_its_window_only():
    r = np.ones(60)
    r[45] = 1.5                              # one expensive frame late in the drive
    df = pd.DataFrame({"image": [f"S_{i:03d}" for i in range(60)], "real_gflops": r})
    s = spread_sets.set_spread(df, window=10)
    # 51 windows of 10 frames; 10 hold frame 45, so the median window is flat
    assert s["window_spread_median"] == 0.0 and s["spread_pct"] > 45


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2"):
        spread_sets.set_spread(pd.DataFrame({"image": ["a_1"], "real_gflops": [1.0]}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("spread") / "run"       # a train CLI run: model_final.pt and train.json
    assert train_main(["dynamic_a", "--smoke", "--out", str(out), "--iters", "1", "--precise-bn", "0"]) == 0
    return out


def test_cli_evaluates_each_split_and_writes_records(run_dir, tmp_path):
    out = tmp_path / "res"
    assert spread_sets.main([str(run_dir), "--labels", "tiny", "--data", "synthetic", "--splits", "val", "train",
                             "--resize", "64", "64", "--limit", "4", "--subset", "3", "--window", "2",
                             "--device", "cpu", "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["split"]) == ["val", "train"] and (summary["num_images"] == 4).all()
    for _, row in summary.iterrows():
        d = pd.read_csv(out / "per_image" / f"tiny_{row['split']}.csv")
        assert d["image"].str.startswith(row["split"]).all()     # the split's own images were evaluated
        g = d["real_gflops"]
        assert row["spread_pct"] == pytest.approx(100 * (g.max() - g.min()) / g.mean())
        with np.load(out / "route_records" / f"tiny_{row['split']}.npz") as z:
            assert any(is_node_key(k) for k in z.files)
    assert {"conditional_paths", "conditional_cells"} <= set(summary.columns)
    assert (out / "spread_sets.png").is_file()
    assert len(pd.read_csv(out / "curves" / "tiny_train.csv.gz")) == len(pd.read_csv(run_dir / "train_log.csv"))
    run = json.loads((out / "run.json").read_text())          # the training command travels with the spread
    assert run["train_commands"] == [json.loads((run_dir / "train.json").read_text())["command"]]


def test_cli_errors_name_the_input_and_write_nothing(run_dir, tmp_path, capsys):
    out = tmp_path / "res"
    assert spread_sets.main([str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "nope" in capsys.readouterr().err and not out.exists()
    assert spread_sets.main([str(run_dir), "--labels", "a", "b", "--data", "synthetic", "--out", str(out)]) == 2
    assert "--labels" in capsys.readouterr().err and not out.exists()


def test_replot_redraws_the_figure_from_the_committed_csvs(run_dir, tmp_path, capsys):
    out = tmp_path / "res"
    assert spread_sets.main([str(run_dir), "--data", "synthetic", "--splits", "val", "--resize", "64", "64",
                             "--limit", "3", "--subset", "2", "--window", "2", "--device", "cpu",
                             "--out", str(out)]) == 0
    (out / "spread_sets.png").unlink()
    assert spread_sets.main(["--replot", str(out)]) == 0 and (out / "spread_sets.png").is_file()
    assert json.loads((out / "run.json").read_text())["replotted"]["files"] == ["spread_sets.png"]
    (out / "per_image" / "run_val.csv").unlink()
    assert spread_sets.main(["--replot", str(out)]) == 2
    assert "run_val.csv" in capsys.readouterr().err


def test_figure_legend_is_below_the_panels_not_on_the_points():
    from figure_checks import assert_readable
    df = pd.DataFrame({"image": [f"AAA_{i:03d}" for i in range(5)] + [f"BBB_{i:03d}" for i in range(5)],
                       "real_gflops": np.linspace(1.0, 1.2, 10)})
    fig = spread_sets.figure({("m", "val"): df, ("m", "train"): df}, {"data": "camvid"})
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["AAA", "BBB"]
    assert_readable(fig, "camvid", "spread_sets")


def test_add_to_keeps_the_committed_models_without_their_checkpoints(run_dir, tmp_path, capsys):
    out = tmp_path / "res"
    common = ["--data", "synthetic", "--splits", "val", "--resize", "64", "64", "--limit", "3", "--subset", "2",
              "--window", "2", "--device", "cpu"]
    assert spread_sets.main([str(run_dir), "--labels", "first", *common, "--out", str(out)]) == 0
    before = pd.read_csv(out / "summary.csv")
    assert spread_sets.main([str(run_dir), "--labels", "second", *common, "--add-to", str(out)]) == 0
    after = pd.read_csv(out / "summary.csv")
    assert list(after["model"]) == ["first", "second"]
    pd.testing.assert_frame_equal(after.iloc[:1], before)        # re-scored from per_image/ and route_records/
    run = json.loads((out / "run.json").read_text())
    assert len(run["checkpoints"]) == len(run["eval_data_roots"]) == 2 and "first" in run["earlier_commands"][0]
    assert set(pd.read_csv(out / "by_sequence.csv")["model"]) == {"first", "second"}
    assert spread_sets.main([str(run_dir), "--labels", "third", *common[:-4], "--window", "3", "--device", "cpu",
                             "--add-to", str(out)]) == 2
    assert "--window" in capsys.readouterr().err
    assert spread_sets.main([str(run_dir), "--labels", "third", *common, "--add-to", str(out),
                             "--out", str(tmp_path / "elsewhere")]) == 2
    assert "omit --out" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()
    assert list(pd.read_csv(out / "summary.csv")["model"]) == ["first", "second"]
