"""Device selection, distributed (torchrun) setup and seeded batch sampling shared by train and evaluate."""
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


class SeededBatches(torch.utils.data.Sampler):
    """Yields, for iterations start..stop-1, this rank's slice of the global batch as (index, sample_seed).

    Data order and augmentation are a pure function of (seed, iteration, position): a resumed run sees
    exactly the batches of an uninterrupted one, with any number of loader workers.
    """

    def __init__(self, n: int, batch: int, start: int, stop: int, seed: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"--batch {batch} must be divisible by the number of processes {world}")
        self.n, self.batch, self.start, self.stop, self.seed = n, batch, start, stop, seed
        self.lo, self.hi = rank * batch // world, (rank + 1) * batch // world

    def _perm(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))

    def __iter__(self):
        perm, epoch = None, -1
        for it in range(self.start, self.stop):
            out = []
            for j in range(self.lo, self.hi):
                k = it * self.batch + j
                if k // self.n != epoch:
                    epoch = k // self.n
                    perm = self._perm(epoch)
                out.append((int(perm[k % self.n]), (self.seed * 1_000_003 + k) % 2 ** 31))
            yield out

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class SeededDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that item (index, seed) is drawn with torch's RNG seeded by ``seed``."""

    def __init__(self, ds):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key):
        index, seed = key
        torch.manual_seed(seed)
        return self.ds[index]


def collate(batch):
    images, masks, metas = zip(*batch)
    return torch.stack(images), torch.stack(masks), list(metas)
