"""Equal-CPU-time comparison against torchvision LR-ASPP MobileNetV3 from scratch (issue 13 item 6; beyond the
paper, whose Table 5 compares with mobile models at Cityscapes scale).

``python -m dynroute_lib equal-time [--row dynamic_raw_l16_s0] [--baseline lraspp_mbv3] [--commit-results]``
(``equal_time_cmd``) takes a finished row of the CPU reproduction (``results/repro/runs/<row>.json``), sums the wall time of its
training from its ``train_log.csv`` (the ``wall_s`` column restarts at each resume and at a trunk branch, so the
segment ends are added up), and trains the baseline with the same ``repro`` recipe (crops, batch, LR schedule,
val curve) under that much *process CPU time* (``TrainConfig.cpu_budget_min``: the schedule is fitted to it).
A 1-thread row's wall time is at least its CPU time, so the baseline gets at least as much compute.
The baseline's run directory is resumable. Both are evaluated on the same val images at the same size, and
``camvid_equal_time/comparison.csv`` + ``run.json`` put mIoU and real GFLOPs side by side.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import io
from .wall_time import train_wall_s

PROFILE = "repro"


def _row(model: str, ev: dict, wall_s: float, cpu_s: float | None, iters: int) -> dict:
    return {"model": model, "miou_pct": ev["miou_pct"], "pixel_acc_pct": ev["pixel_acc_pct"],
            "real_gflops_mean": ev["mean_real_gflops"], "real_gflops_max": ev["max_real_gflops"],
            "real_gflops_min": ev["min_real_gflops"], "true_gmacs_mean": ev.get("mean_true_gmacs"),
            "iters": iters, "train_wall_min": wall_s / 60, "train_cpu_min": None if cpu_s is None else cpu_s / 60,
            "eval_images": ev["num_images"], "resolution": "x".join(map(str, ev["input_hw"]))}


def compare(row_json: Path, baseline: str, ctx) -> pd.DataFrame:
    """Train (or resume) ``baseline`` for the row's training time and return both rows side by side."""
    from ..engine.train import train
    from .tables import evaluate_run, run_dir_for
    row = json.loads(Path(row_json).read_text())
    src = Path(row["run_dir"])
    budget_s = train_wall_s(src / "train_log.csv")
    mcfg, tcfg = ctx.run_config(baseline, iters=10 ** 6, cpu_budget_min=budget_s / 60)
    out = run_dir_for(mcfg, tcfg, ctx)
    if not (out / "model_final.pt").is_file():
        print(f"[equal-time] {baseline}: {budget_s / 60:.1f} CPU-min (= {row['row']} training wall) -> {out}",
              flush=True)
        summary = train(mcfg, tcfg, out, resume=(out / "last.pt").is_file(), device=ctx.device, progress_bar=False)
        io.save_json(out / "train.json", io.provenance({"model_config": mcfg.to_dict(),
                                                       "train_config": tcfg.to_dict(), **summary}))
    tj = json.loads((out / "train.json").read_text())
    ev_base = evaluate_run(out, ctx)           # same val images, size and FLOPs accounting as the row
    ev_row = evaluate_run(src, ctx)
    rows = [_row(row["preset"], ev_row, budget_s, None, int(row["iters"])),
            _row(baseline, ev_base, train_wall_s(out / "train_log.csv"), tj.get("train_cpu_s"), int(tj["iters"]))]
    return pd.DataFrame(rows).assign(data=tcfg.data, crop="x".join(map(str, tcfg.crop_hw)), batch=tcfg.batch,
                                     budget_cpu_min=budget_s / 60)
