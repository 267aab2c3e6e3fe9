"""Device selection and distributed (torchrun / DDP) setup shared by train, evaluate and the notebooks.

The paper trains on 4 GPUs with SyncBN (Sec. 4.1; spec Sec. 5.5). ``pick_device`` is CPU by default and CUDA when
present; ``init_distributed`` joins the torchrun process group (nccl on CUDA, gloo on CPU) and
``sync_buffers`` leaves every rank with the same BN statistics at the end of training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(device: str | None = "auto", local_rank: int = 0) -> torch.device:
    """CPU by default; CUDA when present (``auto``) or asked for."""
    if device in (None, "", "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} asked for CUDA but torch.cuda.is_available() is False")
    return torch.device(device)


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout the model and its inputs use: channels_last (faster convs on CPU and CUDA) or contiguous."""
    return torch.channels_last if channels_last else torch.contiguous_format


def init_distributed() -> Dist:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    return Dist(dist.get_rank(), world, local)


def sync_buffers(net, d: Dist) -> None:
    """Average float buffers (BN running stats) over ranks, copy integer ones from rank 0.

    DDP broadcasts rank 0's buffers at the start of each forward, so after the last step every rank holds
    the stats of its own last batch; averaging leaves all ranks identical (and uses every rank's data).
    """
    if d.world <= 1:
        return
    for b in net.buffers():
        if b.is_floating_point():
            torch.distributed.all_reduce(b)
            b.div_(d.world)
        else:
            torch.distributed.broadcast(b, 0)
