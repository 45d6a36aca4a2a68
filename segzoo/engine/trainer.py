"""The training engine: iteration-based SGD loop with evaluation, checkpoints and records.

Run folder (``work_dir``) contents::

    config.yaml         resolved config (reloadable)
    train.log           plain-text log
    metrics.jsonl       one JSON line per log/eval step
    metrics.json        final evaluation (written last: its presence marks a finished run)
    checkpoints/        last.pt (every checkpoint) and best.pt (best key metric)
    tb/                 TensorBoard events (losses, lr, img/s, eval metrics, overlays)
    vis/                prediction overlays [image | ground truth | prediction]

An unfinished run folder is resumed from ``checkpoints/last.pt``; a finished one is never
overwritten (:class:`RunExistsError`).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from segzoo.config import Config, save_config
from segzoo.data.transforms import denormalize
from segzoo.engine import builder
from segzoo.engine.checkpoint import load_checkpoint, save_checkpoint
from segzoo.engine.evaluator import format_metrics
from segzoo.engine.logger import RunLogger, write_json
from segzoo.engine.tasks import build_task
from segzoo.errors import SegzooError
from segzoo.visualize import panel, save_rgb


class RunExistsError(SegzooError, FileExistsError):
    """The work dir already holds a finished run."""


@dataclass
class TrainResult:
    """What a finished run leaves: its folder, final metrics and checkpoint path."""

    work_dir: Path
    metrics: dict
    checkpoint: Path


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Trains ``cfg.model`` on ``cfg.data.train`` and evaluates on ``cfg.data.val``.

    Args:
        cfg: a validated config.
        work_dir: the run folder.
        resume: require a checkpoint to resume from (an unfinished run folder is resumed anyway).
        progress: show tqdm progress bars and print log lines.
    """

    def __init__(self, cfg: Config, work_dir: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.ckpt_dir = self.work_dir / "checkpoints"
        self.progress = progress
        last = self.ckpt_dir / "last.pt"
        if (self.work_dir / "metrics.json").exists():
            raise RunExistsError(
                f"{self.work_dir} holds a finished run (metrics.json); choose another --work-dir "
                "or delete that folder"
            )
        if resume and not last.exists():
            raise SegzooError(f"--resume: no checkpoint {last} to resume from")
        self.resume_from = last if last.exists() else None
        self._setup()

    def _setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        self.device = builder.resolve_device(cfg.train.device)
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormals make some CPU steps several times slower
        if cfg.data.train is None:
            raise SegzooError("the config has no data.train split to train on")
        self.train_set = builder.dataset_from_split(cfg, cfg.data.train)
        self.val_set = builder.dataset_from_split(cfg, cfg.data.val) if cfg.data.val else None
        num_classes = builder.resolve_num_classes(cfg, self.train_set)
        if self.val_set is not None and self.val_set.num_classes != num_classes:
            raise SegzooError(
                f"train and val datasets disagree on the number of classes "
                f"({num_classes} vs {self.val_set.num_classes})"
            )
        self.train_loader = builder.loader_from_split(cfg, cfg.data.train, self.train_set, train=True)
        self.val_loader = (
            builder.loader_from_split(cfg, cfg.data.val, self.val_set, train=False) if self.val_set else None
        )
        self.model = builder.model_from_config(cfg).to(self.device)
        loss = builder.loss_from_config(cfg, num_classes).to(self.device)
        self.task = build_task(self.model, loss, num_classes=num_classes,
                               ignore_index=cfg.data.ignore_index,
                               class_names=self.train_set.class_names,
                               eval_cfg=cfg.eval)  # issue 6
        self.optimizer = builder.optimizer_from_config(cfg, self.model)
        self.scheduler = builder.scheduler_from_config(cfg, self.optimizer)
        self.iteration = 0
        self.epoch = 0
        self.best: dict = {}

    # ----------------------------------------------------------------- checkpoints
    def _meta(self) -> dict:
        ds = self.train_set
        return {"num_classes": ds.num_classes, "class_names": list(ds.class_names),
                "palette": [list(c) for c in ds.colors()], "task": self.task.name,
                "model": self.cfg.model.name}

    def save(self, name: str = "last.pt") -> Path:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "iteration": self.iteration,
            "epoch": self.epoch,
            "best": self.best,
            "config": self.cfg.to_dict(),
            "meta": self._meta(),
            "rng": _rng_state(),
        }
        return save_checkpoint(state, self.ckpt_dir / name)

    def _load(self, path: Path) -> None:
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.iteration = int(state["iteration"])
        self.epoch = int(state.get("epoch", 0))
        self.best = state.get("best", {})
        _set_rng_state(state["rng"])

    # ----------------------------------------------------------------- loop
    def _batches(self):
        generator = self.train_loader.generator
        while True:
            if generator is not None:
                generator.manual_seed(self.cfg.train.seed + self.epoch)
            for batch in self.train_loader:
                yield batch
            self.epoch += 1

    def train(self) -> TrainResult:
        """Run (or resume) training to ``train.max_iters``; returns the final metrics."""
        cfg, tc = self.cfg, self.cfg.train
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.logger = RunLogger(self.work_dir, quiet=not self.progress)
        log = self.logger.info
        if self.resume_from is not None:
            self._load(self.resume_from)
            log(f"resumed from {self.resume_from} at iteration {self.iteration}")
        save_config(cfg, self.work_dir / "config.yaml")
        n_params = sum(p.numel() for p in self.model.parameters())
        log(f"model {cfg.model.name} ({n_params / 1e6:.2f}M parameters) on {self.device}; "
            f"train {len(self.train_set)} images, val {len(self.val_set) if self.val_set else 0}; "
            f"{tc.max_iters} iterations, batch {cfg.data.train.batch_size}")
        self.model.train()
        batches = self._batches()
        window: dict[str, list[float]] = {}
        t_window, imgs_window = time.perf_counter(), 0
        bar = tqdm(total=tc.max_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not self.progress)
        try:
            while self.iteration < tc.max_iters:
                batch = next(batches)
                losses = self.task.losses(self.model, batch, self.device)
                total = sum(losses.values())
                if not torch.isfinite(total):
                    bad = [k for k, v in losses.items() if not torch.isfinite(v)]
                    raise FloatingPointError(
                        f"non-finite loss at iteration {self.iteration + 1} ({', '.join(bad)}); "
                        f"the last good checkpoint is {self.ckpt_dir / 'last.pt'}; lower the "
                        "learning rate or check the data"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                total.backward()
                self.optimizer.step()
                self.scheduler.step()
                self.iteration += 1
                bar.update(1)
                imgs_window += batch["image"].shape[0]
                for k, v in {**losses, "loss": total}.items():
                    window.setdefault(k, []).append(float(v.detach()))
                if self.iteration % tc.log_interval == 0 or self.iteration == tc.max_iters:
                    elapsed = time.perf_counter() - t_window
                    values = {k: sum(v) / len(v) for k, v in window.items()}
                    values["lr"] = self.optimizer.param_groups[0]["lr"]
                    values["img_per_s"] = imgs_window / max(elapsed, 1e-9)
                    self.logger.record(self.iteration, values, "train")
                    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}")
                    log(f"iter {self.iteration}/{tc.max_iters} " + " ".join(
                        f"{k} {v:.4g}" for k, v in values.items()))
                    window, t_window, imgs_window = {}, time.perf_counter(), 0
                last = self.iteration == tc.max_iters
                do_eval = self.val_loader is not None and (
                    last or (tc.eval_interval and self.iteration % tc.eval_interval == 0))
                if do_eval:
                    self._evaluate()
                if last or do_eval or (tc.checkpoint_interval and self.iteration % tc.checkpoint_interval == 0):
                    self.save()
        except KeyboardInterrupt:
            bar.close()
            path = self.save()
            log(f"interrupted at iteration {self.iteration}; saved {path}; run again to resume")
            self.logger.close()
            raise
        bar.close()
        metrics = dict(self.last_metrics) if self.val_loader is not None else {}
        metrics.update({"iteration": self.iteration, "model": cfg.model.name})
        write_json(self.work_dir / "metrics.json", metrics)
        self._summary(metrics)
        self.logger.close()
        return TrainResult(self.work_dir, metrics, self.ckpt_dir / "last.pt")

    def _evaluate(self) -> dict:
        metrics = self.task.evaluate(self.model, self.val_loader, self.device, self.progress)
        self.last_metrics = metrics
        key = self.task.key_metric
        self.logger.record(self.iteration, {k: v for k, v in metrics.items() if not isinstance(v, dict)}, "val")
        self.logger.info(f"evaluation at iteration {self.iteration}:\n{format_metrics(metrics)}")
        score = metrics.get(key, float("nan"))
        if math.isfinite(score) and score > self.best.get(key, -math.inf):
            self.best = {key: score, "iteration": self.iteration}
            self.save("best.pt")
        self._visualize()
        self.model.train()
        return metrics

    @torch.inference_mode()
    def _visualize(self) -> None:
        n = min(self.cfg.train.num_vis, len(self.val_set))
        if n == 0:
            return
        self.model.eval()
        palette = self.val_set.colors()
        for i in range(n):
            sample = self.val_set[i]
            image = sample["image"].as_subclass(torch.Tensor).unsqueeze(0).to(self.device)
            pred = self.task.predict(self.model, image)[0]
            rgb = denormalize(image, self.cfg.data.mean, self.cfg.data.std)[0]
            arr = panel(rgb, sample["mask"], pred, palette, self.cfg.data.ignore_index)
            save_rgb(arr, self.work_dir / "vis" / f"iter{self.iteration:06d}_{i}.png")
            self.logger.image(f"val/sample_{i}", arr, self.iteration)
        self.model.train()

    def _summary(self, metrics: dict) -> None:
        wd = self.work_dir
        key = self.task.key_metric
        score = metrics.get(key)
        lines = [
            f"Run folder: {wd}",
            f"  resolved config  {wd / 'config.yaml'}",
            f"  log              {wd / 'train.log'}",
            f"  metrics          {wd / 'metrics.json'}" + (
                f"  ({key} {100 * score:.2f})" if isinstance(score, float) and math.isfinite(score) else ""),
            f"  checkpoint       {self.ckpt_dir / 'last.pt'}",
            f"  tensorboard      {wd / 'tb'}   (tensorboard --logdir {wd / 'tb'})",
            f"  overlays         {wd / 'vis'}",
        ]
        self.logger.info("\n".join(lines))
