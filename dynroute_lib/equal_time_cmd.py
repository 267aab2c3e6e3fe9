"""Command line of the equal-CPU-time comparison against LR-ASPP (issue 13 item 6; ``analysis.equal_time``):
``python -m dynroute_lib equal-time [--row dynamic_raw_l16_s0] [--baseline lraspp_mbv3] [--commit-results]``.
"""
from __future__ import annotations

import argparse
import sys

from . import io
from .analysis.equal_time import PROFILE, compare
from .notebook import setup
from .paths import RESULTS_DIR, commit_mode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dynroute_lib equal-time", description=__doc__.split("\n")[0])
    ap.add_argument("--row", default="dynamic_raw_l16_s0", help="finished repro row (results/repro/runs/<row>.json)")
    ap.add_argument("--baseline", default="lraspp_mbv3")
    ap.add_argument("--commit-results", action="store_true",
                    help="read and write the tracked results/ (default: results/_local/)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    root = RESULTS_DIR if a.commit_results else RESULTS_DIR / "_local"
    row_json = root / "repro" / "runs" / f"{a.row}.json"
    try:
        if not row_json.is_file():
            raise FileNotFoundError(f"{row_json}: no such finished row (run `python -m dynroute_lib repro` first)")
        with commit_mode(a.commit_results):
            ctx = setup("camvid_equal_time", profile=PROFILE, device=a.device, results_root=str(root))
            df = compare(row_json, a.baseline, ctx)
            io.save_csv(ctx.out / "comparison.csv", df)
            io.save_json(ctx.out / "run.json", io.provenance(
                {"command": io.command_line("dynroute_lib equal-time", argv), "row": a.row, "baseline": a.baseline},
                device=ctx.device))
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(df.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
