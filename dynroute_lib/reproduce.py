"""Command line of the CPU reproduction suite (issue 13): ``python -m dynroute_lib repro ...``.

Each row (preset x seed of ``analysis.repro.SUITE``) is trained or resumed in its own directory under
``checkpoints/<profile>/`` and its results are written the moment it finishes, to ``results/<profile>/`` with
``--commit-results`` (else to the git-ignored ``results/_local/<profile>/``); ``--profile`` is ``repro``
(T = 6000, the default), ``repro_t12000`` or ``repro_t24000`` (T = 12000 / 24000). See
``docs/cpu_reproduction.md``; the notebooks rebuild the tables from the same cache with
``python -m dynroute_lib run --profile repro``. A row whose results are already written is skipped (its
checkpoint may exist only on the machine that trained it); ``--retrain`` trains it again.
"""
from __future__ import annotations

import argparse
import sys

from .analysis.repro import PROFILE, REPRO_PROFILES, plan, row_name, run_one, summary_markdown
from .notebook import setup
from .paths import RESULTS_DIR, commit_mode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib repro", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", default=[], metavar="PRESET", help="rows to run (default: the suite)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[], help="seeds to run (default: each row's)")
    ap.add_argument("--commit-results", action="store_true",
                    help="write the tracked results/repro/ (default: the git-ignored results/_local/repro/)")
    ap.add_argument("--list", action="store_true", help="print the plan and which rows are done, then stop")
    ap.add_argument("--retrain", action="store_true",
                    help="train rows whose results are already written too (default: skip them)")
    ap.add_argument("--summary", action="store_true", help="print the finished rows as a Markdown table, then stop")
    ap.add_argument("--profile", choices=REPRO_PROFILES, default=PROFILE,
                    help="schedule of the suite (default repro, T = 6000; repro_t12000 / repro_t24000: T = 12000 / 24000); rows and "
                         "checkpoints live under results/<profile>/ and checkpoints/<profile>/")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    try:
        pairs = plan(a.only, a.seeds)
        with commit_mode(a.commit_results):   # the explicit command that writes the committed copy (as `run`)
            _run(a, pairs)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _run(a, pairs) -> None:
    ctx = setup(a.profile, profile=a.profile, device=a.device, results_root=str(RESULTS_DIR) if a.commit_results else "")
    if ctx.smoke:
        raise ValueError("DYNROUTE_SMOKE is set: the reproduction has no smoke mode (use `make smoke`)")
    if a.summary:
        print(summary_markdown(ctx.out))
        return
    for preset, seed in pairs:
        done = (ctx.out / "runs" / f"{row_name(preset, seed)}.json").is_file()
        if a.list:
            print(f"{row_name(preset, seed):24s} {'done' if done else 'pending'}")
            continue
        if done and not a.retrain:   # its results exist (its checkpoint may live on another machine only)
            print(f"[repro] {row_name(preset, seed)}: done ({ctx.out / 'runs'}), skipped; --retrain to redo it",
                  flush=True)
            continue
        r = run_one(preset, seed, ctx)
        print(f"[repro] {row_name(preset, seed)}: mIoU {r.get('miou_pct', float('nan')):.2f} %, cost "
              f"{r.get('cost_vs_allopen', float('nan')):.3f} of all-open, converged {r.get('converged')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
