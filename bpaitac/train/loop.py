"""Fitting a network: Adam, training and validation epochs, checkpoints, early stopping.

- Adam with ``training.learning_rate``; mini-batches of ``training.batch_size`` in an order drawn
  from ``(seed, epoch)`` only, so an epoch is the same whether or not training resumed. With
  ``training.reverse_complement`` a random half of each epoch's training sequences, also drawn
  from ``(seed, epoch)`` only, is reverse-complemented; validation data never are.
- Early stopping on a validation metric (:mod:`bpaitac.train.early_stopping`); the best epoch's
  weights are kept.
- After every epoch ``checkpoint.pt`` is written (:mod:`bpaitac.train.checkpoint`); a rerun
  resumes from it, so a killed job loses at most the epoch in progress and ends with the same
  weights as an uninterrupted run (on CPU).
- A divergence guard stops with :class:`~bpaitac.train.config.TrainingDiverged` when the loss or
  the validation predictions stop being finite.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bpaitac.data.batches import Batch, BatchSource, epoch_flips, epoch_order
from bpaitac.model.network import BpAITAC
from bpaitac.model.predict import mean_r_across_ocrs, mean_r_across_targets, predict_batches
from bpaitac.train.callbacks import Callback, ProgressBar
from bpaitac.train.checkpoint import (
    fingerprint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bpaitac.train.config import TrainingConfig, TrainingDiverged
from bpaitac.train.early_stopping import EarlyStopping

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_r_across_celltypes",
    "val_r_across_ocrs",
    "val_r_across_celltypes_log",
    "val_r_across_ocrs_log",
    "seconds",
)
"""Columns of ``history.tsv``: the validation R on the paper's linear scale (what early stopping
monitors, as in the authors' code) and on the log scale (``*_log``, secondary)."""

LossFn = Callable[[torch.Tensor, torch.Tensor, Batch], torch.Tensor]
Weights = dict[str, torch.Tensor]


def make_optimiser(model: torch.nn.Module, learning_rate: float) -> torch.optim.Adam:
    """Adam; the fused CUDA kernel on GPU (one launch for all parameters)."""
    on_cuda = next(model.parameters()).device.type == "cuda"
    return torch.optim.Adam(model.parameters(), lr=learning_rate, fused=on_cuda or None)


