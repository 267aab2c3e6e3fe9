"""Project paths, all derived from the package location (never from the current directory)."""
from __future__ import annotations

import os
from contextlib import contextmanager
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
def commit_mode(on: bool):
    """``COMMIT_ENV=1`` inside the block when ``on`` (a CLI's ``--commit-results``); the previous value is restored
    after, so a caller in the same process (a test, a notebook) is not left writing the tracked results/."""
    prev = os.environ.get(COMMIT_ENV)
    if on:
        os.environ[COMMIT_ENV] = "1"
    try:
        yield
    finally:
        if on and prev is None:
            os.environ.pop(COMMIT_ENV, None)
        elif on:
            os.environ[COMMIT_ENV] = prev
