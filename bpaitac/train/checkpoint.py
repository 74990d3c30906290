"""Resumable training: seeding, RNG states, run identity and the ``checkpoint.pt`` file.

After every epoch :func:`save_checkpoint` writes the weights, optimiser, RNG states and the
loop's state atomically next to the outputs; :func:`load_checkpoint` returns it only when it was
written for the same run (:func:`run_identity`), so a rerun resumes a killed job and discards a
checkpoint of another config or of other input data. A run's identity holds a fingerprint of
the files it is fitted on (:func:`input_fingerprint`): rebuilt split arrays (another split,
another OCR table, a recounted BAM) or new bias logits make the old checkpoint stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bpaitac.io import atomic_path, sampled_digest
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


INPUTS = "inputs"
"""Key of the input fingerprint (:func:`input_fingerprint`) in a run identity."""


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(identity: dict[str, Any]) -> str:
    """The key a checkpoint is stored under: a JSON object of a hash of the run's settings
    (``config``) and, file by file, the fingerprint of its inputs (``inputs``), so that
    :func:`load_checkpoint` can say which of them changed."""
    settings = {k: v for k, v in identity.items() if k != INPUTS}
    key = {"config": _hash(settings), INPUTS: dict(identity.get(INPUTS, {}))}
    return json.dumps(key, sort_keys=True)


def input_fingerprint(files: Mapping[str, str | os.PathLike]) -> dict[str, str]:
    """Label (``train/seq.npy``) -> :func:`~bpaitac.io.sampled_digest` of each input file: its
    size and a sample of its bytes, cheap even for the paper's 12 GB ``profile.npy``."""
    return {label: sampled_digest(path) for label, path in sorted(files.items())}


def run_identity(kind: str, entry: dict[str, Any], cfg: TrainingConfig, **extra: Any) -> dict:
    """What determines a run's numbers (a checkpoint is reused only for the same identity).

    The runtime settings (:data:`~bpaitac.workflow.train_paths.RUNTIME_SETTINGS`), the display
    label and the seed list are left out. ``extra`` holds the rest: the network spec, the seed,
    the targets and ``inputs=`` :func:`input_fingerprint` of the files the run is fitted on.
    """
    training = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_SETTINGS}
    entry = {k: v for k, v in entry.items() if k not in ("label", "seeds")}
    return {"kind": kind, "entry": entry, "training": training, **extra}


def stale_reason(saved: Any, identity: str) -> str | None:
    """Why a checkpoint stored under key ``saved`` is not one of the run keyed ``identity``
    (:func:`fingerprint`); None when it is."""
    if saved == identity:
        return None
    try:
        old, new = json.loads(saved), json.loads(identity)
        old_inputs, new_inputs = dict(old[INPUTS]), dict(new[INPUTS])
        old_config, new_config = old["config"], new["config"]
    except (TypeError, ValueError, KeyError):
        return "it was written for another config (or by an older version of bpaitac)"
    if old_config != new_config:
        return "it was written for another config (model, training settings, seed or targets)"
    changed = sorted(
        k for k in old_inputs.keys() | new_inputs.keys() if old_inputs.get(k) != new_inputs.get(k)
    )
    return f"it was written for other input data ({', '.join(changed)} changed since)"


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a kill leaves the previous checkpoint)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(
    path: str | os.PathLike, identity: str, device: torch.device, name: str
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it exists and was written for ``identity``, else None.

    A checkpoint of another run (:func:`stale_reason`) is deleted, with a warning saying why.
    """
    path = Path(path)
    if not path.exists():
        return None
    saved = torch.load(path, map_location=device, weights_only=False)
    why = stale_reason(saved.get("identity"), identity)
    if why is not None:
        log.warning("%s: discarded checkpoint %s: %s; training from scratch", name, path, why)
        path.unlink()
        return None
    return saved
