"""Tn5 insertion rates and the exact paired-insertion fragment sampler.

Per-base insertion rate in an OCR (cell type c):

``rate_c(x) = [w_ocr * shape(x) + sum_i a_i,c * k(x - centre_i)] * footprint_c(x) * b(x)``

with ``shape`` the broad OCR-wide profile and ``k`` the opening kernel around each planted site,
both normalised to unit mass (:func:`ocr_density`, :func:`opening_kernel`), ``a_i,c`` site i's
share of the OCR's accessibility in cell type c and ``w_ocr`` the OCR-wide share
(:mod:`bpaitac.simulate.grammar`), ``footprint_c`` the occupancy-scaled footprints
(:func:`footprint_factor`) and ``b`` the Tn5 sequence bias (:mod:`bpaitac.simulate.bias`).
:func:`celltype_rate` assembles it for all OCRs of one cell type. A fragment is a pair of
insertions ``l < r`` and is drawn with probability

``P(l, r) ∝ rate(l) * L(r - l) * rate(r)``,   both ends inside the same segment,

with ``L`` the fragment-length distribution over the insertion distance ``r - l`` (a fragment of
``r - l`` has TLEN ``r - l + 10`` under the +4/-5 convention of :mod:`bpaitac.data.tn5`). Sampling
is
exact. For long segments (chromosomes, protein-free regions) ``l`` is proposed from
``rate(l) * M(l)``, the length from ``L``, and the pair is accepted with probability
``rate(r) / M(l)``, where ``M(l)`` bounds the rate over every reachable ``r``. For short segments
with a fixed number of fragments (OCRs) both ends are proposed independently from ``rate`` and the
pair is accepted with probability ``L(r - l) / max L``.
The expected insertions per base of one fragment (:func:`pair_insertion_profile`) are
``rate(x) * (A(x) + B(x)) / Z`` with ``A(x) = sum_d L(d) rate(x + d)``, ``B(x) = sum_d L(d)
rate(x - d)`` and ``Z = sum_x rate(x) A(x)``: the rate, smoothed by the pairing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import maximum_filter1d
from scipy.signal import oaconvolve
from scipy.stats import norm

from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS
from bpaitac.simulate.config import FragmentLengthSpec

TLEN_OFFSET = TN5_SHIFT_PLUS - TN5_SHIFT_MINUS + 1
"""TLEN of a fragment minus the distance between its two insertions (10 bp)."""
MAX_FOOTPRINT_DEPTH = 0.95
"""Cap on the fractional depletion over a fully occupied site (keeps rates positive)."""


def fragment_length_pmf(spec: FragmentLengthSpec) -> np.ndarray:
    """P(insertion distance = d) for d = 0 .. max - 10 from the TLEN mixture of ``spec``."""
    tlen = np.arange(spec.max + 1, dtype=float)
    pdf = np.zeros_like(tlen)
    for mean, sd, weight in spec.components:
        pdf += weight * norm.pdf(tlen, mean, sd)
    pdf[: spec.min] = 0.0
    pmf = pdf[TLEN_OFFSET:]
    return pmf / pmf.sum()


def normal_length_pmf(mean: float, sd: float, lo: int, hi: int) -> np.ndarray:
    """A truncated-normal TLEN distribution on [lo, hi] as an insertion-distance pmf."""
    return fragment_length_pmf(FragmentLengthSpec(min=lo, max=hi, components=((mean, sd, 1.0),)))


def ocr_shape(offsets: np.ndarray, width: np.ndarray, flank: float) -> np.ndarray:
    """Broad accessibility shape (N, W): Gaussian of sd ``width`` around the centre + ``flank``."""
    return flank + np.exp(-0.5 * (offsets[None, :] / width[:, None]) ** 2)


def ocr_density(offsets: np.ndarray, width: np.ndarray, flank: float) -> np.ndarray:
    """:func:`ocr_shape` normalised to unit mass over each OCR region (N, W)."""
    shape = ocr_shape(offsets, width, flank)
    shape /= shape.sum(axis=1, keepdims=True)
    return shape


def opening_kernel(sd: float, radius_sd: float = 4.0) -> np.ndarray:
    """Gaussian of sd ``sd`` over integer offsets -R..R (R = ceil(radius_sd x sd)), unit mass."""
    radius = int(np.ceil(radius_sd * sd))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sd) ** 2)
    return k / k.sum()


@dataclass
class SiteWindows:
    """Where each site's opening kernel lands in the (N, W) array of OCR regions.

    Sites whose kernel fits inside their region are split into groups of at most
    ``SITE_CHUNK`` sites and at most one site per OCR, so that each group's kernels are added
    with one vectorised assignment to non-overlapping windows; the few sites whose kernel
    reaches past a region end are added base by base (the part outside the region is dropped).
    """

    row: np.ndarray  # (S,) OCR index
    col: np.ndarray  # (S,) column of the site centre within its OCR region
    groups: list[np.ndarray]  # indices of interior sites; the OCRs within a group are distinct
    edge_pos: np.ndarray  # flat positions covered by the kernels of edge sites
    edge_site: np.ndarray  # the edge site of each entry of edge_pos
    edge_kernel: np.ndarray  # the kernel value at each entry of edge_pos
    kernel: np.ndarray  # (2R + 1,) unit-mass opening kernel
    shape: tuple[int, int]  # (N, W)


SITE_CHUNK = 2048
"""Sites per vectorised kernel assignment (bounds the temporary to SITE_CHUNK x kernel size)."""


def site_windows(
    ocr: np.ndarray, col: np.ndarray, shape: tuple[int, int], kernel: np.ndarray
) -> SiteWindows:
    """Index sites (OCR ``ocr``, centre column ``col``) for :func:`add_site_kernels`."""
    ocr = np.asarray(ocr, dtype=np.int64)
    col = np.asarray(col, dtype=np.int64)
    width = shape[1]
    radius = (len(kernel) - 1) // 2
    order = np.argsort(ocr, kind="stable")
    first = np.searchsorted(ocr[order], ocr[order], side="left")
    rank = np.empty(len(ocr), dtype=np.int64)
    rank[order] = np.arange(len(ocr)) - first
    interior = (col - radius >= 0) & (col + radius < width)
    groups = []
    for r in np.unique(rank[interior]):
        members = np.flatnonzero(interior & (rank == r))
        groups.extend(np.array_split(members, -(-len(members) // SITE_CHUNK)))
    edge = np.flatnonzero(~interior)
    offs = np.arange(-radius, radius + 1)
    cols = col[edge, None] + offs[None, :]
    valid = (cols >= 0) & (cols < width)
    pos = ocr[edge, None] * width + cols
    return SiteWindows(
        row=ocr,
        col=col,
        groups=groups,
        edge_pos=pos[valid],
        edge_site=np.broadcast_to(edge[:, None], cols.shape)[valid],
        edge_kernel=np.broadcast_to(kernel[None, :], cols.shape)[valid],
        kernel=kernel,
        shape=shape,
    )


def add_site_kernels(out: np.ndarray, win: SiteWindows, weight: np.ndarray) -> None:
    """``out += sum_i weight_i k(x - centre_i)`` over every OCR region (``out`` (N, W),
    C-contiguous)."""
    radius = (len(win.kernel) - 1) // 2
    # windows[o, j] is out[o, j : j + 2R + 1], the kernel's support around column j + R
    windows = sliding_window_view(out, len(win.kernel), axis=1, writeable=True)
    for g in win.groups:
        windows[win.row[g], win.col[g] - radius] += weight[g, None] * win.kernel[None, :]
    if len(win.edge_pos):
        np.add.at(out.reshape(-1), win.edge_pos, weight[win.edge_site] * win.edge_kernel)


@dataclass
class FootprintIndex:
    """Where each site's footprint acts in a flat rate vector (one entry per affected base)."""

    pos: np.ndarray  # flat index into the rate vector
    site: np.ndarray  # site index
    core: np.ndarray  # True over the protected core, False over the enriched flanks
    size: int  # length of the rate vector
    unique: np.ndarray  # the distinct positions in ``pos`` (sorted)
    inverse: np.ndarray  # pos == unique[inverse]


