"""Resumable, shardable sampling for iteration-based training, and seeded samples.

Training reads one endless stream of samples: position ``p`` (0, 1, 2, ...) is sample
``perm_e[p % N]`` of epoch ``e = p // N``, where ``perm_e`` is a permutation seeded by
``(seed, e)`` (identity without shuffling). Every position also carries its own augmentation seed
``seed_of(seed, p)``, and :class:`SeededSamples` runs the dataset's random transforms under it.
So the batch at any iteration and its augmentation are a pure function of ``(seed, position)``:

* resuming at position ``p`` (``start``) reproduces exactly the batches an uninterrupted run
  would have drawn, without loading the skipped ones;
* the number of dataloader workers does not change the data;
* with ``W`` processes each taking ``B`` samples, global batch ``s`` covers positions
  ``[s*B*W, (s+1)*B*W)`` and rank ``r`` takes the ``r``-th slice of ``B``: the union is what one
  process with batch ``B*W`` would see (batches may span two epochs, as detectron2's
  TrainingSampler).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def seed_of(seed: int, position: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, position)``: stream 0 seeds sample augmentation, stream 1 the
    epoch permutations (``position`` = epoch). Seeds must be >= 0."""
    entropy = [seed, stream, position]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]) >> 1  # numpy 1.x: no uint64 >> int


@contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run the body with python ``random``, numpy's global RNG and torch's CPU RNG seeded by
    ``seed``; their previous states are restored afterwards (so the caller's streams, e.g. dropout
    in the main process when ``num_workers`` is 0, are untouched)."""
    py, np_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)


class SeededSamples(Dataset):
    """Wraps a dataset so that ``self[(index, seed)]`` is ``dataset[index]`` loaded (transforms
    included) under :func:`seeded_rng` ``(seed)``; a plain int index loads unseeded."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, tuple):
            index, seed = item
            with seeded_rng(seed):
                return self.dataset[index]
        return self.dataset[item]


class TrainingBatchSampler(Sampler[list[tuple[int, int]]]):
    """Endless batches of ``(index, seed)`` pairs for one rank (see the module docstring).

    Args:
        size: dataset length N (> 0).
        batch_size: samples per batch on this rank (B).
        shuffle: a fresh permutation per epoch (seeded by ``(seed, epoch)``) instead of 0..N-1.
        seed: the run's seed.
        rank, world_size: this process and the number of processes.
        start: stream position to start from (samples already consumed by all ranks together);
            a resumed run passes what its checkpoint recorded.
    """

    def __init__(self, size: int, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if size <= 0:
            raise ValueError("cannot sample batches from an empty dataset")
        if batch_size <= 0 or not 0 <= rank < world_size or start < 0:
            raise ValueError(f"bad sampler arguments: batch_size={batch_size}, rank={rank}, "
                             f"world_size={world_size}, start={start}")
        self.size, self.batch_size, self.shuffle, self.seed = size, batch_size, shuffle, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        self._perm: tuple[int, torch.Tensor] | None = None

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of epoch ``epoch`` (cached for the current epoch)."""
        if self._perm is None or self._perm[0] != epoch:
            if self.shuffle:
                g = torch.Generator().manual_seed(seed_of(self.seed, epoch, stream=1))
                perm = torch.randperm(self.size, generator=g)
            else:
                perm = torch.arange(self.size)
            self._perm = (epoch, perm)
        return self._perm[1]

    def item(self, position: int) -> tuple[int, int]:
        """``(dataset index, augmentation seed)`` of stream position ``position``."""
        epoch, offset = divmod(position, self.size)
        return int(self.permutation(epoch)[offset]), seed_of(self.seed, position)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        step = self.batch_size * self.world_size
        base = self.start + self.rank * self.batch_size
        while True:
            yield [self.item(p) for p in range(base, base + self.batch_size)]
            base += step

    def __len__(self) -> int:  # endless; DataLoader only needs this for len(loader)
        raise TypeError("TrainingBatchSampler is endless")


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """Indices of ``n`` samples that rank ``rank`` evaluates: ``rank, rank + W, ...``. The shards
    cover every sample exactly once (no padding, unlike DistributedSampler)."""
    return list(range(rank, n, world_size))
