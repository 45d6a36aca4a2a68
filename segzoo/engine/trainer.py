"""The training engine: one iteration-based loop for every model of the zoo.

One iteration = ``train.grad_accum_steps`` micro-batches (forward under autocast, backward), then
one optimizer step, scheduler step and EMA update. Evaluation every ``train.eval_interval``
iterations and at the end; checkpoints at ``train.checkpoint_interval``, at every evaluation and at
the end. The model-specific parts (losses, evaluation) live in the task adapter
(:mod:`segzoo.engine.tasks`). Under torchrun each process trains on its shard of every global batch
(DDP), evaluates its shard of the val split, and only rank 0 writes the run folder::

    config.yaml         resolved config (reloadable)
    train.log           plain-text log
    metrics.jsonl       one JSON line per log/eval step
    metrics.json        final evaluation (written last: its presence marks a finished run)
    checkpoints/        last.pt, best.pt, iter_XXXXXX.pt (keep_last)
    tb/                 TensorBoard events (losses, lr, img/s, memory, eval metrics, overlays)
    vis/                prediction overlays [image | ground truth | prediction]

An unfinished run folder is resumed from ``checkpoints/last.pt`` exactly where it stopped (same
batches, RNG streams and optimizer state); a finished one is never overwritten
(:class:`RunExistsError`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from segzoo import builders, distributed
from segzoo.checkpoint import describe_checkpoint, load_checkpoint
from segzoo.checkpoint.compat import check_resume_fits
from segzoo.config import Config, save_config
from segzoo.engine import accel
from segzoo.engine.ema import ModelEMA
from segzoo.engine.logger import NullLogger, RunLogger, run_summary, write_json, write_overlays
from segzoo.engine.reproducibility import (
    Determinism,
    cudnn_benchmark,
    rng_state,
    seed_everything,
    set_rng_state,
)
from segzoo.engine.signals import GracefulStop
from segzoo.engine.tasks import build_task
from segzoo.engine.train_state import TrainingState
from segzoo.errors import ConfigError, EvaluationError, NonFiniteError, RunExistsError, SegzooError
from segzoo.evaluation import evaluate_checkpoint, format_metrics, val_dataset
from segzoo.optim import base_lr


@dataclass
class TrainResult:
    """What a finished run leaves: its folder, final metrics and checkpoint path."""

    work_dir: Path
    metrics: dict
    checkpoint: Path


class Trainer(TrainingState):
    """Trains ``cfg.model`` on ``cfg.data.train`` and evaluates on ``cfg.data.val``.

    Args:
        cfg: a validated config.
        work_dir: the run folder.
        resume: require a checkpoint to resume from (an unfinished run folder is resumed anyway).
        progress: show tqdm progress bars and print log lines (rank 0 only).

    Raises:
        RunExistsError: ``work_dir`` holds a finished run.
        ConfigError: an option that cannot work here (fp16 on CPU, unknown best_metric, ...).
    """

    def __init__(self, cfg: Config, work_dir: str | Path, *, resume: bool = False, progress: bool = True):
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.ckpt_dir = self.work_dir / "checkpoints"
        if (self.work_dir / "metrics.json").exists():
            raise RunExistsError(
                f"{self.work_dir} holds a finished run (metrics.json); choose another --work-dir "
                "or delete that folder"
            )
        last = self.ckpt_dir / "last.pt"
        if resume and not last.exists():
            raise SegzooError(f"--resume: no checkpoint {last} to resume from")
        self.resume_from = last if last.exists() else None
        # does the checkpoint fit this config? said before anything is built
        self._resume_state = load_checkpoint(last) if self.resume_from is not None else None
        if self._resume_state is not None:
            check_resume_fits(self._resume_state, cfg, last)
        self.world, self.device, self._owns_group = distributed.setup(cfg.train.device)
        self.progress = progress and self.world.is_main
        self.notes: list[str] = []  # setup messages, logged once the logger exists
        try:
            self._setup()
        except BaseException:
            distributed.cleanup(self._owns_group)
            raise

    def _setup(self) -> None:
        cfg, tc = self.cfg, self.cfg.train
        for key in ("max_iters", "grad_accum_steps"):
            if getattr(tc, key) < 1:
                raise ConfigError(f"'train.{key}' must be >= 1, got {getattr(tc, key)}")
        if tc.seed < 0:
            raise ConfigError(f"'train.seed' must be >= 0, got {tc.seed}")
        seed_everything(tc.seed)  # the same initial weights on every rank
        if self.device.type == "cpu":
            torch.set_flush_denormal(True)  # denormals make some CPU steps several times slower
        if cfg.data.train is None:
            raise SegzooError("the config has no data.train split to train on")
        self.train_set = builders.dataset_from_split(cfg, cfg.data.train)
        self.val_set = val_dataset(cfg) if cfg.data.val else None
        num_classes = builders.resolve_num_classes(cfg, self.train_set)
        if self.val_set is not None and self.val_set.num_classes != num_classes:
            raise SegzooError(
                f"train and val datasets disagree on the number of classes "
                f"({num_classes} vs {self.val_set.num_classes})"
            )
        self.val_loader = builders.val_loader(cfg, self.val_set, self.world) if self.val_set else None

        model = builders.model_from_config(cfg, num_classes)
        model, note = distributed.convert_sync_bn(model, tc.sync_bn, self.world, self.device)
        self.notes += [note] if note else []
        self.model = accel.prepare_model(model, self.device, channels_last=tc.channels_last)
        if tc.ema is not None and not 0.0 < tc.ema.decay < 1.0:
            raise ConfigError(f"'train.ema.decay' must lie in (0, 1), got {tc.ema.decay}")
        self.ema = ModelEMA(self.model, decay=tc.ema.decay, warmup=tc.ema.warmup) if tc.ema else None
        stats = builders.cached_label_stats(self.train_set, num_classes, cfg.data.ignore_index,
                                           self.work_dir / "label_stats.json", self.notes.append)
        losses = builders.losses_from_config(cfg, num_classes, stats).to(self.device)
        self.task = build_task(self.model, losses, num_classes=num_classes, ignore_index=cfg.data.ignore_index,
                               class_names=self.train_set.class_names, loss_weights=tc.loss_weights,
                               eval_cfg=cfg.eval,
                               thing_classes=self.train_set.things(), data_mean=cfg.data.mean,
                               data_std=cfg.data.std)
        for name, loss in losses.losses.items():
            if getattr(loss, "weight", None) is not None:
                self.notes.append(f"loss {name}: class weights {[round(w, 4) for w in loss.weight.tolist()]}")
        self.best_metric = tc.best_metric or self.task.key_metric
        if self.best_metric not in self.task.metric_names:
            raise ConfigError(f"'train.best_metric' is {self.best_metric!r}; {self.task.name} models "
                              f"report {', '.join(self.task.metric_names)}")
        try:
            self.cudnn_benchmark = cudnn_benchmark(tc.cudnn_benchmark, deterministic=tc.deterministic,
                                                   task=self.task.name)
        except ValueError as exc:
            raise ConfigError(f"'train.cudnn_benchmark': {exc}") from None
        self.optimizer = builders.optimizer_from_config(cfg, self.model)
        self.scheduler = builders.scheduler_from_config(cfg, self.optimizer)
        self.precision = accel.Precision(tc.amp, self.device)
        ddp = distributed.wrap_ddp(self.model, self.world, self.device,
                                   find_unused_parameters=tc.find_unused_parameters)
        self.train_model = accel.maybe_compile(ddp, tc.compile)
        seed_everything(tc.seed + self.world.rank)  # each rank its own dropout stream
        self.iteration = 0
        self.samples_seen = 0  # position in the training stream (all ranks together)
        self.best: dict = {}
        self.last_metrics: dict = {}

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are evaluated and visualised: the EMA's when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    # ----------------------------------------------------------------- loop
    def train(self) -> TrainResult:
        """Run (or resume) training to ``train.max_iters``; returns the final metrics."""
        try:
            with Determinism(self.cfg.train.deterministic, self.cudnn_benchmark), GracefulStop() as stop:
                return self._train(stop)
        finally:
            distributed.cleanup(self._owns_group)

    def _train(self, stop: GracefulStop) -> TrainResult:
        cfg, tc = self.cfg, self.cfg.train
        if self.resume_from is not None:
            self._load(self.resume_from)
        if self.world.is_main:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            stale = list(self.ckpt_dir.glob(".*.tmp"))  # a process killed while saving
            for tmp in stale:
                tmp.unlink()
            self.notes += [f"removed {len(stale)} partial checkpoint file(s) of a killed save"] if stale else []
            self.logger = RunLogger(self.work_dir, quiet=not self.progress,
                                    resume_from=self.iteration if self.resume_from else None)
            save_config(cfg, self.work_dir / "config.yaml")
        else:
            self.logger = NullLogger()
        log = self.logger.info
        try:
            if self.resume_from is not None:
                log(f"resumed from {self.resume_from} at iteration {self.iteration}")
            for note in self.notes:
                log(note)
            n_params = sum(p.numel() for p in self.model.parameters())
            batch = cfg.data.train.batch_size
            log(f"model {cfg.model.name} ({n_params / 1e6:.2f}M parameters) on {self.device} x "
                f"{self.world.world_size} process(es); amp {tc.amp or 'off'}; train {len(self.train_set)} "
                f"images, val {len(self.val_set) if self.val_set else 0}; {tc.max_iters} iterations of "
                f"batch {batch} x {self.world.world_size} x {tc.grad_accum_steps} (per process x "
                f"processes x accumulation)")
            return self._loop(stop)
        finally:
            self.logger.close()

    def _loop(self, stop: GracefulStop) -> TrainResult:
        cfg, tc = self.cfg, self.cfg.train
        loader = builders.train_loader(cfg, self.train_set, self.world, start=self.samples_seen)
        batches = iter(loader)
        self.model.train()
        window: dict[str, list[float]] = {}
        step_time, imgs_window, data_time = 0.0, 0, 0.0  # eval and checkpoint time left out
        graceful = False
        bar = tqdm(total=tc.max_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not self.progress)
        try:
            while self.iteration < tc.max_iters:
                t0 = time.perf_counter()
                values, n_images, t_data, stopping = self.run_step(batches, stop)
                step_time += time.perf_counter() - t0
                self.iteration += 1
                bar.update(1)
                imgs_window += n_images
                data_time += t_data
                for k, v in values.items():
                    window.setdefault(k, []).append(v)
                if self.iteration % tc.log_interval == 0 or self.iteration == tc.max_iters:
                    steps = len(window["loss"])
                    row = {k: sum(v) / len(v) for k, v in window.items()}
                    row["lr"] = base_lr(self.optimizer)
                    row["img_per_s"] = imgs_window * self.world.world_size / max(step_time, 1e-9)
                    row["iter_time"] = step_time / steps
                    row["data_time"] = data_time / steps
                    row["epoch"] = self.samples_seen / len(self.train_set)
                    row.update(accel.memory_stats(self.device))
                    if self.precision.scale is not None:
                        row["amp_scale"] = self.precision.scale
                    self.logger.record(self.iteration, row, "train")
                    bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}")
                    self.logger.info(f"iter {self.iteration}/{tc.max_iters} " + " ".join(
                        f"{k} {v:.4g}" for k, v in row.items()))
                    window, step_time, imgs_window, data_time = {}, 0.0, 0, 0.0
                last = self.iteration == tc.max_iters
                do_eval = self.val_loader is not None and (
                    last or (tc.eval_interval and self.iteration % tc.eval_interval == 0))
                # save first: an evaluation that fails must not lose the training before it
                if last or do_eval or stopping or (
                        tc.checkpoint_interval and self.iteration % tc.checkpoint_interval == 0):
                    path = self.save()
                if do_eval:
                    self._evaluate_saved(path)
                if stopping and not last:
                    self.logger.info(f"{stop.name or 'stop signal'} at iteration {self.iteration}; "
                                     f"saved {path}; run the same command again to resume")
                    graceful = True
                    raise KeyboardInterrupt(stop.name)
        except Exception as exc:
            if not stop.requested:
                raise
            # SIGTERM sent to the whole process group (a cluster stopping the job) also ends the
            # dataloader workers, so the iteration in flight cannot finish: stop without saving it
            self.logger.info(f"{stop.name} during iteration {self.iteration + 1} also ended "
                             f"{type(exc).__name__}: {exc}; not saved; "
                             f"{describe_checkpoint(self.ckpt_dir / 'last.pt')}; run the same "
                             "command again to resume")
            raise KeyboardInterrupt(stop.name) from exc
        except KeyboardInterrupt:
            if not graceful:  # a second Ctrl-C, or no handler: the state may be mid-step
                self.logger.info(f"interrupted during iteration {self.iteration + 1}; not saved; "
                                 f"the last checkpoint is {self.ckpt_dir / 'last.pt'}")
            raise
        finally:
            bar.close()
        if self.val_loader is not None and not self.last_metrics:  # resumed after the last step
            self._evaluate_saved(self.ckpt_dir / "last.pt")
        metrics = dict(self.last_metrics) if self.val_loader is not None else {}
        metrics.update({"iteration": self.iteration, "model": cfg.model.name})
        if self.world.is_main:
            write_json(self.work_dir / "metrics.json", metrics)
            self._summary(metrics)
        distributed.barrier()
        return TrainResult(self.work_dir, metrics, self.ckpt_dir / "last.pt")

    def run_step(self, batches, stop: GracefulStop) -> tuple[dict[str, float], int, float, bool]:
        """One iteration: accumulate gradients over the micro-batches, check the losses, step.

        Returns (loss terms averaged over ranks and micro-batches, plus ``loss`` and
        ``grad_norm``), images seen by this rank, seconds spent waiting for data, and whether any
        rank was asked to stop. Raises FloatingPointError on a non-finite loss, before the step.
        """
        tc = self.cfg.train
        accum = tc.grad_accum_steps
        terms: dict[str, torch.Tensor] = {}
        n_images, t_data = 0, 0.0
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = accel.to_device(next(batches), self.device, channels_last=tc.channels_last)
            t_data += time.perf_counter() - t0
            n_images += len(batch["image"])
            with accel.no_sync(self.train_model, skip=micro < accum - 1):
                with self.precision.autocast():
                    losses = self.task.losses(self.train_model, batch, self.device)
                total = sum(losses.values())
                self.precision.backward(total / accum)
            for k, v in losses.items():
                terms[k] = terms.get(k, 0.0) + v.detach().float() / accum
        self.samples_seen += n_images * self.world.world_size
        # one collective per iteration: the loss terms (for the log and the finiteness check, the
        # same on every rank) and the stop flag (so all ranks stop at the same iteration)
        names = list(terms)
        flag = torch.tensor([float(stop.requested)], device=self.device)
        packed = distributed.all_reduce_sum(torch.cat([torch.stack([terms[k] for k in names]), flag]))
        values = {k: float(v) / self.world.world_size for k, v in zip(names, packed[:-1].tolist())}
        bad = [k for k in names if not math.isfinite(values[k])]
        if bad:
            raise NonFiniteError(
                f"non-finite loss at iteration {self.iteration + 1} ({', '.join(bad)}); nothing "
                f"saved; {describe_checkpoint(self.ckpt_dir / 'last.pt')}; lower the learning "
                "rate, set train.clip_grad_norm, or check the data"
            )
        values["loss"] = sum(values[k] for k in names)
        if tc.clip_grad_norm is not None:
            self.precision.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad_norm)
            values["grad_norm"] = float(norm)
        self.precision.step(self.optimizer)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return values, n_images, t_data, bool(packed[-1] > 0)

    # ----------------------------------------------------------------- evaluation
    def _evaluate_saved(self, checkpoint: Path) -> dict:
        """Evaluate the state just saved to ``checkpoint``, leaving the RNG streams as they were
        (so a run resumed from that checkpoint continues exactly as this one does).

        Raises:
            EvaluationError: evaluation failed (bad val data, ...); the reason, the saved
                checkpoint and how to evaluate it are logged to train.log first.
        """
        rng = rng_state()
        try:
            return self._evaluate(checkpoint)
        except Exception as exc:
            message = (
                f"evaluation at iteration {self.iteration} failed: {type(exc).__name__}: {exc}\n"
                f"the training state is saved in {checkpoint}; once the cause is fixed, run the "
                f"same train command again (it evaluates the saved state and goes on), or "
                f"evaluate it alone: segzoo eval {self.work_dir / 'config.yaml'} --checkpoint "
                f"{checkpoint}")
            self.logger.info(message)
            raise EvaluationError(message) from exc
        finally:
            set_rng_state(rng)
            self.model.train()

    def _evaluate(self, checkpoint: Path) -> dict:
        """Evaluate the weights just saved to ``checkpoint`` (those in memory) on every rank's
        shard; rank 0 logs, keeps best.pt and writes overlays."""
        distributed.broadcast_buffers(self.eval_model)  # rank 0's (saved) BN statistics everywhere
        with self.precision.autocast():
            metrics = evaluate_checkpoint(self.cfg, checkpoint, model=self.eval_model, loader=self.val_loader,
                                          device=self.device, progress=self.progress, sharded=True,
                                          results_path=self.work_dir / "coco_results.json")
        self.last_metrics = metrics
        key = self.best_metric
        self.logger.record(self.iteration, {k: v for k, v in metrics.items()}, "val")
        self.logger.info(f"evaluation at iteration {self.iteration}:\n{format_metrics(metrics)}")
        score = metrics.get(key, float("nan"))
        if math.isfinite(score) and score > self.best.get(key, -math.inf):
            self.best = {key: score, "iteration": self.iteration}
            self.save("best.pt")
        if self.world.is_main:
            self._visualize()
        self.model.train()
        return metrics

    def _visualize(self) -> None:
        write_overlays(self.eval_model, self.task.predict, self.val_set, self.cfg.train.num_vis,
                       self.work_dir / "vis", self.iteration, self.logger, self.device,
                       mean=self.cfg.data.mean, std=self.cfg.data.std, ignore_index=self.cfg.data.ignore_index)

    def _summary(self, metrics: dict) -> None:
        self.logger.info(run_summary(self.work_dir, self.ckpt_dir / "last.pt", self.best_metric,
                                     metrics.get(self.best_metric)))
