"""Generate a whole simulated dataset: genome, OCR table, BAMs, protein-free DNA, p-values, truth.

Everything is drawn from independent random streams derived from the master seed
(``numpy.random.default_rng([seed, stream, index])``), so results do not depend on the number of
worker processes or on the order in which cell types are processed.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from bpaitac.interpret.motifs import write_meme
from bpaitac.io import atomic_path
from bpaitac.simulate import bam, bias, genome, grammar, reads, tables
from bpaitac.simulate import variants as sim_variants
from bpaitac.simulate.config import SimulateConfig
from bpaitac.simulate.motifs import Motif, load_motifs, meme_motifs
from bpaitac.workflow.simulation import TRUTH_FILES

log = logging.getLogger(__name__)

STREAMS = {
    "genome": 1,
    "ocrs": 2,
    "ocr_sequence": 3,
    "sites": 4,
    "activity": 5,
    "depth": 6,
    "reads": 7,
    "protein_free": 8,
    "protein_free_reads": 9,
    "truth": 10,
    "decor": 11,
    "variants": 12,
}
EDGE = 10
"""Bases at segment ends where no insertion is placed (reads must stay on the chromosome)."""


def rng_for(seed: int, stream: str, *index: int) -> np.random.Generator:
    """An independent generator for one named stream (and optional indices) of a seed."""
    return np.random.default_rng([int(seed), STREAMS[stream], *map(int, index)])


def natural_key(name: str) -> list:
    """Sort key putting chr2 before chr10."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def output_layout(
    outdir: str | os.PathLike, celltypes: Sequence[str], replicates: Sequence[str]
) -> dict[str, Path | list[Path]]:
    """Every file the simulator writes under ``outdir`` (``resources/{dataset}``)."""
    out = Path(outdir)
    return {
        "genome": out / "genome.fa",
        "fai": out / "genome.fa.fai",
        "ocrs": out / "ocrs.csv",
        "bams": [out / "bams" / f"{c}.bam" for c in celltypes],
        "bais": [out / "bams" / f"{c}.bam.bai" for c in celltypes],
        "protein_free_bams": [out / "protein_free" / f"{r}.bam" for r in replicates],
        "protein_free_bais": [out / "protein_free" / f"{r}.bam.bai" for r in replicates],
        "protein_free_regions": out / "protein_free" / "regions.bed",
        "closed_pvalues": out / "closed_pvalues.tsv",
        "truth": [out / "truth" / f for f in TRUTH_FILES],
    }


@dataclass
class Genome:
    """Chromosome names, sizes and coded sequences (genome order)."""

    names: list[str]
    sizes: np.ndarray
    codes: dict[str, np.ndarray]

    @property
    def offsets(self) -> np.ndarray:
        """Start of each chromosome in the concatenated genome (K + 1,)."""
        return np.concatenate([[0], np.cumsum(self.sizes)])


@dataclass
class Shared:
    """State shared by the per-cell-type workers (inherited by forked processes)."""

    cfg: SimulateConfig
    seed: int
    genome: Genome
    ocr_chrom: np.ndarray
    region_start: np.ndarray
    summit: np.ndarray
    density: np.ndarray  # (N, 2H) OCR-wide profile, unit mass per OCR
    bias: np.ndarray  # (N, 2H) Tn5 bias b(x) over each OCR region
    ocr_weight: np.ndarray  # (N,) weight of the OCR-wide profile
    site_weight: np.ndarray  # (S, C) weight of each site's opening kernel per cell type
    windows: reads.SiteWindows
    fp_index: reads.FootprintIndex
    fp_depth: np.ndarray
    fp_gain: np.ndarray
    occupancy: np.ndarray  # (S, C)
    accessibility: np.ndarray  # (N, C)
    ocr_fragments: np.ndarray  # (C,)
    background_fragments: np.ndarray  # (C,)
    background: reads.LongSampler
    pmf: np.ndarray
    truth_ocrs: np.ndarray
    bam_paths: list[Path]
    celltypes: list[str]


_SHARED: Shared | None = None


