"""Variants with known effects: SNVs that break or create planted sites, and matched background
SNVs, with the per-cell-type and per-lineage effect the simulator's grammar gives them.

Written as ``truth/variants.tsv`` (one row per SNV, in the variant scorer's TSV layout
``chrom, pos, ref, alt, id`` plus what it does) and ``truth/variant_effects.tsv`` (one row per
SNV x target: the planted log2 fold change). The SNVs are never applied to the genome: every
other output of the simulator is the same with or without them, and they are drawn from their
own random stream (``variants``), so adding them changed no byte of the others.

- **site-breaking**: a planted, non-weak site bound (occupancy >= 0.5) in at least one cell
  type; the SNV changes its most informative base (highest information content) among those
  that carry the consensus base to the base least likely under the PWM.
- **site-creating**: a planted site bound in no cell type (occupancy < 0.5 everywhere, mostly
  the weak, flattened-PWM sites); the SNV gives its most informative non-consensus position the
  consensus base. (A new match in background sequence would not be "created": chance matches
  are never bound in the simulator, docs/simulation.md, Limits.)
- **background**: one per site-breaking SNV, in the same OCR, with the same reference and
  alternative base, at the eligible position whose distance to the OCR centre is closest to the
  site-breaking SNV's, outside every planted site by :data:`SITE_MARGIN` bp: its planted effect
  is exactly zero.

The planted effect follows the grammar (docs/simulation.md, steps 5-7) as
:func:`bpaitac.interpret.truth.planted_site_effects` does for one consensus site: the SNV moves
the site's log-odds score by ``delta_s``, its occupancy in cell type c to
``expit(log a_TF,c + s + delta_s - s_ref)``, and the OCR's accessibility by ``scale_o x
(e_TF,c + synergy x occ_partner,c) x delta_occ_c`` (the synergy term for a site of a
cooperative pair). A perfect model predicts the expected insertions of the central window,
``E_c = k_c acc_c + beta_c``: ``k_c`` the cell type's window insertions per unit of
accessibility (its window insertions over all OCRs less background, over its summed
accessibility), ``beta_c`` its background insertions per window. The planted log2 fold change
is that of ``1 + E`` (the model predicts ``log(1 + insertions)``), per cell type and per
lineage of the mean over the lineage's cell types, as the variant scorer averages lineages on
linear counts (:func:`bpaitac.evaluate.metrics.lineage_means`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit

from bpaitac.data.sequence import BASES
from bpaitac.simulate.config import PairSpec
from bpaitac.simulate.grammar import OCRSet, SiteSet
from bpaitac.simulate.motifs import Motif, log_odds

SITE_MARGIN = 10
"""Bases on each side of every planted site where no background SNV is placed."""
BOUND = 0.5
"""Occupancy at which a site counts as bound (a site-breaking SNV needs one such cell type)."""
WINDOW = 1000
"""Sequence window of the variant scorer (the network's input, ``bpaitac.model.network.SEQ_LEN``);
an SNV is kept only when the window centred on it fits on its chromosome."""
CLASSES = ("site_breaking", "site_creating", "background")
VARIANT_COLUMNS = (
    "chrom",
    "pos",
    "ref",
    "alt",
    "id",
    "class",
    "site_id",
    "motif",
    "peak_id",
    "site_position",
    "score_ref",
    "score_alt",
)
EFFECT_COLUMNS = ("id", "level", "target", "planted_log2fc", "planted_acc_delta")


@dataclass(frozen=True)
class PlantedWorld:
    """What the planted effect of an SNV needs from a simulation (arrays in genome order).

    ``activity`` and ``effects`` are TF x cell type (M, C); ``occupancy`` site x cell type
    (S, C); ``accessibility`` and ``window_counts`` OCR x cell type (N, C); ``background`` the
    background insertions per window of each cell type (C,).
    """

    motifs: Sequence[Motif]
    pairs: Sequence[PairSpec]
    sites: SiteSet
    ocrs: OCRSet
    chrom_names: Sequence[str]
    codes: Mapping[str, np.ndarray]
    activity: np.ndarray
    effects: np.ndarray
    occupancy: np.ndarray
    accessibility: np.ndarray
    window_counts: np.ndarray
    background: np.ndarray
    celltypes: Sequence[str]
    lineages: Sequence[str]
    sequence_halfwidth: int


def information_content(ppm: np.ndarray) -> np.ndarray:
    """Bits (L,) of each column of a PPM (L, 4) against a uniform background."""
    p = np.clip(ppm, 1e-12, 1.0)
    return 2.0 + (p * np.log2(p)).sum(axis=1)


def simulated_variants(
    world: PlantedWorld, n_per_class: int, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw ``n_per_class`` site-breaking and site-creating SNVs and one matched background SNV
    per site-breaking one (fewer where not enough sites qualify).

    Returns (variants, effects): the ``truth/variants.tsv`` table (:data:`VARIANT_COLUMNS`,
    1-based ``pos``, bases on the + strand) and the ``truth/variant_effects.tsv`` table
    (:data:`EFFECT_COLUMNS`; ``level`` ``celltype`` or ``lineage``).
    """
    sites = world.sites
    sizes = {c: len(world.codes[c]) for c in world.chrom_names}
    fwd = [_site_codes(world, i) for i in range(len(sites))]
    max_occ = world.occupancy.max(axis=1) if len(sites) else np.zeros(0)
    picks: list[dict] = []
    used: set[tuple[str, int]] = set()
    for cls in ("site_breaking", "site_creating"):
        if cls == "site_breaking":
            ok = ~sites.weak & (max_occ >= BOUND)
        else:
            ok = max_occ < BOUND
        candidates = []
        for i in np.flatnonzero(ok):
            snv = _site_snv(world, int(i), fwd[int(i)], breaking=cls == "site_breaking")
            if snv is not None and _fits(snv, sizes):
                candidates.append(snv)
        n = min(n_per_class, len(candidates))
        chosen = sorted(rng.choice(len(candidates), size=n, replace=False)) if n else []
        for k in chosen:
            snv = {**candidates[k], "class": cls}
            used.add((snv["chrom"], snv["g"]))
            picks.append(snv)
    breaking = [p for p in picks if p["class"] == "site_breaking"]
    by_ocr: dict[int, list[int]] = {}
    for i, o in enumerate(sites.ocr):
        by_ocr.setdefault(int(o), []).append(i)
    for snv in breaking:
        bg = _background_snv(world, snv, by_ocr.get(snv["ocr"], []), used, sizes, rng)
        if bg is not None:
            used.add((bg["chrom"], bg["g"]))
            picks.append(bg)
    variants = pd.DataFrame(
        [
            {
                "chrom": p["chrom"],
                "pos": p["g"] + 1,
                "ref": BASES[p["ref"]],
                "alt": BASES[p["alt"]],
                "id": f"simvar_{k + 1}",
                "class": p["class"],
                "site_id": "" if p["site"] < 0 else f"site_{p['site'] + 1}",
                "motif": "" if p["site"] < 0 else world.motifs[sites.motif[p["site"]]].name,
                "peak_id": f"ImmGenATAC1219.peak_{p['ocr'] + 1}",
                "site_position": p.get("j", -1) + 1 if p["site"] >= 0 else 0,
                "score_ref": round(p.get("score_ref", np.nan), 4),
                "score_alt": round(p.get("score_alt", np.nan), 4),
            }
            for k, p in enumerate(picks)
        ],
        columns=list(VARIANT_COLUMNS),
    )
    effects = planted_effects(world, picks, list(variants["id"]))
    return variants, effects


def planted_effects(world: PlantedWorld, picks: Sequence[dict], ids: Sequence[str]) -> pd.DataFrame:
    """Per cell type and per lineage: planted log2 fold change of ``1 + E`` (expected window
    insertions) and accessibility change of each SNV (module docstring)."""
    sites, acc = world.sites, world.accessibility
    total = acc.sum(axis=0)
    per_acc = np.maximum(world.window_counts.sum(axis=0) - len(acc) * world.background, 0.0)
    k = np.divide(per_acc, total, out=np.zeros_like(total), where=total > 0)  # (C,)
    lineages = np.asarray(world.lineages)
    order = list(dict.fromkeys(world.lineages))
    partner = _pair_partners(sites)
    with np.errstate(divide="ignore"):
        log_a = np.log(world.activity)
    rows = []
    for pick, vid in zip(picks, ids):
        o, i = pick["ocr"], pick["site"]
        delta = np.zeros(acc.shape[1])
        if i >= 0:
            m = sites.motif[i]
            occ = world.occupancy[i]
            occ_alt = expit(
                log_a[m] + sites.log_affinity[i] + pick["score_alt"] - pick["score_ref"]
            )
            per_site = world.effects[m].copy()
            if partner[i] >= 0:
                synergy = world.pairs[sites.pair_spec[i]].synergy
                per_site += synergy * world.occupancy[partner[i]]
            delta = world.ocrs.scale[o] * per_site * (occ_alt - occ)
        ref = k * acc[o] + world.background
        alt = k * (acc[o] + delta) + world.background
        log2fc = np.log2(1 + alt) - np.log2(1 + ref)
        for c, name in enumerate(world.celltypes):
            rows.append((vid, "celltype", name, log2fc[c], delta[c]))
        for lin in order:
            cols = lineages == lin
            lfc = np.log2(1 + alt[cols].mean()) - np.log2(1 + ref[cols].mean())
            rows.append((vid, "lineage", lin, lfc, delta[cols].mean()))
    table = pd.DataFrame(rows, columns=list(EFFECT_COLUMNS))
    table["planted_log2fc"] = table["planted_log2fc"].round(5)
    table["planted_acc_delta"] = table["planted_acc_delta"].round(6)
    return table


def _site_codes(world: PlantedWorld, i: int) -> np.ndarray:
    """Forward-strand (motif orientation) base indices of planted site ``i``."""
    s = world.sites
    chrom = world.chrom_names[world.ocrs.chrom[s.ocr[i]]]
    codes = world.codes[chrom][s.start[i] : s.end[i]]
    return codes if s.strand[i] > 0 else (3 - codes[::-1]).astype(np.uint8)


def _site_snv(world: PlantedWorld, i: int, fwd: np.ndarray, *, breaking: bool) -> dict | None:
    """The SNV breaking (or creating) site ``i`` at its most informative base, or None."""
    s = world.sites
    ppm = world.motifs[s.motif[i]].ppm
    consensus = ppm.argmax(axis=1)
    at_consensus = fwd == consensus
    eligible = at_consensus if breaking else (~at_consensus & (fwd < 4))
    if not eligible.any():
        return None
    ic = np.where(eligible, information_content(ppm), -np.inf)
    j = int(np.argmax(ic))
    lo = log_odds(ppm)
    ref_f = int(fwd[j])
    alt_f = int(np.argmin(ppm[j])) if breaking else int(consensus[j])
    chrom = world.chrom_names[world.ocrs.chrom[s.ocr[i]]]
    plus = s.strand[i] > 0
    g = int(s.start[i] + j) if plus else int(s.end[i] - 1 - j)
    score_ref = float(lo[np.arange(len(fwd)), fwd].sum())
    return {
        "chrom": chrom,
        "g": g,
        "ref": ref_f if plus else 3 - ref_f,
        "alt": alt_f if plus else 3 - alt_f,
        "site": i,
        "ocr": int(s.ocr[i]),
        "j": j,
        "score_ref": score_ref,
        "score_alt": score_ref + float(lo[j, alt_f] - lo[j, ref_f]),
    }


def _fits(snv: Mapping, sizes: Mapping[str, int]) -> bool:
    """Whether the scorer's window centred on the SNV lies on its chromosome."""
    return snv["g"] - WINDOW // 2 >= 0 and snv["g"] + WINDOW // 2 <= sizes[snv["chrom"]]


def _background_snv(
    world: PlantedWorld,
    snv: Mapping,
    ocr_sites: Sequence[int],
    used: set[tuple[str, int]],
    sizes: Mapping[str, int],
    rng: np.random.Generator,
) -> dict | None:
    """The background SNV matched to a site-breaking one (module docstring), or None.

    ``ocr_sites`` are the planted sites of the SNV's OCR: OCR centres lie at least
    2 x ``ocr_region_halfwidth`` apart, so no other OCR's site reaches its sequence region.
    """
    o = snv["ocr"]
    chrom = snv["chrom"]
    centre = int(world.ocrs.centre[o])
    hw = world.sequence_halfwidth
    lo, hi = max(centre - hw, WINDOW // 2), min(centre + hw, sizes[chrom] - WINDOW // 2)
    if hi <= lo:
        return None
    free = np.ones(hi - lo, dtype=bool)
    s = world.sites
    for start, end in zip(s.start[list(ocr_sites)], s.end[list(ocr_sites)]):
        a, b = max(start - SITE_MARGIN - lo, 0), min(end + SITE_MARGIN - lo, hi - lo)
        if a < b:
            free[a:b] = False
    pos = lo + np.flatnonzero(free & (world.codes[chrom][lo:hi] == snv["ref"]))
    pos = np.array([p for p in pos if (chrom, int(p)) not in used], dtype=np.int64)
    if not len(pos):
        return None
    gap = np.abs(np.abs(pos - centre) - abs(snv["g"] - centre))
    best = pos[gap == gap.min()]
    g = int(best[rng.integers(len(best))])
    return {
        "chrom": chrom,
        "g": g,
        "ref": snv["ref"],
        "alt": snv["alt"],
        "site": -1,
        "ocr": o,
        "class": "background",
    }


def _pair_partners(sites: SiteSet) -> np.ndarray:
    """Index (S,) of each site's cooperative partner, -1 for single sites."""
    out = np.full(len(sites), -1, dtype=np.int64)
    paired = np.flatnonzero(sites.pair >= 0)
    order = paired[np.argsort(sites.pair[paired], kind="stable")]
    first, second = order[0::2], order[1::2]
    out[first], out[second] = second, first
    return out
