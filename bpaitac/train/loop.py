"""Training of bpAI-TAC models and Tn5 bias models: data, targets, resumable fitting, outputs.

Main models (``train_catalogue_model``) read the split arrays of docs/contracts.md and train on
the catalogue entry's loss; bias models (``train_bias_model``) train one task on a bias set with
a profile-only loss. Both use :func:`fit`:

- Adam with ``training.learning_rate``; mini-batches of ``training.batch_size`` in an order
  drawn from ``(seed, epoch)`` only, so an epoch is the same whether or not training resumed.
  With ``training.reverse_complement`` a random half of each epoch's training sequences, also
  drawn from ``(seed, epoch)`` only, is reverse-complemented (:func:`reverse_complement_batch`);
  validation and test data never are.
- Early stopping on a validation metric: the mean across-target Pearson R of the accessibility
  predictions (per OCR, then averaged: "across cell types"), the across-OCR R for one-task
  models, the validation loss when the accessibility head is not trained (``lambda = 1``, bias
  models). The best epoch's weights are kept.
- After every epoch ``checkpoint.pt`` (weights, optimiser, best weights, RNG states, epoch,
  patience counter, history) is written atomically next to the outputs; a rerun resumes from it,
  so a killed job loses at most the epoch in progress and ends with the same weights as an
  uninterrupted run (on CPU). It is removed once the final outputs exist. The checkpoint is not
  a declared Snakemake output, so Snakemake neither deletes it before a rerun nor asks for it.
- A divergence guard stops with :class:`TrainingDiverged` when the loss or the validation
  predictions stop being finite.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bpaitac.model.losses import model_loss, profile_loss, uses_counts, uses_profile
from bpaitac.model.network import (
    BpAITAC,
    build_model,
    count_parameters,
    one_hot,
    resolve_device,
    save_model,
    spec_from_config,
)
from bpaitac.model.predict import (
    mean_r_across_ocrs,
    mean_r_across_targets,
    predict_batches,
    write_predictions,
)

log = logging.getLogger(__name__)

HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_r_across_celltypes",
    "val_r_across_ocrs",
    "seconds",
)
MONITORS = {"val_r_across_celltypes": "max", "val_r_across_ocrs": "max", "val_loss": "min"}


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf: the message names the model, epoch and batch and the fix."""


class SimulatedKill(RuntimeError):
    """Raised by ``fit(stop_after_epochs=...)`` to test resuming (never in normal runs)."""


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
    def from_dict(cls, d: dict[str, Any] | None) -> TrainingConfig:
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


# --------------------------------------------------------------------------- data


@dataclass
class SplitArrays:
    """One split: ``seq`` (N, L) uint8, ``profile`` (N, C, 250) uint16, optional ``counts``
    (N, C) float32 and ``bias`` (N, 250) float32, ``celltypes`` (C names), ``peak_ids``."""

    seq: Any
    profile: Any
    counts: Any | None
    bias: Any | None
    celltypes: list[str]
    peak_ids: np.ndarray | None
    source: str

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def nbytes(self) -> int:
        """Bytes of the arrays (what preloading would copy)."""
        arrays = (self.seq, self.profile, self.counts, self.bias)
        return sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in arrays if a is not None)


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: array not found; run the preprocessing rules first.")
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except ValueError as exc:
        raise ValueError(
            f"{path}: not a readable .npy array ({exc}); rerun preprocessing."
        ) from exc


def _check(cond: bool, path: Path, what: str) -> None:
    if not cond:
        raise ValueError(f"{path}: {what}; rerun the rule that writes it (docs/contracts.md).")


