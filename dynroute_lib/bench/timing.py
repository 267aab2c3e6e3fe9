"""Timing helpers of the sparse-inference benchmark (``bench.sparse``, ``bench.learned``; issue 15).

One timed forward (``torch.inference_mode()``, device synchronised), rounds of variants interleaved with the
order rotated every round, the result row of a case against the plain network (median, min-max, per-round
quotient), the untimed equivalence check, and torch.profiler tables of single variants.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from ..model.costs import table_for
from ..routes import RouteMask, all_nodes, node_paths
from ..routes.random_masks import routing_flops

GOALS = {1: 1.15}                              # time_over_flops goal at batch 1; every other batch: 1.25
GOAL_BATCHED = 1.25
# Process settings for a fair CPU timing (every variant gets them). Read at process start only, so ``main``
# re-executes itself once with them unless they are already set (or --no-reexec):
# * OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of spinning. On a shared 2-core machine the
#   default spinning makes a 2-thread forward 5-15x slower whenever another process is busy.
# * glibc keeps freed memory: blocks above 32 MB (every batch-8 feature map at 512x1024) are otherwise
#   mmap'ed and unmapped per op, and re-faulting them (~3.5 M page faults per batch-4 forward) took longer
#   than the arithmetic in this VM.
BENCH_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "MALLOC_MMAP_THRESHOLD_": str(1 << 30),
             "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}


def goal(batch: int) -> float:
    return GOALS.get(batch, GOAL_BATCHED)

# ----------------------------------------------------------------------------- model and inputs
def calibrate_bn(net: nn.Module, height: int, width: int, iters: int = 3, batch: int = 2, seed: int = 0) -> None:
    """Cumulative BN statistics from a few train-mode forwards on noise (random-init activations otherwise
    explode through the residual layers, which would time garbage and hide semantic differences)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    dev = next(net.parameters()).device
    with torch.inference_mode():
        for _ in range(iters):
            net(torch.randn(batch, 3, height, width, generator=g).to(dev))
    for m in bns:
        m.momentum = 0.1
    net.eval()


