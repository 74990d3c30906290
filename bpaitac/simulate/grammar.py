"""The planted regulatory grammar: OCR placement, TF sites, activities, occupancy, accessibility.

- OCR centres are placed uniformly on the chromosomes with a minimum spacing.
- Each OCR draws a co-occurrence module (promoter OCRs from ``promoter`` modules), then its TF
  sites: cooperative pairs at fixed spacing/orientation first, then single sites from the
  module's motif weights. Sites are sampled from the PWMs (weak sites from flattened PWMs).
- TF activity per cell type = lineage activity x log-normal cell-type noise.
- Occupancy of a site in a cell type: ``expit(log a_tf,c + s - s_ref,tf)``, with ``s`` the site's
  log-odds score and ``s_ref`` the mean score of PWM-sampled sites (a thermodynamic model with the
  TF's concentration ``a`` in units of the typical site's dissociation constant).
- Accessibility = OCR scale x (basal + sum of site effects x occupancy + cooperative synergy x
  product of partner occupancies + promoter constant); site effects carry cell-type-specific
  log-normal modulation. Each site's share of it (:func:`site_contributions`, a pair's synergy
  split over its two sites) also weights the chromatin it opens around itself (the Tn5 profile,
  :mod:`bpaitac.simulate.reads`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from bpaitac.data.sequence import decode_sequence
from bpaitac.io import ConfigError
from bpaitac.simulate.config import ALL_LINEAGES, ModuleSpec, MotifSpec, PairSpec, SimulateConfig
from bpaitac.simulate.motifs import (
    Motif,
    expected_score,
    reverse_complement,
    sample_sites,
    score_sites,
)

SITE_GAP = 2
"""Minimum free bases between planted sites that are not a cooperative pair."""


@dataclass
class OCRSet:
    """OCR geometry and hidden per-OCR variables (arrays of length N, genome order)."""

    chrom: np.ndarray  # int index into the chromosome list
    centre: np.ndarray  # true 0-based centre of the accessibility shape
    summit: np.ndarray  # reported 0-based summit (centre + jitter)
    promoter: np.ndarray  # bool
    module: np.ndarray  # int index into the module list
    width: np.ndarray  # sd (bp) of the Gaussian accessibility shape
    scale: np.ndarray  # non-sequence accessibility multiplier

    def __len__(self) -> int:
        return len(self.centre)


@dataclass
class SiteSet:
    """Planted sites (arrays of length S); coordinates are 0-based genome, half-open."""

    ocr: np.ndarray
    motif: np.ndarray
    start: np.ndarray
    end: np.ndarray
    strand: np.ndarray  # +1 / -1
    score: np.ndarray  # log-odds (nats) of the planted sequence under the PWM
    log_affinity: np.ndarray  # score - s_ref of the motif
    weak: np.ndarray  # bool
    pair: np.ndarray  # cooperative pair instance id, -1 if none
    pair_spec: np.ndarray  # index into the pair list, -1 if none

    def __len__(self) -> int:
        return len(self.ocr)


def place_ocrs(
    chrom_sizes: Sequence[int], n: int, spacing: int, margin: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Place ``n`` centres uniformly with at least ``spacing`` bp between them and ``margin`` bp
    from chromosome ends; returns (chrom index, centre), sorted in genome order."""
    sizes = np.asarray(chrom_sizes, dtype=np.int64)
    usable = sizes - 2 * margin
    capacity = np.maximum(usable // spacing + 1, 0)
    if capacity.sum() < n:
        raise ConfigError(
            f"config key `simulate.n_ocrs`: {n} OCRs at min_ocr_spacing {spacing} do not fit on "
            f"the chromosomes (room for {int(capacity.sum())}); enlarge `chrom_sizes` or lower "
            "`n_ocrs`."
        )
    counts = rng.multinomial(n, usable / usable.sum())
    # move any overflow to the chromosome with the most room left
    while np.any(counts > capacity):
        counts[np.argmax(counts - capacity)] -= 1
        counts[np.argmax(capacity - counts)] += 1
    chroms, centres = [], []
    for i, k in enumerate(counts):
        if k == 0:
            continue
        slack = usable[i] - (k - 1) * spacing
        offsets = np.sort(rng.integers(0, slack + 1, size=k)) + np.arange(k) * spacing
        chroms.append(np.full(k, i))
        centres.append(margin + offsets)
    return np.concatenate(chroms), np.concatenate(centres).astype(np.int64)


def choose_modules(
    modules: Sequence[ModuleSpec], promoter: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One module index per OCR, promoter OCRs from promoter modules, others from the rest."""
    out = np.empty(len(promoter), dtype=np.int64)
    for is_promoter in (True, False):
        idx = [i for i, m in enumerate(modules) if m.promoter == is_promoter]
        rows = np.flatnonzero(promoter == is_promoter)
        if len(rows) == 0:
            continue
        w = np.array([modules[i].weight for i in idx], dtype=float)
        out[rows] = np.asarray(idx)[rng.choice(len(idx), size=len(rows), p=w / w.sum())]
    return out


def plant_sites(
    seqs: np.ndarray,
    seq_start: np.ndarray,
    module: np.ndarray,
    motifs: Sequence[Motif],
    cfg: SimulateConfig,
    rng: np.random.Generator,
) -> SiteSet:
    """Write TF sites into the OCR sequences ``seqs`` (N, W, modified in place) and list them.

    ``seq_start`` is the genome coordinate of ``seqs[:, 0]``; the OCR centre is column W // 2.
    """
    names = [m.name for m in motifs]
    index = {n: i for i, n in enumerate(names)}
    refs = np.array([expected_score(m.ppm) for m in motifs])
    n_ocr, width = seqs.shape
    centre = width // 2
    limit = width // 2 - 60  # keep sites inside the central part of the OCR sequence
    rows: list[tuple] = []
    pair_id = 0
    for o in range(n_ocr):
        mod = cfg.modules[module[o]]
        weights = np.array(list(mod.motifs.values()), dtype=float)
        choices = [index[n] for n in mod.motifs]
        n_sites = 1 + rng.poisson(cfg.mean_sites - 1)
        used = np.zeros(width, dtype=bool)
        planted = 0
        for p_i, pair in enumerate(cfg.pairs):
            if planted >= n_sites or not set(pair.motifs) <= set(mod.motifs):
                continue
            if rng.random() >= pair.probability:
                continue
            pair_motifs = [motifs[index[n]] for n in pair.motifs]
            placed = _place_pair(seqs[o], used, pair, pair_motifs, centre, limit, cfg, rng)
            if placed is None:
                continue
            for (pos, strand, codes, weak), name in zip(placed, pair.motifs):
                m = index[name]
                rows.append((o, m, pos, pos + motifs[m].length, strand, codes, weak, pair_id, p_i))
            pair_id += 1
            planted += 2
        while planted < n_sites:
            m = choices[rng.choice(len(choices), p=weights / weights.sum())]
            placed = _place_single(seqs[o], used, motifs[m], centre, limit, cfg, rng)
            planted += 1
            if placed is None:
                continue
            pos, strand, codes, weak = placed
            rows.append((o, m, pos, pos + motifs[m].length, strand, codes, weak, -1, -1))
    if not rows:
        raise ConfigError("config key `simulate`: no site could be planted; check `mean_sites`.")
    ocr, mot, pos, end, strand, codes, weak, pid, pspec = zip(*rows)
    mot = np.array(mot)
    score = np.array([score_sites(c[None, :], motifs[m].ppm)[0] for c, m in zip(codes, mot)])
    return SiteSet(
        ocr=np.array(ocr),
        motif=mot,
        start=np.array(pos) + seq_start[np.array(ocr)],
        end=np.array(end) + seq_start[np.array(ocr)],
        strand=np.array(strand),
        score=score,
        log_affinity=score - refs[mot],
        weak=np.array(weak, dtype=bool),
        pair=np.array(pid),
        pair_spec=np.array(pspec),
    )


def _draw_site(
    motif: Motif, cfg: SimulateConfig, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
    """A forward-strand site sequence and whether it is a weak (flattened-PWM) site."""
    weak = bool(rng.random() < cfg.weak_site_fraction)
    temp = cfg.weak_site_temperature if weak else 1.0
    return sample_sites(motif.ppm, 1, rng, temperature=temp)[0], weak


def _free(used: np.ndarray, start: int, end: int, gap: int = SITE_GAP) -> bool:
    lo, hi = max(start - gap, 0), min(end + gap, len(used))
    return start >= 0 and end <= len(used) and not used[lo:hi].any()


def _write(seq: np.ndarray, used: np.ndarray, pos: int, codes: np.ndarray, strand: int) -> None:
    seq[pos : pos + len(codes)] = codes if strand > 0 else reverse_complement(codes)
    used[pos : pos + len(codes)] = True


def _place_single(
    seq: np.ndarray,
    used: np.ndarray,
    motif: Motif,
    centre: int,
    limit: int,
    cfg: SimulateConfig,
    rng: np.random.Generator,
    tries: int = 20,
) -> tuple[int, int, np.ndarray, bool] | None:
    codes, weak = _draw_site(motif, cfg, rng)
    strand = 1 if rng.random() < 0.5 else -1
    for _ in range(tries):
        mid = int(np.clip(round(rng.normal(0, cfg.site_spread_sd)), -limit, limit))
        pos = centre + mid - motif.length // 2
        if _free(used, pos, pos + motif.length):
            _write(seq, used, pos, codes, strand)
            return pos, strand, codes, weak
    return None


def _place_pair(
    seq: np.ndarray,
    used: np.ndarray,
    pair: PairSpec,
    motifs: Sequence[Motif],
    centre: int,
    limit: int,
    cfg: SimulateConfig,
    rng: np.random.Generator,
    tries: int = 20,
) -> list[tuple[int, int, np.ndarray, bool]] | None:
    """Plant a cooperative pair; the composite is flipped to the other strand half the time."""
    a, b = motifs
    total = a.length + pair.spacing + b.length
    strands = [1 if s == "+" else -1 for s in pair.strands]
    flip = rng.random() < 0.5
    sites = [_draw_site(a, cfg, rng), _draw_site(b, cfg, rng)]
    for _ in range(tries):
        mid = int(np.clip(round(rng.normal(0, cfg.site_spread_sd)), -limit, limit))
        pos = centre + mid - total // 2
        if not _free(used, pos, pos + total):
            continue
        if not flip:
            pos_a, pos_b = pos, pos + a.length + pair.spacing
            sa, sb = strands
        else:  # reverse complement of the composite: B first, strands swapped
            pos_b, pos_a = pos, pos + b.length + pair.spacing
            sa, sb = -strands[0], -strands[1]
        _write(seq, used, pos_a, sites[0][0], sa)
        _write(seq, used, pos_b, sites[1][0], sb)
        return [(pos_a, sa, sites[0][0], sites[0][1]), (pos_b, sb, sites[1][0], sites[1][1])]
    return None


def celltype_activity(
    specs: Sequence[MotifSpec],
    lineages: Sequence[str],
    default: float,
    sd: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """TF x cell-type activity (M, C): lineage activity x log-normal(0, sd) per cell type."""
    known = set(lineages)
    out = np.empty((len(specs), len(lineages)))
    for i, spec in enumerate(specs):
        unknown = sorted(set(spec.activity) - known)
        if unknown and not set(unknown) <= set(ALL_LINEAGES):
            raise ConfigError(
                f"config key `simulate.motifs[{i}].activity` ({spec.name}): unknown lineage(s) "
                f"{unknown}; allowed values: {', '.join(sorted(set(ALL_LINEAGES) | known))}."
            )
        base = np.array([spec.activity.get(lin, default) for lin in lineages])
        out[i] = base * np.exp(rng.normal(0, sd, size=len(lineages)))
    return out


def celltype_effects(
    specs: Sequence[MotifSpec], n_celltypes: int, sd: float, rng: np.random.Generator
) -> np.ndarray:
    """Effect of a bound site on accessibility (M, C): TF effect x log-normal(0, sd)."""
    base = np.array([s.effect for s in specs])[:, None]
    return base * np.exp(rng.normal(0, sd, size=(len(specs), n_celltypes)))


def occupancy(sites: SiteSet, activity: np.ndarray) -> np.ndarray:
    """Occupancy (S, C) in [0, 1] of every planted site in every cell type."""
    with np.errstate(divide="ignore"):
        log_a = np.log(activity)
    return expit(log_a[sites.motif] + sites.log_affinity[:, None])


def site_contributions(
    sites: SiteSet, occ: np.ndarray, effects: np.ndarray, pairs: Sequence[PairSpec]
) -> np.ndarray:
    """Each site's share (S, C) of its OCR's accessibility (before the OCR scale):
    ``e_TF,c occ_i,c``, plus half of its cooperative pair's ``synergy occ_a,c occ_b,c``."""
    contrib = effects[sites.motif] * occ
    paired = np.flatnonzero(sites.pair >= 0)
    if len(paired):
        order = paired[np.argsort(sites.pair[paired], kind="stable")]
        first, second = order[0::2], order[1::2]
        synergy = np.array([pairs[k].synergy for k in sites.pair_spec[first]])
        half = 0.5 * synergy[:, None] * occ[first] * occ[second]
        contrib[first] += half
        contrib[second] += half
    return contrib


def ocr_wide_accessibility(ocrs: OCRSet, basal: float, promoter_accessibility: float) -> np.ndarray:
    """The part (N,) of accessibility (before the OCR scale) that no single site causes:
    ``basal`` plus the promoter constant."""
    return basal + promoter_accessibility * ocrs.promoter.astype(float)


def accessibility(
    ocrs: OCRSet,
    sites: SiteSet,
    occ: np.ndarray,
    effects: np.ndarray,
    pairs: Sequence[PairSpec],
    basal: float,
    promoter_accessibility: float,
) -> np.ndarray:
    """Planted accessibility (N, C): relative expected fragments of each OCR in each cell type,
    ``scale_o`` x (OCR-wide part + the sum of its sites' :func:`site_contributions`)."""
    n, c = len(ocrs), occ.shape[1]
    drive = np.zeros((n, c))
    np.add.at(drive, sites.ocr, site_contributions(sites, occ, effects, pairs))
    drive += ocr_wide_accessibility(ocrs, basal, promoter_accessibility)[:, None]
    return ocrs.scale[:, None] * drive


def sites_table(
    sites: SiteSet,
    motifs: Sequence[Motif],
    peak_ids: Sequence[str],
    chrom_names: Sequence[str],
    ocr_chrom: np.ndarray,
    pair_names: Sequence[str],
    genome_codes: dict[str, np.ndarray],
) -> pd.DataFrame:
    """The planted sites as a table (one row per site, genome coordinates 0-based half-open)."""
    chrom = [chrom_names[ocr_chrom[o]] for o in sites.ocr]
    seq = [decode_sequence(genome_codes[c][s:e]) for c, s, e in zip(chrom, sites.start, sites.end)]
    return pd.DataFrame(
        {
            "site_id": [f"site_{i + 1}" for i in range(len(sites))],
            "peak_id": [peak_ids[o] for o in sites.ocr],
            "motif": [motifs[m].name for m in sites.motif],
            "chrom": chrom,
            "start": sites.start,
            "end": sites.end,
            "strand": np.where(sites.strand > 0, "+", "-"),
            "sequence": seq,
            "score": np.round(sites.score, 4),
            "log_affinity": np.round(sites.log_affinity, 4),
            "weak": sites.weak,
            "pair_id": [f"pair_{p + 1}" if p >= 0 else "" for p in sites.pair],
            "pair": [pair_names[k] if k >= 0 else "" for k in sites.pair_spec],
        }
    )
