"""Unit tests of the model-independent engine pieces (metrics, io, schedule, optim, precise BN, CSV log)."""
from __future__ import annotations

import csv
import json
import math
from datetime import datetime

import pytest
import torch
from torch import nn

from dynroute_lib import io as dio
from dynroute_lib.engine.csv_log import CsvLogger
from dynroute_lib.engine.metrics import FlopsStats, StreamSegMetrics
from dynroute_lib.engine.optim import build_optimizer, clip_grad, param_groups, set_lr
from dynroute_lib.engine.precise_bn import images_as, recompute_bn_stats
from dynroute_lib.engine.schedule import budget_weight_at, drop_path_keep_prob, lr_at

# Hand-made 3-class case. Confusion (rows gt, cols pred): [[1,1,0],[0,2,0],[1,0,1]];
# the last pixel is ignored. IoU = [1/3, 2/3, 1/2] -> mIoU 50 %, pixel acc 4/6,
# class acc [1/2, 1, 1/2] -> 2/3, fwIoU = sum(1/3 * IoU) = 50 %.
GT = torch.tensor([[0, 0, 1, 1, 2, 2, 255]])
PRED = torch.tensor([[0, 1, 1, 1, 2, 0, 2]])


# ----------------------------------------------------------------------------- metrics
def test_metrics_hand_computed_three_classes():
    m = StreamSegMetrics(3)
    m.update(PRED, GT)
    assert m.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    r = m.results()
    assert r["per_class_iou_pct"] == pytest.approx([100 / 3, 200 / 3, 50.0])
    assert r["miou_pct"] == pytest.approx(50.0)
    assert r["pixel_acc_pct"] == pytest.approx(400 / 6)
    assert r["mean_acc_pct"] == pytest.approx(200 / 3)
    assert r["fwiou_pct"] == pytest.approx(50.0)
    assert r["num_pixels"] == 6


def test_metrics_absent_class_is_nan_and_excluded():
    m = StreamSegMetrics(4)  # class 3 never appears in gt nor pred
    m.update(PRED, GT)
    r = m.results()
    assert math.isnan(r["per_class_iou_pct"][3])
    assert r["miou_pct"] == pytest.approx(50.0)


def test_metrics_false_positive_class_counts_as_zero_iou():
    m = StreamSegMetrics(2)
    m.update(torch.tensor([0, 1]), torch.tensor([0, 0]))  # class 1 predicted, never in gt
    r = m.results()
    assert r["per_class_iou_pct"] == pytest.approx([50.0, 0.0])
    assert r["miou_pct"] == pytest.approx(25.0)


def test_metrics_logits_merge_reset_and_all_reduce_noop():
    logits = nn.functional.one_hot(PRED, 3).permute(0, 2, 1).float()  # [1, C, 7]
    whole = StreamSegMetrics(3)
    whole.update(logits, GT)
    a, b = StreamSegMetrics(3), StreamSegMetrics(3)
    a.update(PRED[:, :3], GT[:, :3])
    b.update(PRED[:, 3:], GT[:, 3:])
    a.merge(b).all_reduce()  # no process group: must be a no-op
    assert torch.equal(a.confusion, whole.confusion)
    with pytest.raises(ValueError):
        a.update(torch.tensor([3]), torch.tensor([0]))  # prediction out of range
    a.reset()
    assert a.confusion.sum() == 0 and math.isnan(a.results()["miou_pct"])


def test_flops_stats():
    s = FlopsStats()
    s.update(torch.tensor([1.0, 2.0, 3.0]))
    s.update(4.0)
    assert s.results("real_gflops_") == {"real_gflops_mean": 2.5, "real_gflops_max": 4.0,
                                         "real_gflops_min": 1.0, "real_gflops_count": 4}
    assert math.isnan(FlopsStats().results()["mean"])


# ----------------------------------------------------------------------------- schedules
def test_lr_schedule_known_points():
    base, T = 0.05, 10_000
    assert lr_at(0, T, base) == pytest.approx(base * 1e-3)
    assert lr_at(500, T, base) == pytest.approx(base * (1e-3 * 0.5 + 0.5) * 0.95 ** 0.9)
    assert lr_at(1000, T, base) == pytest.approx(base * 0.9 ** 0.9)
    assert lr_at(T, T, base) == 0.0 and lr_at(T + 5, T, base) == 0.0
    assert lr_at(0, T, base, warmup_iters=0) == pytest.approx(base)
    post = [lr_at(i, T, base) for i in range(1000, T + 1, 500)]
    assert all(x > y for x, y in zip(post, post[1:]))


def test_budget_weight_schedule():
    assert budget_weight_at(0.39) == 0.0
    assert budget_weight_at(0.40) == 0.0
    assert budget_weight_at(0.41) == pytest.approx(0.5)
    assert budget_weight_at(0.42) == pytest.approx(1.0)
    assert budget_weight_at(0.9) == 1.0


def test_drop_path_keep_prob():
    assert drop_path_keep_prob(15, 16, 1.0, 0.3) == pytest.approx(0.7)
    assert drop_path_keep_prob(15, 16, 0.0, 0.3) == 1.0  # eval / precise BN: exact no-op
    assert drop_path_keep_prob(7, 16, 0.5, 0.3) == pytest.approx(1 - 0.3 * 0.5 * 0.5)


