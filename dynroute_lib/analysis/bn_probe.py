"""BatchNorm-statistics probe of trained checkpoints (beyond the paper; issue 13 diagnosis of the training recipe,
Sec. 4.1 / spec Sec. 5.4 "Precise BN").

Evaluates each checkpoint on val with three kinds of BN statistics, side by side on the same images:

- ``ema``: the running statistics as trained, what every table reports. Budget rows (Dynamic-A/B/C) end with
  these: the official recipe gives them no precise BN.
- ``precise_N``: running statistics recomputed as cumulative averages over N training batches
  (``engine.precise_bn``), the batches that follow the run's last iteration, as precise BN at the end of training
  would draw them.
- ``batch``: every non-gate BN layer normalises each val image by that image's own statistics. The gates' BN stays
  on its running statistics: it is folded into the gate's first conv (``model.gates.run_gate``), and per-image
  statistics there would shift every gate.

Why: a Dynamic-A run collapsed in eval mode only (session 18: 36 % val mIoU at iteration 4800, 2-5 % after, train
CE unchanged), and an inline probe found its weights fine and its running statistics broken. This command turns
that probe into one that anyone can rerun: a large ``batch`` - ``ema`` gap says the running statistics, not the
weights, are at fault; whether ``precise_N`` closes it says whether precise BN would have repaired them.

``python -m dynroute_lib bn-probe CKPT [CKPT ...] --out DIR [--precise 20 200] [--no-batch]
[--limit N] [--data-root DIR]`` writes ``DIR/bn_probe.csv`` (one row per checkpoint and variant) and
``DIR/run.json`` (provenance).
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import pandas as pd
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .. import io
from ..config import TrainConfig
from ..data.sampling import batch_loader
from ..engine.checkpoint import load_model, read_configs
from ..engine.dist import memory_format, pick_device
from ..engine.evaluate import evaluate_model
from ..engine.precise_bn import images_as, recompute_bn_stats
from ..engine.train import train_dataset
from ..engine.val_curve import val_dataset

COLS = ("miou_pct", "pixel_acc_pct", "mean_real_gflops", "max_real_gflops", "min_real_gflops")


def is_gate_bn(name: str) -> bool:
    """BN layers inside a routing gate (``...gate_conv_beta.0.norm``)."""
    return any(part.startswith("gate") for part in name.split("."))


def use_batch_stats(net: nn.Module) -> int:
    """Switch every non-gate BN layer to per-input batch statistics, in eval mode too; returns how many.

    ``track_running_stats = False`` with the running buffers dropped is how PyTorch's BN normalises by the batch
    at evaluation time. Irreversible: reload the checkpoint afterwards."""
    n = 0
    for name, m in net.named_modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats and not is_gate_bn(name):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
            n += 1
    return n


def probe(ckpt, *, precise=(20, 200), batch=True, limit=None, data_root=None, device="auto",
          label=None) -> list[dict]:
    """Rows (one per variant) of val mIoU and real cost of ``ckpt`` under each kind of BN statistics."""
    dev = pick_device(device)
    mcfg, tc = read_configs(ckpt)
    tcfg = TrainConfig.from_dict({**tc, "data_root": data_root} if data_root is not None else tc)
    val = val_dataset(mcfg, tcfg)
    rows = []

    def evaluate(variant: str, net: nn.Module, **extra) -> None:
        t = time.perf_counter()
        res = evaluate_model(net, val, device=dev, limit=limit, true_macs=False)
        rows.append({"model": label or mcfg.name, "checkpoint": str(ckpt), "variant": variant, **extra,
                     "num_images": res["num_images"], **{c: res[c] for c in COLS},
                     "eval_s": round(time.perf_counter() - t, 1)})
        print(f"{rows[-1]['model']} {variant}: mIoU {res['miou_pct']:.2f} %", flush=True)

    trained = load_model(ckpt, dev)[0]     # each variant changes BN state: it gets its own copy
    evaluate("ema", copy.deepcopy(trained))
    if batch:
        net = copy.deepcopy(trained)
        evaluate("batch", net, bn_layers=use_batch_stats(net))
    if precise:
        ds = train_dataset(mcfg, tcfg)
        fmt = memory_format(tcfg.channels_last)
        for n in precise:
            net = copy.deepcopy(trained).to(memory_format=fmt)
            used = recompute_bn_stats(net, batch_loader(ds, tcfg, tcfg.iters, tcfg.iters + n), n,
                                      to_input=images_as(fmt))
            evaluate(f"precise_{n}", net, train_batches=used)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib bn-probe", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--out", required=True, help="directory for bn_probe.csv and run.json")
    ap.add_argument("--precise", type=int, nargs="*", default=[20, 200],
                    help="precise-BN batch counts to try (none: skip)")
    ap.add_argument("--no-batch", action="store_true", help="skip the per-image batch-statistics variant")
    ap.add_argument("--labels", nargs="+", help="one name per checkpoint (default: its preset)")
    ap.add_argument("--limit", type=int, help="first N val images only")
    ap.add_argument("--data-root", help="data root instead of the one the checkpoint was trained on")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    try:
        io.require_checkpoints(a.checkpoints)
        if a.labels and len(a.labels) != len(a.checkpoints):
            raise ValueError(f"--labels: {len(a.labels)} names for {len(a.checkpoints)} checkpoints")
        bad = [n for n in a.precise if n <= 0]
        if bad:
            raise ValueError(f"--precise: batch counts must be > 0, got {bad}")
        rows = [r for i, ck in enumerate(a.checkpoints)
                for r in probe(ck, precise=a.precise, batch=not a.no_batch, limit=a.limit,
                               data_root=a.data_root, device=a.device, label=a.labels[i] if a.labels else None)]
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    df = pd.DataFrame(rows)
    df["miou_vs_ema"] = df["miou_pct"] - df.groupby("checkpoint")["miou_pct"].transform("first")
    out = Path(a.out)
    io.save_csv(out / "bn_probe.csv", df)
    io.save_json(out / "run.json", io.provenance(
        {"command": io.command_line("dynroute_lib bn-probe", argv), "what": __doc__.split("\n")[0]},
        device=pick_device(a.device)))
    print(df.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
