"""Official DynamicRouting checkpoints (issue 10): exact keys, exact forward pass, round trip, clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from dynroute_lib.config import get_preset
from dynroute_lib.data import normalize
from dynroute_lib.model import build_model
from dynroute_lib.model.official import (CheckpointMismatch, load_into, load_official, read_state_dict,
                                         save_official, to_official)

MEAN_BGR = np.array([103.530, 116.280, 123.675], dtype=np.float32)


@pytest.fixture(scope="module")
def official(official_dir):
    net = build_model(get_preset("dynamic_raw_l16"))
    assert load_official(net, official_dir / "official_weights.pth") == []
    rgb = np.asarray(Image.open(official_dir / "input.png").convert("RGB"))
    ref = torch.load(official_dir / "official_output.pt", weights_only=True)
    meta = json.loads((official_dir / "official_meta.json").read_text())
    return net.eval(), rgb, ref, meta


def _keys(path):
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line.strip()]
    return {r[0]: tuple(int(v) for v in r[1].strip("()").split(",") if v.strip()) for r in rows}


@pytest.mark.parametrize("preset,tsv", [("dynamic_raw_l16", "state_dict_keys_raw_l16.tsv"),
                                        ("fix_l16", "state_dict_keys_fix_l16.tsv")])
def test_state_dict_layout_matches_official(official_dir, preset, tsv):
    with torch.device("meta"):
        net = build_model(get_preset(preset))
    ours = {k: tuple(v.shape) for k, v in to_official(net.state_dict()).items()}
    assert ours == _keys(official_dir / tsv)


def test_official_input_convention_through_data_layer(official_dir):
    rgb = np.asarray(Image.open(official_dir / "input.png").convert("RGB"))
    manual = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].astype(np.float32) - MEAN_BGR)).permute(2, 0, 1)
    ours = normalize(torch.from_numpy(rgb.copy()).permute(2, 0, 1), "official_bgr")
    torch.testing.assert_close(ours, manual, rtol=0, atol=1e-4)


@pytest.mark.parametrize("executor", ["sparse", "dense"])
def test_reproduces_official_forward(official, executor):
    net, rgb, ref, meta = official
    net.executor = executor
    x = normalize(torch.from_numpy(rgb.copy()).permute(2, 0, 1), "official_bgr")[None]
    with torch.no_grad():
        logits, aux = net(x)
    r = ref["logits"].float()
    err = (logits[0] - r).abs()
    # The reference is stored as float16: allow 1e-3 plus half a float16 ulp of the reference value.
    half_ulp = torch.where(r.abs() >= 6.1e-5, 2.0 ** (torch.floor(torch.log2(r.abs().clamp_min(6.1e-5))) - 11), 0)
    assert (err <= 1e-3 + half_ulp).all(), f"max err {err.max():.5f}"
    assert err[r.abs() < 2].max() < 1e-3                        # where fp16 spacing is < 2e-3
    agree = (logits[0].argmax(0) == ref["pred"].long()).float().mean().item()
    assert agree >= 0.9999
    for g in meta["gates"]:
        ours = aux.gates[f"l{g['layer']}_s{max(g['scale'], 0)}"][0]
        assert torch.allclose(ours, torch.tensor(g["gate"]), atol=1e-4), g
    assert abs(aux.real_gflops.item() - meta["real_gflops"]) / meta["real_gflops"] < 0.005
    assert abs(aux.expected_gflops.item() - meta["expected_gflops"]) / meta["expected_gflops"] < 0.005
    for layer, scale, idx in meta["closed_gates_layer_scale_index"]:
        assert aux.gates[f"l{layer}_s{scale}"][0, idx] == 0


def test_round_trip_official_layout(official, tmp_path):
    net = official[0]
    path = save_official(net, tmp_path / "ours_as_official.pth")
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model"} and any("cell_ops._ops.0.op" in k for k in raw["model"])
    fresh = build_model(get_preset("dynamic_raw_l16"))
    load_official(fresh, path)
    for k, v in net.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k


def test_mismatch_is_a_clear_error(official_dir):
    sd = read_state_dict(official_dir / "official_weights.pth")
    net = build_model(get_preset("dynamic_raw_l16", num_classes=11))
    with pytest.raises(CheckpointMismatch, match=r"shape mismatch.*sem_seg_head\.predictor\.weight"):
        load_into(net, sd)
    broken = {k: v for k, v in sd.items() if "all_cell_list.3.2.res_up" not in k}
    broken["backbone.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch, match=r"missing.*all_cell_list\.3\.2\.res_up.*unexpected.*backbone\.extra"):
        load_into(build_model(get_preset("dynamic_raw_l16")), broken)
    with pytest.raises(CheckpointMismatch):            # gated weights into the gate-less Fix model
        load_into(build_model(get_preset("fix_l16")), sd)


def test_classification_checkpoint_loads_backbone_only(official_dir):
    sd = {k: v for k, v in read_state_dict(official_dir / "official_weights.pth").items()
          if not k.startswith("sem_seg_head.")}
    sd["fc.weight"] = torch.zeros(1000, 512)              # ImageNet classifier head
    net = build_model(get_preset("dynamic_raw_l16", num_classes=11))
    head_before = net.sem_seg_head.predictor.weight.clone()
    msgs = load_into(net, sd)
    assert msgs and "backbone only" in msgs[0]
    assert torch.equal(net.sem_seg_head.predictor.weight, head_before)
    assert torch.equal(net.backbone.stem.stem_1.weight, sd["backbone.stem.stem_1.weight"])


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.pth"):
        read_state_dict(bad)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        read_state_dict(tmp_path / "missing.pth")


def test_evaluate_cli_on_official_checkpoint(official_dir, tmp_path):
    """`python -m dynroute_lib evaluate official.pth --preset ...` on a tiny Cityscapes-layout data set."""
    root = tmp_path / "cityscapes"
    img_dir, lbl_dir = root / "leftImg8bit/val/aachen", root / "gtFine/val/aachen"
    img_dir.mkdir(parents=True)
    lbl_dir.mkdir(parents=True)
    rgb = np.asarray(Image.open(official_dir / "input.png").convert("RGB"))[:128, :192]
    Image.fromarray(rgb).save(img_dir / "aachen_000000_000019_leftImg8bit.png")
    label = np.full(rgb.shape[:2], 7, np.uint8)            # labelId 7 = road
    label[:40] = 23                                        # sky
    Image.fromarray(label).save(lbl_dir / "aachen_000000_000019_gtFine_labelIds.png")
    cmd = [sys.executable, "-m", "dynroute_lib", "evaluate", str(official_dir / "official_weights.pth"),
           "--preset", "dynamic_raw_l16", "--data", "cityscapes", "--data-root", str(root), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["num_images"] == 1 and 0 <= res["miou_pct"] <= 100 and res["mean_real_gflops"] > 0
    bad = subprocess.run(cmd[:4] + ["--data", "cityscapes", "--data-root", str(root)], capture_output=True,
                         text=True, timeout=300)
    assert bad.returncode == 2 and "--preset" in bad.stderr
