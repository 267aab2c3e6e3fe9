"""Project paths, all derived from the package location (never from the current directory)."""
from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

PROJ_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = PROJ_ROOT / "data"
RESULTS_DIR = PROJ_ROOT / "results"
SMOKE_RESULTS_DIR = RESULTS_DIR / "_smoke"      # smoke runs (git-ignored)
LOCAL_RESULTS_DIR = RESULTS_DIR / "_local"      # interactive / default runs (git-ignored)
COMMIT_ENV = "DYNROUTE_COMMIT_RESULTS"          # set by `runner --commit-results`: write the tracked results/
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
CHECKPOINTS_DIR = PROJ_ROOT / "checkpoints"
SHARED_DIR = PROJ_ROOT.parent / "shared"
SHARED_CAMVID = SHARED_DIR / "data" / "camvid"
OFFICIAL_FIXTURE = SHARED_DIR / "fixtures" / "official_l16"


@contextmanager
def environ(values: dict):
    """``os.environ`` updated with ``values`` inside the block; the caller's values are restored after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def commit_mode(on: bool):
    """``COMMIT_ENV=1`` inside the block when ``on`` (a CLI's ``--commit-results``), restored after, so a caller in
    the same process (a test, a notebook) is not left writing the tracked results/."""
    return environ({COMMIT_ENV: "1"}) if on else nullcontext()
