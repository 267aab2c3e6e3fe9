"""Train-step time of Dynamic-Raw vs Network-Fix on this machine, measured side by side (paper Sec. 4.1; issue 5).

``python -m dynroute_lib bench train-step [--size H W] [--batch N] [--repeats R] [--json]`` alternates one training
step of each model (SGD step included) for R rounds after warm-up and prints median seconds per step and
the Raw / Fix ratio. Results go to ``results/bench/train_step.*``.

``--compile`` times each model eager and under ``torch.compile`` side by side instead (the CPU reproduction's
question whether compiling pays, issue 13): median step of each, the compiled / eager ratio and the one-off
compile time, into ``results/bench/train_step_compile.*``. ``--base-channels 16 --size 128 160`` is the
``repro`` profile's model and crop.
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


def _step(net, fwd, opt, x, y):
    logits, aux = fwd(x)
    loss = net.loss(logits, y, aux, budget_weight_at(0.5))["loss"]      # halfway: the budget term is on
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench(presets=("dynamic_raw_l16", "fix_l16"), size=(224, 320), batch=8, repeats=5, warmup=1,
          num_classes=11, base_channels: int | None = None, compile_: bool = False) -> pd.DataFrame:
    """Median step time per variant, all variants interleaved (machine noise hits them alike).

    Variants are the presets (eager), or with ``compile_`` each preset eager and compiled; the compiled
    variant's first step (the compile) is reported as ``first_step_s`` and never timed as a step.
    """
    torch.manual_seed(0)
    over = {"num_classes": num_classes, **({"base_channels": base_channels} if base_channels else {})}
    variants = {}
    for p in presets:
        for mode in (("eager", "compiled") if compile_ else ("eager",)):
            torch.manual_seed(0)                # the same weights for both modes of a preset
            net = build_model(get_preset(p, **over)).train().to(memory_format=torch.channels_last)
            fwd = torch.compile(net) if mode == "compiled" else net
            variants[(p, mode)] = (net, fwd, build_optimizer(net, {"base_lr": 1e-4}))
    x = (torch.randn(batch, 3, *size) * 50).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch, *size))
    times = {k: [] for k in variants}
    first = {}
    for r in range(warmup + repeats):
        for k, (net, fwd, opt) in variants.items():
            t = time.perf_counter()
            _step(net, fwd, opt, x, y)
            dt = time.perf_counter() - t
            first.setdefault(k, dt)
            if r >= warmup:
                times[k].append(dt)
    rows = [{"model": p, "mode": mode, "height": size[0], "width": size[1], "batch": batch, "repeats": repeats,
             "base_channels": net.cfg.base_channels, "median_step_s": statistics.median(times[(p, mode)]),
             "min_step_s": min(times[(p, mode)]), "first_step_s": first[(p, mode)],
             "params_m": sum(q.numel() for q in net.parameters()) / 1e6}
            for (p, mode), (net, _, _) in variants.items()]
    df = pd.DataFrame(rows)
    df["ratio_to_first"] = df["median_step_s"] / df["median_step_s"].iloc[0]
    return df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib bench train-step", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, nargs=2, default=(224, 320), metavar=("H", "W"))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--base-channels", type=int, help="C_0 of both models (default: the preset's 64)")
    ap.add_argument("--compile", action="store_true", help="each model eager vs torch.compile (compile time too)")
    ap.add_argument("--out", default=str(RESULTS_DIR / "bench"), help="directory for train_step[_compile].csv/json")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with io.Timer() as t:
        df = bench(size=tuple(a.size), batch=a.batch, repeats=a.repeats, base_channels=a.base_channels,
                   compile_=a.compile)
    if a.compile:
        med = df.set_index(["model", "mode"])["median_step_s"]
        ratios = {m: med[(m, "compiled")] / med[(m, "eager")] for m in df["model"].unique()}
        summary, stem = {"compiled_over_eager_step_time": ratios}, "train_step_compile"
        lines = [f"{m}: compiled / eager train-step time {r:.3f}" for m, r in ratios.items()]
    else:
        raw, fix = df["median_step_s"].tolist()
        summary, stem = {"raw_over_fix_step_time": raw / fix}, "train_step"
        lines = [f"Raw / Fix train-step time: {raw / fix:.3f}"]
    io.save_csv(Path(a.out) / f"{stem}.csv", df)
    io.save_json(Path(a.out) / f"{stem}.json",
                 {**summary, "rows": df.to_dict("records"), "provenance": io.provenance({
                     "command": io.command_line("dynroute_lib bench train-step", argv),
                     "torch_threads": torch.get_num_threads(), "wall_s": t.wall_s})})
    print(df.to_json(orient="records") if a.json else df.to_string(index=False))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
