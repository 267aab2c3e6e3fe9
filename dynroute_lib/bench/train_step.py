"""Train-step time of Dynamic-Raw vs Network-Fix on this machine, measured side by side (paper Sec. 4.1; issue 5).

``python -m dynroute_lib bench train-step [--size H W] [--batch N] [--repeats R] [--json]`` alternates one training
step of each model (SGD step included) for R rounds after warm-up and prints median seconds per step and
the Raw / Fix ratio. Results go to ``results/bench/train_step.*``.
Raw pays for the gates (~2.5 M params, ~17 GFLOPs at 1024x2048) and computes every path in training.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from .. import io
from ..config import get_preset
from ..engine.optim import build_optimizer
from ..engine.schedule import budget_weight_at
from ..model import build_model
from ..paths import RESULTS_DIR


def _step(net, opt, x, y):
    logits, aux = net(x)
    loss = net.loss(logits, y, aux, budget_weight_at(0.5))["loss"]      # halfway: the budget term is on
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench(presets=("dynamic_raw_l16", "fix_l16"), size=(224, 320), batch=8, repeats=5, warmup=1,
          num_classes=11) -> pd.DataFrame:
    torch.manual_seed(0)
    nets, opts = {}, {}
    for p in presets:
        nets[p] = build_model(get_preset(p, num_classes=num_classes)).train().to(memory_format=torch.channels_last)
        opts[p] = build_optimizer(nets[p], {"base_lr": 1e-4})
    x = (torch.randn(batch, 3, *size) * 50).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch, *size))
    times = {p: [] for p in presets}
    for r in range(warmup + repeats):
        for p in presets:                      # interleaved: machine noise hits both models alike
            t = time.perf_counter()
            _step(nets[p], opts[p], x, y)
            if r >= warmup:
                times[p].append(time.perf_counter() - t)
    rows = [{"model": p, "height": size[0], "width": size[1], "batch": batch, "repeats": repeats,
             "median_step_s": statistics.median(times[p]), "min_step_s": min(times[p]),
             "params_m": sum(q.numel() for q in nets[p].parameters()) / 1e6} for p in presets]
    df = pd.DataFrame(rows)
    df["ratio_to_first"] = df["median_step_s"] / df["median_step_s"].iloc[0]
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib bench train-step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(224, 320), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench"), help="directory for train_step.csv/json")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with io.Timer() as t:
        df = bench(size=tuple(a.size), batch=a.batch, repeats=a.repeats)
    raw, fix = df["median_step_s"].tolist()
    summary = {"raw_over_fix_step_time": raw / fix, "rows": df.to_dict("records")}
    io.save_csv(Path(a.out) / "train_step.csv", df)
    io.save_json(Path(a.out) / "train_step.json",
                 {**summary, "provenance": io.provenance({
                     "command": io.command_line("dynroute_lib bench train-step", argv),
                     "torch_threads": torch.get_num_threads(), "wall_s": t.wall_s})})
    print(df.to_json(orient="records") if a.json else df.to_string(index=False))
    print(f"Raw / Fix train-step time: {raw / fix:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
