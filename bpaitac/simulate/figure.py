"""The simulation overview figure: Tn5 bias (planted vs recovered), footprints, depth checks.

All quantities are recomputed from the written BAMs and FASTA, so the figure shows what the rest
of the workflow sees, next to the planted truth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pysam

from bpaitac.data.sequence import encode_sequence
from bpaitac.simulate.bam import read_insertions
from bpaitac.simulate.bias import OFFSETS, expected_composition, read_bias_table

log = logging.getLogger(__name__)

BOUND = 0.7
"""Sites with occupancy above this are 'bound' in a cell type."""
UNBOUND = 0.1
"""Sites with occupancy below this are 'unbound' in a cell type."""
RADIUS = 60
"""Footprint profiles span site centre +- RADIUS bp."""


def read_genome(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """All chromosomes of a FASTA as base codes."""
    with pysam.FastaFile(str(path)) as fa:
        return {name: encode_sequence(fa.fetch(name)) for name in fa.references}


def composition_around(
    insertions: dict[str, np.ndarray], codes: dict[str, np.ndarray], offsets: np.ndarray = OFFSETS
) -> np.ndarray:
    """Base counts (len(offsets), 4) at each offset from every insertion (N bases skipped)."""
    out = np.zeros((len(offsets), 4))
    for chrom, pos in insertions.items():
        seq = codes[chrom]
        pos = pos[(pos + offsets[0] >= 0) & (pos + offsets[-1] < len(seq))]
        for k, off in enumerate(offsets):
            out[k] += np.bincount(seq[pos + off], minlength=5)[:4]
    return out


def region_composition(regions: pd.DataFrame, codes: dict[str, np.ndarray]) -> np.ndarray:
    """Base frequencies (4,) over BED regions (columns chrom, start, end)."""
    counts = np.zeros(4)
    for chrom, start, end in regions.iloc[:, :3].itertuples(index=False):
        counts += np.bincount(codes[chrom][start:end], minlength=5)[:4]
    return counts / counts.sum()


def coverage(insertions: dict[str, np.ndarray], sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Insertions per base of every chromosome."""
    return {c: np.bincount(p, minlength=sizes[c]) for c, p in insertions.items()}


def site_profiles(
    cov: dict[str, np.ndarray], sites: pd.DataFrame, radius: int = RADIUS
) -> np.ndarray:
    """Insertions (S, 2 * radius + 1) around each site centre, oriented along the motif."""
    offsets = np.arange(-radius, radius + 1)
    out = np.zeros((len(sites), len(offsets)))
    centre = ((sites["start"] + sites["end"]) // 2).to_numpy()
    minus = (sites["strand"] == "-").to_numpy()
    for chrom in sites["chrom"].unique():
        rows = np.flatnonzero((sites["chrom"] == chrom).to_numpy())
        idx = centre[rows, None] + np.where(minus[rows, None], -offsets, offsets)
        idx = np.clip(idx, 0, len(cov[chrom]) - 1)
        out[rows] = cov[chrom][idx]
    return out


def window_totals(
    cov: dict[str, np.ndarray], chrom: Sequence[str], summit: np.ndarray, half: int = 125
) -> np.ndarray:
    """Insertions in ``[summit - half, summit + half)`` for each OCR (0-based summits)."""
    cums = {c: np.concatenate([[0], np.cumsum(v)]) for c, v in cov.items()}
    out = np.zeros(len(summit))
    for c in set(chrom):
        rows = np.flatnonzero(np.asarray(chrom) == c)
        cs = cums[c]
        lo = np.clip(summit[rows] - half, 0, len(cs) - 1)
        hi = np.clip(summit[rows] + half, 0, len(cs) - 1)
        out[rows] = cs[hi] - cs[lo]
    return out


def fragment_lengths(path: str | os.PathLike, limit: int = 200_000) -> np.ndarray:
    """TLEN of up to ``limit`` proper pairs (first reads) of a BAM."""
    out = []
    with pysam.AlignmentFile(str(path), "rb") as bam:
        for read in bam.fetch(until_eof=True):
            if read.is_read1 and read.template_length != 0:
                out.append(abs(read.template_length))
                if len(out) >= limit:
                    break
    return np.asarray(out)


def make_simulation_figure(
    *,
    genome: str | os.PathLike,
    bams: Sequence[str | os.PathLike],
    celltypes: Sequence[str],
    protein_free_bams: Sequence[str | os.PathLike],
    protein_free_regions: str | os.PathLike,
    bias: str | os.PathLike,
    sites: str | os.PathLike,
    occupancy: str | os.PathLike,
    accessibility: str | os.PathLike,
    depth: str | os.PathLike,
    ocrs: str | os.PathLike,
    pdf: str | os.PathLike,
    png: str | os.PathLike,
    n_motifs: int = 6,
) -> dict[str, float]:
    """Compute the panels from the written data and save the figure; returns summary numbers."""
    from bpaitac.data.ocr_table import read_ocr_table
    from bpaitac.io import atomic_path

    codes = read_genome(genome)
    sizes = {c: len(v) for c, v in codes.items()}
    offsets, weights = read_bias_table(bias)

    pf = [read_insertions(p) for p in protein_free_bams]
    pooled = {c: np.concatenate([d.get(c, np.zeros(0, np.int64)) for d in pf]) for c in sizes}
    observed = composition_around(pooled, codes, offsets)
    regions = pd.read_csv(protein_free_regions, sep="\t", header=None)
    bg = region_composition(regions, codes)
    obs_freq = observed / observed.sum(axis=1, keepdims=True)
    r_bias = float(np.corrcoef(obs_freq.ravel(), expected_composition(weights, bg).ravel())[0, 1])

    site_table = pd.read_csv(sites, sep="\t")
    occ = pd.read_csv(occupancy, sep="\t", index_col=0).loc[:, list(celltypes)].to_numpy()
    acc = pd.read_csv(accessibility, sep="\t", index_col=0).loc[:, list(celltypes)].to_numpy()
    frags = pd.read_csv(depth, sep="\t", index_col=0).loc[list(celltypes), "ocr_fragments"]
    table = read_ocr_table(ocrs, celltypes)
    motifs = list(dict.fromkeys(site_table["motif"]))
    width = 2 * RADIUS + 1
    bound = {m: np.zeros(width) for m in motifs}
    unbound = {m: np.zeros(width) for m in motifs}
    n_bound = dict.fromkeys(motifs, 0)
    observed_totals = np.zeros(acc.shape)
    for j, path in enumerate(bams):
        cov = coverage(read_insertions(path), sizes)
        prof = site_profiles(cov, site_table)
        for m, rows in site_table.groupby("motif").indices.items():
            b, u = occ[rows, j] > BOUND, occ[rows, j] < UNBOUND
            bound[m] += prof[rows[b]].sum(axis=0)
            unbound[m] += prof[rows[u]].sum(axis=0)
            n_bound[m] += int(b.sum())
        observed_totals[:, j] = window_totals(cov, table["chrom"], table["summit"].to_numpy())
        log.info("footprints: %s", celltypes[j])
    expected = acc / acc.sum(axis=0, keepdims=True) * frags.to_numpy()[None, :]
    r_acc = float(np.corrcoef(np.log1p(observed_totals.ravel()), np.log1p(expected.ravel()))[0, 1])
    tlen = np.concatenate([fragment_lengths(p, 50_000) for p in bams[:4]])

    shown = sorted(motifs, key=lambda m: -n_bound[m])[:n_motifs]
    panels = Panels(
        weights=weights,
        observed_freq=obs_freq,
        background=bg,
        offsets=offsets,
        r_bias=r_bias,
        footprints={m: (bound[m], unbound[m]) for m in shown},
        tlen=tlen,
        observed_totals=observed_totals,
        expected_totals=expected,
        r_acc=r_acc,
    )
    fig = draw(panels)
    with atomic_path(pdf) as tmp:
        fig.savefig(tmp)
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=150)
    return {"r_bias_composition": r_bias, "r_log_totals_vs_accessibility": r_acc}


