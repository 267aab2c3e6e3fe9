"""Command line: ``python -m dynroute_lib data {check,prepare}`` (issue 4; also ``python -m dynroute_lib.data``).

* ``check NAME [--root DIR] [--split S] [--limit N]``: validate a data set; prints counts, image
  sizes and class pixel frequencies.
* ``prepare synthetic [--root DIR] [--force]``: generate the embedded synthetic set.
* ``holdout camvid --sequence SEQ --out DIR [--root DIR]``: a data root whose train split lacks one recording
  and whose ``heldout`` split holds it (symlinks, nothing copied; ``data/holdout.py``).

Bad input is reported as ONE line ``error: <file>: <problem>`` on stderr with exit code 1 (no
traceback); convertible files (grayscale/RGBA images) give ``warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import sys
import time

from .registry import DATASETS, DataError, get_info


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dynroute_lib data",
                                description="Validate or prepare segmentation data sets.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate a data set split")
    # Not argparse `choices`: an unknown name must give one line, not usage + error.
    c.add_argument("name", help=f"data set: {', '.join(sorted(DATASETS))}")
    c.add_argument("--root", default=None, help="data root (default: the data set's default)")
    c.add_argument("--split", default="train")
    c.add_argument("--limit", type=int, default=None, help="check only the first N pairs")
    g = sub.add_parser("prepare", help="generate the embedded synthetic data set")
    g.add_argument("name", help="only 'synthetic' can be generated")
    g.add_argument("--root", default=None, help="output folder (default data/synthetic)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--force", action="store_true", help="regenerate even if present")
    h = sub.add_parser("holdout", help="hold one recording out of the train split (links, no copies)")
    h.add_argument("name", help="data set (camvid)")
    h.add_argument("--sequence", required=True, help="recording to hold out, e.g. 0006R0")
    h.add_argument("--out", required=True, help="new data root to write")
    h.add_argument("--root", default=None, help="source data root (default: the data set's default)")
    h.add_argument("--heldout-split", default="heldout", help="name of the held-out split (default heldout)")
    h.add_argument("--carry", nargs="*", default=["val"], help="source splits linked unchanged (default val)")
    h.add_argument("--force", action="store_true", help="replace an existing --out")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        get_info(args.name)
        if args.command == "check":
            from .check import check_dataset

            report = check_dataset(args.name, args.root, args.split, args.limit,
                                   on_warning=lambda m: print(f"warning: {m}", file=sys.stderr))
            print(report.format())
        elif args.command == "holdout":
            from .holdout import hold_out

            m = hold_out(args.name, args.sequence, args.out, root=args.root, heldout_split=args.heldout_split,
                         carry=tuple(args.carry), force=args.force)
            print(f"{args.out}: " + ", ".join(f"{k} {v}" for k, v in m["splits"].items())
                  + f" images ({m['held_out']} held out of {', '.join(m['recordings'])})")
        else:
            if args.name != "synthetic":
                raise DataError(f"{args.name}: cannot be generated; see data/README.md "
                                "for how to download and prepare it")
            from .synthetic import ensure_synthetic

            t0 = time.perf_counter()
            root = ensure_synthetic(args.root, seed=args.seed, force=args.force)
            print(f"synthetic data set ready at {root} ({time.perf_counter() - t0:.1f} s)")
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:            # e.g. --out on a read-only disk: one line, not a traceback
        print(f"error: {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
