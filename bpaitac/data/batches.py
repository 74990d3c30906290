"""Training data: split arrays, prediction targets, device batches, per-epoch order and flips.

A split directory (docs/contracts.md) is read by :func:`load_split`; :func:`make_targets` maps its
cell-type columns onto a model's tasks (cell types or lineages) and :class:`BatchSource` serves
mini-batches of it on a device. Each epoch's order (:func:`epoch_order`) and reverse-complement
augmentation (:func:`epoch_flips`, :func:`reverse_complement_batch`) are drawn from the seed and
the epoch only, so that a resumed epoch sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bpaitac.data.sequence import one_hot

log = logging.getLogger(__name__)


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
    splits: Mapping[str, SplitArrays],
    targets: TargetMap | None,
    device: torch.device,
    *,
    preload: str,
    preload_max_gb: float,
) -> tuple[BatchSource, BatchSource]:
    """Batch sources of the train and val splits, preloaded onto ``device`` when they fit."""
    nbytes = splits["train"].nbytes() + splits["val"].nbytes()
    on_device = choose_preload(preload, preload_max_gb, nbytes, device)
    log.info("training arrays: %.1f MiB, preloaded on %s: %s", nbytes / 2**20, device, on_device)
    return (
        BatchSource(splits["train"], targets, device, on_device),
        BatchSource(splits["val"], targets, device, on_device),
    )


def choose_preload(preload: str, preload_max_gb: float, nbytes: int, device: torch.device) -> bool:
    """Preload ``nbytes`` of arrays onto the device: ``always``, ``never``, or ``auto`` when they
    fit (``training.preload``, ``training.preload_max_gb``, half the free GPU memory)."""
    if preload != "auto":
        return preload == "always"
    limit = preload_max_gb * 2**30
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        limit = min(limit, 0.5 * free)
    return nbytes <= limit
