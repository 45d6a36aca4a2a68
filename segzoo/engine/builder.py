"""Building the run's components (datasets, loaders, model, loss, optimizer) from a Config."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from segzoo.config import Config
from segzoo.config.schema import SplitConfig
from segzoo.data import SegDataset, build_dataloader, build_dataset, build_pipeline
from segzoo.errors import ConfigError
from segzoo.losses import LossContext, build_loss
from segzoo.registry import MODELS, OPTIMIZERS, SCHEDULERS


def dataset_from_split(cfg: Config, split: SplitConfig) -> SegDataset:
    """The split's dataset with its transform pipeline attached."""
    data = cfg.data
    dataset = build_dataset(split.dataset.name, ignore_index=data.ignore_index, **split.dataset.kwargs)
    dataset.transforms = build_pipeline(
        split.transforms, ignore_index=data.ignore_index, mean=data.mean, std=data.std
    )
    return dataset


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


def resolve_num_classes(cfg: Config, dataset: SegDataset) -> int:
    """Fill ``model.num_classes`` from the dataset, or check that a given value agrees."""
    given = cfg.model.kwargs.get("num_classes")
    if given is not None and given != dataset.num_classes:
        raise ConfigError(
            f"'model.num_classes' is {given} but dataset {type(dataset).__name__} has "
            f"{dataset.num_classes} classes; remove model.num_classes to take the dataset's"
        )
    cfg.model.kwargs["num_classes"] = dataset.num_classes
    return dataset.num_classes


def model_from_config(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` (``num_classes`` must be resolved already)."""
    if "num_classes" not in cfg.model.kwargs:
        raise ConfigError("'model.num_classes' is not set and no dataset was given to take it from")
    return MODELS.build(cfg.model.name, **cfg.model.kwargs)


def loss_from_config(cfg: Config, num_classes: int) -> nn.Module:
    ctx = LossContext(num_classes=num_classes, ignore_index=cfg.data.ignore_index)
    return build_loss(cfg.loss.name, ctx, **cfg.loss.kwargs)


def optimizer_from_config(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return OPTIMIZERS.build(cfg.optimizer.name, params, **cfg.optimizer.kwargs)


def scheduler_from_config(cfg: Config, optimizer: torch.optim.Optimizer):
    return SCHEDULERS.build(cfg.scheduler.name, optimizer, cfg.train.max_iters, **cfg.scheduler.kwargs)


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> cuda if available else cpu; otherwise ``torch.device(name)``.

    Raises:
        ConfigError: a CUDA device was asked for on a machine without one.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"'train.device' is {name!r} but CUDA is not available; use 'cpu' or 'auto'")
    return device
