"""Training wall time of resumable runs (issue 13, done-when 7: the suite's CPU time, read from the run logs).

A run's ``train_log.csv`` restarts its ``wall_s`` column at every resume, and where a budget row branches from the
budget-free trunk that Dynamic-A/B/C of one seed share (``engine.branch``: the trunk's rows are copied in first).
So the time a run took is the sum of each segment's last ``wall_s``, and a budget row's segments that end by the
trunk's last step (``engine.branch.trunk_stop``) are the trunk's time, not the row's own. The wall time of one
``python`` process (what ``train.json`` records) misses every earlier segment of a resumed run. A restart is seen
where ``wall_s`` falls, i.e. wherever the stretch before it ran longer than one iteration of the next.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config import PRESETS, ModelConfig
from ..engine.branch import branches, trunk_stop
from .curves import curve_path


def segments(log: pd.DataFrame) -> list[tuple[int, int, float]]:
    """``(first step, last step, wall seconds)`` of each uninterrupted stretch of a train log."""
    steps, wall = log["step"].to_numpy(), log["wall_s"].to_numpy()
    out, first = [], 0
    for i in range(len(wall)):
        if i + 1 == len(wall) or wall[i + 1] < wall[i]:
            out.append((int(steps[first]), int(steps[i]), float(wall[i])))
            first = i + 1
    return out


def split(log: pd.DataFrame, stop: int = 0) -> tuple[float, float]:
    """``(own, trunk)`` wall seconds: segments that end by step ``stop`` (> 0 for a branched budget row) are
    the shared trunk's; a row that trained its first 40 % itself has one segment across ``stop``, all its own."""
    own = trunk = 0.0
    for _, last, wall in segments(log):
        if stop and last <= stop:
            trunk += wall
        else:
            own += wall
    return own, trunk


def train_wall_s(train_log: Path) -> float:
    """Total training wall time of a run (trunk included)."""
    return sum(split(pd.read_csv(train_log)))


def row_stop(mcfg: ModelConfig | None, iters: int | None) -> int:
    """Trunk's last step for a run of ``mcfg``: a budget branch (``engine.branch.branches``) starts after it;
    0 for every other model (and an unknown one)."""
    return trunk_stop(int(iters)) if mcfg is not None and iters and branches(mcfg) else 0


def run_wall(run_dir: Path, mcfg: ModelConfig, iters: int,
             process_wall_s: float | None) -> tuple[float | None, float | None]:
    """``(own, trunk)`` wall seconds of a run directory from its ``train_log.csv``; without a log, the one
    process's time (``train.json``) and no trunk."""
    log = Path(run_dir) / "train_log.csv"
    return split(pd.read_csv(log), row_stop(mcfg, iters)) if log.is_file() else (process_wall_s, None)


def suite_wall(results_dir: Path) -> pd.DataFrame:
    """Per committed row of ``<results_dir>/runs/``: its own and its trunk's training wall seconds, from its curve
    (``curves/<row>_train.csv.gz``; without one, the row's ``train_wall_s``)."""
    rows = []
    for p in sorted(Path(results_dir).glob("runs/*.json")):
        r = json.loads(p.read_text())
        curve = curve_path(Path(results_dir) / "curves", r["row"], "train")
        if curve.is_file():
            own, trunk = split(pd.read_csv(curve), row_stop(PRESETS.get(r.get("preset") or ""), r.get("iters")))
        else:
            own, trunk = float(r.get("train_wall_s") or 0.0), 0.0
        rows.append({"row": r["row"], "preset": r.get("preset"), "seed": r.get("seed", 0), "own_s": own,
                     "trunk_s": trunk})
    return pd.DataFrame(rows, columns=["row", "preset", "seed", "own_s", "trunk_s"])


def suite_hours(results_dir: Path) -> dict:
    """The suite's training wall hours: every row's own time plus each seed's shared trunk once."""
    w = suite_wall(results_dir)
    trunks = w[w["trunk_s"] > 0].groupby("seed")["trunk_s"].max()
    own, trunk = w["own_s"].sum() / 3600, trunks.sum() / 3600
    return {"rows": len(w), "own_h": own, "trunk_h": trunk, "total_h": own + trunk}
