"""The ``training:`` settings of a run and the training errors.

Only the settings that decide the weights identify a run (Snakemake params, checkpoint identity);
the runtime ones are :data:`bpaitac.workflow.train_paths.RUNTIME_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the message names the model, epoch and batch and the fix."""


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` config section (defaults documented in train.schema.yaml)."""

    learning_rate: float = 1e-3
    batch_size: int = 64
    eval_batch_size: int = 256
    max_epochs: int = 20
    patience: int = 3
    min_delta: float = 0.0
    grad_clip: float | None = None
    amp: bool = False
    compile: bool = False
    preload: str = "auto"
    preload_max_gb: float = 16.0
    check_every: int = 20
    progress: bool = True
    reverse_complement: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TrainingConfig:
        """Build from the config section; unknown keys are an error naming the key."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(
                f"config key `training.{unknown[0]}` is unknown; allowed keys: "
                f"{', '.join(sorted(names))}."
            )
        cfg = cls(**d)
        if cfg.preload not in ("auto", "always", "never"):
            raise ValueError(
                f"config key `training.preload`: {cfg.preload!r}; use auto, always or never."
            )
        return cfg