def train_step(
    step_model: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    optimiser: torch.optim.Optimizer,
    batch: Batch,
    loss_fn: LossFn,
    *,
    amp: bool = False,
    grad_clip: float | None = None,
) -> torch.Tensor:
    """One optimiser step on ``batch``; returns the (detached) loss. ``amp``: bf16 autocast."""
    with torch.autocast(batch.x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits, log_counts = step_model(batch.x, batch.bias)
    loss = loss_fn(logits.float(), log_counts.float(), batch)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        params = [p for group in optimiser.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimiser.step()
    return loss.detach()


@dataclass
class FitResult:
    """The best epoch's weights and the per-epoch history."""

    best_state: Weights
    history: list[dict[str, float]]
    best_epoch: int


@dataclass
class FitSetup:
    """What stays fixed during one fit: the model, its optimiser, loss, settings and hooks."""

    model: BpAITAC
    step_model: Any  # the model, or its torch.compile'd wrapper
    optimiser: torch.optim.Optimizer
    loss_fn: LossFn
    cfg: TrainingConfig
    amp: bool
    seed: int
    name: str
    checkpoint: str | os.PathLike
    identity: str
    callbacks: list[Callback]


@dataclass
class FitState:
    """What changes from epoch to epoch (and the checkpoint carries besides the weights)."""

    stopping: EarlyStopping
    epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: Weights | None = None

    def finished(self, max_epochs: int) -> bool:
        return self.epoch >= max_epochs or self.stopping.should_stop

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            **self.stopping.state_dict(),
            "history": self.history,
            "best_state": self.best_state,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.epoch, self.history, self.best_state = (
            saved["epoch"],
            saved["history"],
            saved["best_state"],
        )
        self.stopping.load_state_dict(saved)


def fit(
    model: BpAITAC,
    train: BatchSource,
    val: BatchSource,
    loss_fn: LossFn,
    cfg: TrainingConfig,
    *,
    seed: int,
    checkpoint: str | os.PathLike,
    monitor: str,
    identity: dict[str, Any],
    name: str = "model",
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` with Adam and early stopping on ``monitor``, resuming from ``checkpoint``.

    ``identity`` describes the run (spec, config, seed); a checkpoint of a different identity is
    ignored (and overwritten). ``callbacks`` are called after the progress bar's hooks.
    """
    state = FitState(EarlyStopping(monitor, cfg.patience, cfg.min_delta))
    ident = fingerprint(identity)
    setup = start_fit(model, train.device, loss_fn, cfg, seed, checkpoint, ident, name, callbacks)
    resume(setup, state, train.device)
    while not state.finished(cfg.max_epochs):
        epoch, t0 = state.epoch + 1, time.perf_counter()
        train_loss = train_epoch(setup, train, epoch)
        metrics = validation_epoch(setup, val, epoch)
        row = {"epoch": epoch, "train_loss": train_loss, **metrics}
        end_epoch(setup, state, {**row, "seconds": time.perf_counter() - t0})
    return best_weights(setup, state)


def start_fit(
    model: BpAITAC,
    device: torch.device,
    loss_fn: LossFn,
    cfg: TrainingConfig,
    seed: int,
    checkpoint: str | os.PathLike,
    identity: str,
    name: str,
    callbacks: Sequence[Callback],
) -> FitSetup:
    """The optimiser, bf16 autocast and torch.compile (CUDA only); the progress bar first among
    the callbacks."""
    amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not amp:
        log.info("training.amp applies to CUDA only; training in fp32 on %s", device)
    step_model: Any = model
    if cfg.compile:
        if device.type == "cuda":
            step_model = torch.compile(model)
        else:
            log.info("training.compile applies to CUDA only; running eagerly on %s", device)
    optimiser = make_optimiser(model, cfg.learning_rate)
    bar = [ProgressBar(name, cfg.max_epochs)] if cfg.progress else []
    return FitSetup(
        model,
        step_model,
        optimiser,
        loss_fn,
        cfg,
        amp,
        seed,
        name,
        checkpoint,
        identity,
        [*bar, *callbacks],
    )


def resume(setup: FitSetup, state: FitState, device: torch.device) -> None:
    """Load weights, optimiser, RNG states and ``state`` from this run's checkpoint, if any."""
    saved = load_checkpoint(setup.checkpoint, setup.identity, device, setup.name)
    if saved is None:
        return
    setup.model.load_state_dict(saved["model"])
    setup.optimiser.load_state_dict(saved["optimiser"])
    set_rng_state(saved["rng"])
    state.load_state_dict(saved)
    log.info("%s: resuming from %s after epoch %d", setup.name, setup.checkpoint, state.epoch)


def train_epoch(setup: FitSetup, train: BatchSource, epoch: int) -> float:
    """One pass over the training split in the epoch's order; the mean training loss."""
    cfg = setup.cfg
    # Batch norm: batch statistics while training; predict_batches (validation) switches to eval
    # mode (running statistics), so every epoch switches back here.
    setup.step_model.train()
    order = epoch_order(len(train), setup.seed, epoch)
    flips = epoch_flips(len(train), setup.seed, epoch) if cfg.reverse_complement else None
    n_batches = math.ceil(len(order) / cfg.batch_size)
    for callback in setup.callbacks:
        callback.on_epoch_start(epoch, n_batches)
    running = torch.zeros((), device=train.device)
    seen = 0
    for step, batch in enumerate(train.batches(cfg.batch_size, order, flips), start=1):
        loss = train_step(
            setup.step_model,
            setup.optimiser,
            batch,
            setup.loss_fn,
            amp=setup.amp,
            grad_clip=cfg.grad_clip,
        )
        running += loss * batch.x.shape[0]
        seen += batch.x.shape[0]
        checked = None
        if step % cfg.check_every == 0 or step == n_batches:
            checked = finite_loss(setup, float(running) / seen, epoch, step)
        for callback in setup.callbacks:
            callback.on_batch_end(epoch, step, checked)
    return float(running) / max(seen, 1)


def finite_loss(setup: FitSetup, mean_loss: float, epoch: int, step: int) -> float:
    """``mean_loss`` if finite; else :class:`TrainingDiverged` naming the epoch and batch."""
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"{setup.name}: the training loss became {mean_loss} in epoch {epoch} by batch "
            f"{step}; lower `training.learning_rate` (now {setup.cfg.learning_rate}), set "
            "`training.grad_clip`, or check the input arrays for NaN/inf."
        )
    return mean_loss


def validation_epoch(setup: FitSetup, val: BatchSource, epoch: int) -> dict[str, float]:
    """Validation loss and accessibility Pearson R (across targets and across OCRs), linear and
    log scale."""
    res = predict_batches(
        setup.step_model,
        val.batches(setup.cfg.eval_batch_size),
        with_profile=False,
        amp=setup.amp,
        loss_fn=setup.loss_fn,
    )
    val_loss = float(res["loss"])
    if not math.isfinite(val_loss) or not np.isfinite(res["acc_pred"]).all():
        raise TrainingDiverged(
            f"{setup.name}: validation predictions are not finite after epoch {epoch}; lower "
            f"`training.learning_rate` (now {setup.cfg.learning_rate}) or set "
            "`training.grad_clip`."
        )
    row = {"val_loss": val_loss}
    for scale, suffix in (("linear", ""), ("log", "_log")):
        for name, metric in (("celltypes", mean_r_across_targets), ("ocrs", mean_r_across_ocrs)):
            value = metric(res["acc_pred"], res["acc_obs"], scale) if "acc_obs" in res else math.nan
            row[f"val_r_across_{name}{suffix}"] = value
    return row


def end_epoch(setup: FitSetup, state: FitState, row: dict[str, float]) -> None:
    """Early-stopping step, keeping the best weights; then the checkpoint and the callbacks."""
    epoch, stopping = int(row["epoch"]), state.stopping
    state.history.append(row)
    if stopping.step(epoch, row):
        state.best_state = copy_weights(setup.model)
    state.epoch = epoch
    log.info(
        "%s epoch %d/%d: train_loss %.4f val_loss %.4f val_r %.4f (%s %.4f, best epoch %d) %.1f s",
        setup.name,
        epoch,
        setup.cfg.max_epochs,
        row["train_loss"],
        row["val_loss"],
        row["val_r_across_celltypes"],
        stopping.monitor,
        row[stopping.monitor],
        stopping.best_epoch,
        row["seconds"],
    )
    save_checkpoint(
        setup.checkpoint,
        {
            **state.state_dict(),
            "identity": setup.identity,
            "model": setup.model.state_dict(),
            "optimiser": setup.optimiser.state_dict(),
            "rng": rng_state(),
        },
    )
    for callback in setup.callbacks:
        callback.on_epoch_end(epoch, row)


def best_weights(setup: FitSetup, state: FitState) -> FitResult:
    """Load the best epoch's weights into the model (the last if no epoch had a finite metric)."""
    if state.best_state is None:
        log.warning(
            "%s: %s was never finite; keeping the last epoch's weights",
            setup.name,
            state.stopping.monitor,
        )
        state.best_state = copy_weights(setup.model)
        state.stopping.best_epoch = state.epoch
    setup.model.load_state_dict(state.best_state)
    return FitResult(state.best_state, state.history, state.stopping.best_epoch)


def copy_weights(model: torch.nn.Module) -> Weights:
    """A detached copy of the model's parameters and buffers."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
