"""Class-balanced CE (data.balance): a CPU-profile departure from the paper's plain CE, checked end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynroute_lib.config import TrainConfig, for_run
from dynroute_lib.data.balance import class_frequencies, class_weights, describe
from dynroute_lib.engine.checkpoint import read_checkpoint
from dynroute_lib.engine.train import train
from dynroute_lib.model.budget import total_loss


class _Labels:
    """Two 2x3 label maps: class 0 four pixels, class 1 two, class 2 five, ignore one; class 3 absent."""

    def __init__(self):
        self.labels = [np.array([[0, 0, 2], [2, 255, 1]], np.uint8), np.array([[0, 0, 2], [2, 2, 1]], np.uint8)]

    def __len__(self):
        return len(self.labels)

    def load_raw(self, i):
        return None, self.labels[i], None


def test_frequencies_exclude_ignore_pixels():
    freq = class_frequencies(_Labels(), 4)
    assert freq.tolist() == pytest.approx([4 / 11, 2 / 11, 5 / 11, 0.0])


def test_weights_favour_rare_classes_and_stay_bounded():
    freq = np.array([0.6, 0.3, 0.099, 0.001, 0.0])
    w = class_weights(freq, "enet").numpy()
    assert np.all(np.diff(w[:4]) > 0)                       # rarer -> heavier
    assert w[:4].max() <= 1 / math.log(1.02) + 1e-4 and w[4] == 0
    m = class_weights(np.array([0.6, 0.3, 0.1, 0.0]), "median").numpy()
    assert m.tolist() == pytest.approx([0.5, 1.0, 3.0, 0.0])           # median class 1, absent class 0
    assert class_weights(freq, "none") is None and "none" in describe(None)


def test_unknown_mode_is_refused_when_the_config_is_built():
    with pytest.raises(ValueError, match="class_weighting"):
        TrainConfig(class_weighting="inverse")


def test_weighted_loss_is_plain_ce_without_weights_and_differs_with_them():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    zero = torch.zeros(())
    plain = total_loss(logits, target, zero)["ce"]
    assert torch.equal(plain, F.cross_entropy(logits, target, ignore_index=255))
    heavy = total_loss(logits, target, zero, weight=torch.tensor([1.0, 1.0, 20.0]))["ce"]
    assert not torch.allclose(plain, heavy)


def test_training_with_class_weights_changes_the_weights(tmp_path):
    out = {}
    for mode in ("none", "enet"):
        m, t = for_run("dynamic_raw_l16", smoke=True, iters=2, precise_bn_iters=0, class_weighting=mode)
        train(m, t, tmp_path / mode, device="cpu", progress_bar=False)
        out[mode] = read_checkpoint(tmp_path / mode / "model_final.pt")
    a, b = out["none"]["model"], out["enet"]["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert out["enet"]["train_config"]["class_weighting"] == "enet"
