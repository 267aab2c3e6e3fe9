"""Input-size robustness of trained checkpoints (beyond the paper; issue 13 diagnosis): mIoU and real cost of each
checkpoint evaluated at several input resolutions.

Why it exists: at the CPU scale a full-resolution gate (Sec. 3.2, Eq. 7: 1x1 conv, BN, ReLU, *global* pooling) sees
maps of 4x5 pixels at stride 32 on a 128x160 training crop, where border pixels dominate the pooled statistic; at
another input size the statistic, and with it every soft gate, shifts. Convolution-only models (Fix) are unaffected.
This command measures that, side by side, on the same images:

``python -m dynroute_lib eval-sizes CKPT [CKPT ...] --data camvid --sizes 144x192 240x320 360x480 --out DIR``
writes ``DIR/eval_sizes.csv`` (one row per checkpoint and size) and ``DIR/run.json`` (provenance).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from .. import io
from ..engine.dist import pick_device
from ..engine.evaluate import evaluate_checkpoint

COLS = ("miou_pct", "pixel_acc_pct", "mean_real_gflops", "max_real_gflops", "min_real_gflops")


def parse_size(text: str) -> tuple[int, int]:
    """``"240x320"`` -> ``(240, 320)``; a clear error naming the bad value otherwise."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--sizes: {text!r} is not HxW (e.g. 240x320)") from None
    if h < 32 or w < 32:
        raise ValueError(f"--sizes: {text!r} is below 32x32 (the network's stride)")
    return h, w


def sweep(checkpoints, sizes, *, data: str, data_root=None, limit=None, device="auto", label=None) -> pd.DataFrame:
    """One row per (checkpoint, size): mIoU, pixel accuracy, per-image real GFLOPs, and the checkpoint's mIoU
    relative to its best size (``miou_vs_best``, points) so a size-sensitive model stands out."""
    io.require_checkpoints(checkpoints)
    rows = []
    for i, ck in enumerate(checkpoints):
        for h, w in sizes:
            res = evaluate_checkpoint(ck, data=data, data_root=data_root, resize_hw=(h, w), limit=limit,
                                      true_macs=False, device=device)
            rows.append({"model": label[i] if label else res["preset"], "checkpoint": str(ck),
                         "eval_hw": f"{h}x{w}", "num_images": res["num_images"], **{c: res[c] for c in COLS}})
            print(f"{rows[-1]['model']} {h}x{w}: mIoU {res['miou_pct']:.2f} %", flush=True)
    df = pd.DataFrame(rows)
    df["miou_vs_best"] = df["miou_pct"] - df.groupby("checkpoint")["miou_pct"].transform("max")
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib eval-sizes", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", required=True)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--sizes", nargs="+", default=["144x192", "240x320", "360x480"], help="HxW input sizes")
    ap.add_argument("--labels", nargs="+", help="one name per checkpoint (default: its preset)")
    ap.add_argument("--limit", type=int, help="first N images only")
    ap.add_argument("--out", required=True, help="directory for eval_sizes.csv and run.json")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    try:
        if a.labels and len(a.labels) != len(a.checkpoints):
            raise ValueError(f"--labels: {len(a.labels)} names for {len(a.checkpoints)} checkpoints")
        df = sweep(a.checkpoints, [parse_size(s) for s in a.sizes], data=a.data, data_root=a.data_root,
                   limit=a.limit, device=a.device, label=a.labels)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    io.save_csv(out / "eval_sizes.csv", df)
    io.save_json(out / "run.json", io.provenance({"command": io.command_line("dynroute_lib eval-sizes", argv)},
                                                device=pick_device(a.device)))
    print(df.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
