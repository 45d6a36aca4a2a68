"""Saving and restoring the whole training state of a :class:`~segzoo.engine.trainer.Trainer`
(weights, EMA, optimizer, scheduler, AMP scaler, position in the data stream, RNG streams of every
rank, best metric, config and dataset meta): the checkpoint layout of
:mod:`segzoo.checkpoint`, so that a resumed run continues exactly where it stopped."""

from __future__ import annotations

from pathlib import Path

from segzoo import distributed
from segzoo.checkpoint.compat import load_model_weights
from segzoo.checkpoint.io import check_finite, load_checkpoint, save_checkpoint, snapshot
from segzoo.config.schema import config_diff
from segzoo.engine.reproducibility import rng_state, seed_everything, set_rng_state
from segzoo.errors import CheckpointError


class TrainingState:
    """Mixin of :class:`~segzoo.engine.trainer.Trainer`: ``save`` and ``_load``."""

    def _meta(self) -> dict:
        ds = self.train_set
        return {"num_classes": ds.num_classes, "class_names": list(ds.class_names),
                "palette": [list(c) for c in ds.colors()], "task": self.task.name,
                "model": self.cfg.model.name}

    def save(self, name: str = "last.pt") -> Path:
        """Checkpoint the whole training state (collective: every rank calls it; rank 0 writes).

        Raises:
            FloatingPointError: non-finite weights (nothing is written: the checkpoint on disk
                stays the last good one).
        """
        check_finite(self.model.state_dict(), f"after iteration {self.iteration}", self.ckpt_dir / "last.pt")
        rngs = distributed.all_gather_object(rng_state())
        path = self.ckpt_dir / name
        if self.world.is_main:
            state = {
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.precision.state_dict(),
                "iteration": self.iteration,
                "samples_seen": self.samples_seen,
                "rng": rngs,
                "world_size": self.world.world_size,
                "best": self.best,
                "config": self.cfg.to_dict(),
                "meta": self._meta(),
                "version": 2,
            }
            save_checkpoint(state, path)
            if name == "last.pt":
                snapshot(path, self.iteration, self.cfg.train.keep_last)
        return path

    def _load(self, path: Path) -> None:
        state, self._resume_state = self._resume_state or load_checkpoint(path), None
        load_model_weights(self.model, state["model"], path)
        if self.ema is not None:
            if state.get("ema"):
                self.ema.load_state_dict(state["ema"])
            else:
                self.ema.module.load_state_dict(state["model"])
                self.notes.append("the checkpoint has no EMA weights: EMA restarts from the model's")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise CheckpointError(
                f"{path}: the optimizer state does not fit this config's parameter groups ({exc}); "
                "resume with the config the run started with, or start a new --work-dir") from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.precision.load_state_dict(state.get("scaler") or {})
        self.iteration = int(state["iteration"])
        self.samples_seen = int(state.get("samples_seen", 0))
        self.best = state.get("best", {})
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) == self.world.world_size:
            set_rng_state(rngs[self.world.rank])
        else:
            seed_everything(self.cfg.train.seed + self.world.rank + self.iteration)
            self.notes.append(f"the checkpoint was written by {len(rngs)} processes, this run has "
                              f"{self.world.world_size}: RNG streams restart (not an exact resume)")
        diff = config_diff(state.get("config", {}), self.cfg.to_dict())
        if diff:
            self.notes.append("config changed since the checkpoint: " + "; ".join(diff[:10]))
