"""Sparse dynamic inference benchmark: time per executed FLOP against the plain all-open network (issues 6, 15).

``python -m dynroute_lib bench sparse [--checkpoint CKPT ...] [--batches 1 8] [--size H W] [--rounds 7]
[--keep 0.3 0.5 0.7] [--threads 2] [--channels-last] [--out DIR | --commit] [--json] [--profile] [--quick]``
See ``docs/sparse_inference.md`` ("Benchmark") for the protocol and how to read the columns.

Variants, timed in one process under ``torch.inference_mode()``, interleaved round by round (the order is
rotated every round; ``--warmup`` untimed rounds first):

* **plain**: ``executor="plain"``: every node and path for every sample, no gate, no mask, no liveness
  bookkeeping. The fastest way to compute the whole routing space, and the reference of every ratio.
* **masked_dense**: ``executor="dense"`` (every op on every sample, outputs multiplied by the masks) on the
  all-open forced route, or on the learned gates of a checkpoint.
* **sparse** cases: ``executor="sparse"`` (per-sample, per-path execution). Random-init model: forced random
  routes keeping about 30 / 50 / 70 % of the routing-space FLOPs, a different route per sample at batch > 1
  (``--open`` adds the all-open forced route: the executor's overhead at FLOPs ratio 1). ``--checkpoint``: the
  learned routes of each checkpoint on real CamVid val images, per image at batch 1 and as one batch.

Columns: ``flops_ratio`` = executed FLOPs of the case / executed FLOPs of the plain network (whole model:
stem, routing space, gates where they run, head at true sizes; official counting primitives);
``time_ratio`` = median case time / median plain time; ``time_over_flops`` = time_ratio / flops_ratio
(1.0: time falls exactly in proportion to FLOPs; goal <= 1.15 at batch 1, <= 1.25 at batch > 1);
``*_min`` / ``*_max`` the spread over the timed rounds; ``time_over_flops_rounds_min/max`` the quotient of
each round's own pair (case, plain). Machine load (``os.getloadavg``) is recorded at the start, after every
round and at the end. Results go to ``results/_local/bench/`` (git-ignored) unless ``--out`` or ``--commit``
(``results/bench/``) says otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from ..config import get_preset
from ..engine.dist import memory_format
from ..model import build_model
from ..paths import PROJ_ROOT, RESULTS_DIR
from ..routes import RouteMask
from ..routes.random_masks import keep_rate, random_routes
from .learned import bench_learned, camvid_images, checkpoint_size, load_checkpoint
from .timing import (BENCH_ENV, GOAL_BATCHED, _check, _forward, _row, _stats, calibrate_bn, goal, noise_images,
                     profile_variants, time_variants)

LOCAL_DIR = RESULTS_DIR / "_local" / "bench"   # default output (git-ignored); --commit writes RESULTS_DIR/bench

# ----------------------------------------------------------------------------- the two benchmarks
def bench_forced(net, cfg, x: torch.Tensor, keeps, *, rounds: int, warmup: int, seed: int, with_open: bool,
                 log=print) -> tuple[list[dict], dict]:
    """Random forced routes at one batch size (random-init model): rows + the reference timings."""
    n, _, height, width = x.shape
    full = RouteMask.full(cfg.num_layers, name="all_open")
    cases = []
    for k in keeps:
        masks = random_routes(cfg, height, width, k, n, seed=seed + int(round(1000 * k)))
        cases.append(dict(label=f"keep{round(100 * k)}", source="random_forced", target=k,
                          route=masks if n > 1 else masks[0],
                          mask_keep=[round(keep_rate(m, cfg, height, width), 4) for m in masks]))
    if with_open:
        cases.append(dict(label="all_open", source="forced_all_open", target=1.0, route=full))
    log(f"batch {n}: " + ", ".join(f"{c['label']} (per-sample keep {c.get('mask_keep', [1.0])})" for c in cases))
    for c in cases:
        _check(net, x, c, c["route"], False, cfg)
    _, lo_p, aux_p = _forward(net, x, "plain", None)
    _, lo_d, _ = _forward(net, x, "dense", full)
    plain_vs_dense = (lo_p - lo_d).abs().max().item()
    flops_plain = aux_p.exec_gflops.double().mean().item()
    del lo_p, lo_d
    jobs = [dict(key="plain", x=x, executor="plain", route=None),
            dict(key="masked_dense", x=x, executor="dense", route=full)]
    jobs += [dict(key=c["label"], x=x, executor="sparse", route=c["route"]) for c in cases]
    loads = time_variants(net, jobs, rounds, warmup, log=log, label=f"batch {n}")
    plain, dense = jobs[0], jobs[1]
    rows = [_row(n, c, j, plain, dense, flops_plain) for c, j in zip(cases, jobs[2:])]
    ref = dict(batch=n, plain=_stats(plain["times"]), masked_dense=_stats(dense["times"]),
               plain_gflops_per_image=round(flops_plain, 4), plain_vs_masked_dense_max_abs_diff=plain_vs_dense,
               loads_after_rounds=loads)
    return rows, ref


# ----------------------------------------------------------------------------- the benchmark
def run_sparse(*, preset: str = "dynamic_raw_l16", checkpoints: list[str] | None = None, batches=(1, 8),
               size=None, rounds: int = 7, warmup: int = 1, keeps=(0.3, 0.5, 0.7), threads: int = 2,
               channels_last: bool = False, seed: int = 0, num_images: int = 8, data_root: str | None = None,
               with_open: bool = False, device: str = "cpu", profile_dir: Path | None = None, log=print) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    dev = torch.device(device)
    fmt = memory_format(channels_last)
    rows, refs, profiles = [], [], []
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    if not checkpoints:
        height, width = size or (512, 1024)
        if height % 32 or width % 32:
            raise ValueError(f"--size {height} {width}: both must be multiples of 32")
        cfg = get_preset(preset)
        net = build_model(cfg).to(dev)
        calibrate_bn(net, min(height, 256), min(width, 512), seed=seed)
        net = net.to(memory_format=fmt)
        for n in batches:
            x = noise_images(n, height, width, seed).to(dev).contiguous(memory_format=fmt)
            r, ref = bench_forced(net, cfg, x, keeps, rounds=rounds, warmup=warmup, seed=seed, with_open=with_open,
                                  log=log)
            rows += r
            refs.append(ref)
            if profile_dir is not None:
                masks = random_routes(cfg, height, width, 0.5, n, seed=seed + 500)
                profiles += profile_variants(net, x, [("plain", "plain", None),
                                                      ("keep50", "sparse", masks if n > 1 else masks[0])],
                                             profile_dir, f"b{n}")
            del x
        sizes = [[height, width]]
    else:
        sizes = []
        for path in checkpoints:
            net, cfg, ck = load_checkpoint(path)
            net = net.to(dev).to(memory_format=fmt)
            hw = tuple(size) if size else checkpoint_size(ck)
            x, names = camvid_images(cfg, max([num_images if 1 in batches else 0, *batches]), hw, data_root)
            x = x.to(dev).contiguous(memory_format=fmt)
            sizes.append(list(x.shape[2:]))
            log(f"{path}: {cfg.name}, C0={cfg.base_channels}, {cfg.num_classes} classes, images "
                f"{tuple(x.shape[2:])} (resize {hw or 'native'}, padded to a multiple of 32)")
            r, ref = bench_learned(net, cfg, path, x, names, batches, rounds=rounds, warmup=warmup,
                                   num_images=num_images, log=log)
            rows += r
            refs += ref
            if profile_dir is not None:
                profiles += profile_variants(net, x[:1], [("plain", "plain", None), ("learned", "sparse", None)],
                                             profile_dir, f"{Path(path).parent.name}_b1")
    return dict(rows=rows, references=refs, profiles=profiles, wall_s=round(time.perf_counter() - t_start, 1),
                load_start=[round(v, 2) for v in load_start], load_end=[round(v, 2) for v in os.getloadavg()],
                settings=dict(preset=None if checkpoints else preset, checkpoints=checkpoints, batches=list(batches),
                              sizes=sizes, rounds=rounds, warmup_rounds=warmup, keeps=list(keeps), threads=threads,
                              channels_last=channels_last, seed=seed, device=str(dev),
                              sparse_batching=getattr(net, "sparse_batching", None), inference_mode=True,
                              num_images=num_images if checkpoints else None, with_open=with_open))


def format_table(rows: list[dict]) -> str:
    cols = ["batch", "case", "image", "keep_achieved", "flops_ratio", "plain_ms", "sparse_ms", "sparse_ms_min",
            "sparse_ms_max", "time_ratio", "time_over_flops", "time_over_flops_rounds_min",
            "time_over_flops_rounds_max", "meets_goal", "dense_ms", "max_rel_diff"]
    cols = [c for c in cols if any(r.get(c) is not None for r in rows)]
    text = [["" if r.get(c) is None else (f"{r[c]:.1e}" if c.startswith("max_") else str(r[c])) for c in cols]
            for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(t, widths)) for t in text]
    return "\n".join(lines)


def markdown_table(res: dict) -> str:
    """The README table of a forced-route run (median and min-max over the timed rounds)."""
    refs = {r["batch"]: r for r in res["references"]}
    lines = ["| batch | route | FLOPs ratio | plain ms (min–max) | sparse ms (min–max) | time ratio | "
             "time / FLOPs ratio: median (per-round min–max) | goal |", "|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        ref = refs.get(r["batch"], {})
        route = f"keep {round(100 * r['keep_achieved'])} %" if r["route_source"] == "random_forced" else r["case"]
        if r.get("image"):
            route = f"{r['case']} ({r['image']})"
        plain = ref.get("plain") or dict(ms=r["plain_ms"], ms_min=r["plain_ms_min"], ms_max=r["plain_ms_max"])
        mark = "✓" if r["meets_goal"] else "✗"
        lines.append(f"| {r['batch']} | {route} | {r['flops_ratio']:.3f} | {plain['ms']:.0f} ({plain['ms_min']:.0f}–"
                     f"{plain['ms_max']:.0f}) | {r['sparse_ms']:.0f} ({r['sparse_ms_min']:.0f}–{r['sparse_ms_max']:.0f})"
                     f" | {r['time_ratio']:.3f} | **{r['time_over_flops']:.2f}** ({r['time_over_flops_rounds_min']:.2f}–"
                     f"{r['time_over_flops_rounds_max']:.2f}) | ≤ {r['goal']} {mark} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- notebook 06
SMOKE_BENCH_ARGS = ("--quick", "--batches", "1", "--threads", "1")   # quick mode, batch 1: ~20 s


def sparse_bench(ctx, run: bool = True, args=()):
    """The sparse-inference benchmark table: run ``python -m dynroute_lib bench sparse`` into ``<out>/bench/``
    (smoke: quick mode at batch 1 on one thread), or read the command line's ``results/bench/``.

    The benchmark runs in a child process: it sets its own process environment (OpenMP wait policy, malloc
    thresholds; it re-executes itself for that) and must not inherit the kernel's thread settings.

    Args:
        run: Run the benchmark now (False: read ``results/bench/sparse_speed.csv``).
        args: Extra benchmark arguments, e.g. ``["--threads", "1"]`` on a shared machine.

    Returns:
        ``(table, source directory)``.
    """
    import subprocess

    import pandas as pd
    src = ctx.out / "bench" if run else RESULTS_DIR / "bench"
    if run:
        extra = [*(SMOKE_BENCH_ARGS if ctx.smoke else ()), *map(str, args)]
        cmd = [sys.executable, "-m", "dynroute_lib", "bench", "sparse", "--out", str(src), *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJ_ROOT),
                                                                        os.environ.get("PYTHONPATH")]))}
        proc = subprocess.run(cmd, cwd=PROJ_ROOT, env=env, capture_output=True, text=True)
        print("\n".join(proc.stdout.strip().splitlines()[-3:]))
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd[1:])} exited with status {proc.returncode}:\n"
                               + "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:]))
    path = src / "sparse_speed.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `python -m dynroute_lib bench sparse` or set RUN_BENCH=True")
    return pd.read_csv(path), src


def bench_scale(source: Path) -> dict | None:
    """Scale record of a benchmark run (figure subtitle) from its ``sparse_speed.json`` provenance, or None."""
    try:
        prov = json.loads((Path(source) / "sparse_speed.json").read_text())["provenance"]
    except (OSError, ValueError, KeyError):
        return None
    learned = prov.get("checkpoints") or prov.get("ckpts")
    routes = "learned routes" if learned else "random routes, random init"
    size = (prov.get("sizes") or [[]])[0] if "sizes" in prov else prov.get("size", [])
    rounds = prov.get("rounds", prov.get("repeats"))
    return {"data": "CamVid val images" if learned else "random input images (no data set)",
            "resolution": "x".join(map(str, size)), "iters": f"median of {rounds} timed rounds",
            "note": f"{prov.get('preset') or 'checkpoints'}, {routes}, vs the plain network"}


def _parser() -> argparse.ArgumentParser:
    s = argparse.ArgumentParser(prog="python -m dynroute_lib bench sparse", description=__doc__.split("\n")[0])
    s.add_argument("--checkpoint", "--ckpt", nargs="+", default=None, dest="checkpoint",
                   help="our checkpoint(s) (config inside): learned routes on CamVid val images")
    s.add_argument("--preset", default="dynamic_raw_l16", help="model preset of the random-init forced-route run")
    s.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    s.add_argument("--size", nargs=2, type=int, default=None, metavar=("H", "W"),
                   help="input size (default 512 1024; --checkpoint: the checkpoint's own resolution)")
    s.add_argument("--rounds", "--repeats", type=int, default=None, dest="rounds",
                   help="timed rounds (default 7; 3 with --quick)")
    s.add_argument("--warmup", type=int, default=1, help="untimed warm-up rounds")
    s.add_argument("--keep", nargs="+", type=float, default=[0.3, 0.5, 0.7], help="target keep rates")
    s.add_argument("--open", action="store_true", help="add the sparse executor on the all-open forced route")
    s.add_argument("--num-images", type=int, default=8, help="--checkpoint: val images timed at batch 1")
    s.add_argument("--data-root", default=None, help="--checkpoint: CamVid root (default: the shared copy)")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--device", default="cpu")
    s.add_argument("--channels-last", action="store_true", help="channels_last model and input (every variant)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quick", action="store_true", help="smoke: 256x512, 3 rounds")
    s.add_argument("--profile", action="store_true", help="also save torch.profiler tables under <out>/profile/")
    s.add_argument("--out", default=None, help=f"output directory (default {LOCAL_DIR.relative_to(PROJ_ROOT)})")
    s.add_argument("--commit", action="store_true", help=f"write to {(RESULTS_DIR / 'bench').relative_to(PROJ_ROOT)}"
                                                         " (the tracked results)")
    s.add_argument("--name", default=None, help="file stem (default sparse_speed, sparse_speed_learned)")
    s.add_argument("--json", action="store_true", help="print the whole result as one JSON object on the last line")
    s.add_argument("--no-reexec", action="store_true", help="do not restart with the BENCH_ENV process settings")
    return s


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    p = _parser()
    a = p.parse_args(args)
    if a.out and a.commit:
        p.error("--out and --commit are exclusive")
    if not a.no_reexec and os.environ.get("DYNROUTE_BENCH_ENV") != "1":
        env = {**os.environ, **{k: v for k, v in BENCH_ENV.items() if k not in os.environ}, "DYNROUTE_BENCH_ENV": "1"}
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "dynroute_lib", "bench", "sparse", *args], env)
    size = a.size or ((256, 512) if a.quick and not a.checkpoint else None)
    rounds = a.rounds or (3 if a.quick else 7)
    out = Path(a.out) if a.out else (RESULTS_DIR / "bench" if a.commit else LOCAL_DIR)
    name = a.name or ("sparse_speed_learned" if a.checkpoint else "sparse_speed")
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if a.json else (lambda m: print(m, flush=True))
    res = run_sparse(preset=a.preset, checkpoints=a.checkpoint, batches=a.batches, size=size, rounds=rounds,
                     warmup=a.warmup, keeps=a.keep, threads=a.threads, channels_last=a.channels_last, seed=a.seed,
                     num_images=a.num_images, data_root=a.data_root, with_open=a.open, device=a.device,
                     profile_dir=out / "profile" if a.profile else None, log=log)
    import pandas as pd

    from .. import io as dio
    smoke = a.quick or rounds < 7
    record = dio.provenance(dict(command=dio.command_line("dynroute_lib bench sparse", args), smoke=smoke,
                                 wall_s=res["wall_s"], torch_threads=torch.get_num_threads(),
                                 load_start=res["load_start"], load_end=res["load_end"],
                                 cpu_count=os.cpu_count(), process_env={k: os.environ.get(k) for k in BENCH_ENV},
                                 gpu="not measured: no GPU in this run" if a.device == "cpu" else a.device,
                                 **res["settings"]), device=a.device)
    table = pd.DataFrame([{k: v for k, v in r.items() if not k.endswith("_times_s")} for r in res["rows"]])
    obj = dict(provenance=record, rows=res["rows"], references=res["references"])
    dio.save_csv(out / f"{name}.csv", table)
    dio.save_json(out / f"{name}.json", obj)
    dio._atomic_write(out / f"{name}.md", lambda f: f.write_text(markdown_table(res) + "\n"))
    if res["profiles"]:
        dio.save_csv(out / "profile" / f"{name}_profile.csv", pd.DataFrame(res["profiles"]))
    if a.json:
        print(json.dumps(dio._jsonable(obj), separators=(",", ":")))
        return 0
    print("\nplain  = executor='plain' (every node and path, no gates, no masks): the reference of every ratio")
    print("sparse = executor='sparse' (per-sample, per-path) on the case's route; masked dense = executor='dense'")
    print(f"time_over_flops = (median case / median plain time) / (executed FLOPs ratio); goal <= {goal(1)} at "
          f"batch 1, <= {GOAL_BATCHED} at batch > 1\n")
    print(format_table(res["rows"]))
    for ref in res["references"]:
        if "time_over_flops" in ref:
            print(f"batch 1, all {ref['images']} images: time/FLOPs {ref['time_over_flops']} "
                  f"(FLOPs ratio {ref['flops_ratio']}, goal {'met' if ref['meets_goal'] else 'missed'})")
    print(f"\nload (1/5/15 min) at start {res['load_start']}, end {res['load_end']}; "
          f"{torch.get_num_threads()} threads; saved {out / name}.{{csv,json,md}} ({res['wall_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
