"""Evaluation: mIoU / per-class IoU / pixel accuracy and per-image FLOPs and gates (paper Sec. 4; spec 4.5, 5.6).

Batch 1 per image (the paper's protocol), single scale by default, optional flip + multi-scale. Per image:
official real FLOPs (spec Sec. 4.5), executed FLOPs of the sparse engine, true MACs actually executed
(FlopCounterMode around the forward), expected FLOPs and every gate value. Records are saved for Fig. 5
and the inspector (``records.npz`` + ``per_image.csv``).

CLI: ``python -m dynroute_lib evaluate CKPT --data NAME [--data-root DIR] [--split S] [--json]``; CKPT may be
one of ours (config inside) or an official DynamicRouting checkpoint (then ``--preset`` picks the model; both
loaded by ``engine.checkpoint.load_any``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from .. import io
from ..data import DATASETS, build_dataset, pad_to_multiple
from .checkpoint import load_any
from .dist import pick_device
from .metrics import FlopsStats, StreamSegMetrics


def _forward(net, image: torch.Tensor, true_macs: bool):
    if not true_macs:
        return net(image) + (float("nan"),)
    with FlopCounterMode(display=False) as fc:
        logits, aux = net(image)
    return logits, aux, fc.get_total_flops() / 2e9


@torch.inference_mode()
def predict(net, image: torch.Tensor, orig_hw: tuple[int, int], *, scales=(1.0,), flip: bool = False,
            true_macs: bool = False):
    """Logits [1, K, h, w] at the unpadded size, summed over scales (and flips), plus per-pass FLOPs."""
    h, w = orig_hw
    img = image[..., :h, :w]
    total, stats = None, {"real": 0.0, "exec": 0.0, "expected": 0.0, "macs": 0.0}
    gates = None
    for s in scales:
        x = img if s == 1.0 else F.interpolate(img, scale_factor=s, mode="bilinear", align_corners=False)
        x, _ = pad_to_multiple(x[0])
        for flipped in ((False, True) if flip else (False,)):
            xi = x.flip(-1) if flipped else x
            logits, aux, macs = _forward(net, xi[None], true_macs)
            logits = logits.flip(-1) if flipped else logits
            sh, sw = round(h * s), round(w * s)
            logits = F.interpolate(logits[..., :sh, :sw].float(), size=(h, w), mode="bilinear", align_corners=False)
            prob = logits.softmax(1) if len(scales) > 1 or flip else logits
            total = prob if total is None else total + prob
            stats["real"] += aux.real_gflops.item()
            stats["exec"] += aux.exec_gflops.item()
            stats["expected"] += aux.expected_gflops.item()
            stats["macs"] += macs
            if gates is None:                         # the gates of the plain single-scale pass
                gates = {k: v[0].float().cpu().numpy() for k, v in aux.gates.items()}
    return total, stats, gates


def evaluate_model(net, dataset, *, device="cpu", scales=(1.0,), flip=False, limit=None, true_macs=True,
                   records_dir: Path | None = None) -> dict:
    net.eval()
    info = dataset.info
    metrics = StreamSegMetrics(info.num_classes, info.ignore_index)
    fl = {k: FlopsStats() for k in ("real", "exec", "expected", "macs")}
    rows, gate_records = [], []
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in range(n):
        image, mask, meta = dataset[i]
        h, w = meta["orig_hw"]
        logits, stats, gates = predict(net, image[None].to(device), (h, w), scales=scales, flip=flip,
                                       true_macs=true_macs)
        pred = logits.argmax(1)[0].cpu()
        metrics.update(pred, mask[:h, :w])
        for k, v in stats.items():
            fl[k].update(v)
        rows.append({"image": meta.get("name", str(i)), **{f"{k}_gflops": v for k, v in stats.items()}})
        gate_records.append(gates)
    res = metrics.results()
    out = {"num_images": n, "miou_pct": res["miou_pct"], "pixel_acc_pct": res["pixel_acc_pct"],
           "mean_acc_pct": res["mean_acc_pct"], "fwiou_pct": res["fwiou_pct"],
           "per_class_iou_pct": dict(zip(info.class_names, res["per_class_iou_pct"])),
           "scales": list(scales), "flip": flip}
    for k, name in (("real", "real_gflops"), ("exec", "exec_gflops"), ("expected", "expected_gflops"),
                    ("macs", "true_gmacs")):
        r = fl[k].results()
        out.update({f"mean_{name}": r["mean"], f"max_{name}": r["max"], f"min_{name}": r["min"]})
    if records_dir is not None:
        save_records(Path(records_dir), rows, gate_records)
    return out


def save_records(out_dir: Path, rows: list[dict], gate_records: list[dict]) -> None:
    """per_image.csv (FLOPs per image) and records.npz (gate arrays [num_images, n_paths] per node)."""
    io.save_csv(out_dir / "per_image.csv", pd.DataFrame(rows))
    if gate_records and gate_records[0]:
        arrays = {k: np.stack([g[k] for g in gate_records]) for k in gate_records[0]}
        arrays["image"] = np.array([r["image"] for r in rows])
        tmp = out_dir / ".records.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        tmp.replace(out_dir / "records.npz")


def evaluate_checkpoint(ckpt, *, data: str, data_root=None, split="val", preset=None, resize_hw=None,
                        limit=None, scales=(1.0,), flip=False, true_macs=True, device="auto",
                        records_dir: Path | None = None) -> dict:
    dev = pick_device(device)
    net, cfg, msgs = load_any(ckpt, preset)
    for m in msgs:
        print(m, file=sys.stderr)
    if cfg.num_classes != DATASETS[data].num_classes:
        raise ValueError(f"{ckpt}: model has {cfg.num_classes} classes, data set {data!r} has "
                         f"{DATASETS[data].num_classes}")
    ds = build_dataset(data, data_root, split, train=False, normalization=cfg.normalization,
                       resize_hw=tuple(resize_hw) if resize_hw else None)
    res = evaluate_model(net.to(dev), ds, device=dev, scales=scales, flip=flip, limit=limit,
                         true_macs=true_macs, records_dir=records_dir)
    return {"checkpoint": str(ckpt), "preset": cfg.name, "data": data, "split": split, **res}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib evaluate", description="Evaluate a checkpoint.")
    ap.add_argument("checkpoint")
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default="val")
    ap.add_argument("--preset", help="model preset for official / bare checkpoints")
    ap.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"), help="evaluate at this resolution")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0], help="multi-scale test, e.g. 0.75 1 1.25")
    ap.add_argument("--flip", action="store_true")
    ap.add_argument("--no-true-macs", action="store_true", help="skip counting executed MACs per image")
    ap.add_argument("--out", help="directory for metrics.json, per_image.csv, records.npz")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = ap.parse_args(argv)
    try:
        res = evaluate_checkpoint(a.checkpoint, data=a.data, data_root=a.data_root, split=a.split,
                                  preset=a.preset, resize_hw=a.resize, limit=a.limit, scales=tuple(a.scales),
                                  flip=a.flip, true_macs=not a.no_true_macs, device=a.device,
                                  records_dir=Path(a.out) if a.out else None)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.out:
        record = io.provenance({"command": io.command_line("dynroute_lib evaluate", argv)})
        io.save_json(Path(a.out) / "metrics.json", {**res, "provenance": record})
    if a.json:
        print(json.dumps(res))
    else:
        print(summary_line(res))
    return 0


def summary_line(res: dict) -> str:
    """One line of an evaluation result: mIoU, pixel accuracy, images, per-image GFLOPs and true GMACs."""
    macs = res.get("mean_true_gmacs")
    return (f"mIoU {res['miou_pct']:.2f} %  pixAcc {res['pixel_acc_pct']:.2f} %  images {res['num_images']}  "
            f"GFLOPs per image (official) mean/max/min {res['mean_real_gflops']:.3f}/{res['max_real_gflops']:.3f}/"
            f"{res['min_real_gflops']:.3f}" + (f"  true GMACs mean {macs:.3f}" if macs is not None else ""))


if __name__ == "__main__":
    sys.exit(main())
