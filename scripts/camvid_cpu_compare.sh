#!/usr/bin/env bash
# Issue 5 real run: Dynamic-Raw L16, Fix L16 and torchvision LR-ASPP MobileNetV3 trained on CamVid at 240x320
# for the same budget each on this CPU, then evaluated on CamVid val (101 images). The budget is process CPU
# time (default 30 CPU-minutes = 15 wall-minutes on 2 dedicated cores), so a shared, noisy machine stays fair.
# Usage: scripts/camvid_cpu_compare.sh [CPU_BUDGET_MIN] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-30}
RUNS=${2:-runs/camvid_cpu}
for preset in dynamic_raw_l16 fix_l16 lraspp_mbv3; do
  .venv/bin/python -m dynroute_lib.train "$preset" --profile cpu_long --data camvid \
      --cpu-budget-min "$BUDGET" --out "$RUNS/$preset" --eval
done
.venv/bin/python -m dynroute_lib.compare "$RUNS" --out results/camvid_cpu
