"""BN-statistics probe (analysis.bn_probe): EMA / per-image / precise-BN rows, gate BN untouched, clear errors."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import smoke_checkpoint
from torch.nn.modules.batchnorm import _BatchNorm

from dynroute_lib.__main__ import main as cli
from dynroute_lib.analysis.bn_probe import is_gate_bn, use_batch_stats
from dynroute_lib.engine.checkpoint import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return smoke_checkpoint(tmp_path_factory.mktemp("bnprobe"), iters=2)


def test_batch_stats_switches_only_the_non_gate_bn(ckpt):
    net = load_model(ckpt)[0]
    bns = {n: m for n, m in net.named_modules() if isinstance(m, _BatchNorm)}
    gates = {n for n in bns if is_gate_bn(n)}
    assert gates and len(gates) < len(bns)
    before = {n: bns[n].running_var.clone() for n in gates}
    assert use_batch_stats(net) == len(bns) - len(gates)
    for n, m in bns.items():
        assert (m.running_var is None) == (n not in gates)
    assert all(torch.equal(bns[n].running_var, before[n]) for n in gates)
    # eval mode now normalises each input by its own statistics: a shifted input gives the same BN output
    stem = next(m for n, m in bns.items() if n not in gates)
    stem.eval()
    x = torch.randn(1, stem.num_features, 6, 6)
    assert torch.allclose(stem(x), stem(x + 3.0), atol=1e-4)


def test_cli_writes_one_row_per_variant(ckpt, tmp_path):
    out = tmp_path / "res"
    assert cli(["bn-probe", str(ckpt), "--precise", "1", "2", "--limit", "1", "--device", "cpu",
                "--labels", "a", "--out", str(out)]) == 0
    df = pd.read_csv(out / "bn_probe.csv")
    assert list(df["variant"]) == ["ema", "batch", "precise_1", "precise_2"] and set(df["model"]) == {"a"}
    assert list(df["train_batches"].iloc[2:]) == [1, 2]
    assert df["miou_vs_ema"].iloc[0] == 0 and df["miou_pct"].between(0, 100).all()
    assert (out / "run.json").is_file()


def test_bad_input_is_one_line_and_writes_nothing(ckpt, tmp_path, capsys):
    out = tmp_path / "res"
    assert cli(["bn-probe", str(tmp_path / "nope.pt"), "--out", str(out)]) == 2
    assert "nope.pt" in capsys.readouterr().err
    assert cli(["bn-probe", str(ckpt), "--precise", "0", "--out", str(out)]) == 2
    assert "--precise" in capsys.readouterr().err
    assert not out.exists()


def test_train_config_round_trips_through_a_checkpoint(ckpt):
    from dynroute_lib.config import TrainConfig
    from dynroute_lib.engine.checkpoint import read_configs
    tc = read_configs(ckpt)[1]
    assert TrainConfig.from_dict(tc).to_dict() == tc
    with pytest.raises(ValueError, match="unknown TrainConfig fields"):
        TrainConfig.from_dict({**tc, "bogus": 1})
