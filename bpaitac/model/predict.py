"""Predictions and per-OCR metrics of trained networks: accessibility, profiles, bias logits.

``predictions_test.npz`` (docs/contracts.md) holds ``peak_id``, ``targets``, ``acc_pred``,
``acc_obs`` and, for models whose profile head is trained, ``profile_jsd`` and ``profile_r`` per
OCR x target. Profile metrics compare the predicted distribution (softmax of the binned logits,
bias included) with the observed insertions binned the same way; JSD is in base 2 (0..1).
Tracks without insertions, or with a constant profile, get NaN.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bpaitac.data.sequence import one_hot
from bpaitac.io import InputError, atomic_path
from bpaitac.model.losses import match_bins
from bpaitac.model.network import BpAITAC, load_model, resolve_device
from bpaitac.numeric import jensen_shannon, on_scale, rowwise_pearson

log = logging.getLogger(__name__)


class BatchLike(Protocol):
    """What the prediction loop needs from a batch (see :class:`bpaitac.data.batches.Batch`)."""

    x: torch.Tensor
    bias: torch.Tensor | None
    profile: torch.Tensor
    counts: torch.Tensor | None


def profile_metrics(logits: torch.Tensor, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-track (JSD, Pearson R) of ``softmax(logits)`` vs observed insertions (binned)."""
    obs = match_bins(obs, logits).double()
    n = obs.sum(-1, keepdim=True)
    pred = torch.softmax(logits.double(), dim=-1)
    q = obs / n.clamp(min=1.0)
    empty = n.squeeze(-1) == 0
    jsd = torch.where(empty, torch.nan, jensen_shannon(pred, q))
    r = torch.where(empty, torch.nan, rowwise_pearson(pred, obs))
    return jsd, r


def mean_r_across_targets(
    acc_pred: np.ndarray, acc_obs: np.ndarray, scale: str = "linear"
) -> float:
    """Mean over OCRs of the Pearson R across targets (NaN rows skipped; NaN if < 2 targets).

    ``acc_pred`` and ``acc_obs`` (N, T) hold ``log(1 + accessibility)``; the R is computed on
    ``scale`` (:func:`bpaitac.numeric.on_scale`): ``linear``, the paper's metric, or ``log``.
    """
    if acc_pred.shape[1] < 2:
        return float("nan")
    # torch's reductions, as since the first training runs: the history stays bit-identical.
    pred, obs = (on_scale(torch.from_numpy(a), scale) for a in (acc_pred, acc_obs))
    r = rowwise_pearson(pred, obs).numpy()
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


def mean_r_across_ocrs(acc_pred: np.ndarray, acc_obs: np.ndarray, scale: str = "linear") -> float:
    """Mean over targets of the Pearson R across OCRs (NaN columns skipped); arrays and
    ``scale`` as :func:`mean_r_across_targets`."""
    if acc_pred.shape[0] < 2:
        return float("nan")
    pred, obs = (on_scale(torch.from_numpy(a.T), scale) for a in (acc_pred, acc_obs))
    r = rowwise_pearson(pred, obs).numpy()
    return float(np.nanmean(r)) if np.isfinite(r).any() else float("nan")


@torch.no_grad()
def predict_batches(
    model: torch.nn.Module,
    batches: Iterable[BatchLike],
    *,
    with_profile: bool,
    amp: bool = False,
    loss_fn: Any = None,
) -> dict[str, np.ndarray | float]:
    """Run ``model`` in eval mode over ``batches`` in order; collect accessibility and profile
    metrics. The model is left in eval mode: training loops switch back with ``train()``.

    Returns ``acc_pred`` (N, T), ``acc_obs`` (N, T) (when batches carry counts), and with
    ``with_profile`` ``profile_jsd`` and ``profile_r`` (N, T); with ``loss_fn(logits,
    log_counts, batch)`` also ``loss``, the size-weighted mean loss.
    """
    model.eval()
    out: dict[str, list[np.ndarray]] = {"acc_pred": [], "acc_obs": []}
    if with_profile:
        out["profile_jsd"], out["profile_r"] = [], []
    loss_sum, n_total = 0.0, 0
    for batch in batches:
        device_type = batch.x.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=amp):
            logits, log_counts = model(batch.x, batch.bias)
        logits, log_counts = logits.float(), log_counts.float()
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits, log_counts, batch)) * batch.x.shape[0]
        n_total += batch.x.shape[0]
        out["acc_pred"].append(log_counts.cpu().numpy())
        if batch.counts is not None:
            out["acc_obs"].append(torch.log1p(batch.counts.float()).cpu().numpy())
        if with_profile:
            jsd, r = profile_metrics(logits, batch.profile)
            out["profile_jsd"].append(jsd.float().cpu().numpy())
            out["profile_r"].append(r.float().cpu().numpy())
    result: dict[str, np.ndarray | float] = {
        k: np.concatenate(v).astype(np.float32) for k, v in out.items() if v
    }
    if loss_fn is not None:
        result["loss"] = loss_sum / max(n_total, 1)
    return result