def footprint_index(
    site_start: np.ndarray,
    site_end: np.ndarray,
    offset: np.ndarray,
    size: int,
    pad: int,
    flank_width: int,
) -> FootprintIndex:
    """Index the core ``[start - pad, end + pad)`` and flanks (``flank_width`` bp each side) of
    each site; ``offset`` maps genome to rate-vector coordinates per site."""
    pos, site, core = [], [], []
    for i, (s, e) in enumerate(zip(site_start + offset, site_end + offset)):
        c = np.arange(s - pad, e + pad)
        f = np.concatenate(
            [np.arange(s - pad - flank_width, s - pad), np.arange(e + pad, e + pad + flank_width)]
        )
        pos.extend([c, f])
        site.extend([np.full(len(c), i), np.full(len(f), i)])
        core.extend([np.ones(len(c), bool), np.zeros(len(f), bool)])
    p, s_, k = np.concatenate(pos), np.concatenate(site), np.concatenate(core)
    keep = (p >= 0) & (p < size)
    unique, inverse = np.unique(p[keep], return_inverse=True)
    return FootprintIndex(p[keep], s_[keep], k[keep], size, unique, inverse.ravel())


def footprint_factor(
    index: FootprintIndex, occ: np.ndarray, depth: np.ndarray, gain: np.ndarray
) -> np.ndarray:
    """``footprint(x)`` at ``index.unique`` for site occupancies ``occ`` (S,): the product of
    ``1 - occ * depth`` over each core and ``1 + occ * gain`` over each flank (1 elsewhere)."""
    o = occ[index.site]
    d = np.minimum(depth[index.site], MAX_FOOTPRINT_DEPTH)
    vals = np.where(index.core, np.log1p(-o * d), np.log1p(o * gain[index.site]))
    return np.exp(np.bincount(index.inverse, weights=vals, minlength=len(index.unique)))


