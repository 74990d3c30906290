"""Early stopping on a validation metric, with a state that the checkpoint carries.

The monitored metric is the mean across-target Pearson R of the accessibility predictions (per
OCR, then averaged: "across cell types"), the across-OCR R for one-task models, or the validation
loss when the accessibility head is not trained (``lambda = 1``, bias models). The R is on the
linear scale (predicted vs quantile-normalised counts), as the authors' model selection and the
paper's metric; the log-scale R is recorded beside it in the history (``*_log``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bpaitac.model.losses import uses_counts

MONITORS = {"val_r_across_celltypes": "max", "val_r_across_ocrs": "max", "val_loss": "min"}


def choose_monitor(loss: str, lam: float, n_tasks: int) -> str:
    """Early-stopping metric: across-target R, across-OCR R for one task, else the loss."""
    if not uses_counts(loss, lam):
        return "val_loss"
    return "val_r_across_celltypes" if n_tasks > 1 else "val_r_across_ocrs"


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs in which ``monitor`` did not improve by ``min_delta``.

    ``best`` and ``best_epoch`` are the best finite value so far and its epoch; ``bad_epochs``
    counts the epochs since. A non-finite value never improves.
    """

    monitor: str
    patience: int
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    mode: str = field(init=False)

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor {self.monitor!r} is not one of {', '.join(MONITORS)}.")
        self.mode = MONITORS[self.monitor]

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best is None:
            return True
        if self.mode == "max":
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def step(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record epoch ``epoch``'s metrics; True when it is the new best epoch."""
        value = metrics[self.monitor]
        if self.improves(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        """``patience`` epochs without improvement."""
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """``best``, ``best_epoch`` and ``bad_epochs`` (what a resumed run needs)."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.best, self.best_epoch, self.bad_epochs = (
            state["best"],
            state["best_epoch"],
            state["bad_epochs"],
        )
