"""Redraw the notebooks' figures from their committed CSV / JSON, without retraining (issue 16).

``python -m dynroute_lib replot [--only NN ...] [--commit-results]``

Reads ``results/<stem>/`` (tables and ``run.json``) and redraws the figures with the current :mod:`plots`,
taking the data set, resolution, width and iterations from the recorded ``scale``. Written to the
git-ignored ``results/_local/<stem>/`` by default; ``--commit-results`` writes the tracked ``results/<stem>/``
and adds a ``replotted`` entry (git SHA, time, files) to that folder's ``run.json``. Figures that need a
trained model (``05_route_inspector/inspector_grid.png``: per-image records of a checkpoint) are not redrawn;
``00``'s ``samples.png`` needs the data set's first val images and is skipped without them.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .. import io
from ..paths import LOCAL_RESULTS_DIR, RESULTS_DIR
from . import plots


def _run(stem: str, src: Path) -> dict:
    path = src / stem / "run.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _csv(src: Path, stem: str, name: str) -> pd.DataFrame:
    path = src / stem / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run notebook {stem} first")
    return pd.read_csv(path)


def figures_00(src: Path) -> dict:
    from . import data_overview
    summary = _csv(src, "00_data_overview", "data_summary.csv")
    scale = data_overview.overview_scale(summary)
    figs = {"class_frequency.png": plots.class_frequency(_csv(src, "00_data_overview", "class_frequency.csv"),
                                                         scale=scale),
            "object_sizes.png": plots.object_sizes(_csv(src, "00_data_overview", "object_size_hist.csv"), scale=scale)}
    try:
        from ..data import build_dataset
        data = str(summary["data"].iloc[0])
        ds = build_dataset(data, None, "val", train=False, limit=4)
        samples = [ds.load_raw(i)[:2] for i in range(len(ds))]
        figs["samples.png"] = plots.sample_overlays(samples, ds.info, scale=scale)
    except (OSError, ValueError) as e:                 # DataError is a ValueError
        print(f"00_data_overview: samples.png skipped ({e})", file=sys.stderr)
    return figs


def figures_01(src: Path) -> dict:
    from . import static_costs
    return {"routing_space.png": plots.routing_space(static_costs.route_masks()),
            "flops_vs_paper.png": plots.flops_vs_paper(_csv(src, "01_model_and_flops", "flops_vs_paper.csv"),
                                                       scale=static_costs.count_scale())}


def figures_02(src: Path) -> dict:
    run = _run("02_train", src)
    preset = run.get("parameters", {}).get("PRESET", "")
    return {"train_curves.png": plots.training_curves(_csv(src, "02_train", "train_log.csv"), title=preset,
                                                      scale=run.get("scale"))}


def figures_03(src: Path) -> dict:
    return {"table_1_miou_vs_gflops.png": plots.miou_vs_gflops(_csv(src, "03_tables", "table_1.csv"), title="Table 1",
                                                               scale=_run("03_tables", src).get("scale"))}


def figures_04(src: Path) -> dict:
    from . import route_stats
    run = _run("04_route_distribution", src)
    models = run.get("parameters", {}).get("MODELS", list(route_stats.FIG5_MODELS))
    scale = route_stats.source_scale(src / "03_tables")
    act = _csv(src, "04_route_distribution", "route_activation.csv")
    per_image = route_stats.read_per_image(src / "03_tables", models)
    return {"route_activation.png": plots.route_activation(act, scale=scale),
            "route_activation_grids.png": plots.route_activation_grids(act, scale=scale),
            "flops_distribution.png": plots.flops_distribution(per_image, scale=scale)}


def figures_06(src: Path) -> dict:
    from ..bench.sparse import bench_scale
    run = _run("06_sparse_speed", src)
    source = Path(run.get("bench_source") or src / "bench")
    if not (source / "sparse_speed.json").is_file():      # recorded as an absolute path of another checkout
        source = src / "bench" if (src / "bench" / "sparse_speed.json").is_file() else src / "06_sparse_speed" / "bench"
    return {"sparse_speed.png": plots.sparse_speed(_csv(src, "06_sparse_speed", "sparse_speed.csv"),
                                                   scale=bench_scale(source))}


FIGURES = {"00_data_overview": figures_00, "01_model_and_flops": figures_01, "02_train": figures_02,
           "03_tables": figures_03, "04_route_distribution": figures_04, "06_sparse_speed": figures_06}


def replot(stems=None, *, src: Path = RESULTS_DIR, out: Path = LOCAL_RESULTS_DIR, record: bool = False) -> list[Path]:
    """Redraw the figures of ``stems`` (default: all replottable) from ``src`` into ``out``; returns the paths."""
    written = []
    for stem in stems or FIGURES:
        names = []
        for name, fig in FIGURES[stem](Path(src)).items():
            written.append(io.save_figure(Path(out) / stem / name, fig))
            names.append(name)
        if record and (Path(out) / stem / "run.json").is_file():
            mark_replotted(Path(out) / stem / "run.json", names, io.command_line("dynroute_lib replot"))
    return written


def mark_replotted(run_json: Path, names: list[str], command: str) -> None:
    """Add the ``replotted`` entry (git SHA, files, command, time) to a results folder's ``run.json``: the figures
    are newer than the numbers, and the record says by which code."""
    run = json.loads(Path(run_json).read_text())
    run["replotted"] = {"git_sha": io._git("rev-parse", "HEAD"), "files": names, "command": command,
                        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    io.save_json(run_json, run)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib replot", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NN", help="notebook numbers or stems (default: all replottable)")
    ap.add_argument("--commit-results", action="store_true", help="write the tracked results/<stem>/ figures")
    a = ap.parse_args(argv)
    stems = list(FIGURES)
    if a.only:
        stems = [s for s in FIGURES if any(s == o or s[:2] == o.zfill(2) for o in a.only)]
        if not stems:
            print(f"error: --only {' '.join(a.only)}: nothing to replot; replottable: {', '.join(FIGURES)}",
                  file=sys.stderr)
            return 2
    out = RESULTS_DIR if a.commit_results else LOCAL_RESULTS_DIR
    try:
        paths = replot(stems, out=out, record=a.commit_results)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
