"""Holding one recording out of CamVid train (data.holdout; the held-out-drive test of issue 13, done-when 3)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dynroute_lib.data import build_dataset
from dynroute_lib.data.__main__ import main as data_main
from dynroute_lib.data.holdout import hold_out, sequence_of
from dynroute_lib.data.readers import list_split
from dynroute_lib.data.registry import DataError

FRAMES = {"AAA": 3, "BBB": 2, "CCC": 4}


@pytest.fixture()
def src(tmp_path) -> Path:
    """A CamVid-layout root with three recordings in train and one in val (tiny real images)."""
    root = tmp_path / "camvid"
    rng = np.random.default_rng(0)
    for split, frames in (("train", FRAMES), ("val", {"VVV": 2})):
        for d in ("images", "labels"):
            (root / split / d).mkdir(parents=True)
        for seq, n in frames.items():
            for i in range(n):
                name = f"{seq}_{i:05d}"
                Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(
                    root / split / "images" / f"{name}.jpg")
                Image.fromarray(rng.integers(0, 12, (12, 16), dtype=np.uint8)).save(
                    root / split / "labels" / f"{name}.png")
    return root


def test_the_held_out_recording_leaves_train_and_forms_its_own_split(src, tmp_path):
    out = tmp_path / "ho"
    m = hold_out("camvid", "BBB", out, root=src)
    train = list_split("camvid", out, "train").samples
    held = list_split("camvid", out, "heldout").samples
    assert sorted({sequence_of(s.name) for s in train}) == ["AAA", "CCC"] and len(train) == 7
    assert {sequence_of(s.name) for s in held} == {"BBB"} and len(held) == 2
    assert len(list_split("camvid", out, "val").samples) == 2
    # links, not copies, and each pair still points at its own source files
    for s in train + held:
        assert s.image.is_symlink() and s.image.resolve().parent == (src / "train" / "images").resolve()
        assert s.label.resolve() == (src / "train" / "labels" / f"{s.name}.png").resolve()
    assert m["splits"] == {"train": 7, "heldout": 2, "val": 2} and m["train_recordings"] == ["AAA", "CCC"]
    assert json.loads((out / "holdout.json").read_text()) == m
    x, y, _ = build_dataset("camvid", out, split="heldout", train=False)[0]    # the loader reads it
    assert x.shape[-2:] == y.shape[-2:]


@pytest.mark.parametrize("sequence, match", [("ZZZ", "recordings: AAA, BBB, CCC"), ("", "no frame")])
def test_an_unknown_recording_names_the_ones_there_and_writes_nothing(src, tmp_path, sequence, match):
    with pytest.raises(DataError, match=match):
        hold_out("camvid", sequence, tmp_path / "ho", root=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camvid"]      # no folder, no temp folder left


def test_existing_output_is_refused_unless_forced(src, tmp_path):
    out = tmp_path / "ho"
    hold_out("camvid", "BBB", out, root=src)
    with pytest.raises(DataError, match="already exists"):
        hold_out("camvid", "AAA", out, root=src)
    assert json.loads((out / "holdout.json").read_text())["held_out"] == "BBB"    # untouched
    hold_out("camvid", "AAA", out, root=src, force=True)
    assert json.loads((out / "holdout.json").read_text())["held_out"] == "AAA"
    assert len(list_split("camvid", out, "heldout").samples) == 3


def test_other_bad_input_is_refused(src, tmp_path):
    with pytest.raises(DataError, match="synthetic"):
        hold_out("synthetic", "AAA", tmp_path / "ho")
    with pytest.raises(DataError, match="clashes"):
        hold_out("camvid", "AAA", tmp_path / "ho", root=src, heldout_split="val")
    with pytest.raises(DataError, match="test: no CamVid split"):
        hold_out("camvid", "AAA", tmp_path / "ho", root=src, carry=("val", "test"))   # no test split
    assert not (tmp_path / "ho").exists()


def test_cli_prints_counts_and_errors_in_one_line(src, tmp_path, capsys):
    out = tmp_path / "ho"
    assert data_main(["holdout", "camvid", "--sequence", "CCC", "--root", str(src), "--out", str(out)]) == 0
    assert "train 5, heldout 4, val 2" in capsys.readouterr().out
    assert data_main(["holdout", "camvid", "--sequence", "CCC", "--root", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(out) in err


def test_real_camvid_without_drive_0006R0(camvid_dir, tmp_path):
    m = hold_out("camvid", "0006R0", tmp_path / "ho", root=camvid_dir)
    assert m["recordings"] == ["0001TP", "0006R0", "0016E5"]
    assert m["splits"] == {"train": 266, "heldout": 101, "val": 101}