def _normalised(profile: np.ndarray) -> np.ndarray:
    """Profile divided by its mean over the outer 20 bp on each side."""
    outer = np.r_[profile[:20], profile[-20:]].mean()
    return profile / outer if outer > 0 else profile


@dataclass
class Panels:
    """Everything the figure draws."""

    weights: np.ndarray
    observed_freq: np.ndarray
    background: np.ndarray
    offsets: np.ndarray
    r_bias: float
    footprints: dict[str, tuple[np.ndarray, np.ndarray]]
    tlen: np.ndarray
    observed_totals: np.ndarray
    expected_totals: np.ndarray
    r_acc: float


def draw(p: Panels):
    """Draw the overview figure; returns the matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tangermeme.plot import plot_logo

    fig = plt.figure(figsize=(13, 10), constrained_layout=True)
    grid = fig.add_gridspec(4, 6)
    ticks = np.arange(len(p.offsets))
    ax = fig.add_subplot(grid[0, :4])
    plot_logo(p.weights.T / np.log(2), ax=ax)
    ax.set_title("a  Planted Tn5 bias model (log2 weight by offset from the insertion)", loc="left")
    ax.set_xticks(ticks, p.offsets)
    ax = fig.add_subplot(grid[1, :4])
    plot_logo(np.log2(p.observed_freq / p.background[None, :]).T, ax=ax)
    ax.set_title(
        f"b  Protein-free DNA reads: observed log2 enrichment (r = {p.r_bias:.3f} with model)",
        loc="left",
    )
    ax.set_xticks(ticks, p.offsets)
    ax.set_xlabel("offset from insertion (bp)")

    ax = fig.add_subplot(grid[0, 4:])
    ax.hist(p.tlen, bins=np.arange(0, 820, 10), color="0.4")
    ax.set_xlabel("fragment length (TLEN, bp)")
    ax.set_ylabel("fragments")
    ax.set_title("c  Fragment lengths (ATAC BAMs)", loc="left")

    ax = fig.add_subplot(grid[1, 4:])
    ax.scatter(
        np.log1p(p.expected_totals.ravel()), np.log1p(p.observed_totals.ravel()), s=1, alpha=0.2
    )
    ax.set_xlabel("log(1 + planted accessibility x depth)")
    ax.set_ylabel("log(1 + insertions, summit +- 125)")
    ax.set_title(f"e  Counts vs planted accessibility (r = {p.r_acc:.3f})", loc="left")

    x = np.arange(-RADIUS, RADIUS + 1)
    for i, (m, (bound, unbound)) in enumerate(p.footprints.items()):
        ax = fig.add_subplot(grid[2 + i // 3, 2 * (i % 3) : 2 * (i % 3) + 2])
        ax.plot(x, _normalised(bound), color="tab:red", label=f"bound (occupancy > {BOUND})")
        ax.plot(x, _normalised(unbound), color="tab:blue", label=f"unbound (< {UNBOUND})")
        ax.axhline(1, color="0.7", lw=0.5)
        ax.set_title(f"{'d  Aggregate footprints: ' if i == 0 else ''}{m}", loc="left")
        ax.set_xlabel("bp from site centre (motif orientation)")
        if i % 3 == 0:
            ax.set_ylabel("insertions / outer flanks")
        if i == 0:
            ax.legend(fontsize=7, frameon=False)
    return fig
