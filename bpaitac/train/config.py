"""The ``training:`` settings of a run and the training errors.

Only the settings that decide the weights identify a run (Snakemake params, checkpoint identity);
the runtime ones are :data:`bpaitac.workflow.train_paths.RUNTIME_SETTINGS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA_REF = "train.schema.yaml#/$defs/training"
"""The schema definition of the ``training:`` section (relative to ``workflow/schemas``)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the message names the model, epoch and batch and the fix."""


@dataclass(frozen=True)
class TrainingConfig:
    """The ``training:`` config section (defaults only in train.schema.yaml)."""

    learning_rate: float
    batch_size: int
    eval_batch_size: int
    max_epochs: int
    patience: int
    min_delta: float
    grad_clip: float | None
    amp: bool
    compile: bool
    preload: str
    preload_max_gb: float
    check_every: int
    progress: bool
    reverse_complement: bool

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TrainingConfig:
        """Build from the config section, validated against the schema with its defaults filled;
        errors (unknown keys, values out of range) name the key."""
        from bpaitac.workflow.config import complete_section

        return cls(**complete_section(dict(d or {}), SCHEMA_REF, "training"))
