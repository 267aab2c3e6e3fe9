"""Budget trunks (paper Sec. 3.4 / Eq. 9-10 schedule; issue 13): when a budget-free run may seed Dynamic-A/B/C.

The budget weight w(t) is exactly 0 before 40 % of training, so rows that differ only in lambda_2 / mu share
their first 0.4 T iterations bit for bit; ``analysis.tables.budget_trunk`` trains that part once and the trainer
continues each row from it after :func:`check_branch` agrees.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .. import io
from ..config import ModelConfig, TrainConfig
from .csv_log import CsvLogger
from .schedule import budget_weight_at

BRANCH_FREE = ("name", "budget_weight", "budget_mu")       # fields a budget branch may change on its trunk
BRANCH_FREE_TRAIN = ("clip_mode",)     # only acts on the budget gradient, which is exactly 0 on the trunk


def branches(mcfg: ModelConfig) -> bool:
    """Whether ``mcfg`` trains as a branch of a budget-free trunk: soft gates under a budget loss (Dynamic-A/B/C)."""
    return mcfg.budget_weight > 0 and mcfg.gate_mode == "soft"


def trunk_stop(iters: int) -> int:
    """Last iteration of the budget-free trunk of a ``iters``-step schedule (0: w(t) > 0 from the start)."""
    stop = int(0.4 * iters)
    while stop > 0 and budget_weight_at(stop / iters) > 0:
        stop -= 1
    return stop


def check_branch(ck: dict, mcfg: ModelConfig, tcfg: TrainConfig, path: Path) -> None:
    """A budget-free trunk may seed ``mcfg`` only where the two runs are identical so far.

    Before ``unupdate_rate * T`` the budget weight w(t) is exactly 0 (spec Sec. 4.4), so Dynamic-A/B/C, which
    differ only in lambda_2 / mu, compute bit-identical iterations until then: the trunk (same model with
    lambda_2 = 0, same recipe and seed) is trained once and each budget row continues from it.
    """
    trunk = {k: v for k, v in ck.get("config", {}).items() if k not in BRANCH_FREE}
    mine = {k: v for k, v in mcfg.to_dict().items() if k not in BRANCH_FREE}
    recipe = lambda d: {k: v for k, v in io._jsonable(d or {}).items() if k not in BRANCH_FREE_TRAIN}  # noqa: E731
    if trunk != mine or recipe(ck.get("train_config")) != recipe(tcfg.to_dict()):
        raise ValueError(f"{path}: trunk differs from {mcfg.name} beyond {', '.join(BRANCH_FREE)}")
    if budget_weight_at(ck["step"] / ck["max_iter"]) != 0.0 or ck["max_iter"] != tcfg.iters:
        raise ValueError(f"{path}: trunk step {ck['step']} / {ck['max_iter']} is past the budget start")


def copy_logs(src: Path, dst: Path, step: int, logs: dict) -> None:
    """Start the branch's logs ``{file name: fields}`` with the trunk's rows up to ``step`` (curves cover the
    whole schedule)."""
    for name, fields in logs.items():
        if (src / name).is_file():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst / name)
            CsvLogger(dst / name, fields, resume_step=step).close()