def noise_images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width, generator=g) * 50.0


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(net, x, executor: str, route):
    """One timed forward: ``(seconds, logits, aux)``."""
    net.executor = executor
    net.set_forced_route(route)
    _sync(x.device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits, aux = net(x)
    _sync(x.device)
    return time.perf_counter() - t0, logits, aux


def _stats(times: list[float]) -> dict:
    return dict(ms=round(1e3 * statistics.median(times), 2), ms_min=round(1e3 * min(times), 2),
                ms_max=round(1e3 * max(times), 2))


def _routing_keep(aux, cfg, height: int, width: int, gated: bool) -> float:
    """Official real FLOPs of the routing space (stem and head excluded) / those of the all-open route."""
    t = table_for(cfg, gated, height, width)
    full = routing_flops(RouteMask.full(cfg.num_layers), cfg, height, width)
    if gated:   # the official real count books every routing node's gate
        full += sum(t.gate[s][len(node_paths(layer, s, cfg.num_layers))]
                    for layer, s in all_nodes(cfg.num_layers) if layer >= 0)
    routing = aux.real_gflops.double() * 1e9 - t.stem - t.head_official
    return (routing / full).mean().item()


def time_variants(net, jobs: list[dict], rounds: int, warmup: int, log=print, label: str = "") -> list[float]:
    """Time every job once per round, rounds interleaved with the order rotated each round.

    A job is ``dict(key, x, executor, route)``; its times (seconds) are appended to ``job["times"]``. Returns
    the 1-minute load average after every round.
    """
    loads = []
    for job in jobs:
        job["times"] = []
    for r in range(warmup + rounds):
        order = jobs[r % len(jobs):] + jobs[: r % len(jobs)]
        for job in order:
            gc.collect()
            dt, _, _ = _forward(net, job["x"], job["executor"], job["route"])
            if r >= warmup:
                job["times"].append(dt)
        load = os.getloadavg()[0]
        if r >= warmup:
            loads.append(round(load, 2))
            shown = [j for j in jobs if not j["key"].startswith("img")][:8] or jobs[:3]
            log(f"  {label} round {r - warmup + 1}/{rounds} (load {load:.2f}): "
                + ", ".join(f"{j['key']} {1e3 * j['times'][-1]:.0f} ms" for j in shown))
        else:
            log(f"  {label} warm-up round {r + 1}/{warmup} done (load {load:.2f})")
    net.set_forced_route(None)
    return loads


def _row(batch: int, case: dict, job: dict, plain: dict, dense: dict | None, flops_plain: float) -> dict:
    """One result row: the case against the plain network (and the masked dense executor)."""
    n = len(job["times"])
    flops_ratio = case["exec_gflops"] / flops_plain
    med, pmed = statistics.median(job["times"]), statistics.median(plain["times"])
    time_ratio = med / pmed
    per_round = [t / p / flops_ratio for t, p in zip(job["times"], plain["times"])]
    row = dict(batch=batch, case=case["label"], route_source=case["source"], image=case.get("image"),
               keep_target=case.get("target"), keep_achieved=round(case["keep_achieved"], 4),
               exec_gflops_per_image=round(case["exec_gflops"], 4), plain_gflops_per_image=round(flops_plain, 4),
               flops_ratio=round(flops_ratio, 4),
               **{f"plain_{k}": v for k, v in _stats(plain["times"]).items()},
               **{f"sparse_{k}": v for k, v in _stats(job["times"]).items()},
               time_ratio=round(time_ratio, 4), time_over_flops=round(time_ratio / flops_ratio, 4),
               time_over_flops_rounds_min=round(min(per_round), 4),
               time_over_flops_rounds_max=round(max(per_round), 4),
               goal=goal(batch), meets_goal=bool(time_ratio / flops_ratio <= goal(batch)), rounds=n)
    if dense is not None:
        dmed = statistics.median(dense["times"])
        row.update(**{f"dense_{k}": v for k, v in _stats(dense["times"]).items()},
                   dense_gflops_per_image=round(case["dense_gflops"], 4),
                   time_over_flops_vs_dense=round(med / dmed / (case["exec_gflops"] / case["dense_gflops"]), 4))
    row.update(max_abs_diff=case["max_abs_diff"], logit_absmax=round(case["logit_absmax"], 3),
               max_rel_diff=case["max_abs_diff"] / max(case["logit_absmax"], 1e-30),
               plain_times_s=[round(t, 5) for t in plain["times"]],
               sparse_times_s=[round(t, 5) for t in job["times"]])
    if dense is not None:
        row["dense_times_s"] = [round(t, 5) for t in dense["times"]]
    return row


def _check(net, x, case: dict, route, gated: bool, cfg) -> None:
    """Untimed: sparse vs masked dense logits on the case's own route (equivalence at full size, float32),
    executed FLOPs and the achieved keep rate."""
    _, lo_d, aux_d = _forward(net, x, "dense", route)
    _, lo_s, aux = _forward(net, x, "sparse", route)
    case["max_abs_diff"] = (lo_s - lo_d).abs().max().item()
    case["logit_absmax"] = lo_d.abs().max().item()
    case["exec_gflops"] = aux.exec_gflops.double().mean().item()
    case["dense_gflops"] = aux_d.exec_gflops.double().mean().item()
    case["keep_achieved"] = _routing_keep(aux, cfg, x.shape[2], x.shape[3], gated)


# ----------------------------------------------------------------------------- profiles
def profile_variants(net, x: torch.Tensor, variants: list[tuple[str, str, object]], out_dir: Path,
                     prefix: str, row_limit: int = 25, iters: int = 3) -> list[dict]:
    """torch.profiler tables (self CPU time, top ``row_limit`` ops) of ``iters`` forwards per variant.

    ``variants``: ``(name, executor, route)``. Writes ``<prefix>_<name>.txt`` and returns CSV-ready rows.
    """
    from torch.profiler import ProfilerActivity, profile

    from .. import io as dio
    rows = []
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if x.device.type == "cuda" else [])
    for name, executor, route in variants:
        _forward(net, x, executor, route)                     # warm
        net.executor = executor
        net.set_forced_route(route)
        with profile(activities=acts) as prof:
            with torch.inference_mode():
                for _ in range(iters):
                    net(x)
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in events)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=row_limit)
        dio._atomic_write(out_dir / f"{prefix}_{name}.txt", lambda p, t=table: p.write_text(
            f"{prefix} {name}: executor={executor}, input {tuple(x.shape)}, {iters} forwards, "
            f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}\n{t}\n"))
        for rank, e in enumerate(events[:row_limit]):
            rows.append(dict(profile=prefix, variant=name, rank=rank + 1, op=e.key, calls_per_forward=e.count / iters,
                             self_cpu_ms_per_forward=round(e.self_cpu_time_total / 1e3 / iters, 3),
                             self_cpu_pct=round(100 * e.self_cpu_time_total / max(total, 1), 2)))
    net.set_forced_route(None)
    return rows
