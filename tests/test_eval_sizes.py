"""Input-size sweep (analysis.eval_sizes): one row per checkpoint and size, cost grows with size, clear errors."""
from __future__ import annotations

import pandas as pd
import pytest
from conftest import smoke_checkpoint

from dynroute_lib.__main__ import main as cli
from dynroute_lib.analysis.eval_sizes import parse_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return smoke_checkpoint(tmp_path_factory.mktemp("sizes"), iters=1)


def test_sweep_writes_one_row_per_size_and_cost_grows(ckpt, tmp_path):
    out = tmp_path / "res"
    assert cli(["eval-sizes", str(ckpt), "--data", "synthetic", "--limit", "1", "--device", "cpu",
                "--sizes", "64x64", "96x128", "--labels", "a", "--out", str(out)]) == 0
    df = pd.read_csv(out / "eval_sizes.csv")
    assert list(df["eval_hw"]) == ["64x64", "96x128"] and set(df["model"]) == {"a"}
    # 3x the pixels: the real cost must grow (a sweep that ignored --sizes would give equal costs)
    assert df["mean_real_gflops"].iloc[1] > 2 * df["mean_real_gflops"].iloc[0]
    assert df["miou_vs_best"].max() == 0 and (df["miou_vs_best"] <= 0).all()
    assert (out / "run.json").is_file()


@pytest.mark.parametrize("bad", ["240", "ax320", "16x16"])
def test_bad_size_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match="--sizes"):
        parse_size(bad)


def test_missing_checkpoint_names_the_file_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "res"
    assert cli(["eval-sizes", str(tmp_path / "nope.pt"), "--data", "synthetic", "--out", str(out)]) == 2
    assert "nope.pt" in capsys.readouterr().err and not out.exists()
