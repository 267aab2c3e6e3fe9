"""Tests of the data layer (dynroute_lib.data): readers, mappings, augmentation, synthetic set, CLI.

All fixtures are tiny PNG/JPEG files written into ``tmp_path``; the CamVid tests read the shared
copy and skip when it is absent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dynroute_lib.data import (DATASETS, DataError, build_dataset, denormalize, normalize,
                               pad_to_multiple)
from dynroute_lib.data.__main__ import main as cli_main
from dynroute_lib.data.registry import voc_palette
from dynroute_lib.data.synthetic import (PEDESTRIAN, POLE, CAR, BUILDING, ensure_synthetic,
                                         generate_synthetic, render_scene, scene_rng)

REPO = Path(__file__).resolve().parents[1]
CAMVID = REPO.parent / "shared" / "data" / "camvid"


# --- helpers ----------------------------------------------------------------------------------
def _save(path: Path, array: np.ndarray, palette=None) -> Path:
    """Write a uint8 array as PNG/JPEG (mode L or RGB); with ``palette`` as a palette PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(array, dtype=np.uint8))
    if palette is not None:
        im.putpalette([v for rgb in palette for v in rgb])  # L -> P, indices unchanged
    im.save(path)
    return path


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_camvid(root: Path, n: int = 2, hw=(20, 30), split: str = "train") -> Path:
    """CamVid layout of the shared copy: <split>/images/*.jpg|png + <split>/labels/*.png."""
    for i in range(n):
        _save(root / split / "images" / f"f{i}.png", _rgb(*hw, seed=i))
        lbl = np.arange(hw[0] * hw[1]).reshape(hw) % 12  # 0..10 classes + 11 void
        _save(root / split / "labels" / f"f{i}.png", lbl)
    return root


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process (same code path as ``python -m``); returns (rc, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli_main(list(args))
    return rc, out.getvalue(), err.getvalue()


def _error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# --- registry / normalisation -----------------------------------------------------------------
def test_registry():
    expected = {"cityscapes": 19, "voc": 21, "camvid": 11, "synthetic": 7}
    for name, n in expected.items():
        info = DATASETS[name]
        assert info.num_classes == n == len(info.class_names) == len(info.palette)
        assert info.ignore_index == 255
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in info.palette)
    assert DATASETS["camvid"].class_names[:4] == ("Sky", "Building", "Pole", "Road")
    assert DATASETS["cityscapes"].class_names[13] == "car"
    assert voc_palette()[255] == (224, 224, 192) and voc_palette()[15] == (192, 128, 128)
    with pytest.raises(ValueError, match="camvid.*cityscapes.*synthetic.*voc"):
        build_dataset("nope")


@pytest.mark.parametrize("mode", ["official_bgr", "imagenet_rgb"])
def test_normalize_roundtrip(mode):
    img = torch.from_numpy(_rgb(7, 9)).permute(2, 0, 1)
    x = normalize(img, mode)
    assert x.dtype == torch.float32 and x.shape == img.shape
    assert torch.equal(denormalize(x, mode), img)
    assert torch.equal(denormalize(normalize(img[None], mode), mode), img[None])  # batched


def test_official_bgr_values():
    img = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)  # RGB
    x = normalize(img, "official_bgr").flatten().tolist()
    assert x == pytest.approx([30 - 103.530, 20 - 116.280, 10 - 123.675])
    with pytest.raises(ValueError):
        normalize(img, "bgr")


def test_pad_to_multiple():
    x, y = torch.ones(2, 3, 33, 64), torch.zeros(2, 33, 64, dtype=torch.int64)
    px, py = pad_to_multiple(x, y, 32)
    assert px.shape == (2, 3, 64, 64) and py.shape == (2, 64, 64)
    assert (px[..., 33:, :] == 0).all() and (py[:, 33:] == 255).all() and (py[:, :33] == 0).all()
    assert pad_to_multiple(torch.ones(3, 32, 32))[0].shape == (3, 32, 32)