def load_split(
    directory: str | os.PathLike,
    *,
    bias_path: str | os.PathLike | None = None,
    with_counts: bool = True,
    mmap: bool = True,
) -> SplitArrays:
    """Read and validate a split directory (``seq.npy``, ``profile.npy``, ``counts.npy``...)."""
    d = Path(directory)
    seq = _load_npy(d / "seq.npy", mmap)
    _check(seq.ndim == 2 and seq.dtype == np.uint8, d / "seq.npy", "must be uint8 (N, L)")
    n = seq.shape[0]
    profile = _load_npy(d / "profile.npy", mmap)
    _check(
        profile.ndim == 3 and profile.dtype == np.uint16 and profile.shape[0] == n,
        d / "profile.npy",
        f"must be uint16 (N={n}, C, 250), is {profile.dtype} {profile.shape}",
    )
    counts = None
    if with_counts:
        counts = _load_npy(d / "counts.npy", mmap)
        _check(
            counts.shape == profile.shape[:2] and counts.dtype == np.float32,
            d / "counts.npy",
            f"must be float32 {profile.shape[:2]}, is {counts.dtype} {counts.shape}",
        )
    bias = None
    if bias_path is not None:
        bias_path = Path(bias_path)
        bias = _load_npy(bias_path, mmap)
        _check(
            bias.shape == (n, profile.shape[2]) and bias.dtype == np.float32,
            bias_path,
            f"must be float32 ({n}, {profile.shape[2]}), is {bias.dtype} {bias.shape}",
        )
    celltypes: list[str] = []
    if (d / "celltypes.txt").exists():
        celltypes = [s for s in (d / "celltypes.txt").read_text().splitlines() if s.strip()]
        _check(
            len(celltypes) == profile.shape[1],
            d / "celltypes.txt",
            f"lists {len(celltypes)} cell types but profile.npy has {profile.shape[1]}",
        )
    elif with_counts:
        raise FileNotFoundError(f"{d / 'celltypes.txt'}: missing; rerun preprocessing.")
    peak_ids = None
    if (d / "ocrs.tsv").exists():
        ocrs = pd.read_csv(d / "ocrs.tsv", sep="\t", dtype={"peak_id": str})
        _check("peak_id" in ocrs.columns, d / "ocrs.tsv", "needs a `peak_id` column")
        _check(len(ocrs) == n, d / "ocrs.tsv", f"has {len(ocrs)} rows, arrays have {n}")
        peak_ids = ocrs["peak_id"].to_numpy(dtype=str)
    return SplitArrays(seq, profile, counts, bias, celltypes, peak_ids, str(d))


@dataclass(frozen=True)
class TargetMap:
    """Which tasks a model predicts and how they derive from the cell-type columns.

    ``matrix`` (T, C) is None for cell-type targets (identity); otherwise row ``t`` is the
    indicator of task ``t``'s cell types: profiles are summed, totals averaged.
    """

    names: list[str]
    matrix: np.ndarray | None

    @property
    def n_tasks(self) -> int:
        return len(self.names)


def make_targets(targets: str, celltypes: list[str], lineage_of: Mapping[str, str]) -> TargetMap:
    """Target map for ``celltypes``, ``lineages`` or ``lineage:<name>`` over the data's columns.

    ``lineage_of`` maps cell type -> lineage in the order of the cell-type table, which fixes the
    order of lineage targets.
    """
    if targets == "celltypes":
        return TargetMap(list(celltypes), None)
    missing = [c for c in celltypes if c not in lineage_of]
    if missing:
        raise ValueError(
            f"cell type {missing[0]!r} of the data is not in the cell-type table; "
            "check `celltypes:` in the config against celltypes.txt of the data."
        )
    present = [lin for lin in dict.fromkeys(lineage_of.values())]
    present = [lin for lin in present if any(lineage_of[c] == lin for c in celltypes)]
    if targets == "lineages":
        names = present
    elif targets.startswith("lineage:"):
        name = targets.split(":", 1)[1]
        if name not in present:
            raise ValueError(
                f"model targets {targets!r}: lineage {name!r} has no cell type in the data; "
                f"lineages present: {', '.join(present)}."
            )
        names = [name]
    else:
        raise ValueError(
            f"model targets {targets!r}: use celltypes, lineages or lineage:<name> "
            "(`models.<name>.targets`)."
        )
    matrix = np.array(
        [[1.0 if lineage_of[c] == lin else 0.0 for c in celltypes] for lin in names],
        dtype=np.float32,
    )
    return TargetMap(names, matrix)


def target_log_means(split: SplitArrays, targets: TargetMap) -> np.ndarray:
    """Per-task mean of ``log(1 + counts)`` over a split (lineage targets: of the lineage mean)."""
    if split.counts is None:
        raise ValueError(f"{split.source}: no counts.npy to compute target means from.")
    counts = np.asarray(split.counts, dtype=np.float64)
    if targets.matrix is not None:
        weights = targets.matrix / targets.matrix.sum(1, keepdims=True)
        counts = counts @ weights.T
    return np.log1p(counts).mean(0).astype(np.float32)


