"""Summarise the T=12000 Raw probe against the suite's three T=6000 Raw seeds (issue 13, session 5)."""
import json, sys
from pathlib import Path
import pandas as pd
from dynroute_lib import io
from dynroute_lib.analysis import plots
from dynroute_lib.analysis.compare import summarise
from dynroute_lib.analysis.repro import read_curves
from dynroute_lib.engine.val_curve import converged

run = Path("runs/probe/raw_t12000")
out = Path("results/repro_exploration/raw_t12000")
out.mkdir(parents=True, exist_ok=True)
train, val = pd.read_csv(run / "train_log.csv"), pd.read_csv(run / "val_log.csv")
io.copy_file(run / "train_log.csv", out / "raw_t12000_train.csv")
io.copy_file(run / "val_log.csv", out / "raw_t12000_val.csv")
suite = {k: v for k, v in read_curves(Path("results/repro")).items() if k.startswith("dynamic_raw_l16_s")}
curves = {f"{k} (T=6000)": v for k, v in suite.items()}
curves["raw_t12000 (T=12000, seed 0)"] = (train, val)
rows = []
for name, (tr, va) in curves.items():
    c = converged(va)
    v = va.set_index("step")["val_miou_pct"]
    last = int(va["step"].max())
    rows.append({"run": name, "iters": last,
                 "val_miou_at_3000": v.get(3000), "val_miou_at_6000": v.get(6000),
                 "val_miou_at_9000": v.get(9000), "val_miou_final": c["final_val_miou_pct"],
                 "val_miou_mean_last_4": float(va.sort_values("step")["val_miou_pct"].tail(4).mean()),
                 "tail_gain_points": c["tail_gain_points"], "converged": c["converged"],
                 "ce_last_500": float(tr["ce"].tail(500).mean())})
df = pd.DataFrame(rows)
ev = summarise(run.parent)
ev = ev[ev["iters"] == 12000]
io.save_csv(out / "summary.csv", df)
io.save_csv(out / "final_eval.csv", ev)
scale = {"data": "camvid", "split": "val", "images": 101, "resolution": "240x320", "train_crop": "128x160",
         "base_channels": 16, "iters": "6000 and 12000", "batch": 8, "profile": "repro",
         "note": "schedule-length probe: Dynamic-Raw L16, T=12000 seed 0 vs T=6000 seeds 0-2"}
fig = plots.convergence_curves(curves, scale=scale)
io.save_figure(out / "curves.png", fig, dpi=110)
tj = json.loads((run / "train.json").read_text())
io.save_json(out / "run.json", io.provenance({
    "what": "Schedule-length experiment (issue 13, session 5; docs Next item 1): Dynamic-Raw L16, full repro recipe "
            "with T=12000 instead of 6000 (poly LR over 12000), seed 0, against the suite's Raw s0/s1/s2 at T=6000. "
            f"Trained from code {tj.get('git_sha')} (the process started then).",
    "commands": ["OMP_NUM_THREADS=1 python -m dynroute_lib train dynamic_raw_l16 --profile repro --iters 12000 "
                 "--out runs/probe/raw_t12000 --eval",
                 "python /tmp/probe/summary.py (kept as results/repro_exploration/raw_t12000/summary.py)"],
    "machine": "2-core CPU, two 1-thread jobs side by side", "train_wall_s": tj.get("train_wall_s")}))
print(df.to_string(index=False)); print(ev.T.to_string())
