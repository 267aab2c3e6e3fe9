"""Project paths, all derived from the package location (never from the current directory)."""
from __future__ import annotations

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