# ----------------------------------------------------------------------------- optim
class _TinyGated(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.gate_conv_beta = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
        self.norm = nn.GroupNorm(2, 4)


def test_param_groups_weight_decay_and_gate_lr():
    net = _TinyGated()
    groups = param_groups(net, base_lr=0.02, weight_decay=1e-4, gate_lr_mult=2.5)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert len(by_param) == sum(1 for _ in net.parameters())
    for name, p in net.named_parameters():
        g = by_param[id(p)]
        is_norm = name.startswith(("body.1", "gate_conv_beta.1", "norm"))
        assert g["weight_decay"] == (0.0 if is_norm else 1e-4), name
        mult = 2.5 if name.startswith("gate_conv_beta") else 1.0
        assert g["lr_mult"] == mult and g["lr"] == pytest.approx(0.02 * mult), name
    opt = build_optimizer(net, {"base_lr": 0.02, "gate_lr_mult": 2.5})
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    set_lr(opt, 0.01)
    assert sorted({g["lr"] for g in opt.param_groups}) == pytest.approx([0.01, 0.025])


def test_clip_grad_returns_total_norm():
    net = nn.Linear(4, 1, bias=False)
    net.weight.grad = torch.full_like(net.weight, 10.0)  # norm 20
    assert clip_grad(net, 5.0) == pytest.approx(20.0)
    assert net.weight.grad.norm().item() == pytest.approx(5.0, rel=1e-4)


# ----------------------------------------------------------------------------- io
def test_atomic_save_torch_failure_leaves_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "ckpt.pt"
    dio.save_torch(target, {"step": 1, "w": torch.ones(2)})

    def boom(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half-written")  # simulate a crash mid-write
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        dio.save_torch(target, {"step": 2})
    with pytest.raises(RuntimeError):
        dio.save_torch(tmp_path / "new.pt", {"step": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temp files, no new.pt
    assert dio.load_checkpoint(target)["step"] == 1


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        dio.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt.pt"):
        dio.load_checkpoint(bad)


def test_save_json_csv_figure(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    dio.save_json(tmp_path / "a" / "m.json", {"miou_pct": float("nan"), "x": torch.tensor([1, 2])})
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"miou_pct": None, "x": [1, 2]}
    df = pd.DataFrame({"preset": ["p"], "ours_miou_pct": [50.0]})
    dio.save_csv(tmp_path / "t.csv", df)
    assert pd.read_csv(tmp_path / "t.csv").equals(df)
    fig, _ = plt.subplots(figsize=(1, 1))
    dio.save_figure(tmp_path / "f.png", fig, dpi=100)
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_provenance_and_timer():
    with dio.Timer() as t:
        rec = dio.provenance({"notebook": "02_train", "python": "override"}, device="cpu")
    assert t.wall_s > 0
    assert {"git_sha", "git_dirty", "torch", "torchvision", "device_name", "hostname"} <= set(rec)
    assert rec["notebook"] == "02_train" and rec["python"] == "override"
    assert datetime.fromisoformat(rec["start_time_utc"]).tzinfo is not None
    json.dumps(rec)


def test_provenance_dirty_ignores_results(tmp_path, monkeypatch):
    # A committing run rewrites tracked results/ before its run.json: that is output, not a code change.
    import subprocess
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "m.csv").write_text("a\n")
    (tmp_path / "lib.py").write_text("x = 1\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    monkeypatch.setattr(dio, "PROJ_ROOT", tmp_path)
    (tmp_path / "results" / "m.csv").write_text("b\n")
    assert dio.provenance()["git_dirty"] is False
    (tmp_path / "lib.py").write_text("x = 2\n")
    assert dio.provenance()["git_dirty"] is True


# ----------------------------------------------------------------------------- precise BN
class _ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)
        self.bn = nn.BatchNorm2d(4, momentum=0.1)

    def forward(self, x):
        return self.bn(self.conv(x)), None


def test_precise_bn_matches_true_mean():
    torch.manual_seed(0)
    net = _ConvBN().eval()
    batches = [(torch.randn(2, 3, 5, 5) * (i + 1) + i, None, {}) for i in range(4)]
    used = recompute_bn_stats(net, iter(batches + batches), num_iters=4)
    assert used == 4
    with torch.no_grad():
        feats = torch.cat([net.conv(b[0]) for b in batches])
    assert torch.allclose(net.bn.running_mean, feats.mean(dim=(0, 2, 3)), atol=1e-5)
    batch_vars = torch.stack([net.conv(b[0]).detach().var(dim=(0, 2, 3)) for b in batches])
    assert torch.allclose(net.bn.running_var, batch_vars.mean(0), atol=1e-4)
    assert net.bn.momentum == 0.1 and not net.training and not net.bn.training


def test_precise_bn_empty_iterable_restores_buffers():
    net = _ConvBN().train()
    net.bn.running_mean.fill_(3.0)
    with pytest.raises(ValueError):
        recompute_bn_stats(net, [], num_iters=5)
    assert torch.all(net.bn.running_mean == 3.0) and net.bn.momentum == 0.1 and net.training


def test_images_as_takes_batch_or_tensor_and_sets_the_memory_format():
    x = torch.randn(2, 3, 4, 5)
    keep, cl = images_as(), images_as(torch.channels_last)
    assert keep((x, None, {}), torch.device("cpu")) is x        # default: the loader's tensor, no copy
    assert torch.equal(keep(x, torch.device("cpu")), x)          # a bare tensor is a batch too
    y = cl([x, None, {}], torch.device("cpu"))
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous() and torch.equal(y, x)


# ----------------------------------------------------------------------------- CSV logger
def _steps(path):
    with open(path, newline="") as f:
        return [int(r["step"]) for r in csv.DictReader(f)]


def test_csv_logger_flushes_and_resume_truncates(tmp_path):
    path = tmp_path / "log" / "train.csv"
    log = CsvLogger(path, ["step", "loss"])
    for s in range(1, 11):
        log.log(step=s, loss=1.0 / s)
    assert _steps(path) == list(range(1, 11))  # flushed while still open
    log.close()
    with CsvLogger(path, ["step", "loss"], resume_step=6) as log:
        log.log({"step": 7, "loss": 0.5})
    assert _steps(path) == [1, 2, 3, 4, 5, 6, 7]
    with open(path, "a") as f:
        f.write("8,0.1")  # partial line of a crash mid-write (no newline)
    CsvLogger(path, ["step", "loss"], resume_step=100).close()
    assert _steps(path) == [1, 2, 3, 4, 5, 6, 7]
    with pytest.raises(ValueError), CsvLogger(path, ["step", "loss"], resume_step=100) as log:
        log.log(step=8, lr=0.1)  # unknown column
    with pytest.raises(ValueError, match="header"):
        CsvLogger(path, ["step", "lr"], resume_step=3)
    CsvLogger(path, ["step", "loss"]).close()  # fresh start overwrites
    assert _steps(path) == []
