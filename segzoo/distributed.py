"""Multi-process training through ``torchrun`` and ``torch.distributed``.

``torchrun --nproc_per_node N -m segzoo train CONFIG`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`setup` joins them
into one process group (NCCL on CUDA, gloo on CPU) and gives each its device (``cuda:LOCAL_RANK``).
Every helper here is a no-op for a single process, so the trainer calls them unconditionally.
Collectives must be called by every rank in the same order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from segzoo.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files, logs, TensorBoard and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def info() -> DistInfo:
    """Rank and world size of the initialised process group, else of a single process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    return DistInfo()


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> ``cuda`` if available else ``cpu``; a CUDA device becomes
    ``cuda:LOCAL_RANK`` under torchrun.

    Raises:
        ConfigError: a CUDA device was asked for on a machine without one.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"'train.device' is {name!r} but CUDA is not available; use 'cpu' or 'auto'")
        if _env_world_size() > 1:
            device = torch.device("cuda", local_rank)
    return device


def setup(device_name: str) -> tuple[DistInfo, torch.device, bool]:
    """Join the process group described by torchrun's environment variables, if any.

    Returns ``(info, device, created)``; ``created`` is True when this call initialised the
    process group (the caller then tears it down with :func:`cleanup`).

    Raises:
        ConfigError: an unusable device (see :func:`resolve_device`).
    """
    world = _env_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    created = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        created = True
    return info(), device, created


def cleanup(created: bool) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if info().is_distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (returned for chaining). On NCCL the tensor must be on
    the rank's GPU; gloo takes CPU tensors."""
    if info().is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order; ``[obj]`` for a single process."""
    if not info().is_distributed:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics, ...) of ``module`` to every rank,
    in place. DDP broadcasts them only at the start of each training forward, so after a step
    every rank holds the statistics of its own last batch; the trainer calls this before an
    evaluation so that every rank scores the state rank 0 saved."""
    if not info().is_distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=src)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not info().is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def convert_sync_bn(model: nn.Module, enabled: bool, world: DistInfo, device: torch.device) -> tuple[nn.Module, str]:
    """Replace BatchNorm by SyncBatchNorm for ``train.sync_bn`` when it can help.

    SyncBatchNorm averages batch statistics over the processes; with one process it is plain
    BatchNorm, and PyTorch implements it for CUDA only, so the model keeps BatchNorm when the world
    size is 1 or the device is not CUDA. Returns ``(model, what was done)`` for the log.
    """
    if not enabled or not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, ""
    if world.world_size == 1:
        return model, "sync_bn: world size 1, keeping BatchNorm"
    if device.type != "cuda":
        return model, f"sync_bn: SyncBatchNorm needs CUDA; keeping per-process BatchNorm on {device.type}"
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), f"sync_bn: BatchNorm synchronised over {world.world_size} processes"


def wrap_ddp(model: nn.Module, world: DistInfo, device: torch.device, *, find_unused_parameters: bool = False) -> nn.Module:
    """``DistributedDataParallel(model)`` when there are several processes, else ``model``."""
    if not world.is_distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )
