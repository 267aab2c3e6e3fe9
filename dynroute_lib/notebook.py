"""The notebook session: smoke flag, device, seeds, outputs, run configs and ``run.json`` (handbook Sec. 2).

The notebooks that reproduce the paper (Tables 1-4, Fig. 5, Sec. 4) all go through it; ``from dynroute_lib
import setup`` is this module's :func:`setup`.

Every numbered notebook starts with ``ctx = setup("NN_name", smoke=SMOKE, ...)`` and ends with
``ctx.finish(globals())``. ``setup`` is the one place that turns the notebook parameters into a run:

* ``smoke`` is the parameter ORed with ``DYNROUTE_SMOKE=1`` (any executor can force the fast path);
* outputs go to ``<results_root>/<stem>/``. The tracked ``results/`` is written only by the runner's
  explicit ``python -m dynroute_lib run --commit-results`` (it sets ``DYNROUTE_COMMIT_RESULTS=1``).
  Every other run, a notebook opened in JupyterLab with its defaults included, writes to the git-ignored
  ``results/_local/`` (also when ``results_root`` points at ``results/`` itself), and smoke runs to
  ``results/_smoke/``: interactive and smoke numbers never overwrite the committed ones;
* the training recipe comes from ``config.for_run`` (profile ``cpu`` | ``repro`` | ``gpu`` | ``cpu_long``; smoke wins),
  with ``DATA`` / ``DATA_ROOT`` overriding the profile's data set when given;
* smoke runs use one intra-op thread: their tensors are tiny, and on a shared 2-core machine two threads
  were measured 5-8x *slower* than one (thread contention).
"""
from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from . import io
from .paths import CHECKPOINTS_DIR, COMMIT_ENV, LOCAL_RESULTS_DIR, RESULTS_DIR, SMOKE_RESULTS_DIR

PARAM_TYPES = (bool, int, float, str, type(None))


def smoke_forced() -> bool:
    """True when the environment forces the smoke path (``DYNROUTE_SMOKE=1``)."""
    return os.environ.get("DYNROUTE_SMOKE", "").strip().lower() in ("1", "true", "yes")


def ignored_dir(path: Path) -> Path:
    """Create ``path`` with a ``.gitignore`` of ``*`` inside (scratch output that must never be committed)."""
    path.mkdir(parents=True, exist_ok=True)
    marker = path / ".gitignore"
    if not marker.exists():
        marker.write_text("# created by dynroute_lib.notebook: scratch output, never committed\n*\n")
    return path


def commit_requested() -> bool:
    """True inside ``runner --commit-results`` (``DYNROUTE_COMMIT_RESULTS=1``): the tracked results/ may be written."""
    return os.environ.get(COMMIT_ENV, "").strip() == "1"


def resolve_results_root(results_root: str | Path | None, smoke: bool, *, quiet: bool = False) -> Path:
    """Where a run writes: an explicit root as given, except that the tracked ``results/`` needs the commit flag.

    * smoke, with no root or ``results/``: ``results/_smoke/`` (git-ignored);
    * no root, or ``results/`` without ``DYNROUTE_COMMIT_RESULTS=1``: ``results/_local/`` (git-ignored;
      a line says so when ``results/`` was asked for);
    * ``results/`` under ``runner --commit-results``: ``results/`` (the committed copy);
    * any other directory: itself.
    """
    tracked = RESULTS_DIR.resolve()
    root = Path(results_root).expanduser().resolve() if results_root else None
    if smoke and root in (None, tracked):
        return ignored_dir(SMOKE_RESULTS_DIR).resolve()
    if root == tracked and commit_requested():
        return tracked
    if root == tracked and not quiet:
        print(f"note: {tracked} is written only by `python -m dynroute_lib run --commit-results`; "
              f"writing to {LOCAL_RESULTS_DIR} instead")
    return root if root not in (None, tracked) else ignored_dir(LOCAL_RESULTS_DIR).resolve()


