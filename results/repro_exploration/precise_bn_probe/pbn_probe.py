"""Probe: does precise BN (absent from the official A/B/C recipe) close the gap between a budget row and Raw?
python runs/diag/pbn_probe.py CKPT OUT.json [N ...]"""
import json, sys, time, torch
from dynroute_lib.config import TrainConfig
from dynroute_lib.data import build_dataset
from dynroute_lib.data.sampling import SeededBatches, SeededDataset, collate
from dynroute_lib.engine.checkpoint import load_model, read_configs
from dynroute_lib.engine.evaluate import evaluate_model
from dynroute_lib.engine.precise_bn import recompute_bn_stats
from dynroute_lib.engine.val_curve import val_dataset
torch.set_num_threads(1)
ck, out = sys.argv[1], sys.argv[2]
ns = [int(x) for x in sys.argv[3:]] or [20, 200]
mcfg, tc = read_configs(ck)
tcfg = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tc.items()})
net = load_model(ck)[0]
val = val_dataset(mcfg, tcfg)
def ev(tag):
    t = time.perf_counter(); r = evaluate_model(net, val, true_macs=False)
    row = {"variant": tag, "miou_pct": r["miou_pct"], "pixel_acc_pct": r["pixel_acc_pct"],
           "real_gflops_mean": r["mean_real_gflops"], "real_gflops_max": r["max_real_gflops"],
           "real_gflops_min": r["min_real_gflops"], "eval_s": time.perf_counter() - t}
    print(json.dumps(row), flush=True); return row
rows = [ev("as trained (EMA BN)")]
ds = build_dataset(tcfg.data, tcfg.data_root or None, "train", train=True, crop_hw=tuple(tcfg.crop_hw),
                   normalization=mcfg.normalization, scale_range=tuple(tcfg.scale_range),
                   resize_hw=tuple(tcfg.resize_hw) if tcfg.resize_hw else None)
ds.cache_decoded()
for n in ns:
    net = load_model(ck)[0]
    sampler = SeededBatches(len(ds), tcfg.batch, tcfg.iters, tcfg.iters + n, tcfg.seed)
    loader = torch.utils.data.DataLoader(SeededDataset(ds), batch_sampler=sampler, collate_fn=collate)
    used = recompute_bn_stats(net, loader, n, to_input=lambda b, d: b[0].to(d).contiguous(memory_format=torch.channels_last))
    rows.append(ev(f"precise BN, {used} train batches"))
json.dump({"checkpoint": ck, "rows": rows}, open(out, "w"), indent=1)