def celltype_rate(
    density: np.ndarray,
    ocr_weight: np.ndarray,
    windows: SiteWindows,
    site_weight: np.ndarray,
    bias: np.ndarray,
    fp_index: FootprintIndex,
    fp_occ: np.ndarray,
    fp_depth: np.ndarray,
    fp_gain: np.ndarray,
) -> np.ndarray:
    """The insertion rate (N, W) of one cell type over all OCR regions:
    ``[ocr_weight * density + sum_i site_weight_i k(x - centre_i)] * footprint(x) * bias(x)``.

    An OCR whose weights are all zero falls back to ``density`` alone (it gets no fragments
    from an accessibility of zero, but its rate stays a valid distribution).
    """
    n = density.shape[0]
    total = ocr_weight + np.bincount(windows.row, weights=site_weight, minlength=n)
    w = np.where(total > 0, ocr_weight, 1.0)
    rate = density * w[:, None]
    add_site_kernels(rate, windows, site_weight)
    rate *= bias
    flat = rate.reshape(-1)
    flat[fp_index.unique] *= footprint_factor(fp_index, fp_occ, fp_depth, fp_gain)
    return rate


def sample_pairs(
    rate: np.ndarray,
    bounds: np.ndarray,
    pmf: np.ndarray,
    rng: np.random.Generator,
    n_total: int | None = None,
    n_per_segment: np.ndarray | None = None,
    max_proposals: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw fragments ``(segment, l, r)`` (indices into ``rate``) from ``P(l, r)`` above.

    ``bounds`` (K + 1,) delimit contiguous segments; a fragment never crosses one. Give either
    ``n_total`` (segments receive fragments in proportion to their pair mass; suited to long
    segments) or ``n_per_segment`` (exact counts per segment; suited to short segments).
    Results are sorted by ``l``.
    """
    if (n_total is None) == (n_per_segment is None):
        raise ValueError("give exactly one of n_total or n_per_segment")
    bounds = np.asarray(bounds, dtype=np.int64)
    if n_total is not None:
        parts = LongSampler(rate, bounds, pmf).sample(int(n_total), rng)
    else:
        parts = _sample_short(rate, bounds, pmf, rng, np.asarray(n_per_segment), max_proposals)
    return merge_parts(parts)


def merge_parts(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate sampler chunks into (segment, left, right) sorted by the left end."""
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    seg, left, right = (np.concatenate(p) for p in zip(*parts))
    order = np.argsort(left, kind="stable")
    return seg[order], left[order], right[order]


def _draw(cdf: np.ndarray, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions in [lo, hi) drawn in proportion to the weights whose cumulative sum is ``cdf``."""
    u = cdf[lo] + rng.random(len(lo)) * (cdf[hi] - cdf[lo])
    return np.clip(np.searchsorted(cdf, u, side="right") - 1, lo, hi - 1)


class LongSampler:
    """Exact pair sampler for long segments (chromosomes, protein-free regions).

    The left end is drawn from its exact marginal ``rate(l) * A(l)``; the insertion distance is
    then proposed from ``L`` and accepted with probability ``rate(l + d) / M(l)``, ``M(l)`` being
    the maximum rate over the reach of ``l`` (so given ``l``, ``d ~ L(d) rate(l + d)``). The
    tables are built once and reused for every draw.
    """

    def __init__(self, rate: np.ndarray, bounds: np.ndarray, pmf: np.ndarray) -> None:
        self.rate = np.asarray(rate, dtype=float)
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.cum_pmf = np.cumsum(pmf)
        forward = np.concatenate(
            [forward_sum(self.rate[lo:hi], pmf) for lo, hi in zip(self.bounds, self.bounds[1:])]
        )
        self.cdf = np.concatenate([[0.0], np.cumsum(self.rate * forward)])
        self.reach_max = maximum_filter1d(
            self.rate, size=len(pmf), mode="constant", cval=0.0, origin=-(len(pmf) // 2)
        )

    def sample(self, n: int, rng: np.random.Generator) -> list[tuple[np.ndarray, ...]]:
        """``n`` fragments as a one-chunk list of (segment, left, right) arrays."""
        left = _draw(self.cdf, np.zeros(n, np.int64), np.full(n, len(self.rate)), rng)
        seg = np.searchsorted(self.bounds, left, side="right") - 1
        right = np.full(n, -1, dtype=np.int64)
        pending = np.arange(n)
        while len(pending):
            lp = left[pending]
            u = rng.random(len(pending)) * self.cum_pmf[-1]
            rp = lp + np.searchsorted(self.cum_pmf, u, side="right")
            inside = rp < self.bounds[seg[pending] + 1]
            r_safe = np.where(inside, rp, lp)
            ok = inside & (rng.random(len(pending)) * self.reach_max[lp] < self.rate[r_safe])
            right[pending[ok]] = rp[ok]
            pending = pending[~ok]
        return [(seg, left, right)]


def _sample_short(
    rate: np.ndarray,
    bounds: np.ndarray,
    pmf: np.ndarray,
    rng: np.random.Generator,
    n_per_segment: np.ndarray,
    max_proposals: int,
) -> list[tuple[np.ndarray, ...]]:
    """Both ends from ``rate`` within the segment, accept with ``L(r - l) / max L``."""
    seg_lo, seg_hi = bounds[:-1], bounds[1:]
    need = n_per_segment.astype(np.int64).copy()
    cdf = np.concatenate([[0.0], np.cumsum(rate)])
    if np.any((need > 0) & (cdf[seg_hi] <= cdf[seg_lo])):
        raise ValueError("a segment with zero insertion rate was asked for fragments")
    pmf_max = float(pmf.max())
    out, acc = [], np.full(len(need), 0.3)
    while need.sum() > 0:
        active = np.flatnonzero(need > 0)
        m = np.ceil(need[active] / acc[active] * 1.3).astype(np.int64) + 2
        if m.sum() > max_proposals:
            m = np.maximum(1, (m * (max_proposals / m.sum())).astype(np.int64))
        seg = np.repeat(active, m)
        a = _draw(cdf, seg_lo[seg], seg_hi[seg], rng)
        b = _draw(cdf, seg_lo[seg], seg_hi[seg], rng)
        left, right = np.minimum(a, b), np.maximum(a, b)
        dist = right - left
        p_len = np.where(dist < len(pmf), pmf[np.minimum(dist, len(pmf) - 1)], 0.0)
        ok = rng.random(len(seg)) * pmf_max < p_len
        s, left, right = seg[ok], left[ok], right[ok]
        got = np.bincount(s, minlength=len(need))
        acc[active] = np.clip(got[active] / m, 1e-3, 1.0)
        # keep the first `need` accepted fragments of each segment (s is grouped by segment)
        rank = np.arange(len(s)) - (np.cumsum(got) - got)[s]
        keep = rank < need[s]
        out.append((s[keep], left[keep], right[keep]))
        need -= np.bincount(s[keep], minlength=len(need))
    return out


def forward_sum(rate: np.ndarray, pmf: np.ndarray) -> np.ndarray:
    """``A(x) = sum_d pmf[d] rate[x + d]`` (rate is 0 outside the array)."""
    d = len(pmf) - 1
    return np.maximum(oaconvolve(rate, pmf[::-1])[d : d + len(rate)], 0.0)


def pair_sums(rate: np.ndarray, pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A(x) = sum_d pmf[d] rate[x + d]`` and ``B(x) = sum_d pmf[d] rate[x - d]`` (0 outside)."""
    backward = np.maximum(oaconvolve(rate, pmf)[: len(rate)], 0.0)
    return forward_sum(rate, pmf), backward


def pair_insertion_profile(rate: np.ndarray, pmf: np.ndarray) -> np.ndarray:
    """Expected insertions per base of one fragment drawn in a segment with ``rate`` (sums to 2)."""
    forward, backward = pair_sums(rate, pmf)
    z = float((rate * forward).sum())
    return rate * (forward + backward) / z