@dataclass
class Ctx:
    """What a notebook needs to know about its run. Create it with :func:`setup`."""

    stem: str
    smoke: bool
    seed: int
    device: str                      # resolved torch device string ("cpu", "cuda:0")
    profile: str                     # training profile of config.TRAIN_PROFILES ("smoke" never appears here)
    data: str                        # data set override ("" = the profile's)
    data_root: str
    results_root: Path
    out: Path                        # <results_root>/<stem>
    t0: float = field(default_factory=time.perf_counter)
    records: dict = field(default_factory=dict)       # extra run.json fields (config hashes, scale, ...)
    written: list = field(default_factory=list)

    # ---- configs ---------------------------------------------------------------------------------------
    def run_config(self, preset: str, **train_overrides):
        """``(ModelConfig, TrainConfig)`` of ``preset`` for this run (profile, smoke, data overrides)."""
        from .config import for_run
        over = {k: v for k, v in train_overrides.items() if v is not None}     # None = the profile's value
        if self.data:
            over.setdefault("data", self.data)
        if self.data_root:
            over.setdefault("data_root", self.data_root)
        return for_run(preset, profile=self.profile, smoke=self.smoke, **over)

    @property
    def train_config(self):
        """The TrainConfig every preset of this run shares (data set, resolution, schedule)."""
        return self.run_config("dynamic_raw_l16")[1]

    @property
    def info(self):
        """Registry entry (class names, palette, ignore index) of this run's data set."""
        from .data import DATASETS
        return DATASETS[self.train_config.data]

    @property
    def checkpoints_root(self) -> Path:
        """Cache of trained runs: ``checkpoints/<profile>`` (smoke: ``<results_root>/_checkpoints/smoke``)."""
        if self.smoke:
            return ignored_dir(self.results_root / "_checkpoints") / "smoke"
        return ignored_dir(CHECKPOINTS_DIR) / self.profile

    def input_dir(self, stem: str) -> Path:
        """Results of an earlier notebook: ``<results_root>/<stem>``, else (not smoke) the committed ``results/<stem>``.

        A notebook opened with its defaults writes to ``results/_local/``; when the notebook it reads has not
        been run there, it reads the committed results instead (and says so) rather than failing.
        """
        own = self.results_root / stem
        committed = RESULTS_DIR / stem
        if own.is_dir() or self.smoke or not committed.is_dir():
            return own
        print(f"{self.stem}: reading the committed {committed} ({own} does not exist)")
        return committed

    def scale(self) -> dict:
        """Data set, resolution, schedule and device of this run, stated next to every table."""
        from .analysis.figstyle import scale_record
        from .io import device_name
        mcfg, tcfg = self.run_config("dynamic_raw_l16")
        return {**scale_record(mcfg.to_dict(), tcfg.to_dict()), "profile": "smoke" if self.smoke else self.profile,
                "device": f"{self.device} ({device_name(self.device)})", "eval_limit": tcfg.eval_limit}

    # ---- outputs ---------------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.out / name

    def save_csv(self, name: str, df) -> Path:
        """Tidy CSV (no index) under ``out``; returns the path."""
        return self._note(io.save_csv(self.path(name), df))

    def save_json(self, name: str, obj: Any) -> Path:
        return self._note(io.save_json(self.path(name), obj))

    def save_fig(self, name: str, fig, *, dpi: int = 120, show: bool = True) -> None:
        """PNG at fixed dpi under ``out``; shown inline when running in a kernel, then closed."""
        path = self._note(io.save_figure(self.path(name), fig, dpi=dpi))
        if show:
            _display_png(path)
        import matplotlib.pyplot as plt
        plt.close(fig)

    def _note(self, path: Path) -> Path:
        rel = str(Path(path).relative_to(self.out)) if Path(path).is_relative_to(self.out) else str(path)
        if rel not in self.written:
            self.written.append(rel)
        return path

    def record(self, **fields) -> None:
        """Add fields to ``run.json`` (e.g. config hashes, the scale of the run)."""
        self.records.update(fields)

    def finish(self, namespace: Mapping[str, Any] | None = None, **extra) -> None:
        """Write ``run.json``: parameters (UPPER_CASE literals of ``namespace``), provenance, wall seconds."""
        params = notebook_parameters(namespace or {})
        wall = time.perf_counter() - self.t0
        rec = io.provenance({
            "notebook": self.stem, "parameters": params, "smoke": self.smoke, "profile": self.profile,
            "device": self.device, "seed": self.seed, "results_dir": str(self.out), **self.records,
            **extra, "files": sorted(self.written), "wall_s": round(wall, 2)}, device=self.device)
        io.save_json(self.path("run.json"), rec)
        print(f"{self.stem}: run.json + {len(self.written)} files in {self.out} ({wall:.1f} s)")


def notebook_parameters(namespace: Mapping[str, Any]) -> dict:
    """The notebook's parameters: UPPER_CASE names bound to plain literals (bool/int/float/str/list/dict)."""
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_") and _is_literal(v)}


def _is_literal(v: Any) -> bool:
    if isinstance(v, (list, tuple)):
        return all(_is_literal(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _is_literal(x) for k, x in v.items())
    return isinstance(v, PARAM_TYPES)


def _display_png(path: Path) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Image, display
    except ImportError:
        return
    if get_ipython() is not None:
        display(Image(filename=str(path)))


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def setup(stem: str, *, smoke: bool = False, seed: int = 0, device: str = "auto", results_root: str = "",
          profile: str = "cpu", data: str = "", data_root: str = "") -> Ctx:
    """Resolve a notebook's run: smoke flag, device, seeds, output directory, profile and data set.

    Args:
        stem: Notebook stem, e.g. ``"03_tables"``; outputs go to ``<results_root>/<stem>/``.
        smoke: Tiny CPU run; ORed with ``DYNROUTE_SMOKE=1``.
        seed: Seed of Python, NumPy and torch RNGs.
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"`` (see ``engine.dist.pick_device``).
        results_root: ``""`` = ``results/_local/`` (``results/_smoke/`` when smoke); ``results/`` itself only
            under ``runner --commit-results`` (see :func:`resolve_results_root`).
        profile: Training profile (``cpu`` | ``repro`` | ``gpu`` | ``cpu_long``).
        data: Data set name overriding the profile's (``""`` = the profile's; smoke: ``synthetic``).
        data_root: Data root (``""`` = the data set's default).
    """
    from .config import TRAIN_PROFILES
    from .engine.dist import pick_device
    if profile not in TRAIN_PROFILES or profile == "smoke":
        valid = [p for p in TRAIN_PROFILES if p != "smoke"]
        raise ValueError(f"unknown PROFILE {profile!r}; valid: {', '.join(valid)} (smoke: SMOKE=True)")
    if data:
        from .data import get_info
        get_info(data)                                   # unknown name -> error listing the valid ones
    smoke = bool(smoke) or smoke_forced()
    dev = pick_device(device)
    root = resolve_results_root(results_root, smoke)
    out = root / stem
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    if smoke:
        import torch
        torch.set_num_threads(1)
    ctx = Ctx(stem=stem, smoke=smoke, seed=seed, device=str(dev), profile=profile, data=data,
              data_root=data_root, results_root=root, out=out)
    print(f"{stem}: smoke={smoke} profile={profile} device={dev} data={ctx.train_config.data} -> {out}")
    return ctx