@dataclass
class Batch:
    """A mini-batch on the device: one-hot ``x`` (B, 4, L), ``profile`` (B, T, 250) float,
    ``counts`` (B, T) float or None, ``bias`` (B, 250) or None."""

    x: torch.Tensor
    profile: torch.Tensor
    counts: torch.Tensor | None
    bias: torch.Tensor | None


def _as_tensor(a: np.ndarray) -> torch.Tensor:
    # uint16 is stored as int16 bits (same size; fully supported by indexing on every device).
    if a.dtype == np.uint16:
        a = a.view(np.int16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _counts_float(t: torch.Tensor) -> torch.Tensor:
    if t.dtype == torch.int16:
        return (t.to(torch.int32) & 0xFFFF).float()
    return t.float()


class BatchSource:
    """Serves batches of a split on ``device``, preloaded there or read from memory maps."""

    def __init__(
        self,
        split: SplitArrays,
        targets: TargetMap | None,
        device: torch.device,
        preload: bool,
    ) -> None:
        self.split, self.device, self.preload = split, device, preload
        self.matrix = (
            None
            if targets is None or targets.matrix is None
            else torch.from_numpy(targets.matrix).to(device)
        )
        self.mean_matrix = (
            None if self.matrix is None else self.matrix / self.matrix.sum(1, keepdim=True)
        )
        names = ("seq", "profile", "counts", "bias")
        self.arrays: dict[str, Any] = {}
        for name in names:
            a = getattr(split, name)
            if a is None:
                continue
            self.arrays[name] = _as_tensor(np.array(a)).to(device) if preload else a

    def __len__(self) -> int:
        return len(self.split)

    def take(self, idx: np.ndarray, flips: np.ndarray | None = None) -> Batch:
        """The batch of rows ``idx`` (sorted here for locality; order does not change losses).

        ``flips`` (N,) bool, indexed by row: reverse-complement those rows
        (:func:`reverse_complement_batch`; training augmentation only).
        """
        idx = np.sort(idx)
        got: dict[str, torch.Tensor] = {}
        if self.preload:
            it = torch.from_numpy(idx).to(self.device)
            for name, a in self.arrays.items():
                got[name] = a.index_select(0, it)
        else:
            for name, a in self.arrays.items():
                got[name] = _as_tensor(a[idx]).to(self.device, non_blocking=True)
        profile = _counts_float(got["profile"])
        counts = got["counts"].float() if "counts" in got else None
        if self.matrix is not None:
            profile = torch.einsum("tc,bcl->btl", self.matrix, profile)
            if counts is not None:
                counts = counts @ self.mean_matrix.T
        bias = got["bias"].float() if "bias" in got else None
        batch = Batch(one_hot(got["seq"]), profile, counts, bias)
        return batch if flips is None else reverse_complement_batch(batch, flips[idx])

    def batches(
        self,
        batch_size: int,
        order: np.ndarray | None = None,
        flips: np.ndarray | None = None,
    ) -> Iterator[Batch]:
        """Batches over ``order`` (default: all rows in file order); ``flips`` as in
        :meth:`take`."""
        order = np.arange(len(self)) if order is None else order
        for start in range(0, len(order), batch_size):
            yield self.take(order[start : start + batch_size], flips)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of epoch ``epoch``: a permutation drawn from ``(seed, epoch)`` only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_flips(n: int, seed: int, epoch: int) -> np.ndarray:
    """Which of the ``n`` training rows epoch ``epoch`` reverse-complements
    (``training.reverse_complement``): a random half (``n // 2`` rows), drawn from
    ``(seed, epoch)`` only, in a stream apart from :func:`epoch_order`'s, so that a resumed
    epoch flips the same rows as an uninterrupted one."""
    return np.random.default_rng([seed, epoch, 1]).permutation(n) < n // 2


def reverse_complement_batch(batch: Batch, flip: np.ndarray) -> Batch:
    """``batch`` with the rows where ``flip`` (B,) is true reverse-complemented.

    The one-hot sequence (B, 4, L) is reversed along positions and its channels A,C,G,T
    complemented (channel ``i`` -> ``3 - i``; an N column is all zeros and stays so, which is
    base index 4 -> 4); the observed profile (B, T, P) and the bias logits (B, P) are reversed
    along positions; totals are unchanged. The 250-bp profile window is symmetric in the
    input (positions 375..624 of 1000 map onto themselves), so reversing it maps an insertion
    at offset ``i`` to ``P - 1 - i``, the mirrored position on the reverse-complemented
    sequence. That is exact up to the 1-bp asymmetry of the Tn5 shift (+4 on the plus, -5 on
    the minus strand; bpaitac.data.tn5), which reverse-complementing does not mirror.
    """
    flip = np.asarray(flip, dtype=bool)
    if flip.shape != (batch.x.shape[0],):
        raise ValueError(f"flip mask of shape {flip.shape} for a batch of {batch.x.shape[0]}.")
    if not flip.any():
        return batch
    flip_t = torch.from_numpy(flip).to(batch.x.device)

    def where(t: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
        mask = flip_t.reshape(-1, *([1] * (t.dim() - 1)))
        return torch.where(mask, flipped, t)

    x = where(batch.x, batch.x.flip(1, 2))  # channels A,C,G,T reversed = complemented
    profile = where(batch.profile, batch.profile.flip(-1))
    bias = None if batch.bias is None else where(batch.bias, batch.bias.flip(-1))
    return Batch(x, profile, batch.counts, bias)


def train_val_sources(
    splits: dict, targets: TargetMap | None, device: torch.device, cfg: TrainingConfig
) -> tuple[BatchSource, BatchSource]:
    """Batch sources of the train and val splits, preloaded onto ``device`` when they fit."""
    nbytes = splits["train"].nbytes() + splits["val"].nbytes()
    preload = choose_preload(cfg, nbytes, device)
    log.info("training arrays: %.1f MiB, preloaded on %s: %s", nbytes / 2**20, device, preload)
    return (
        BatchSource(splits["train"], targets, device, preload),
        BatchSource(splits["val"], targets, device, preload),
    )


def choose_preload(cfg: TrainingConfig, nbytes: int, device: torch.device) -> bool:
    """Preload the arrays onto the device when configured, or when they fit (``auto``)."""
    if cfg.preload != "auto":
        return cfg.preload == "always"
    limit = cfg.preload_max_gb * 2**30
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        limit = min(limit, 0.5 * free)
    return nbytes <= limit


# --------------------------------------------------------------------------- fitting


def _rng_state() -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (model initialisation draws from torch)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fingerprint(obj: Any) -> str:
    """A short hash of a JSON-able description (detects checkpoints of another config)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


RESULT_NEUTRAL_KEYS = ("progress", "check_every", "preload", "preload_max_gb", "eval_batch_size")


def run_identity(kind: str, entry: dict[str, Any], cfg: TrainingConfig, **extra: Any) -> dict:
    """What determines a run's numbers (a checkpoint is reused only for the same identity).

    Knobs that do not change the weights (progress bar, NaN-check interval, preloading,
    evaluation batch size) and the display label are left out.
    """
    training = {k: v for k, v in asdict(cfg).items() if k not in RESULT_NEUTRAL_KEYS}
    entry = {k: v for k, v in entry.items() if k not in ("label", "seeds")}
    return {"kind": kind, "entry": entry, "training": training, **extra}


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    from bpaitac.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


LossFn = Callable[[torch.Tensor, torch.Tensor, Batch], torch.Tensor]


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

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]]
    best_epoch: int


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
    stop_after_epochs: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train ``model`` with Adam and early stopping, resuming from ``checkpoint`` if present.

    ``identity`` describes the run (spec, config, seed); a checkpoint of a different identity
    is ignored (and overwritten). ``stop_after_epochs`` raises :class:`SimulatedKill` after that
    many epochs (with the checkpoint written) and ``on_batch(epoch, step)`` is called after each
    optimiser step: both exist to test resuming.
    """
    from tqdm import tqdm

    if monitor not in MONITORS:
        raise ValueError(f"monitor {monitor!r} is not one of {', '.join(MONITORS)}.")
    mode = MONITORS[monitor]
    device = train.device
    checkpoint = Path(checkpoint)
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
    ident = fingerprint(identity)
    state: dict[str, Any] = {
        "epoch": 0,
        "best": None,
        "best_epoch": 0,
        "bad_epochs": 0,
        "history": [],
        "best_state": None,
    }
    if checkpoint.exists():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        if saved.get("identity") == ident:
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            _set_rng_state(saved["rng"])
            state = {k: saved[k] for k in state}
            log.info("%s: resuming from %s after epoch %d", name, checkpoint, state["epoch"])
        else:
            log.warning("%s: ignoring %s (written for another config)", name, checkpoint)

    def done() -> bool:
        return state["epoch"] >= cfg.max_epochs or state["bad_epochs"] >= cfg.patience

    while not done():
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        # Batch norm: batch statistics while training; predict_batches (validation) switches to
        # eval mode (running statistics), so every epoch switches back here.
        step_model.train()
        order = epoch_order(len(train), seed, epoch)
        flips = epoch_flips(len(train), seed, epoch) if cfg.reverse_complement else None
        n_batches = math.ceil(len(order) / cfg.batch_size)
        running = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(
            train.batches(cfg.batch_size, order, flips),
            total=n_batches,
            desc=f"{name} epoch {epoch}/{cfg.max_epochs}",
            file=sys.stderr,
            disable=None if cfg.progress else True,
            leave=True,
            mininterval=2.0,
        )
        for step, batch in enumerate(bar, start=1):
            loss = train_step(
                step_model, optimiser, batch, loss_fn, amp=amp, grad_clip=cfg.grad_clip
            )
            running += loss * batch.x.shape[0]
            seen += batch.x.shape[0]
            if step % cfg.check_every == 0 or step == n_batches:
                mean_loss = float(running) / seen
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(
                        f"{name}: the training loss became {mean_loss} in epoch {epoch} by batch "
                        f"{step}; lower `training.learning_rate` (now {cfg.learning_rate}), set "
                        "`training.grad_clip`, or check the input arrays for NaN/inf."
                    )
                bar.set_postfix(loss=f"{mean_loss:.4g}")
            if on_batch is not None:
                on_batch(epoch, step)
        train_loss = float(running) / max(seen, 1)
        res = predict_batches(
            step_model,
            val.batches(cfg.eval_batch_size),
            with_profile=False,
            amp=amp,
            loss_fn=loss_fn,
        )
        val_loss = float(res["loss"])
        if not math.isfinite(val_loss) or not np.isfinite(res["acc_pred"]).all():
            raise TrainingDiverged(
                f"{name}: validation predictions are not finite after epoch {epoch}; lower "
                f"`training.learning_rate` (now {cfg.learning_rate}) or set `training.grad_clip`."
            )
        has_obs = "acc_obs" in res
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_r_across_celltypes": (
                mean_r_across_targets(res["acc_pred"], res["acc_obs"]) if has_obs else math.nan
            ),
            "val_r_across_ocrs": (
                mean_r_across_ocrs(res["acc_pred"], res["acc_obs"]) if has_obs else math.nan
            ),
            "seconds": time.perf_counter() - t0,
        }
        state["history"].append(row)
        value = row[monitor]
        if _improved(value, state["best"], mode, cfg.min_delta):
            state["best"], state["best_epoch"], state["bad_epochs"] = value, epoch, 0
            state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        bar.set_postfix(loss=f"{train_loss:.4g}", val_r=f"{row['val_r_across_celltypes']:.3f}")
        bar.close()
        log.info(
            "%s epoch %d/%d: train_loss %.4f val_loss %.4f val_r %.4f (%s %.4f, best epoch %d)"
            " %.1f s",
            name,
            epoch,
            cfg.max_epochs,
            train_loss,
            val_loss,
            row["val_r_across_celltypes"],
            monitor,
            value,
            state["best_epoch"],
            row["seconds"],
        )
        _save_checkpoint(
            checkpoint,
            {
                **state,
                "identity": ident,
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "rng": _rng_state(),
            },
        )
        if stop_after_epochs is not None and epoch >= stop_after_epochs and not done():
            raise SimulatedKill(f"{name}: stopped after epoch {epoch} (stop_after_epochs)")
    if state["best_state"] is None:
        # No finite monitored value in any epoch: keep the last weights, say so.
        log.warning("%s: %s was never finite; keeping the last epoch's weights", name, monitor)
        state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state["best_epoch"] = state["epoch"]
    model.load_state_dict(state["best_state"])
    return FitResult(state["best_state"], state["history"], state["best_epoch"])