def _bias_batches(
    model: BpAITAC, seq: np.ndarray, batch_size: int, device: str | torch.device
) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, profile logits (B, L) on the device) of a one-task, unbinned bias model over
    sequences (N, L) in batches; the one batch loop of :func:`bias_logits` and
    :func:`bias_profiles` (which run it without autograd). Runs in eval mode."""
    spec = model.spec
    if spec.n_tasks != 1 or spec.bin_size != 1:
        raise ValueError(
            f"bias model must have one task and bin size 1, has {spec.n_tasks} tasks and bin "
            f"{spec.bin_size}; check `bias_models:` in the config."
        )
    device = resolve_device(device)
    model.eval().to(device)
    for start in range(0, len(seq), batch_size):
        chunk = torch.from_numpy(np.array(seq[start : start + batch_size]))
        logits, _ = model(one_hot(chunk.to(device)))
        yield start, logits[:, 0, :]


@torch.no_grad()
def bias_logits(
    model: BpAITAC,
    seq: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Profile logits (N, 250) float32 of a one-task, unbinned bias model for sequences (N, L).

    Runs in eval mode; ``device``: cpu, cuda or auto (:func:`bpaitac.model.network.resolve_device`).
    """
    out = np.empty((len(seq), model.spec.profile_len), dtype=np.float32)
    for start, logits in _bias_batches(model, seq, batch_size, device):
        out[start : start + len(logits)] = logits.float().cpu().numpy()
    return out


@torch.no_grad()
def bias_profiles(
    model: BpAITAC,
    seq: np.ndarray,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Predicted insertion probabilities (N, 250) float32 of a bias model for sequences (N, L):
    the softmax over positions of :func:`bias_logits`, computed on the device batch by batch."""
    out = np.empty((len(seq), model.spec.profile_len), dtype=np.float32)
    for start, logits in _bias_batches(model, seq, batch_size, device):
        out[start : start + len(logits)] = model.softmax(logits).float().cpu().numpy()
    return out


def write_predictions(
    path: str | os.PathLike,
    *,
    peak_ids: np.ndarray,
    targets: list[str],
    result: dict[str, Any],
    with_profile: bool,
) -> None:
    """Write ``predictions_test.npz`` atomically in the layout of docs/contracts.md."""
    arrays: dict[str, np.ndarray] = {
        "peak_id": np.asarray(peak_ids, dtype=str),
        "targets": np.asarray(targets, dtype=str),
        "acc_pred": np.asarray(result["acc_pred"], dtype=np.float32),
        "acc_obs": np.asarray(result["acc_obs"], dtype=np.float32),
    }
    if with_profile:
        arrays["profile_jsd"] = np.asarray(result["profile_jsd"], dtype=np.float32)
        arrays["profile_r"] = np.asarray(result["profile_r"], dtype=np.float32)
    n = len(arrays["peak_id"])
    for key in ("acc_pred", "acc_obs", *(("profile_jsd", "profile_r") if with_profile else ())):
        if arrays[key].shape != (n, len(targets)):
            raise ValueError(f"{key} has shape {arrays[key].shape}, expected {(n, len(targets))}.")
    with atomic_path(Path(path)) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    log.info("wrote %s (%d OCRs x %d targets)", path, n, len(targets))


def write_bias_logits(
    *,
    model_path: str | os.PathLike,
    seq_paths: dict[str, str | os.PathLike],
    out_paths: dict[str, str | os.PathLike],
    device: str = "cpu",
    batch_size: int = 256,
) -> None:
    """Precompute the frozen bias model's logits (N, 250) float32 for each split's ``seq.npy``."""
    dev = resolve_device(device)
    model, _ = load_model(model_path, dev)
    for split, seq_path in seq_paths.items():
        seq = np.load(seq_path, mmap_mode="r")
        if seq.ndim != 2 or seq.dtype != np.uint8:
            raise InputError(f"{seq_path}: must be uint8 (N, L); rerun the preprocessing rules.")
        logits = bias_logits(model, seq, batch_size=batch_size, device=dev)
        if not np.isfinite(logits).all():
            raise ValueError(f"{model_path}: bias logits for {seq_path} are not finite.")
        with atomic_path(out_paths[split]) as tmp:
            np.save(tmp, logits)
        log.info("%s: bias logits %s -> %s", split, logits.shape, out_paths[split])
