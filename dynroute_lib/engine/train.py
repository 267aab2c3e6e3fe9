"""Training engine: the paper's recipe on CPU and GPU, resumable (paper Sec. 4.1, Eq. 10; spec Sec. 5).

SGD (momentum 0.9, wd 1e-4, none on norms), poly LR with linear warm-up, gradient clipping at total norm 5,
optional gate LR multiplier, scheduled drop path, budget constraint (Eq. 9-10) off for the first 40 % and
ramped over 2 % (``schedule.budget_weight_at``, handed to the model's loss), precise BN at the end. CUDA: AMP
(bf16 default) + channels_last, DDP + SyncBatchNorm under torchrun. CPU: float32, channels_last, DDP with gloo
and plain BN (SyncBatchNorm is GPU-only in torch; DDP broadcasts rank 0's BN buffers every step so ranks stay
identical).

CLI: ``python -m dynroute_lib train PRESET --data NAME [--data-root DIR] --out DIR [--iters N] [--crop H W]
[--batch N] [--resume] [--smoke] [--eval]``; the split is checked first (``data.check.validate_split``).
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from .. import io
from ..config import ModelConfig, TrainConfig, for_run
from ..data import build_dataset
from ..data.balance import MODES as CLASS_WEIGHTINGS, class_frequencies, class_weights, describe
from ..data.check import validate_split
from ..data.sampling import batch_loader
from ..model import build_model
from .branch import check_branch, copy_logs
from .checkpoint import save_checkpoint
from .csv_log import CsvLogger
from .dist import Dist, init_distributed, memory_format, pick_device, sync_buffers
from .optim import build_optimizer, clip_grad, set_lr
from .precise_bn import images_as, recompute_bn_stats
from .val_curve import VAL_FIELDS, ValCurve, val_dataset
from .schedule import budget_weight_at, drop_path_keep_prob, lr_at

LOG_FIELDS = ["step", "loss", "ce", "budget", "lr", "expected_ratio", "expected_gflops", "real_gflops", "wall_s"]


class NonFiniteLoss(RuntimeError):
    pass


@dataclass
class _Run:
    """One training run in progress: process group, device, data, network (``model`` = DDP-wrapped), optimizer."""
    d: Dist
    dev: torch.device
    fmt: torch.memory_format
    ds: torch.utils.data.Dataset
    net: torch.nn.Module
    model: torch.nn.Module
    opt: torch.optim.Optimizer
    start: int
    max_iter: int
    last: Path
    ce_weight: torch.Tensor | None = None     # class-balanced CE (data.balance); None = the paper's plain CE


def train_dataset(mcfg: ModelConfig, tcfg: TrainConfig):
    """The run's augmented training split (crop, scale, resize; decoded images cached when the recipe says so)."""
    ds = build_dataset(tcfg.data, tcfg.data_root or None, "train", train=True, crop_hw=tuple(tcfg.crop_hw),
                       normalization=mcfg.normalization, scale_range=tuple(tcfg.scale_range),
                       resize_hw=tuple(tcfg.resize_hw) if tcfg.resize_hw else None)
    if tcfg.cache_data:
        ds.cache_decoded()
    return ds


def _amp(tcfg: TrainConfig, device: torch.device):
    if device.type != "cuda" or tcfg.amp == "off":
        return contextlib.nullcontext()
    dtype = torch.float16 if tcfg.amp == "fp16" else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


def _set_drop_path(net, progress: float) -> None:
    if net.cfg.arch != "dynamic" or net.cfg.drop_path <= 0:
        return
    for m in net.modules():
        if hasattr(m, "drop_keep_prob") and m.layer >= 0:
            m.drop_keep_prob = drop_path_keep_prob(m.layer, net.cfg.num_layers, progress, net.cfg.drop_path)