def simulate_dataset(
    cfg: SimulateConfig,
    celltypes: pd.DataFrame,
    seed: int,
    outdir: str | os.PathLike,
    threads: int = 1,
) -> dict[str, Path | list[Path]]:
    """Write the complete simulated dataset under ``outdir``; returns :func:`output_layout`."""
    t0 = time.perf_counter()
    names = list(celltypes["celltype"])
    lineages = list(celltypes["lineage"])
    layout = output_layout(outdir, names, cfg.protein_free_replicates)
    for sub in ("bams", "protein_free", "truth"):
        (Path(outdir) / sub).mkdir(parents=True, exist_ok=True)

    motifs = load_motifs(cfg.motifs, cfg.jaspar_release)
    gen = _background_genome(cfg, seed)
    log.info("genome: %d chromosomes, %.1f Mb", len(gen.names), gen.sizes.sum() / 1e6)

    ocrs, sites, seq_start = _ocrs_and_sites(cfg, seed, gen, motifs)
    peak_ids = [f"ImmGenATAC1219.peak_{i + 1}" for i in range(len(ocrs))]
    log.info(
        "OCRs: %d (%d promoters), planted sites: %d", len(ocrs), ocrs.promoter.sum(), len(sites)
    )
    _write_genome(gen, layout["genome"], layout["fai"])

    weights = bias.tn5_bias_weights(cfg.tn5_bias_strength)
    log_b = {c: bias.log_bias(gen.codes[c], weights) for c in gen.names}

    rng = rng_for(seed, "activity")
    activity = grammar.celltype_activity(
        cfg.motifs, lineages, cfg.activity_default, cfg.celltype_activity_sd, rng
    )
    effects = grammar.celltype_effects(cfg.motifs, len(names), cfg.celltype_effect_sd, rng)
    occ = grammar.occupancy(sites, activity)
    acc = grammar.accessibility(
        ocrs, sites, occ, effects, cfg.pairs, cfg.basal_accessibility, cfg.promoter_accessibility
    )
    # the Tn5 profile's components carry the same shares of accessibility (docs/simulation.md, 8)
    ocr_weight = cfg.ocr_wide_weight * grammar.ocr_wide_accessibility(
        ocrs, cfg.basal_accessibility, cfg.promoter_accessibility
    )
    site_weight = cfg.site_opening_weight * grammar.site_contributions(
        sites, occ, effects, cfg.pairs
    )

    rng = rng_for(seed, "depth")
    lo, hi = np.log(cfg.depth_millions)
    depth_millions = np.exp(rng.uniform(lo, hi, size=len(names)))
    total = np.maximum(np.round(depth_millions * 1e6 / 2 * cfg.depth_scale), 1).astype(np.int64)
    bg_frag = np.round(total * cfg.background_fraction).astype(np.int64)
    ocr_frag = total - bg_frag

    half = cfg.ocr_region_halfwidth
    region_start = ocrs.centre - half
    offsets = np.arange(-half, half)
    density = reads.ocr_density(offsets, ocrs.width, cfg.shape_flank)
    region_bias = np.exp(
        np.stack(
            [log_b[gen.names[c]][s : s + 2 * half] for c, s in zip(ocrs.chrom, region_start)]
        ).astype(float)
    )
    windows = reads.site_windows(
        sites.ocr,
        (sites.start + sites.end) // 2 - region_start[sites.ocr],
        density.shape,
        reads.opening_kernel(cfg.site_opening_sd),
    )
    site_offset = sites.ocr * 2 * half - region_start[sites.ocr]
    fp_index = reads.footprint_index(
        sites.start,
        sites.end,
        site_offset,
        density.size,
        cfg.footprint_pad,
        cfg.footprint_flank_width,
    )
    fp_depth = np.minimum(
        1.0, cfg.footprint_strength * np.array([m.footprint for m in cfg.motifs])[sites.motif]
    )
    fp_gain = cfg.footprint_flank_gain * fp_depth

    pmf = reads.fragment_length_pmf(cfg.fragment_length)
    genome_rate = np.concatenate([_edge_zero(np.exp(log_b[c].astype(float))) for c in gen.names])
    background = reads.LongSampler(genome_rate, gen.offsets, pmf)
    log.info("rates ready (%.1f s)", time.perf_counter() - t0)

    n_truth = min(cfg.truth_ocrs, len(ocrs))
    truth_ocrs = np.sort(rng_for(seed, "truth").choice(len(ocrs), n_truth, replace=False))
    global _SHARED
    _SHARED = Shared(
        cfg=cfg,
        seed=seed,
        genome=gen,
        ocr_chrom=ocrs.chrom,
        region_start=region_start,
        summit=ocrs.summit,
        density=density,
        bias=region_bias,
        ocr_weight=ocr_weight,
        site_weight=site_weight,
        windows=windows,
        fp_index=fp_index,
        fp_depth=fp_depth,
        fp_gain=fp_gain,
        occupancy=occ,
        accessibility=acc,
        ocr_fragments=ocr_frag,
        background_fragments=bg_frag,
        background=background,
        pmf=pmf,
        truth_ocrs=truth_ocrs,
        bam_paths=list(layout["bams"]),
        celltypes=names,
    )
    try:
        results = _map(_celltype_job, range(len(names)), threads)
    finally:
        _SHARED = None
    n_per_ocr = np.column_stack([r[0] for r in results])
    counts = np.column_stack([r[1] for r in results])
    truth_rates = np.stack([r[2] for r in results], axis=1)  # (K, C, 2H)
    log.info("cell-type BAMs written (%.1f s)", time.perf_counter() - t0)

    regions = _protein_free(cfg, seed, gen, ocrs, log_b, pmf, layout, threads)
    log.info("protein-free DNA: %d regions (%.1f s)", len(regions), time.perf_counter() - t0)

    lam = 2 * bg_frag * (2 * tables.WINDOW_HALF) / gen.sizes.sum()
    log10p = tables.closed_log10p(counts, lam)
    signal = tables.quantile_normalise(counts)
    phastcons = _decorative_phastcons(seed, sites, len(ocrs))
    table = tables.ocr_table(
        peak_ids,
        gen.names,
        ocrs.chrom,
        ocrs.summit,
        signal,
        log10p.max(axis=1),
        ocrs.promoter,
        phastcons,
        names,
    )
    with atomic_path(layout["ocrs"]) as tmp:
        table.to_csv(tmp, index=False)
    pvals = pd.DataFrame(np.round(log10p, 4), columns=names)
    pvals.insert(0, "peak_id", peak_ids)
    with atomic_path(layout["closed_pvalues"]) as tmp:
        pvals.to_csv(tmp, sep="\t", index=False)

    _write_truth(
        Path(outdir) / "truth",
        cfg=cfg,
        motifs=motifs,
        names=names,
        gen=gen,
        ocrs=ocrs,
        sites=sites,
        peak_ids=peak_ids,
        activity=activity,
        effects=effects,
        occ=occ,
        acc=acc,
        weights=weights,
        depth=(depth_millions, total, ocr_frag, bg_frag),
        truth=(truth_ocrs, truth_rates, n_per_ocr[truth_ocrs], region_start[truth_ocrs]),
        background=background,
        genome_rate=genome_rate,
        pmf=pmf,
        seq_start=seq_start,
    )
    # Last, from their own stream: the variants change no byte of the files written above.
    world = sim_variants.PlantedWorld(
        motifs=motifs,
        pairs=cfg.pairs,
        sites=sites,
        ocrs=ocrs,
        chrom_names=gen.names,
        codes=gen.codes,
        activity=activity,
        effects=effects,
        occupancy=occ,
        accessibility=acc,
        window_counts=counts,
        background=lam,
        celltypes=names,
        lineages=lineages,
        sequence_halfwidth=cfg.ocr_sequence_halfwidth,
    )
    _write_variants(Path(outdir) / "truth", world, cfg.truth_variants, rng_for(seed, "variants"))
    log.info("simulation done in %.1f s", time.perf_counter() - t0)
    return layout