def write_history(path: str | os.PathLike, history: list[dict[str, float]]) -> None:
    """Write ``history.tsv`` atomically (columns :data:`HISTORY_COLUMNS`)."""
    from bpaitac.io import atomic_path

    table = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


# --------------------------------------------------------------------------- entry points


def choose_monitor(loss: str, lam: float, n_tasks: int) -> str:
    """Early-stopping metric: across-target R, across-OCR R for one task, else the loss."""
    if not uses_counts(loss, lam):
        return "val_loss"
    return "val_r_across_celltypes" if n_tasks > 1 else "val_r_across_ocrs"


def train_catalogue_model(
    *,
    name: str,
    entry: dict[str, Any],
    arch: dict[str, Any],
    training: dict[str, Any],
    lineage_of: Mapping[str, str],
    seed: int,
    split_dirs: dict[str, str | os.PathLike],
    bias_paths: dict[str, str | os.PathLike] | None,
    out_model: str | os.PathLike,
    out_history: str | os.PathLike,
    out_predictions: str | os.PathLike,
    device: str = "cpu",
    stop_after_epochs: int | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> FitResult:
    """Train one catalogue model for one seed; write model.pt, history.tsv, predictions_test.npz.

    ``split_dirs`` maps ``train``/``val``/``test`` to split directories and ``bias_paths`` the
    same splits to ``bias/{bias_model}.npy`` (None for ``bias: none``); ``lineage_of`` maps the
    cell types in use to their lineages (table order). The checkpoint lives in the directory of
    ``out_model``.
    """
    cfg = TrainingConfig.from_dict(training)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loss_name, lam = str(entry["loss"]), float(entry.get("lambda", 0.0))
    bias_name = entry.get("bias", "none")
    if (bias_name != "none") != bool(bias_paths):
        raise ValueError(
            f"model {name}: `bias: {bias_name}` needs bias arrays exactly when it is not `none`."
        )
    splits = {
        s: load_split(split_dirs[s], bias_path=(bias_paths or {}).get(s))
        for s in ("train", "val", "test")
    }
    celltypes = splits["train"].celltypes
    for s in ("val", "test"):
        if splits[s].celltypes != celltypes:
            raise ValueError(
                f"{splits[s].source}/celltypes.txt differs from the train split's; rerun "
                "preprocessing so that every split has the same cell types."
            )
    targets = make_targets(str(entry["targets"]), celltypes, lineage_of)
    spec = spec_from_config(arch, targets.n_tasks, int(entry.get("bin", 1)))
    seed_everything(seed)
    model = build_model(spec).to(dev)
    model.init_count_head(torch.from_numpy(target_log_means(splits["train"], targets)))
    log.info(
        "%s seed %d: %d parameters, %d targets, loss %s lambda %g, bias %s, bin %d, device %s",
        name,
        seed,
        count_parameters(model),
        targets.n_tasks,
        loss_name,
        lam,
        bias_name,
        spec.bin_size,
        dev,
    )
    train_src, val_src = train_val_sources(splits, targets, dev, cfg)

    def loss_fn(logits: torch.Tensor, log_counts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return model_loss(loss_name, lam, logits, log_counts, batch.profile, batch.counts)

    identity = run_identity(
        "model", entry, cfg, spec=spec.to_dict(), seed=seed, targets=targets.names, device=dev.type
    )
    checkpoint = Path(out_model).parent / "checkpoint.pt"
    result = fit(
        model,
        train_src,
        val_src,
        loss_fn,
        cfg,
        seed=seed,
        checkpoint=checkpoint,
        monitor=choose_monitor(loss_name, lam, targets.n_tasks),
        identity=identity,
        name=f"{name}/seed{seed}",
        stop_after_epochs=stop_after_epochs,
        on_batch=on_batch,
    )
    with_profile = uses_profile(loss_name, lam)
    test_src = BatchSource(splits["test"], targets, dev, preload=False)
    pred = predict_batches(
        model,
        test_src.batches(cfg.eval_batch_size),
        with_profile=with_profile,
        amp=cfg.amp and dev.type == "cuda",
    )
    peak_ids = splits["test"].peak_ids
    if peak_ids is None:
        raise FileNotFoundError(f"{split_dirs['test']}/ocrs.tsv: missing; rerun preprocessing.")
    write_predictions(
        out_predictions,
        peak_ids=peak_ids,
        targets=targets.names,
        result=pred,
        with_profile=with_profile,
    )
    write_history(out_history, result.history)
    meta = {
        "name": name,
        "seed": seed,
        "entry": entry,
        "architecture": arch,
        "targets": targets.names,
        "celltypes": celltypes,
        "best_epoch": result.best_epoch,
    }
    save_model(out_model, model, meta)
    checkpoint.unlink(missing_ok=True)
    log.info(
        "%s seed %d: best epoch %d; test mean R across targets %.4f",
        name,
        seed,
        result.best_epoch,
        mean_r_across_targets(pred["acc_pred"], pred["acc_obs"]),
    )
    return result


def train_bias_model(
    *,
    name: str,
    bias_entry: dict[str, Any],
    arch: dict[str, Any],
    training: dict[str, Any],
    seed: int,
    split_dirs: dict[str, str | os.PathLike],
    out_model: str | os.PathLike,
    out_history: str | os.PathLike,
    device: str = "cpu",
    stop_after_epochs: int | None = None,
) -> FitResult:
    """Train a one-task bias model on a bias set (``train``/``val`` dirs) with a profile loss.

    The loss is ``bias_entry["loss"]`` (default ``mnll``). The paper used JSD; MNLL is the
    default here because it is a proper scoring rule (its expectation is minimised by the true
    insertion distribution, whereas JSD against sparse observed profiles rewards over-peaked
    predictions) and it weights each profile by its number of insertions, so the well-sampled
    protein-free and summed closed-OCR profiles dominate. ``jsd`` and ``ce`` are available.
    ``bias_entry["max_epochs"]``, when set, replaces ``training.max_epochs``. Early stopping
    monitors the validation loss.
    """
    cfg = TrainingConfig.from_dict(training)
    if bias_entry.get("max_epochs"):
        cfg = replace(cfg, max_epochs=int(bias_entry["max_epochs"]))
    dev = resolve_device(device)
    kind = str(bias_entry.get("loss", "mnll"))
    splits = {s: load_split(split_dirs[s], with_counts=False) for s in ("train", "val")}
    for split in splits.values():
        if split.profile.shape[1] != 1:
            raise ValueError(
                f"{split.source}/profile.npy: a bias set needs one track (N, 1, 250), has "
                f"{split.profile.shape[1]}; rerun the bias-set preprocessing."
            )
    spec = spec_from_config(arch, 1, 1)
    seed_everything(seed)
    model = build_model(spec).to(dev)
    train_src, val_src = train_val_sources(splits, None, dev, cfg)
    log.info(
        "bias model %s: %d parameters, data %s, loss %s, %d train / %d val profiles",
        name,
        count_parameters(model),
        bias_entry.get("data"),
        kind,
        len(train_src),
        len(val_src),
    )

    def loss_fn(logits: torch.Tensor, log_counts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return profile_loss(kind, logits, batch.profile)

    identity = run_identity(
        "bias", bias_entry, cfg, spec=spec.to_dict(), seed=seed, device=dev.type
    )
    checkpoint = Path(out_model).parent / "checkpoint.pt"
    result = fit(
        model,
        train_src,
        val_src,
        loss_fn,
        cfg,
        seed=seed,
        checkpoint=checkpoint,
        monitor="val_loss",
        identity=identity,
        name=f"bias/{name}",
        stop_after_epochs=stop_after_epochs,
    )
    write_history(out_history, result.history)
    meta = {
        "name": name,
        "seed": seed,
        "entry": bias_entry,
        "architecture": arch,
        "targets": ["tn5_bias"],
        "best_epoch": result.best_epoch,
    }
    save_model(out_model, model, meta)
    checkpoint.unlink(missing_ok=True)
    return result
