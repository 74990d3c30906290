"""Resumable training: seeding, RNG states, run identity and the ``checkpoint.pt`` file.

After every epoch :func:`save_checkpoint` writes the weights, optimiser, RNG states and the
loop's state atomically next to the outputs; :func:`load_checkpoint` returns it only when it was
written for the same run (:func:`run_identity`), so a rerun resumes a killed job and ignores a
checkpoint of another config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bpaitac.io import atomic_path
from bpaitac.train.config import TrainingConfig
from bpaitac.workflow.train_paths import RUNTIME_SETTINGS

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation draws from torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The torch, numpy, python (and CUDA) random states."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the random states of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fingerprint(obj: Any) -> str:
    """A short hash of a JSON-able description (detects checkpoints of another config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_identity(kind: str, entry: dict[str, Any], cfg: TrainingConfig, **extra: Any) -> dict:
    """What determines a run's numbers (a checkpoint is reused only for the same identity).

    The runtime settings (:data:`~bpaitac.workflow.train_paths.RUNTIME_SETTINGS`), the display
    label and the seed list are left out.
    """
    training = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_SETTINGS}
    entry = {k: v for k, v in entry.items() if k not in ("label", "seeds")}
    return {"kind": kind, "entry": entry, "training": training, **extra}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill leaves the previous checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(
    path: str | os.PathLike, identity: str, device: torch.device, name: str
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and was written for ``identity``, else None."""
    path = Path(path)
    if not path.exists():
        return None
    saved = torch.load(path, map_location=device, weights_only=False)
    if saved.get("identity") != identity:
        log.warning("%s: ignoring %s (written for another config)", name, path)
        return None
    return saved
