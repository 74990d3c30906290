"""Tables the simulator writes: the ImmGen-layout OCR table and the peak-calling p-values."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import poisson, rankdata

from bpaitac.data.ocr_table import LEADING_COLUMNS

WINDOW_HALF = 125
"""Counts and p-values use insertions within summit +- 125 bp (the central 250 bp)."""
GENE_WINDOW = 100_000
"""``genes.within.100Kb``: simulated genes whose TSS lies within this distance of the summit."""
INCLUDED_MIN_LOG10P = 2.0
"""OCRs called at -log10 p >= 2 in some cell type are flagged as included in the analysis."""
LAMBDA_FLOOR = 0.1
"""Lower bound of the background insertions expected per window in the p-value model."""


def quantile_normalise(x: np.ndarray) -> np.ndarray:
    """Quantile-normalise the columns of ``x`` (N, C) to their mean sorted distribution.

    Tied values share the reference value at their average rank.
    """
    x = np.asarray(x, dtype=float)
    reference = np.sort(x, axis=0).mean(axis=1)
    ranks = rankdata(x, axis=0, method="average") - 1
    grid = np.arange(len(reference))
    return np.column_stack([np.interp(ranks[:, j], grid, reference) for j in range(x.shape[1])])


def window_counts(
    positions: dict[int, np.ndarray], chrom: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Number of sorted ``positions[chrom]`` in ``[start, end)`` for each window."""
    out = np.zeros(len(chrom), dtype=np.int64)
    for c, pos in positions.items():
        rows = np.flatnonzero(chrom == c)
        out[rows] = np.searchsorted(pos, end[rows]) - np.searchsorted(pos, start[rows])
    return out


def closed_log10p(counts: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """-log10 Poisson p-value of ``counts`` (N, C) given background means ``lam`` (C,).

    ``p = P(X >= k)`` with ``X ~ Poisson(max(lam, LAMBDA_FLOOR))``, as a MACS2-like peak test.
    """
    lam = np.maximum(np.asarray(lam, dtype=float), LAMBDA_FLOOR)[None, :]
    return -poisson.logsf(counts - 1, lam) / np.log(10)


def gene_annotation(
    chrom: np.ndarray, summit: np.ndarray, promoter: np.ndarray
) -> tuple[list[str], list[str]]:
    """Simulated gene names: promoter OCRs are TSSs of genes ``Sim00001``...; returns the ``TSS``
    and ``genes.within.100Kb`` columns."""
    genes = np.full(len(chrom), "", dtype=object)
    idx = np.flatnonzero(promoter)
    genes[idx] = [f"Sim{i + 1:05d}" for i in range(len(idx))]
    near = []
    for c, s in zip(chrom, summit):
        hit = idx[(chrom[idx] == c) & (np.abs(summit[idx] - s) <= GENE_WINDOW)]
        near.append(",".join(genes[hit]))
    return list(genes), near


def ocr_table(
    peak_ids: Sequence[str],
    chrom_names: Sequence[str],
    chrom: np.ndarray,
    summit: np.ndarray,
    signal: np.ndarray,
    best_log10p: np.ndarray,
    promoter: np.ndarray,
    phastcons: np.ndarray,
    celltypes: Sequence[str],
) -> pd.DataFrame:
    """The OCR table in the ImmGen layout (``Summit`` 1-based, signal quantile-normalised)."""
    tss, near = gene_annotation(chrom, summit, promoter)
    included = np.where(best_log10p >= INCLUDED_MIN_LOG10P, "1", "")
    meta = dict(
        zip(
            LEADING_COLUMNS,
            [
                list(peak_ids),
                [chrom_names[c] for c in chrom],
                summit + 1,
                np.round(phastcons, 3),
                np.round(best_log10p, 2),
                included,
                tss,
                near,
            ],
        )
    )
    table = pd.DataFrame(meta)
    sig = pd.DataFrame(np.round(signal, 2), columns=list(celltypes))
    return pd.concat([table, sig], axis=1)
