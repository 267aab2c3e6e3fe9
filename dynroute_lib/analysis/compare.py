"""Side-by-side summary of trained runs (issue 5 CPU comparison, beyond the paper): mIoU, FLOPs, params, wall time.

``python -m dynroute_lib compare RUNS_DIR --out results/camvid_cpu`` reads every ``RUNS_DIR/<name>/train.json``
(written by ``python -m dynroute_lib train ... --eval``) and writes ``comparison.csv`` + ``run.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from .. import io
from ..config import ModelConfig
from ..model import build_model


def summarise(runs: Path) -> pd.DataFrame:
    rows = []
    for tj in sorted(runs.glob("*/train.json")):
        rec = json.loads(tj.read_text())
        ev = rec.get("eval") or {}
        cfg = ModelConfig.from_dict(rec["model_config"])
        net = build_model(cfg)
        tcfg = rec["train_config"]
        rows.append({
            "model": cfg.name, "data": tcfg["data"], "train_resolution": "x".join(map(str, tcfg["crop_hw"])),
            "eval_resolution": "x".join(map(str, tcfg["resize_hw"] or ["native"])), "batch": tcfg["batch"],
            "iters": rec["iters"], "train_wall_min": round(rec["train_wall_s"] / 60, 1),
            "train_cpu_min": round(rec.get("train_cpu_s", float("nan")) / 60, 1),
            "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
            "miou_pct": round(ev.get("miou_pct", float("nan")), 2),
            "pixel_acc_pct": round(ev.get("pixel_acc_pct", float("nan")), 2),
            "real_gflops_mean": ev.get("mean_real_gflops"), "real_gflops_max": ev.get("max_real_gflops"),
            "real_gflops_min": ev.get("min_real_gflops"), "true_gmacs_mean": ev.get("mean_true_gmacs"),
            "eval_images": ev.get("num_images"), "device": rec.get("device_name"), "git_sha": rec.get("git_sha"),
        })
    if not rows:
        raise ValueError(f"no */train.json under {runs}")
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib compare")
    ap.add_argument("runs")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        df = summarise(Path(a.runs))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    io.save_csv(out / "comparison.csv", df)
    runs = {p.parent.name: json.loads(p.read_text()) for p in sorted(Path(a.runs).glob("*/train.json"))}
    record = io.provenance({"command": io.command_line("dynroute_lib compare", argv), "runs": runs})
    io.save_json(out / "run.json", record)
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