def _start(mcfg: ModelConfig, tcfg: TrainConfig, out: Path, resume: bool, device,
           branch_from: Path | None = None) -> _Run:
    """Process group, seeded data set and model, optimizer; state of ``out/last.pt`` when resuming, else of
    the budget-free trunk ``branch_from`` (:func:`check_branch`)."""
    validate_split(tcfg.data, tcfg.data_root or None, "train")    # a bad file fails here, before out/ exists
    d = init_distributed()
    dev = pick_device(device, d.local_rank)
    torch.manual_seed(tcfg.seed)
    ds = train_dataset(mcfg, tcfg)
    ce_weight = None                        # counting the split's pixels only when weights are asked for
    if tcfg.class_weighting != "none":
        ce_weight = class_weights(class_frequencies(ds, mcfg.num_classes), tcfg.class_weighting)
        if d.main:
            print(f"{tcfg.class_weighting} {describe(ce_weight)}", flush=True)
        ce_weight = ce_weight.to(dev)
    net = build_model(mcfg).to(dev)
    fmt = memory_format(tcfg.channels_last)
    net = net.to(memory_format=fmt)
    opt = build_optimizer(net, tcfg)
    start, max_iter = 0, tcfg.iters
    last = out / "last.pt"
    ck = None
    if resume and last.is_file():
        ck = io.load_checkpoint(last)
        if ck.get("config_hash") != mcfg.hash():
            raise ValueError(f"{last}: checkpoint config {ck.get('config_hash')} != requested {mcfg.hash()}; "
                             "use another --out or drop --resume")
    elif branch_from is not None:
        ck = io.load_checkpoint(branch_from)
        check_branch(ck, mcfg, tcfg, branch_from)
        if d.main:
            copy_logs(Path(branch_from).parent, out, ck["step"],
                      {"train_log.csv": LOG_FIELDS, "val_log.csv": VAL_FIELDS})
    elif resume and d.main:
        print(f"--resume: no checkpoint at {last}; starting from scratch", flush=True)
    if ck is not None:                      # resumed or branched: the same state either way
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        for g in opt.param_groups:          # the requested gate LR multiplier wins over the stored one
            g["lr_mult"] = tcfg.gate_lr_mult if g.get("name", "").startswith("gate") else 1.0
        start, max_iter = ck["step"], ck["max_iter"]
    if d.world > 1:
        if dev.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        model = DDP(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    else:
        model = net
    return _Run(d, dev, fmt, ds, net, model, opt, start, max_iter, last, ce_weight)


def _forward(run: _Run, tcfg: TrainConfig, images, masks, step: int):
    """Schedule values of this iteration (LR, drop path, budget weight w(t)), then forward and loss (Eq. 10)."""
    p = step / run.max_iter
    # warm-up never takes more than 10 % of a (budget-shortened) schedule
    set_lr(run.opt, lr_at(step, run.max_iter, tcfg.base_lr, min(tcfg.warmup_iters, max(1, run.max_iter // 10))))
    _set_drop_path(run.net, p)
    images = images.to(run.dev, non_blocking=True).contiguous(memory_format=run.fmt)
    masks = masks.to(run.dev, non_blocking=True)
    with _amp(tcfg, run.dev):
        logits, aux = run.model(images)
        losses = run.net.loss(logits.float(), masks, aux, budget_weight_at(p), weight=run.ce_weight)
    return losses, aux


def _backward(run: _Run, tcfg: TrainConfig, losses: dict) -> None:
    """One SGD step. ``clip_mode="joint"`` clips CE + budget together at total norm 5 (official);
    ``"ce_only"`` clips the CE gradient and adds the budget's unclipped (docs/cpu_reproduction.md)."""
    run.opt.zero_grad(set_to_none=True)
    if tcfg.clip_mode == "ce_only" and losses["budget"].requires_grad:
        params = [q for q in run.net.parameters() if q.requires_grad]
        budget_grads = torch.autograd.grad(losses["budget"], params, retain_graph=True, allow_unused=True)
        losses["ce"].backward()
        clip_grad(run.net, tcfg.grad_clip)
        for q, g in zip(params, budget_grads):
            if g is not None:
                q.grad = g if q.grad is None else q.grad.add_(g)
    else:                                   # "joint" (TrainConfig validates clip_mode)
        losses["loss"].backward()
        clip_grad(run.net, tcfg.grad_clip)
    run.opt.step()


def _log(run: _Run, log: CsvLogger, bar, name: str, tcfg: TrainConfig, step: int, losses: dict, aux, ratio: float,
         t0: float) -> None:
    opt = run.opt
    row = {"step": step, **{k: float(v.detach()) for k, v in losses.items()}, "lr": opt.param_groups[0]["lr"] /
           opt.param_groups[0].get("lr_mult", 1.0), "expected_ratio": ratio,
           "expected_gflops": aux.expected_gflops.mean().item(),
           "real_gflops": aux.real_gflops.mean().item(), "wall_s": time.perf_counter() - t0}
    log.log(row)
    bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.4f}", eflops=f"{ratio:.2f}")
    bar.update(1)
    if bar.disable and (step % tcfg.log_interval == 0 or step == run.max_iter):
        print(f"[{name}] it {step}/{run.max_iter} loss {row['loss']:.4f} ce {row['ce']:.4f} "
              f"budget {row['budget']:.4f} lr {row['lr']:.5f} E/C {ratio:.3f} "
              f"{row['wall_s']:.0f}s", flush=True)


def _fitted_max_iter(tcfg: TrainConfig, step: int, t0: float, c0: float) -> int:
    """Fit the whole schedule (warm-up, poly decay, budget ramp) into the wall-clock or CPU-time budget.

    Re-estimated a few times early because a shared machine's speed drifts; CPU time is immune to other processes.
    """
    if tcfg.cpu_budget_min > 0:
        per_it, budget = (time.process_time() - c0) / step, tcfg.cpu_budget_min * 60
    else:
        per_it, budget = (time.perf_counter() - t0) / step, tcfg.time_budget_min * 60
    return max(step + 1, min(tcfg.iters, int(budget / per_it)))


def _finish(run: _Run, mcfg: ModelConfig, tcfg: TrainConfig, out: Path, step: int, log, t0: float, c0: float) -> dict:
    """Same BN buffers on every rank, precise BN, ``model_final.pt``; returns the summary."""
    sync_buffers(run.net, run.d)
    summary = {"iters": step, "max_iter": run.max_iter, "train_wall_s": time.perf_counter() - t0,
               "train_cpu_s": time.process_time() - c0}
    if tcfg.precise_bn_iters > 0 and mcfg.arch == "dynamic":
        pbn = batch_loader(run.ds, tcfg, run.max_iter, run.max_iter + tcfg.precise_bn_iters, run.d.rank, run.d.world)
        summary["precise_bn_batches"] = recompute_bn_stats(
            run.net, pbn, tcfg.precise_bn_iters,
            to_input=images_as(run.fmt))
        sync_buffers(run.net, run.d)
    if run.d.main:
        save_checkpoint(out / "model_final.pt", run.net, None, step, run.max_iter, mcfg, tcfg)
        log.close()
    return summary


def train(mcfg: ModelConfig, tcfg: TrainConfig, out: str | Path, *, resume: bool = False,
          device: str | None = "auto", progress_bar: bool | None = None, return_model: bool = False,
          stop_at: int | None = None, branch_from: str | Path | None = None):
    """Train ``mcfg`` with recipe ``tcfg`` into ``out`` (last.pt, model_final.pt, train_log.csv).

    Returns the summary dict, or (summary, model) with ``return_model``. ``stop_at`` ends the loop after that
    iteration with a checkpoint and no precise BN, as an interruption would (a later ``resume`` continues).
    ``branch_from``: a budget-free trunk's ``last.pt`` to continue from when there is no ``last.pt`` yet.
    With ``tcfg.val_interval`` the val curve goes to ``val_log.csv`` (before the checkpoint of that step).
    """
    out = Path(out)
    run = _start(mcfg, tcfg, out, resume, device, branch_from)
    d, start = run.d, run.start
    log = CsvLogger(out / "train_log.csv", LOG_FIELDS, resume_step=start if start else None) if d.main else None
    val = ValCurve(out, val_dataset(mcfg, tcfg) if tcfg.val_interval and d.main else None,
                   tcfg.val_interval if d.main else 0, limit=tcfg.eval_limit, resume_step=start if start else None)
    t0, c0 = time.perf_counter(), time.process_time()
    bar = tqdm(total=run.max_iter, initial=start, disable=(not d.main) or progress_bar is False or None,
               dynamic_ncols=True, desc=mcfg.name)
    step = start
    run.model.train()
    for images, masks, _ in batch_loader(run.ds, tcfg, start, run.max_iter, d.rank, d.world):
        if step >= run.max_iter:
            break
        losses, aux = _forward(run, tcfg, images, masks, step)
        if not torch.isfinite(losses["loss"]):
            bar.close()
            raise NonFiniteLoss(f"non-finite loss ({losses['loss'].item()}) at iteration {step}; "
                                f"last good checkpoint: {run.last if run.last.is_file() else 'none'}")
        _backward(run, tcfg, losses)
        step += 1
        ratio = (aux.expected_gflops.mean() / aux.expected_full_gflops).item()
        if d.main:
            _log(run, log, bar, mcfg.name, tcfg, step, losses, aux, ratio, t0)
        if (tcfg.time_budget_min > 0 or tcfg.cpu_budget_min > 0) and start == 0 and step in (3, 10, 30):
            run.max_iter = _fitted_max_iter(tcfg, step, t0, c0)
            bar.total = run.max_iter
        if val.due(step, run.max_iter):
            row = val(run.net, step, run.dev, time.perf_counter() - t0)
            print(f"[{mcfg.name}] val it {step}: mIoU {row['val_miou_pct']:.2f} %, real cost "
                  f"{row['val_real_ratio']:.3f} of all-open", flush=True)
        if d.main and (step % tcfg.ckpt_interval == 0 or step == run.max_iter or step == stop_at):
            save_checkpoint(run.last, run.model, run.opt, step, run.max_iter, mcfg, tcfg)
        if step == stop_at:
            break
    bar.close()
    val.close()
    if stop_at is not None and step < run.max_iter:
        return ({"iters": step, "interrupted": True}, run.net) if return_model else {"iters": step, "interrupted": True}
    summary = _finish(run, mcfg, tcfg, out, step, log, t0, c0)
    return (summary, run.net) if return_model else summary


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib train", description="Train a dynroute preset.")
    ap.add_argument("preset", help="preset name (see dynroute_lib.config.PRESETS) or a route-mask .json")
    ap.add_argument("--data", default=None, help="data set name (default: the profile's)")
    ap.add_argument("--data-root", default="", help="data root (default: the data set's default)")
    ap.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    ap.add_argument("--profile", default="cpu", help="cpu | gpu recipe (default cpu)")
    ap.add_argument("--iters", type=int)
    ap.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"))
    ap.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"))
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--time-budget-min", type=float, help="fit the schedule into this many wall-clock minutes")
    ap.add_argument("--cpu-budget-min", type=float, help="fit the schedule into this many process-CPU minutes")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--precise-bn", type=int, help="precise-BN batches at the end (0 = off)")
    ap.add_argument("--base-channels", type=int, help="override C_0 (64 in the paper)")
    ap.add_argument("--io-channels", type=int, help="stem and last decoder stage width (default C_0, the paper)")
    ap.add_argument("--class-weighting", choices=CLASS_WEIGHTINGS, help="class-balanced CE (default: the profile's)")
    ap.add_argument("--scale-range", type=float, nargs=2, metavar=("LO", "HI"), help="random-scale augmentation")
    ap.add_argument("--gate-lr-mult", type=float, help="LR multiplier of the gate parameters")
    ap.add_argument("--gate-init-bias", type=float, help="bias of each gate's last 1x1 conv at init (1.5, the paper)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly")
    ap.add_argument("--smoke", action="store_true", help="tiny run on the embedded data (seconds)")
    ap.add_argument("--eval", action="store_true", help="evaluate model_final.pt on val afterwards")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    over = {k: v for k, v in dict(data=a.data, data_root=a.data_root or None, iters=a.iters,
                                  crop_hw=tuple(a.crop) if a.crop else None,
                                  resize_hw=tuple(a.resize) if a.resize else None, batch=a.batch, base_lr=a.lr,
                                  time_budget_min=a.time_budget_min, cpu_budget_min=a.cpu_budget_min,
                                  workers=a.workers, seed=a.seed,
                                  precise_bn_iters=a.precise_bn, class_weighting=a.class_weighting,
                                  scale_range=tuple(a.scale_range) if a.scale_range else None,
                                  gate_lr_mult=a.gate_lr_mult).items() if v is not None}
    try:
        mcfg, tcfg = for_run(a.preset, profile=a.profile, smoke=a.smoke, **over)
        if a.base_channels:
            mcfg = replace(mcfg, base_channels=a.base_channels)
        if a.io_channels:
            mcfg = replace(mcfg, io_channels=a.io_channels)
        if a.gate_init_bias is not None:
            mcfg = replace(mcfg, gate_init_bias=a.gate_init_bias)
        validate_split(tcfg.data, tcfg.data_root or None, "val" if a.eval else "train")   # before anything is written
        # taken before training: the code (git SHA) and start time of the process that trains, not of the tree
        # when an hour-long run ends (commits may land meanwhile)
        env = io.provenance({"command": io.command_line("dynroute_lib train", argv)})
        with io.Timer() as t:
            summary = train(mcfg, tcfg, a.out, resume=a.resume, device=a.device)
        rec = {**env, "model_config": mcfg.to_dict(), "train_config": tcfg.to_dict(), **summary, "wall_s": t.wall_s}
        if a.eval:
            from .evaluate import evaluate_checkpoint, summary_line
            rec["eval"] = evaluate_checkpoint(Path(a.out) / "model_final.pt", data=tcfg.data,
                                              data_root=tcfg.data_root or None, split="val",
                                              resize_hw=tcfg.resize_hw, limit=tcfg.eval_limit,
                                              device=a.device, records_dir=Path(a.out))
        io.save_json(Path(a.out) / "train.json", rec)
    except NonFiniteLoss as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ev = f"\nval: {summary_line(rec['eval'])}" if a.eval else ""
    print(f"done: {summary['iters']} iterations in {summary['train_wall_s']:.0f}s -> {a.out}{ev}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
