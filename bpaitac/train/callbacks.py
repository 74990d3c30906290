"""Hooks into :func:`bpaitac.train.loop.fit`: a :class:`Callback` base and the progress bar.

A callback overrides the hooks it needs; the base class does nothing. ``fit`` calls
``on_epoch_end`` after the epoch's checkpoint is written, so a callback that raises there (or
kills the process in ``on_batch_end``) leaves a run that a rerun resumes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


class Callback:
    """Hooks called by ``fit``; override any of them."""

    def on_epoch_start(self, epoch: int, n_batches: int) -> None:
        """Before the first training batch of ``epoch`` (1-based) of ``n_batches``."""

    def on_batch_end(self, epoch: int, step: int, loss: float | None) -> None:
        """After optimiser step ``step`` (1-based); ``loss`` is the epoch's running mean training
        loss when it was checked at this step (every ``training.check_every`` steps and the
        last), else None."""

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """After validation and the checkpoint; ``metrics`` is the epoch's history row."""


class ProgressBar(Callback):
    """A tqdm bar per epoch on stderr (shown when stderr is a terminal: ``training.progress``)."""

    def __init__(self, name: str, max_epochs: int) -> None:
        self.name, self.max_epochs = name, max_epochs
        self.bar: Any = None

    def on_epoch_start(self, epoch: int, n_batches: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=n_batches,
            desc=f"{self.name} epoch {epoch}/{self.max_epochs}",
            file=sys.stderr,
            disable=None,
            leave=True,
            mininterval=2.0,
        )

    def on_batch_end(self, epoch: int, step: int, loss: float | None) -> None:
        self.bar.update(1)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}")

    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        val_r = metrics["val_r_across_celltypes"]
        self.bar.set_postfix(loss=f"{metrics['train_loss']:.4g}", val_r=f"{val_r:.3f}")
        self.bar.close()
