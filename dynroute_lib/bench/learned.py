"""Learned routes of trained checkpoints on real CamVid val images (``bench sparse --checkpoint``; issue 15).

Each of the first ``--num-images`` val images is timed at batch 1 (plain, masked dense and sparse on that
image, interleaved), and the first ``b`` images as one batch for every ``b > 1`` of ``--batches``. Images are
resized to the checkpoint's training resolution (its train config's ``resize_hw``) unless ``--size`` says
otherwise, and padded to a multiple of 32 as in evaluation.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import torch

from .timing import _check, _forward, _row, _stats, goal, time_variants

def camvid_images(cfg, count: int, size: tuple[int, int] | None, root: str | None = None):
    """The first ``count`` CamVid val images, normalised for ``cfg``, resized to ``size`` (None: native) and
    padded to a multiple of 32; returns ``(images [count, 3, H, W], names)``."""
    from ..data import build_dataset
    ds = build_dataset("camvid", root=root or None, split="val", train=False, resize_hw=size,
                       normalization=cfg.normalization)
    items = [ds[i % len(ds)] for i in range(count)]
    names = [str(meta.get("name", i)) if isinstance(meta, dict) else str(i) for i, (_, _, meta) in enumerate(items)]
    return torch.stack([img for img, _, _ in items]), names


def checkpoint_size(ck: dict) -> tuple[int, int] | None:
    """The resolution a checkpoint was trained and evaluated at (its train config's resize), if recorded."""
    tcfg = ck.get("train_config") or {}
    hw = tcfg.get("resize_hw")
    return tuple(int(v) for v in hw) if hw else None


def load_checkpoint(path: str):
    """``(net in eval mode, model config, checkpoint dict)`` from one of our checkpoints (config inside)."""
    from ..engine.checkpoint import load_model
    net, cfg, ck = load_model(path)
    if cfg.arch != "dynamic" or cfg.gate_mode == "fixed":
        raise ValueError(f"{path}: a {cfg.arch}/{cfg.gate_mode} model has no learned routes to benchmark")
    return net.eval(), cfg, ck


def bench_learned(net, cfg, ckpt: str, x: torch.Tensor, names: list[str], batches, *, rounds: int, warmup: int,
                  num_images: int, log=print) -> tuple[list[dict], list[dict]]:
    """Learned routes of one checkpoint on real images: each of the first ``num_images`` images at batch 1,
    and the first ``b`` images as one batch for every ``b > 1`` in ``batches``. Rows + reference timings."""
    label = Path(ckpt).parent.name + "/" + Path(ckpt).stem
    rows, refs = [], []
    if 1 in batches:
        jobs, cases = [], []
        for i, name in enumerate(names[:num_images]):
            xi = x[i:i + 1]
            c = dict(label=label, source=f"checkpoint:{ckpt}", image=name)
            _check(net, xi, c, None, True, cfg)
            _, _, aux_p = _forward(net, xi, "plain", None)
            c["plain_gflops"] = aux_p.exec_gflops.double().item()
            cases.append(c)
            jobs += [dict(key=f"img{i}_plain", x=xi, executor="plain", route=None),
                     dict(key=f"img{i}_dense", x=xi, executor="dense", route=None),
                     dict(key=f"img{i}_sparse", x=xi, executor="sparse", route=None)]
        log(f"{label}, batch 1: {len(names)} images, executed GFLOPs "
            + ", ".join(f"{c['exec_gflops']:.3f}" for c in cases) + f" (plain {cases[0]['plain_gflops']:.3f})")
        loads = time_variants(net, jobs, rounds, warmup, log=log, label="batch 1 (per image)")
        for i, c in enumerate(cases):
            p, d, s = jobs[3 * i: 3 * i + 3]
            rows.append(_row(1, c, s, p, d, c["plain_gflops"]))
        # all images together: the sum of the per-image medians (a realistic stream of batch-1 requests)
        tot = {k: sum(statistics.median(jobs[3 * i + j]["times"]) for i in range(len(cases)))
               for j, k in enumerate(("plain", "dense", "sparse"))}
        flops = sum(c["exec_gflops"] for c in cases) / sum(c["plain_gflops"] for c in cases)
        q = tot["sparse"] / tot["plain"] / flops
        refs.append(dict(batch=1, checkpoint=ckpt, images=len(cases), plain_ms_sum=round(1e3 * tot["plain"], 2),
                         dense_ms_sum=round(1e3 * tot["dense"], 2), sparse_ms_sum=round(1e3 * tot["sparse"], 2),
                         flops_ratio=round(flops, 4), time_over_flops=round(q, 4), goal=goal(1),
                         meets_goal=bool(q <= goal(1)), loads_after_rounds=loads))
    for b in (b for b in batches if b > 1):
        xb = x[:b]
        c = dict(label=label, source=f"checkpoint:{ckpt}", image=f"first {b} val images")
        _check(net, xb, c, None, True, cfg)
        _, _, aux_p = _forward(net, xb, "plain", None)
        flops_plain = aux_p.exec_gflops.double().mean().item()
        jobs = [dict(key="plain", x=xb, executor="plain", route=None),
                dict(key="masked_dense", x=xb, executor="dense", route=None),
                dict(key="learned", x=xb, executor="sparse", route=None)]
        log(f"{label}, batch {b}: executed {c['exec_gflops']:.3f} GFLOPs per image (plain {flops_plain:.3f})")
        loads = time_variants(net, jobs, rounds, warmup, log=log, label=f"batch {b}")
        rows.append(_row(b, c, jobs[2], jobs[0], jobs[1], flops_plain))
        refs.append(dict(batch=b, checkpoint=ckpt, plain=_stats(jobs[0]["times"]),
                         masked_dense=_stats(jobs[1]["times"]), loads_after_rounds=loads))
    return rows, refs
