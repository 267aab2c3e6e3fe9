"""Seeded batch sampling: data order and augmentation as a pure function of (seed, iteration, position).

The training recipe (paper Sec. 4.1; spec Sec. 5) draws batches of 8 random crops; ``SeededBatches`` yields
each rank's slice of the global batch with a per-sample seed and ``SeededDataset`` draws the sample under that
seed, so a resumed run sees exactly the batches of an uninterrupted one, with any number of loader workers
and any number of DDP ranks.
"""
from __future__ import annotations

import torch


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
    """Stack a list of ``(image, mask, meta)`` samples into ``(images, masks, metas)``."""
    images, masks, metas = zip(*batch)
    return torch.stack(images), torch.stack(masks), list(metas)


def batch_loader(ds, tcfg, start: int, stop: int, rank: int = 0, world: int = 1) -> torch.utils.data.DataLoader:
    """The seeded batches of iterations ``start``..``stop`` of a training config ``tcfg`` (batch, seed, workers)."""
    sampler = SeededBatches(len(ds), tcfg.batch, start, stop, tcfg.seed, rank, world)
    return torch.utils.data.DataLoader(SeededDataset(ds), batch_sampler=sampler, collate_fn=collate,
                                       num_workers=tcfg.workers)
