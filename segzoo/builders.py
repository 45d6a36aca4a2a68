"""Config -> objects: the datasets, loaders, model, losses, optimizer and schedule a config names.

Every function reads a validated :class:`~segzoo.config.Config` and never writes to it: what is
learnt on the way (the number of classes, from the dataset) is returned and passed on, e.g.
``model_from_config(cfg, num_classes=resolve_num_classes(cfg, train_set))``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from segzoo import distributed
from segzoo.config import Config
from segzoo.config.schema import SplitConfig
from segzoo.data import (
    SegDataset,
    build_dataloader,
    build_dataset,
    build_pipeline,
    build_train_loader,
)
from segzoo.data.sampler import shard_indices
from segzoo.distributed import DistInfo
from segzoo.errors import ConfigError
from segzoo.losses import LossContext, LossSet, build_losses, label_statistics
from segzoo.losses.base import LabelStats
from segzoo.registry import DATASETS, MODELS, OPTIMIZERS, SCHEDULERS


def dataset_from_split(cfg: Config, split: SplitConfig, **options) -> SegDataset:
    """The split's dataset with its transform pipeline attached; ``options`` are dataset keywords
    added to (or replacing) the config's for this call only (e.g. ``with_instances=True``)."""
    data = cfg.data
    dataset = build_dataset(split.dataset.name, ignore_index=data.ignore_index,
                            **{**split.dataset.kwargs, **options})
    dataset.transforms = build_pipeline(
        split.transforms, ignore_index=data.ignore_index, mean=data.mean, std=data.std
    )
    return dataset


def instance_target_options(split: SplitConfig) -> dict:
    """The dataset keyword that makes the split's dataset return instance targets too
    (``{"with_instances": True}`` or ``{"instances": True}``), or ``{}`` if it has no such switch;
    for :func:`dataset_from_split` when both rows (semantic and instance) are scored."""
    params = inspect.signature(DATASETS.get(split.dataset.name)).parameters
    for key in ("with_instances", "instances"):
        if key in params:
            return {key: split.dataset.kwargs.get(key, True)}
    return {}


def loader_from_split(cfg: Config, split: SplitConfig, dataset: SegDataset, *, train: bool) -> DataLoader:
    shuffle = train if split.shuffle is None else split.shuffle
    return build_dataloader(
        dataset,
        batch_size=split.batch_size,
        shuffle=shuffle,
        num_workers=cfg.data.num_workers,
        drop_last=train and len(dataset) >= split.batch_size,
        seed=cfg.train.seed,
    )


def train_loader(cfg: Config, dataset: SegDataset, world: DistInfo, *, start: int = 0) -> DataLoader:
    """This rank's endless training loader from stream position ``start`` (samples consumed so
    far by all ranks); ``data.train.batch_size`` is per process."""
    split = cfg.data.train
    assert split is not None
    return build_train_loader(
        dataset,
        batch_size=split.batch_size,
        shuffle=True if split.shuffle is None else split.shuffle,
        num_workers=cfg.data.num_workers,
        seed=cfg.train.seed,
        rank=world.rank,
        world_size=world.world_size,
        start=start,
    )


def val_loader(cfg: Config, dataset: SegDataset, world: DistInfo) -> DataLoader:
    """This rank's share of the val split: samples ``rank, rank + W, ...``, each exactly once
    over all ranks (metrics are then summed across ranks)."""
    assert cfg.data.val is not None
    part = dataset if world.world_size == 1 else Subset(dataset, shard_indices(len(dataset), world.rank,
                                                                                world.world_size))
    return build_dataloader(part, batch_size=cfg.data.val.batch_size, shuffle=False,
                            num_workers=cfg.data.num_workers, seed=cfg.train.seed)


def cached_label_stats(dataset: SegDataset, num_classes: int, ignore_index: int, cache: Path,
                       log: Callable[[str], None]) -> Callable[[], LabelStats]:
    """A provider of the training set's label statistics (for median-frequency class weights):
    computed once by rank 0, cached in ``cache`` (JSON) so a resumed run reuses them, shared with
    the other ranks."""

    def provide() -> LabelStats:
        stats = None
        if distributed.info().is_main:
            if cache.is_file():
                stats = tuple(json.loads(cache.read_text())["stats"])
                log(f"label statistics read from {cache}")
            else:
                stats = label_statistics(dataset, num_classes, ignore_index)
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_suffix(".tmp")
                tmp.write_text(json.dumps({"dataset": type(dataset).__name__, "images": len(dataset),
                                           "stats": stats}))
                tmp.replace(cache)
                log(f"label statistics of {len(dataset)} training images written to {cache}")
        return distributed.broadcast_object(stats)

    return provide


def losses_from_config(cfg: Config, num_classes: int,
                       label_stats: Callable[[], LabelStats] | None = None) -> LossSet:
    """The configured loss(es) as a :class:`~segzoo.losses.LossSet`."""
    ctx = LossContext(num_classes=num_classes, ignore_index=cfg.data.ignore_index, label_stats=label_stats)
    try:
        return build_losses(cfg.loss, ctx)
    except ValueError as exc:
        raise ConfigError(f"'loss': {exc}") from None


def resolve_num_classes(cfg: Config, dataset: SegDataset) -> int:
    """The number of classes to build the model with: the dataset's (``model.num_classes``, when
    the config gives it, must agree).

    Raises:
        ConfigError: ``model.num_classes`` disagrees with the dataset, or ``data.ignore_index`` is
            one of the dataset's classes.
    """
    given = cfg.model.kwargs.get("num_classes")
    if given is not None and given != dataset.num_classes:
        raise ConfigError(
            f"'model.num_classes' is {given} but dataset {type(dataset).__name__} has "
            f"{dataset.num_classes} classes; remove model.num_classes to take the dataset's"
        )
    ignore = cfg.data.ignore_index
    if 0 <= ignore < dataset.num_classes:
        raise ConfigError(
            f"'data.ignore_index' is {ignore}, a real class of {type(dataset).__name__} "
            f"({dataset.class_names[ignore]!r} of {dataset.num_classes} classes): its pixels would be "
            "left out of training and scoring; use a value outside [0, num_classes), e.g. 255")
    return dataset.num_classes


def model_from_config(cfg: Config, num_classes: int | None = None) -> nn.Module:
    """Build ``cfg.model`` with ``num_classes`` (default: ``model.num_classes`` of the config).

    Raises:
        ConfigError: neither gives the number of classes.
    """
    num_classes = cfg.model.kwargs.get("num_classes") if num_classes is None else num_classes
    if num_classes is None:
        raise ConfigError("'model.num_classes' is not set and no dataset was given to take it from")
    return MODELS.build(cfg.model.name, **{**cfg.model.kwargs, "num_classes": int(num_classes)})


def optimizer_from_config(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer over ``model``'s trainable parameters, in parameter groups."""
    return OPTIMIZERS.build(cfg.optimizer.name, model, **cfg.optimizer.kwargs)


def scheduler_from_config(cfg: Config, optimizer: torch.optim.Optimizer):
    try:
        return SCHEDULERS.build(cfg.scheduler.name, optimizer, cfg.train.max_iters, **cfg.scheduler.kwargs)
    except ValueError as exc:
        raise ConfigError(f"'scheduler': {exc}") from None


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(name)``.

    Raises:
        ConfigError: a CUDA device was asked for on a machine without one.
    """
    return distributed.resolve_device(name)