# --- Cityscapes / VOC / CamVid layouts --------------------------------------------------------
def test_cityscapes_labelids_and_trainids(tmp_path):
    hw = (8, 12)
    ids = np.zeros(hw, np.uint8)
    ids[:2], ids[2:4], ids[4:6, :6], ids[4:6, 6:], ids[6:] = 7, 26, 24, 33, 0
    for split, city, stem in [("val", "aachen", "aachen_000000_000019"),
                              ("val", "bonn", "bonn_000001_000019")]:
        _save(tmp_path / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _rgb(*hw))
        _save(tmp_path / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
    # bonn also has trainIds, which must be preferred over labelIds
    _save(tmp_path / "gtFine/val/bonn/bonn_000001_000019_gtFine_labelTrainIds.png",
          np.full(hw, 5, np.uint8))
    ds = build_dataset("cityscapes", root=tmp_path, split="val", train=False)
    assert [s.name for s in ds.samples] == ["aachen_000000_000019", "bonn_000001_000019"]
    _, mask, meta = ds[0]
    assert meta["orig_hw"] == hw and mask.shape == (32, 32)
    assert mask[0, 0] == 0 and mask[2, 0] == 13 and mask[4, 0] == 11 and mask[4, 11] == 18
    assert mask[7, 0] == 255 and (mask[8:] == 255).all()
    _, mask2, _ = ds[1]
    assert (mask2[:8, :12] == 5).all()


def test_voc_palette_png_and_aug_list(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    lbl = np.zeros((10, 14), np.uint8)
    lbl[2:8, 3:10], lbl[1, :], lbl[:, 2] = 15, 255, 255  # person with a void border
    for name in ("2007_000032", "2007_000033"):
        img = Image.fromarray(_rgb(10, 14))
        (base / "JPEGImages").mkdir(parents=True, exist_ok=True)
        img.save(base / "JPEGImages" / f"{name}.jpg")
        _save(base / "SegmentationClass" / f"{name}.png", lbl, palette=voc_palette())
    sets = base / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "val.txt").write_text("2007_000032\n")
    (sets / "train.txt").write_text("2007_000033\n")
    assert Image.open(base / "SegmentationClass/2007_000032.png").mode == "P"
    ds = build_dataset("voc", root=tmp_path / "VOCdevkit", split="val", train=False)
    _, mask, _ = ds[0]
    assert torch.equal(mask[:10, :14], torch.from_numpy(lbl).long())
    # SBD "aug" list: used for split "train" when present; "train_noaug" forces the original
    _save(base / "SegmentationClassAug/2007_000032.png", np.full((10, 14), 3, np.uint8))
    (sets / "train_aug.txt").write_text(  # SBD lists may hold "image label" path pairs
        "/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n")
    ds = build_dataset("voc", root=base, split="train", train=False)
    assert (ds[0][1][:10, :14] == 3).all() and "train_aug" in ds.listing.note
    ds = build_dataset("voc", root=base, split="train_noaug", train=False)
    assert ds.samples[0].name == "2007_000033"


def test_camvid_segnet_layout(tmp_path):
    lbl = np.array([[0, 10, 11, 3]] * 4, np.uint8)
    _save(tmp_path / "val" / "a.png", _rgb(4, 4))
    _save(tmp_path / "valannot" / "a.png", lbl)
    _, mask, meta = build_dataset("camvid", root=tmp_path, split="val", train=False)[0]
    assert mask[0, :4].tolist() == [0, 10, 255, 3] and meta["name"] == "a"
    pal = np.array(DATASETS["camvid"].palette + [(0, 0, 0)], np.uint8)  # colour-coded labels
    _save(tmp_path / "valannot" / "a.png", pal[np.minimum(lbl, 11)])
    _, mask, _ = build_dataset("camvid", root=tmp_path, split="val", train=False)[0]
    assert mask[0, :4].tolist() == [0, 10, 255, 3]


def test_camvid_shared():
    if not (CAMVID / "train" / "images").is_dir():
        pytest.skip(f"CamVid not found at {CAMVID}")
    tr = build_dataset("camvid", split="train", train=True, crop_hw=(224, 320))
    va = build_dataset("camvid", split="val", train=False)
    assert len(tr) == 367 and len(va) == 101
    allowed = set(range(11)) | {255}
    for ds, shape, hw in [(tr, (224, 320), (224, 320)), (va, (384, 480), (360, 480))]:
        for i in (0, len(ds) - 1):
            x, y, meta = ds[i]
            assert x.shape == (3, *shape) and x.dtype == torch.float32
            assert y.shape == shape and y.dtype == torch.int64 and meta["orig_hw"] == hw
            assert set(y.unique().tolist()) <= allowed
    raw = np.array(Image.open(va.samples[0].label))
    mapped = va.load_raw(0)[1]
    assert ((raw == 11) == (mapped == 255)).all() and (raw[raw < 11] == mapped[raw < 11]).all()
    small = build_dataset("camvid", split="val", train=False, resize_hw=(240, 320), limit=3)
    x, _, meta = small[0]
    assert len(small) == 3 and x.shape == (3, 256, 320) and meta["orig_hw"] == (240, 320)


# --- eval padding / augmentation alignment ----------------------------------------------------
def test_eval_padding_and_orig_hw(tmp_path):
    make_camvid(tmp_path, n=1, hw=(50, 70), split="val")
    ds = build_dataset("camvid", root=tmp_path, split="val", train=False)
    x, y, meta = ds[0]
    img, lbl, _ = ds.load_raw(0)
    assert meta["orig_hw"] == (50, 70) and x.shape == (3, 64, 96) and y.shape == (64, 96)
    assert (x[:, 50:] == 0).all() and (x[:, :, 70:] == 0).all()
    assert (y[50:] == 255).all() and (y[:, 70:] == 255).all()
    assert torch.equal(denormalize(x[:, :50, :70]), torch.from_numpy(img).permute(2, 0, 1))
    assert torch.equal(y[:50, :70], torch.from_numpy(lbl).long())


COLORS = np.array([(230, 30, 30), (30, 230, 30), (30, 30, 230), (230, 230, 30), (30, 230, 230),
                   (230, 30, 230)], np.uint8)


def test_augmentation_keeps_alignment(tmp_path):
    rng = np.random.default_rng(1)
    cls = np.repeat(np.repeat(rng.integers(0, 6, (6, 8)), 16, 0), 16, 1)  # 96x128, 16-px blocks
    _save(tmp_path / "train/images/p.png", COLORS[cls])
    _save(tmp_path / "train/labels/p.png", cls)
    ds = build_dataset("camvid", root=tmp_path, split="train", train=True, crop_hw=(64, 96),
                       normalization="imagenet_rgb")
    palette = torch.from_numpy(np.concatenate([COLORS, [[0, 0, 0]]])).float()
    for seed in range(8):
        torch.manual_seed(seed)
        x, y, _ = ds[0]
        assert x.shape == (3, 64, 96) and set(y.unique().tolist()) <= set(range(6)) | {255}
        rgb = denormalize(x, "imagenet_rgb").permute(1, 2, 0).float()
        pred = torch.cdist(rgb.reshape(-1, 3), palette).argmin(1).reshape(y.shape)
        pred[pred == 6] = 255  # black = centred crop padding (image 0, mask 255)
        # interior: pixels whose 5x5 neighbourhood has one label (skip bilinear edges)
        yp = torch.nn.functional.pad(y[None, None].float(), (2, 2, 2, 2), mode="replicate")
        win = yp.unfold(2, 5, 1).unfold(3, 5, 1)[0, 0]
        interior = (win.amax((-1, -2)) == win.amin((-1, -2)))
        agree = (pred == y)[interior].float().mean().item()
        assert agree > 0.99, f"seed {seed}: agreement {agree:.4f}"
        assert (rgb[y == 255] == 0).all()  # padding is black in raw pixel space


def test_train_without_crop_pads_to_32(tmp_path):
    make_camvid(tmp_path, n=1, hw=(40, 60))
    ds = build_dataset("camvid", root=tmp_path, split="train", train=True, scale_range=(2.0, 2.0))
    x, y, meta = ds[0]
    assert meta["orig_hw"] == (80, 120) and x.shape == (3, 96, 128)


# --- synthetic --------------------------------------------------------------------------------
def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_deterministic(tmp_path):
    counts = {"train": 3, "val": 1}
    a = generate_synthetic(tmp_path / "a", seed=0, counts=counts)
    b = generate_synthetic(tmp_path / "b", seed=0, counts=counts)
    c = generate_synthetic(tmp_path / "c", seed=1, counts=counts)
    assert _digest(a) == _digest(b) != _digest(c)


def test_synthetic_ensure_atomic_and_loadable(tmp_path):
    root = tmp_path / "synthetic"
    t0 = time.perf_counter()
    ensure_synthetic(root, counts={"train": 4, "val": 2})
    assert (root / "meta.json").is_file() and sorted(os.listdir(tmp_path)) == ["synthetic"]
    stamp = (root / "meta.json").stat().st_mtime_ns
    ensure_synthetic(root, counts={"train": 4, "val": 2})  # present: not regenerated
    assert (root / "meta.json").stat().st_mtime_ns == stamp
    assert time.perf_counter() - t0 < 10
    ds = build_dataset("synthetic", root=root, split="val", train=False)
    x, y, meta = ds[0]
    assert len(ds) == 2 and x.shape == (3, 128, 256) and meta["orig_hw"] == (128, 256)
    assert set(y.unique().tolist()) <= set(range(7))


def test_synthetic_scale_variation():
    areas = []
    for i in range(48):
        _, lbl, inst, classes = render_scene(scene_rng(0, "train", i))
        counts = np.bincount(inst.ravel(), minlength=len(classes) + 1)
        areas += [counts[k] / inst.size for k, c in classes.items()
                  if counts[k] > 0 and c in (BUILDING, POLE, PEDESTRIAN, CAR)]
        assert lbl.shape == (128, 256) and lbl.max() < 7
    assert min(areas) < 0.001 and max(areas) > 0.2, (min(areas), max(areas))


# --- bad input through the CLI / library ------------------------------------------------------
def test_cli_check_ok_and_unknown_name(tmp_path):
    make_camvid(tmp_path)
    rc, out, err = run_cli("check", "camvid", "--root", str(tmp_path))
    assert rc == 0 and "2 image/label pairs" in out and "Sidewalk" in out and err == ""
    rc, _, err = run_cli("check", "kitti", "--root", str(tmp_path))
    assert rc != 0 and "kitti" in _error_line(err) and "camvid" in err


def test_cli_missing_and_empty_root(tmp_path):
    rc, _, err = run_cli("check", "camvid", "--root", str(tmp_path / "nope"))
    assert rc != 0 and "nope" in _error_line(err) and "does not exist" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = run_cli("check", "cityscapes", "--root", str(tmp_path / "empty"))
    assert rc != 0 and "empty" in _error_line(err)


def _broken(tmp_path: Path, case: str) -> str:
    """Make a 2-pair CamVid set with one defect; returns the file name the error must name."""
    make_camvid(tmp_path)
    img, lbl = tmp_path / "train/images/f1.png", tmp_path / "train/labels/f1.png"
    if case == "no_label":
        lbl.unlink()
        return "f1.png"
    if case == "corrupt":
        img.write_bytes(b"this is not an image at all")
    elif case == "truncated":
        Image.fromarray(_rgb(64, 64)).save(img.with_suffix(".jpg"), quality=90)
        img.unlink()
        data = img.with_suffix(".jpg").read_bytes()
        img.with_suffix(".jpg").write_bytes(data[: len(data) // 2])
        return "f1.jpg"
    elif case == "size":
        _save(lbl, np.zeros((21, 30), np.uint8))
    elif case == "values":
        _save(lbl, np.full((20, 30), 40, np.uint8))
    return "f1.png"


@pytest.mark.parametrize("case,problem", [("no_label", "without label"), ("corrupt", "cannot read"),
                                          ("truncated", "cannot read"), ("size", "differs"),
                                          ("values", "outside the class range")])
def test_cli_bad_files(tmp_path, case, problem):
    fname = _broken(tmp_path, case)
    rc, _, err = run_cli("check", "camvid", "--root", str(tmp_path))
    line = _error_line(err)
    assert rc != 0 and fname in line and problem in line


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_grayscale_rgba_converted_with_warning(tmp_path, mode):
    make_camvid(tmp_path)
    Image.fromarray(_rgb(20, 30)).convert(mode).save(tmp_path / "train/images/f0.png")
    rc, out, err = run_cli("check", "camvid", "--root", str(tmp_path))
    assert rc == 0 and "2 image/label pairs" in out
    assert err.count("\n") == 1 and err.startswith("warning: ") and "f0.png" in err
    ds = build_dataset("camvid", root=tmp_path, split="train", train=False)
    with pytest.warns(UserWarning, match="f0.png"):
        x, _, _ = ds[0]
    assert x.shape == (3, 32, 32)


def test_dataset_raises_dataerror_at_load(tmp_path):
    _broken(tmp_path, "corrupt")
    ds = build_dataset("camvid", root=tmp_path, split="train", train=True, crop_hw=(32, 32))
    ds[0]
    with pytest.raises(DataError, match="f1.png"):
        ds[1]
    with pytest.raises(DataError, match="f1.png.*without label"):
        _broken(tmp_path / "x", "no_label")
        build_dataset("camvid", root=tmp_path / "x")


def test_cli_subprocess_one_line_no_traceback(tmp_path):
    _broken(tmp_path, "values")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args, must in ((["check", "camvid", "--root", str(tmp_path)], "f1.png"),
                       (["check", "kitti"], "kitti")):
        p = subprocess.run([sys.executable, "-m", "dynroute_lib.data", *args], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1 and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and must in p.stderr, p.stderr