def _write_variants(
    outdir: Path, world: sim_variants.PlantedWorld, n: int, rng: np.random.Generator
) -> None:
    """``truth/variants.tsv`` and ``truth/variant_effects.tsv`` (bpaitac.simulate.variants)."""
    table, effects = sim_variants.simulated_variants(world, n, rng)
    with (
        atomic_path(outdir / "variants.tsv") as tmp_v,
        atomic_path(outdir / "variant_effects.tsv") as tmp_e,
    ):
        table.to_csv(tmp_v, sep="\t", index=False)
        effects.to_csv(tmp_e, sep="\t", index=False)
    counts = table["class"].value_counts()
    log.info(
        "truth variants: %s",
        ", ".join(f"{counts.get(c, 0)} {c}" for c in sim_variants.CLASSES),
    )


def _edge_zero(rate: np.ndarray, edge: int = EDGE) -> np.ndarray:
    rate[:edge] = 0.0
    rate[-edge:] = 0.0
    return rate


def _background_genome(cfg: SimulateConfig, seed: int) -> Genome:
    names = sorted(cfg.chrom_sizes, key=natural_key)
    sizes = np.array([cfg.chrom_sizes[n] for n in names], dtype=np.int64)
    model = genome.build_markov_model(cfg.markov_order, cfg.gc_content, cfg.cpg_depletion)
    codes = {
        n: genome.sample_sequence(model, int(s), rng_for(seed, "genome", i))
        for i, (n, s) in enumerate(zip(names, sizes))
    }
    return Genome(names, sizes, codes)


