"""Training CLI on bad input (issue 16): data validated before anything is written, ``--resume`` without a
checkpoint, ``--eval`` metrics, untrusted checkpoints refused with our own line (seconds, CPU)."""
from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from dynroute_lib import io
from dynroute_lib.data import DataError
from dynroute_lib.data import check as data_check
from dynroute_lib.model.official import read_state_dict
from dynroute_lib.engine.train import main as train_main

N_PAIRS = 30


def _camvid(root, n=N_PAIRS, hw=(32, 48)):
    """A tiny CamVid-layout folder (train/ and val/ with images/ + labels/, labels 0..11, 11 = void)."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(n if split == "train" else 2):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "labels").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)).save(root / split / "images" / f"f{i:02d}.png")
            Image.fromarray((np.arange(hw[0] * hw[1]).reshape(hw) % 12).astype(np.uint8)).save(
                root / split / "labels" / f"f{i:02d}.png")
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    path = tmp_path / "check_cache.json"
    monkeypatch.setattr(data_check, "CHECK_CACHE", path)
    return path


def _bad(root, case: str) -> str:
    lbl = root / "train" / "labels" / "f17.png"
    if case == "id200":
        arr = np.zeros((32, 48), np.uint8)
        arr[5, 7] = 200
        Image.fromarray(arr).save(lbl)
    else:
        Image.fromarray(np.zeros((33, 48), np.uint8)).save(lbl)
    return str(lbl)


@pytest.mark.parametrize("case,problem", [("id200", "[200] outside the class range"), ("size", "differs")])
def test_bad_label_fails_before_anything_is_written(tmp_path, cache, capsys, case, problem):
    root = _camvid(tmp_path / "camvid")
    bad = _bad(root, case)
    out = tmp_path / "run"
    rc = train_main(["dynamic_a", "--smoke", "--data", "camvid", "--data-root", str(root), "--out", str(out),
                     "--iters", "1"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and bad in err[0] and problem in err[0], err[0]
    assert not out.exists(), "nothing may be written for a bad data set"


def test_validation_is_cached_by_size_and_mtime(tmp_path, cache):
    root = _camvid(tmp_path / "camvid")
    assert data_check.validate_split("camvid", root, "train", cache=cache) == N_PAIRS
    assert data_check.validate_split("camvid", root, "train", cache=cache) == 0, "unchanged files are cached"
    lbl = root / "train" / "labels" / "f03.png"
    st = lbl.stat()
    os.utime(lbl, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert data_check.validate_split("camvid", root, "train", cache=cache) == 1, "a touched file is re-checked"
    _bad(root, "id200")                              # same size is possible, so the mtime must differ
    time.sleep(0.01)
    with pytest.raises(DataError, match="f17.png"):
        data_check.validate_split("camvid", root, "train", cache=cache)
    with pytest.raises(DataError, match="f17.png"):  # a failure is never cached as passed
        data_check.validate_split("camvid", root, "train", cache=cache)


def test_resume_without_checkpoint_says_so_and_eval_prints_metrics(tmp_path, cache, capsys):
    out = tmp_path / "run"
    rc = train_main(["dynamic_a", "--smoke", "--out", str(out), "--iters", "1", "--precise-bn", "0", "--resume",
                     "--eval", "--gate-init-bias", "0.25", "--gate-lr-mult", "2.5"])
    text = capsys.readouterr().out
    assert rc == 0, text
    lines = [ln for ln in text.splitlines() if "starting from scratch" in ln]
    assert len(lines) == 1 and str(out / "last.pt") in lines[0]
    ev = [ln for ln in text.splitlines() if ln.startswith("val: ")]
    assert len(ev) == 1 and "mIoU" in ev[0] and "GFLOPs" in ev[0], text
    meta = json.loads((out / "train.json").read_text())
    # the gate levers (analysis.levers) reach the run's configs, and --eval leaves the gate records they score
    assert (meta["model_config"]["gate_init_bias"], meta["train_config"]["gate_lr_mult"]) == (0.25, 2.5)
    assert (out / "records.npz").is_file() and (out / "per_image.csv").is_file()
    rec = meta["eval"]
    assert f"mIoU {rec['miou_pct']:.2f} %" in ev[0] and f"mean/max/min {rec['mean_real_gflops']:.3f}/" in ev[0]


def test_train_json_names_the_code_that_started_training(tmp_path, cache, monkeypatch):
    import dynroute_lib.engine.train as train_mod
    head = {"sha": "aaaa"}
    monkeypatch.setattr(io, "_git", lambda *a: head["sha"] if a[0] == "rev-parse" else "")
    real_train = train_mod.train

    def train_while_a_commit_lands(*args, **kw):
        out = real_train(*args, **kw)
        head["sha"] = "bbbb"                 # a commit landed while the run trained
        return out
    monkeypatch.setattr(train_mod, "train", train_while_a_commit_lands)
    assert train_main(["dynamic_a", "--smoke", "--out", str(tmp_path / "run"), "--iters", "1",
                       "--precise-bn", "0"]) == 0
    assert json.loads((tmp_path / "run" / "train.json").read_text())["git_sha"] == "aaaa"


def test_untrusted_checkpoint_refused_with_our_line(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "when": datetime.datetime(2020, 1, 1)}, path)
    for load in (io.load_checkpoint, read_state_dict):
        with pytest.raises(ValueError) as e:
            load(path)
        msg = str(e.value)
        assert msg == f"{path}: not a plain-tensor checkpoint; refusing to unpickle (untrusted code)"
        assert "weights_only" not in msg and "\n" not in msg
    plain = io.save_torch(tmp_path / "ok.pt", {"model": {"w": torch.ones(2)}, "step": 3, "config": {"a": [1, 2]}})
    assert io.load_checkpoint(plain)["step"] == 3


def test_untrusted_checkpoint_in_the_cli(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "when": datetime.date(2020, 1, 1)}, path)
    from dynroute_lib.engine.evaluate import main as eval_main
    assert eval_main([str(path), "--data", "synthetic"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: not a plain-tensor checkpoint; refusing to unpickle (untrusted code)"
