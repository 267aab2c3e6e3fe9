"""Command line of the reproduction: ``python -m dynroute_lib COMMAND ...`` (every stage of docs/architecture.md).

==========================  ===================================================================================
``train PRESET ...``        train a preset or a route mask (paper Sec. 4.1 recipe; ``engine.train``)
``evaluate CKPT ...``       mIoU, per-image FLOPs and gates of a checkpoint (Sec. 4; ``engine.evaluate``)
``flops PRESET | --table``  params and FLOPs at any size, or every preset against the paper (``flops``)
``routes common CKPT ...``  Common-A/B/C: the route a dynamic model keeps (Sec. 4.3; ``engine.common_route``)
``bench sparse ...``        dense vs sparse inference time (Sec. 3.3; ``bench.sparse``)
``bench train-step ...``    training-step time of Raw vs Fix (``bench.train_step``)
``compare RUNS --out DIR``  side-by-side summary of trained runs (``analysis.compare``)
``eval-sizes CKPT ...``     mIoU and real cost of checkpoints at several input sizes (``analysis.eval_sizes``)
``bn-probe CKPT ...``       val mIoU with EMA, precise-BN and per-image BN statistics (``analysis.bn_probe``)
``equal-time [--row R]``    LR-ASPP trained for a repro row's training time, side by side (``equal_time_cmd``)
``data check|prepare ...``  validate or generate a data set (``data.__main__``)
``repro [--only P ...]``    train/resume/evaluate the CPU reproduction suite (issue 13; ``reproduce``)
``run [--smoke] ...``       run the numbered notebooks with papermill (``runner``; ``--commit-results``: results/)
``replot [--only NN]``      redraw the notebooks' figures from their committed CSV/JSON (``analysis.replot``)
==========================  ===================================================================================

``python -m dynroute_lib COMMAND --help`` shows each command's options.
"""
from __future__ import annotations

import importlib
import sys

# command (one or two words) -> module whose ``main(argv)`` runs it
COMMANDS = {
    "train": "engine.train", "evaluate": "engine.evaluate", "flops": "flops", "routes common": "engine.common_route",
    "bench sparse": "bench.sparse", "bench train-step": "bench.train_step", "compare": "analysis.compare",
    "eval-sizes": "analysis.eval_sizes", "bn-probe": "analysis.bn_probe",
    "equal-time": "equal_time_cmd",
    "data": "data.__main__", "repro": "reproduce", "run": "runner", "replot": "analysis.replot",
}


def _usage() -> str:
    return "usage: python -m dynroute_lib {" + ",".join(COMMANDS) + "} ...\n\n" + __doc__.split("\n\n")[1]


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``argv`` (default ``sys.argv[1:]``) to the command's ``main``; returns its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    two, one = " ".join(argv[:2]), argv[0]
    name, rest = (two, argv[2:]) if two in COMMANDS else (one, argv[1:])
    if name not in COMMANDS:
        print(f"error: unknown command {' '.join(argv[:2])!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__package__}.{COMMANDS[name]}")
    status = module.main(rest)
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
