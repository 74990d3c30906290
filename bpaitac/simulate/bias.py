"""The simulated Tn5 sequence-bias model: a position weight model over 20 bp around a cut.

The relative preference of Tn5 for inserting at position ``x`` (0-based, after the +4/-5 shift
of :mod:`bpaitac.data.tn5`) is ``b(x) = exp(sum_j W[j, seq[x + j]])`` for offsets ``j = -10 .. 9``.
``W`` is palindromic about the point between ``x - 1`` and ``x`` (``W[j, b] = W[-1 - j, comp(b)]``)
as expected for an enzyme acting as a dimer, with an A/T-rich core ``GTYTA|TARAC`` and GC-rich
flanks, qualitatively like published Tn5 preferences (it is a model, not a fit). Each row is
centred (sums to zero over the four bases) so ``W`` reads directly as log-enrichment.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

OFFSETS = np.arange(-10, 10)
"""Offsets of the bias window relative to the insertion position."""

# Right half, offsets 0..9; columns A, C, G, T. The left half is its reverse complement.
_RIGHT_HALF = np.array(
    [
        [-0.10, -0.30, -0.40, 0.50],
        [0.50, -0.20, -0.30, -0.10],
        [0.30, -0.40, 0.40, -0.50],
        [0.45, -0.15, -0.20, -0.20],
        [-0.30, 0.60, -0.10, -0.30],
        [-0.20, 0.15, 0.15, -0.10],
        [-0.15, 0.10, 0.10, -0.05],
        [-0.10, 0.10, 0.05, -0.05],
        [-0.05, 0.05, 0.05, -0.05],
        [0.00, 0.05, 0.00, -0.05],
    ]
)


def tn5_bias_weights(strength: float = 1.0) -> np.ndarray:
    """Log-weights ``W`` (20, 4) for offsets -10..9, scaled by ``strength`` (0 = no bias)."""
    right = _RIGHT_HALF - _RIGHT_HALF.mean(axis=1, keepdims=True)
    left = right[::-1, ::-1]  # offset -1 - j takes the complement base of offset j
    return strength * np.vstack([left, right])


def log_bias(codes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``log b(x)`` (float32) for every position of a coded sequence; N and off-end bases add 0."""
    n = len(codes)
    pre, post = -int(OFFSETS[0]), int(OFFSETS[-1])
    padded = np.concatenate(
        [np.full(pre, 4, np.uint8), codes.astype(np.uint8), np.full(post, 4, np.uint8)]
    )
    table = np.hstack([weights, np.zeros((len(weights), 1))]).astype(np.float32)
    out = np.zeros(n, dtype=np.float32)
    for k in range(len(OFFSETS)):
        out += table[k][padded[k : k + n]]
    return out


def write_bias_table(weights: np.ndarray, path: str | os.PathLike) -> None:
    """Write ``W`` as TSV: ``offset`` then columns A, C, G, T (natural-log weights)."""
    table = pd.DataFrame(weights, columns=list("ACGT"))
    table.insert(0, "offset", OFFSETS)
    table.to_csv(path, sep="\t", index=False, float_format="%.6f")


def read_bias_table(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a bias table written by :func:`write_bias_table`: (offsets, weights (n, 4))."""
    table = pd.read_csv(path, sep="\t")
    return table["offset"].to_numpy(), table[list("ACGT")].to_numpy()


def expected_composition(weights: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Insertion-centred base frequencies (n, 4) implied by ``W`` for i.i.d. background bases."""
    f = background[None, :] * np.exp(weights)
    return f / f.sum(axis=1, keepdims=True)
