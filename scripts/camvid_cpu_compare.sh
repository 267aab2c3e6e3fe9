#!/usr/bin/env bash
# Issue 5 real run: Dynamic-Raw L16, Fix L16 and torchvision LR-ASPP MobileNetV3 (untrained) trained on CamVid at
# 240x320 (128x160 training crops) with the same budget each, then evaluated on CamVid val (101 images) and summarised side by side.
# The budget is process CPU time with one thread per model (OMP_NUM_THREADS=1, the three models train in
# parallel): on a shared machine CPU seconds of a single-threaded process are a fair, load-independent budget.
# Usage: scripts/camvid_cpu_compare.sh [CPU_BUDGET_MIN (default 20)] [RUN_DIR (default runs/camvid_cpu)]
set -euo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-20}
RUNS=${2:-runs/camvid_cpu}
mkdir -p "$RUNS"
for preset in dynamic_raw_l16 fix_l16 lraspp_mbv3; do
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m dynroute_lib train "$preset" --profile cpu_long \
      --data camvid --cpu-budget-min "$BUDGET" --out "$RUNS/$preset" --eval > "$RUNS/$preset.log" 2>&1 &
done
wait
.venv/bin/python -m dynroute_lib compare "$RUNS" --out results/camvid_cpu
