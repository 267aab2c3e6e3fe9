"""Training engine (issue 5): exact resume, DDP ranks identical, non-finite guard, checkpoints, evaluation."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from dynroute_lib import io
from dynroute_lib.config import for_run
from dynroute_lib.engine.checkpoint import load_model
from dynroute_lib.engine.evaluate import evaluate_checkpoint
from dynroute_lib.engine.train import train

ROOT = Path(__file__).resolve().parents[1]


def _cfgs(iters=4, **over):
    m, t = for_run("dynamic_a", smoke=True)
    m = replace(m, num_layers=4)
    return m, replace(t, iters=iters, ckpt_interval=2, precise_bn_iters=0, **over)


def _weights(path):
    return io.load_checkpoint(path)["model"]


def test_resume_is_bit_identical(tmp_path):
    m, t = _cfgs(iters=4)
    train(m, t, tmp_path / "full", progress_bar=False)
    # interrupted after 2 of 4 iterations (same schedule), then resumed from its checkpoint
    part = tmp_path / "part"
    assert train(m, t, part, progress_bar=False, stop_at=2)["interrupted"]
    assert io.load_checkpoint(part / "last.pt")["step"] == 2
    train(m, t, part, resume=True, progress_bar=False)
    a, b = _weights(tmp_path / "full" / "last.pt"), _weights(part / "last.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (part / "train_log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]


def test_checkpoint_carries_config_and_loads_weights_only(tmp_path):
    m, t = _cfgs(iters=2)
    train(m, t, tmp_path, progress_bar=False)
    ck = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert ck["config"]["name"] == "dynamic_a" and ck["config_hash"] == m.hash()
    net, cfg, _ = load_model(tmp_path / "model_final.pt")
    assert cfg == m
    res = evaluate_checkpoint(tmp_path / "model_final.pt", data="synthetic", limit=2, device="cpu",
                              records_dir=tmp_path)
    assert 0 <= res["miou_pct"] <= 100 and res["num_images"] == 2
    assert res["min_real_gflops"] <= res["mean_real_gflops"] <= res["max_real_gflops"]
    assert res["mean_true_gmacs"] > 0
    assert (tmp_path / "records.npz").is_file() and (tmp_path / "per_image.csv").is_file()


def test_resume_refuses_other_config(tmp_path):
    m, t = _cfgs(iters=2)
    train(m, t, tmp_path, progress_bar=False)
    with pytest.raises(ValueError, match="last.pt"):
        train(replace(m, budget_mu=0.3), t, tmp_path, resume=True, progress_bar=False)


def test_nonfinite_loss_stops_with_iteration_and_keeps_checkpoint(tmp_path):
    m, t = _cfgs(iters=2)
    train(m, t, tmp_path, progress_bar=False)
    before = _weights(tmp_path / "last.pt")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # lr 1e30 blows the weights up: the loss becomes non-finite within a few iterations
    cmd = [sys.executable, "-m", "dynroute_lib", "train", "dynamic_a", "--smoke", "--out", str(tmp_path / "nan"),
           "--lr", "1e30", "--iters", "6"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 3, out.stderr[-2000:]
    assert "non-finite loss" in out.stderr and "at iteration" in out.stderr
    after = _weights(tmp_path / "last.pt")
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.slow
def test_ddp_two_cpu_processes_stay_identical(tmp_path):
    """torchrun --nproc-per-node 2 with gloo: both ranks end with identical weights."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29533",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path / "run")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    r0 = torch.load(tmp_path / "run" / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "run" / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    log = json.loads((tmp_path / "run" / "ranks.json").read_text())
    assert log["world"] == 2


def test_flip_and_multiscale_evaluation(tmp_path):
    m, t = _cfgs(iters=1)
    train(m, t, tmp_path, progress_bar=False)
    single = evaluate_checkpoint(tmp_path / "model_final.pt", data="synthetic", limit=1, device="cpu",
                                 true_macs=False)
    tta = evaluate_checkpoint(tmp_path / "model_final.pt", data="synthetic", limit=1, device="cpu",
                              scales=(0.5, 1.0), flip=True, true_macs=False)
    assert tta["scales"] == [0.5, 1.0] and tta["flip"]
    # four passes (2 scales x 2 flips): more FLOPs than one pass, less than four full-size passes
    assert single["mean_real_gflops"] < tta["mean_real_gflops"] < 4 * single["mean_real_gflops"]
    assert 0 <= tta["miou_pct"] <= 100
