"""Batching: collate functions and DataLoader construction."""

from __future__ import annotations

import signal
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from segzoo.data.sampler import SeededSamples, TrainingBatchSampler
from segzoo.errors import DataError


def collate_semantic(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into ``{"image": (B, 3, H, W) float, "mask": (B, H, W) int64, "meta": list}``
    (plus ``"instances"``: the list of per-image target dicts, when the samples have them).

    Instance samples of different sizes (detection models take lists of images) are not stacked:
    ``"image"`` and ``"mask"`` are then lists of (3, H_i, W_i) and (H_i, W_i) tensors.

    Raises:
        DataError: semantic samples of different sizes (add a resize/random_crop transform, or use
            batch_size 1 for evaluation on images of varying size).
    """
    sizes = {tuple(s["image"].shape[-2:]) for s in samples}
    if len(sizes) > 1 and all("instances" in s for s in samples):  # instance batches
        return {"image": [s["image"].as_subclass(torch.Tensor) for s in samples],
                "mask": [s["mask"].as_subclass(torch.Tensor).long() for s in samples],
                "meta": [s["meta"] for s in samples], "instances": [s["instances"] for s in samples]}
    if len(sizes) > 1:
        raise DataError(
            f"a batch mixes image sizes {sorted(sizes)}; add a resize or random_crop transform, "
            "or use batch_size: 1"
        )
    batch = {
        "image": torch.stack([s["image"].as_subclass(torch.Tensor) for s in samples]),
        "mask": torch.stack([s["mask"].as_subclass(torch.Tensor) for s in samples]).long(),
        "meta": [s["meta"] for s in samples],
    }
    if "instances" in samples[0]:
        batch["instances"] = [s["instances"] for s in samples]
    return batch


def ignore_interrupt(worker_id: int) -> None:
    """``worker_init_fn``: dataloader workers ignore SIGINT. Ctrl-C in a terminal reaches every
    process of the group; the training process then finishes its iteration, saves a checkpoint and
    shuts its workers down itself, instead of finding them dead mid-batch.

    SIGTERM keeps its default action (the worker ends): it is how the loader, and Python's exit
    handler, stop workers once the main process is done or has failed. A worker that ignored it
    would make every error path hang at exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def build_dataloader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool,
    num_workers: int = 0,
    drop_last: bool = False,
    seed: int = 0,
) -> DataLoader:
    """A DataLoader with :func:`collate_semantic`, seeded shuffling and persistent workers."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        collate_fn=collate_semantic,
        generator=generator,
        worker_init_fn=ignore_interrupt,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def build_train_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start: int = 0,
) -> DataLoader:
    """An endless, resumable training loader for one rank (see :mod:`segzoo.data.sampler`):
    batches of ``batch_size`` starting at stream position ``start``, each sample augmented under
    its own seed, so the data do not depend on ``num_workers`` and resume exactly."""
    sampler = TrainingBatchSampler(len(dataset), batch_size, shuffle=shuffle, seed=seed,  # type: ignore[arg-type]
                                   rank=rank, world_size=world_size, start=start)
    return DataLoader(
        SeededSamples(dataset),
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_semantic,
        generator=torch.Generator().manual_seed(seed + rank),
        worker_init_fn=ignore_interrupt,
        pin_memory=torch.cuda.is_available(),
    )