def _ocrs_and_sites(
    cfg: SimulateConfig, seed: int, gen: Genome, motifs: Sequence[Motif]
) -> tuple[grammar.OCRSet, grammar.SiteSet, np.ndarray]:
    """Place OCRs, give them OCR-like sequence, plant sites; edits ``gen.codes`` in place."""
    rng = rng_for(seed, "ocrs")
    margin = cfg.ocr_region_halfwidth + 2 * EDGE
    chrom, centre = grammar.place_ocrs(gen.sizes, cfg.n_ocrs, cfg.min_ocr_spacing, margin, rng)
    n = len(centre)
    promoter = rng.random(n) < cfg.promoter_fraction
    module = grammar.choose_modules(cfg.modules, promoter, rng)
    width = rng.uniform(*cfg.shape_width, size=n)
    scale = np.exp(rng.normal(0.0, cfg.ocr_scale_sd, size=n))
    jitter = np.round(rng.normal(0.0, cfg.summit_jitter_sd, size=n)).astype(np.int64)
    ocrs = grammar.OCRSet(chrom, centre, centre + jitter, promoter, module, width, scale)

    hw = cfg.ocr_sequence_halfwidth
    rng = rng_for(seed, "ocr_sequence")
    seqs = np.empty((n, 2 * hw), dtype=np.uint8)
    for is_prom, gc, cpg in (
        (False, cfg.ocr_gc_content, cfg.ocr_cpg_depletion),
        (True, cfg.promoter_gc_content, cfg.promoter_cpg_depletion),
    ):
        rows = np.flatnonzero(promoter == is_prom)
        if len(rows):
            model = genome.build_markov_model(cfg.markov_order, gc, cpg)
            seqs[rows] = genome.sample_chains(model, len(rows), 2 * hw, rng)
    seq_start = centre - hw
    sites = grammar.plant_sites(seqs, seq_start, module, motifs, cfg, rng_for(seed, "sites"))
    for i in range(n):
        gen.codes[gen.names[chrom[i]]][seq_start[i] : seq_start[i] + 2 * hw] = seqs[i]
    return ocrs, sites, seq_start


def _write_genome(gen: Genome, fasta: Path, fai: Path) -> None:
    with atomic_path(fasta) as tmp_fa, atomic_path(fai) as tmp_fai:
        genome.write_fasta(tmp_fa, gen.codes)
        pysam.faidx(str(tmp_fa))
        os.replace(f"{tmp_fa}.fai", tmp_fai)


def _map(fn, items, threads: int) -> list:
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ProcessPoolExecutor(max_workers=threads, mp_context=get_context("fork")) as pool:
        return list(pool.map(fn, items))


