"""Shared test helpers: tiny models with calibrated BN (random-init activations explode through 16 residual
layers; the official fixture likewise uses calibrated BN statistics)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:          # tests run from any cwd without an editable install
    sys.path.insert(0, str(ROOT))

from dynroute_lib.config import get_preset  # noqa: E402
from dynroute_lib.model import build_model  # noqa: E402
from dynroute_lib.paths import OFFICIAL_FIXTURE, SHARED_CAMVID  # noqa: E402


def calibrate_bn(net: torch.nn.Module, shape=(4, 3, 64, 96), iters: int = 3, seed: int = 0) -> torch.nn.Module:
    """Replace BN running stats by cumulative averages over a few random batches, then eval()."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    net.train()
    with torch.no_grad():
        for _ in range(iters):
            net(torch.randn(*shape, generator=g) * 50)
    return net.eval()


def tiny(preset: str, *, calibrate: bool = True, seed: int = 0, **over) -> torch.nn.Module:
    torch.manual_seed(seed)
    over.setdefault("base_channels", 8)
    over.setdefault("num_classes", 5)
    net = build_model(get_preset(preset, **over))
    return calibrate_bn(net) if calibrate else net.eval()


def smoke_checkpoint(out: Path, iters: int = 1) -> Path:
    """A 4-layer smoke Dynamic-A trained for ``iters`` iterations on the embedded data: its ``model_final.pt``."""
    from dataclasses import replace

    from dynroute_lib.config import for_run
    from dynroute_lib.engine.train import train
    m, t = for_run("dynamic_a", smoke=True)
    train(replace(m, num_layers=4), replace(t, iters=iters, precise_bn_iters=0), out, progress_bar=False)
    return out / "model_final.pt"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convs on a shared 2-core machine run several times faster on one intra-op thread (restored after).

    Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def official_dir() -> Path:
    if not (OFFICIAL_FIXTURE / "official_weights.pth").is_file():
        pytest.skip(f"official fixture not found at {OFFICIAL_FIXTURE}")
    return OFFICIAL_FIXTURE


@pytest.fixture(scope="session")
def camvid_dir() -> Path:
    if not (SHARED_CAMVID / "train" / "images").is_dir():
        pytest.skip(f"CamVid not found at {SHARED_CAMVID}")
    return SHARED_CAMVID
