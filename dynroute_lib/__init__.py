"""dynroute: Learning Dynamic Routing for Semantic Segmentation (Li et al., CVPR 2020), runnable and inspectable.

Import-light on purpose: ``import dynroute_lib`` loads nothing heavy. Notebooks start with
``from dynroute_lib import setup`` (the notebook session, :mod:`dynroute_lib.notebook`); submodules are imported
on use. The stages (docs/architecture.md): ``data`` -> ``model`` (+ ``routes``, ``flops``) -> ``engine`` (train,
evaluate, checkpoints) -> ``analysis`` / ``inspector`` / ``bench`` -> ``notebook`` / ``runner`` -> notebooks;
``python -m dynroute_lib`` is the command line.
"""
from __future__ import annotations

import importlib

__all__ = ["setup"]


def setup(*args, **kwargs):
    """Resolve a notebook run (smoke flag, device, seeds, output dir); see :func:`dynroute_lib.notebook.setup`."""
    from .notebook import setup as _setup
    return _setup(*args, **kwargs)


def __getattr__(name: str):
    # ``from dynroute_lib import analysis, flops`` works without importing every submodule up front.
    if name.startswith("_"):
        raise AttributeError(name)
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name == f"{__name__}.{name}":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
        raise
