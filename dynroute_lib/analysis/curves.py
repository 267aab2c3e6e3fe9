"""Committed training curves of the CPU reproduction (issue 13: "convergence shown, not assumed"; paper Sec. 4.1
recipe): a run's per-iteration ``train_log.csv`` and its ``val_log.csv`` copied into a results tree.

Train curves have one line per iteration and are gzipped (``<row>_train.csv.gz``: a T = 24000 curve is 2.3 MB as
text, about 4x less gzipped, and pandas reads either the same way); val curves are small and stay ``<row>_val.csv``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import io

# Nine significant digits print every float32 exactly (the logged losses, costs and gate ratios are float32; lr and
# wall_s are float64 and keep 9 digits, far below their meaning). The run's own log keeps Python's 17 digits, which
# made a T = 24000 train curve 3.4 MB instead of 2.2 MB.
CURVE_FLOAT_FORMAT = "%.9g"
TRAIN_SUFFIX = "_train.csv.gz"      # <row> + this: a committed train curve (curve_path); read_curves globs for it


def copy_curve(src: Path, dst: Path) -> Path:
    """Copies a run's ``train_log.csv`` / ``val_log.csv`` into the results tree, floats at float32 precision."""
    return io.save_csv(dst, pd.read_csv(src), float_format=CURVE_FLOAT_FORMAT)


def curve_path(curves_dir: Path, row: str, kind: str) -> Path:
    """Where ``row``'s committed ``kind`` (``train`` / ``val``) curve lives: gzipped train, plain val."""
    return Path(curves_dir) / (row + TRAIN_SUFFIX if kind == "train" else f"{row}_{kind}.csv")


def copy_curves(run_dir: Path, curves_dir: Path, row: str) -> None:
    """Copies the curves a run directory has (``train_log.csv``, ``val_log.csv``) to ``curve_path``."""
    for kind in ("train", "val"):
        if (Path(run_dir) / f"{kind}_log.csv").is_file():
            copy_curve(Path(run_dir) / f"{kind}_log.csv", curve_path(curves_dir, row, kind))