def _celltype_job(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample and write one cell type's BAM; returns (fragments per OCR, window counts, truth
    rates (K, 2H))."""
    sh = _SHARED
    assert sh is not None
    cfg, gen = sh.cfg, sh.genome
    rng = rng_for(sh.seed, "reads", c)
    width = 2 * cfg.ocr_region_halfwidth
    n_ocr = len(sh.region_start)
    p = sh.accessibility[:, c] / sh.accessibility[:, c].sum()
    n = rng.multinomial(sh.ocr_fragments[c], p)
    rate = reads.celltype_rate(
        sh.density,
        sh.ocr_weight,
        sh.windows,
        sh.site_weight[:, c],
        sh.bias,
        sh.fp_index,
        sh.occupancy[:, c],
        sh.fp_depth,
        sh.fp_gain,
    ).reshape(-1)
    seg, left, right = reads.sample_pairs(
        rate, np.arange(n_ocr + 1) * width, sh.pmf, rng, n_per_segment=n
    )
    o_chrom = sh.ocr_chrom[seg]
    o_left = sh.region_start[seg] + left - seg * width
    o_right = sh.region_start[seg] + right - seg * width
    bseg, bleft, bright = reads.merge_parts(
        sh.background.sample(int(sh.background_fragments[c]), rng)
    )
    off = gen.offsets
    chrom = np.concatenate([o_chrom, bseg])
    left_all = np.concatenate([o_left, bleft - off[bseg]])
    right_all = np.concatenate([o_right, bright - off[bseg]])
    bam.write_fragments_bam(
        sh.bam_paths[c],
        gen.names,
        gen.sizes,
        chrom,
        left_all,
        right_all,
        cfg.read_length,
        rng,
        comment=f"bpaitac simulated ATAC-seq, cell type {sh.celltypes[c]}",
    )
    positions = _positions_by_chrom(chrom, left_all, right_all)
    counts = tables.window_counts(
        positions,
        sh.ocr_chrom,
        sh.summit - tables.WINDOW_HALF,
        sh.summit + tables.WINDOW_HALF,
    )
    truth = rate.reshape(n_ocr, width)[sh.truth_ocrs]
    return n, counts, truth


def _positions_by_chrom(
    chrom: np.ndarray, left: np.ndarray, right: np.ndarray
) -> dict[int, np.ndarray]:
    both_c = np.concatenate([chrom, chrom])
    both_p = np.concatenate([left, right])
    return {int(c): np.sort(both_p[both_c == c]) for c in np.unique(both_c)}


def _protein_free(
    cfg: SimulateConfig,
    seed: int,
    gen: Genome,
    ocrs: grammar.OCRSet,
    log_b: dict[str, np.ndarray],
    pmf: np.ndarray,
    layout: dict,
    threads: int,
) -> pd.DataFrame:
    """Protein-free DNA: regions centred on random OCRs, insertions following the Tn5 bias."""
    rng = rng_for(seed, "protein_free")
    length = cfg.protein_free_region_length
    chosen: list[tuple[int, int]] = []
    for i in rng.permutation(len(ocrs)):
        if len(chosen) == cfg.protein_free_regions:
            break
        c = int(ocrs.chrom[i])
        start = int(np.clip(ocrs.centre[i] - length // 2, EDGE, gen.sizes[c] - length - EDGE))
        if start < EDGE:
            continue
        if any(c == c2 and start < s2 + length and s2 < start + length for c2, s2 in chosen):
            continue
        chosen.append((c, start))
    if len(chosen) < cfg.protein_free_regions:
        log.warning("only %d protein-free regions fit on the genome", len(chosen))
    chosen.sort()
    regions = pd.DataFrame(
        {
            "chrom": [gen.names[c] for c, _ in chosen],
            "start": [s for _, s in chosen],
            "end": [s + length for _, s in chosen],
            "name": [f"protein_free_{i + 1}" for i in range(len(chosen))],
        }
    )
    with atomic_path(layout["protein_free_regions"]) as tmp:
        regions.to_csv(tmp, sep="\t", header=False, index=False)
    if not chosen:
        raise ValueError("no protein-free region fits; lower protein_free_region_length.")
    rate = np.concatenate(
        [_edge_zero(np.exp(log_b[gen.names[c]][s : s + length].astype(float))) for c, s in chosen]
    )
    bounds = np.arange(len(chosen) + 1) * length
    pf_pmf = reads.normal_length_pmf(
        *cfg.protein_free_fragment_length, cfg.fragment_length.min, cfg.fragment_length.max
    )
    sampler = reads.LongSampler(rate, bounds, pf_pmf)
    chrom_of = np.array([c for c, _ in chosen])
    start_of = np.array([s for _, s in chosen])
    for k, path in enumerate(layout["protein_free_bams"]):
        rng_k = rng_for(seed, "protein_free_reads", k)
        seg, left, right = reads.merge_parts(sampler.sample(cfg.protein_free_fragments, rng_k))
        shift = start_of[seg] - seg * length
        bam.write_fragments_bam(
            path,
            gen.names,
            gen.sizes,
            chrom_of[seg],
            left + shift,
            right + shift,
            cfg.read_length,
            rng_k,
            comment=f"bpaitac simulated protein-free DNA, {cfg.protein_free_replicates[k]}",
        )
    return regions


def _decorative_phastcons(seed: int, sites: grammar.SiteSet, n: int) -> np.ndarray:
    """A conservation-like score in [0, 1], higher with more strong sites (not used anywhere)."""
    rng = rng_for(seed, "decor")
    strong = np.bincount(sites.ocr[~sites.weak], minlength=n)
    return np.clip(rng.beta(2, 5, size=n) + 0.08 * strong, 0, 1)


def _write_truth(
    outdir: Path,
    *,
    cfg: SimulateConfig,
    motifs: Sequence[Motif],
    names: list[str],
    gen: Genome,
    ocrs: grammar.OCRSet,
    sites: grammar.SiteSet,
    peak_ids: list[str],
    activity: np.ndarray,
    effects: np.ndarray,
    occ: np.ndarray,
    acc: np.ndarray,
    weights: np.ndarray,
    depth: tuple[np.ndarray, ...],
    truth: tuple[np.ndarray, ...],
    background: reads.LongSampler,
    genome_rate: np.ndarray,
    pmf: np.ndarray,
    seq_start: np.ndarray,
) -> None:
    """Write every ground-truth file (see ``docs/simulation.md``)."""
    motif_names = [m.name for m in motifs]
    write_meme(outdir / "motifs.meme", meme_motifs(motifs))
    for fname, values in (("activity.tsv", activity), ("effects.tsv", effects)):
        frame = pd.DataFrame(np.round(values, 5), columns=names)
        frame.insert(0, "motif", motif_names)
        with atomic_path(outdir / fname) as tmp:
            frame.to_csv(tmp, sep="\t", index=False)
    with atomic_path(outdir / "tn5_bias.tsv") as tmp:
        bias.write_bias_table(weights, tmp)
    pair_names = ["+".join(p.motifs) for p in cfg.pairs]
    site_table = grammar.sites_table(
        sites, motifs, peak_ids, gen.names, ocrs.chrom, pair_names, gen.codes
    )
    with atomic_path(outdir / "sites.tsv") as tmp:
        site_table.to_csv(tmp, sep="\t", index=False)
    frame = pd.DataFrame(np.round(occ, 5), columns=names)
    frame.insert(0, "site_id", site_table["site_id"])
    with atomic_path(outdir / "occupancy.tsv") as tmp:
        frame.to_csv(tmp, sep="\t", index=False)
    frame = pd.DataFrame(acc, columns=names)
    frame.insert(0, "peak_id", peak_ids)
    with atomic_path(outdir / "accessibility.tsv") as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    ocr_frame = pd.DataFrame(
        {
            "peak_id": peak_ids,
            "chrom": [gen.names[c] for c in ocrs.chrom],
            "centre": ocrs.centre,
            "summit": ocrs.summit,
            "promoter": ocrs.promoter,
            "module": [cfg.modules[m].name for m in ocrs.module],
            "shape_sd": np.round(ocrs.width, 3),
            "scale": np.round(ocrs.scale, 5),
            "sequence_start": seq_start,
            "sequence_end": seq_start + 2 * cfg.ocr_sequence_halfwidth,
        }
    )
    with atomic_path(outdir / "ocrs.tsv") as tmp:
        ocr_frame.to_csv(tmp, sep="\t", index=False)
    depth_millions, total, ocr_frag, bg_frag = depth
    frame = pd.DataFrame(
        {
            "celltype": names,
            "depth_millions": np.round(depth_millions, 4),
            "fragments": total,
            "ocr_fragments": ocr_frag,
            "background_fragments": bg_frag,
        }
    )
    with atomic_path(outdir / "depth.tsv") as tmp:
        frame.to_csv(tmp, sep="\t", index=False)

    idx, rates, n_frag, start = truth
    width = 2 * cfg.ocr_region_halfwidth
    per_fragment = np.zeros_like(rates)
    for k in range(rates.shape[0]):
        for c in range(rates.shape[1]):
            per_fragment[k, c] = reads.pair_insertion_profile(rates[k, c], pmf)
    z_background = float(background.cdf[-1])
    bg_profile = np.zeros((len(idx), width))
    d = len(pmf) - 1
    off = gen.offsets
    for k, o in enumerate(idx):
        c = int(ocrs.chrom[o])
        lo = max(off[c], off[c] + start[k] - d)
        hi = min(off[c + 1], off[c] + start[k] + width + d)
        fwd, bwd = reads.pair_sums(genome_rate[lo:hi], pmf)
        a = off[c] + start[k] - lo
        seg_rate = genome_rate[lo:hi][a : a + width]
        bg_profile[k] = seg_rate * (fwd[a : a + width] + bwd[a : a + width]) / z_background
    expected = n_frag[:, :, None] * per_fragment + bg_frag[None, :, None] * bg_profile[:, None, :]
    with atomic_path(outdir / "expected_rates.npz") as tmp:
        np.savez_compressed(
            tmp,
            peak_id=np.array([peak_ids[o] for o in idx]),
            celltypes=np.array(names),
            chrom=np.array([gen.names[c] for c in ocrs.chrom[idx]]),
            start=start,
            rate=rates,
            insertions_per_fragment=per_fragment,
            fragments=n_frag,
            background_per_fragment=bg_profile,
            background_fragments=bg_frag,
            expected=expected,
        )
