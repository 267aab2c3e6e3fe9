"""Probe (issue 13, session 4): does a budget row need its soft gate *values*, or only its route?

Each CamVid val image (240x320) is evaluated three ways with one trained checkpoint, eval mode:
  soft   - the learned gates (the row's reported mIoU);
  hard   - the same image's own route (paths with gate > 1e-4) forced open with weight 1 (set_forced_route);
  common - the route open in >= 95 % of the images, weight 1, for every image (no retraining).
Usage: python hard_gate_probe.py CKPT [CKPT ...] > result.txt
"""
import sys
import numpy as np
import torch
from dynroute_lib.data import build_dataset, pad_to_multiple
from dynroute_lib.engine.checkpoint import load_any
from dynroute_lib.engine.metrics import StreamSegMetrics
from dynroute_lib.routes import RouteMask
from dynroute_lib.routes.space import all_nodes, node_key

torch.set_num_threads(1)
EPS = 1e-4
for ck in sys.argv[1:]:
    net, cfg, _ = load_any(ck, None)
    net.eval()
    L = cfg.num_layers
    ds = build_dataset("camvid", None, "val", train=False, normalization=cfg.normalization, resize_hw=(240, 320))
    met = {k: StreamSegMetrics(cfg.num_classes, 255) for k in ("soft", "hard", "common")}
    cost = {k: [] for k in met}
    routes, items = [], []
    with torch.inference_mode():
        for i in range(len(ds)):
            img, mask, meta = ds[i]
            h, w = meta["orig_hw"]
            x = pad_to_multiple(img[:, :h, :w])[0][None]
            net.set_forced_route(None)
            logits, aux = net(x)
            met["soft"].update(logits[..., :h, :w].argmax(1)[0], mask[:h, :w])
            cost["soft"].append(aux.real_gflops.item())
            route = RouteMask(L, {n: tuple(float(v) > EPS for v in aux.gates[node_key(*n)][0]) for n in all_nodes(L)})
            routes.append(route)
            items.append((x, mask[:h, :w], h, w))
            net.set_forced_route(route)
            logits, aux = net(x)
            met["hard"].update(logits[..., :h, :w].argmax(1)[0], mask[:h, :w])
            cost["hard"].append(aux.real_gflops.item())
        freq = {n: np.mean([r.paths[n] for r in routes], axis=0) for n in all_nodes(L)}
        common = RouteMask(L, {n: tuple(f >= 0.95 for f in freq[n]) for n in all_nodes(L)})
        net.set_forced_route(common)
        for x, m, h, w in items:
            logits, aux = net(x)
            met["common"].update(logits[..., :h, :w].argmax(1)[0], m)
            cost["common"].append(aux.real_gflops.item())
    out = ", ".join(f"{k} {met[k].results()['miou_pct']:.2f} % mIoU at {np.mean(cost[k]):.4f} GFLOPs" for k in met)
    print(f"{ck}: {out}", flush=True)
