"""Tests of the ground-truth simulator (bpaitac.simulate) and the OCR table reader."""

from __future__ import annotations

import hashlib
import os
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from scipy.stats import chisquare, spearmanr

from bpaitac.data.ocr_table import LEADING_COLUMNS, read_ocr_table
from bpaitac.data.sequence import decode_sequence, encode_sequence
from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS
from bpaitac.io import CellTypeNames, ConfigError, InputError, read_celltypes
from bpaitac.simulate import SimulateConfig, bias, genome, output_layout, reads, simulate_dataset
from bpaitac.simulate import bam as simbam
from bpaitac.simulate.figure import composition_around, coverage, window_totals
from bpaitac.simulate.motifs import load_motifs, reverse_complement, score_sites

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))


def _config(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / name).read_text())


def _tiny_cfg(**overrides) -> SimulateConfig:
    return SimulateConfig.from_dict({**_config("tiny.yaml")["simulate"], **overrides})


def _celltypes(per_lineage: int = 1) -> pd.DataFrame:
    return read_celltypes(ROOT / "config" / "celltypes.tsv", per_lineage)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """The tiny dataset (config/tiny.yaml's simulate block), one cell type per lineage."""
    out = tmp_path_factory.mktemp("sim")
    celltypes = _celltypes()
    cfg = _tiny_cfg()
    layout = simulate_dataset(cfg, celltypes, seed=0, outdir=out, threads=2)
    return {"dir": out, "cfg": cfg, "celltypes": list(celltypes["celltype"]), "layout": layout}


@pytest.fixture(scope="module")
def codes(sim):
    with pysam.FastaFile(str(sim["dir"] / "genome.fa")) as fa:
        return {c: encode_sequence(fa.fetch(c)) for c in fa.references}


@pytest.fixture(scope="module")
def insertions(sim):
    return {c: simbam.read_insertions(sim["dir"] / "bams" / f"{c}.bam") for c in sim["celltypes"]}


# ----------------------------------------------------------------------------- genome


@pytest.mark.parametrize(("gc", "cpg"), [(0.42, 0.2), (0.6, 0.65)])
def test_markov_chain_hits_gc_and_cpg_depletion(gc, cpg):
    model = genome.build_markov_model(3, gc, cpg)
    seq = genome.sample_sequence(model, 2_000_000, np.random.default_rng(1))
    got_gc, got_cpg = genome.gc_and_cpg(seq)
    assert abs(got_gc - gc) < 0.01
    assert abs(got_cpg - cpg) < 0.03


def test_markov_chain_needs_order_one():
    with pytest.raises(ValueError, match="markov_order"):
        genome.build_markov_model(0, 0.42, 0.2)


def test_genome_fasta_index_and_composition(sim, codes):
    cfg = sim["cfg"]
    fai = pd.read_csv(sim["dir"] / "genome.fa.fai", sep="\t", header=None, index_col=0)[1]
    assert fai.to_dict() == cfg.chrom_sizes
    assert {"chr1", "chr11", "chr12", "chr15", "chr16"} <= set(fai.index) and len(fai) >= 7
    truth = pd.read_csv(sim["dir"] / "truth" / "ocrs.tsv", sep="\t")
    mask = np.ones(len(codes["chr1"]), bool)
    for s, e in truth.loc[truth.chrom == "chr1", ["sequence_start", "sequence_end"]].to_numpy():
        mask[s:e] = False
    gc, cpg = genome.gc_and_cpg(codes["chr1"][mask])
    assert abs(gc - cfg.gc_content) < 0.015 and abs(cpg - cfg.cpg_depletion) < 0.05


# ----------------------------------------------------------------------------- Tn5 and BAMs


def test_bias_model_is_palindromic_and_centred():
    w = bias.tn5_bias_weights()
    assert w.shape == (len(bias.OFFSETS), 4)
    np.testing.assert_allclose(w.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(w, w[::-1, ::-1])
    np.testing.assert_allclose(bias.tn5_bias_weights(0.5), 0.5 * w)


def test_log_bias_matches_direct_sum():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 4, 200).astype(np.uint8)
    w = bias.tn5_bias_weights()
    got = bias.log_bias(seq, w)
    x = 100
    want = sum(w[k, seq[x + o]] for k, o in enumerate(bias.OFFSETS))
    assert got[x] == pytest.approx(want, abs=1e-5)


def test_reads_follow_the_tn5_convention(tmp_path):
    left = np.array([100, 500, 1000])
    right = np.array([180, 510, 1600])
    path = tmp_path / "x.bam"
    simbam.write_fragments_bam(
        path, ["chr1"], [5000], np.zeros(3, int), left, right, 50, np.random.default_rng(0)
    )
    with pysam.AlignmentFile(str(path)) as fh:
        assert fh.check_index()
        recs = list(fh.fetch("chr1"))
    plus = sorted(r.reference_start for r in recs if not r.is_reverse)
    minus = sorted(r.reference_end for r in recs if r.is_reverse)
    assert plus == list(left - TN5_SHIFT_PLUS)
    assert minus == list(right - TN5_SHIFT_MINUS + 1)
    assert all(r.is_proper_pair and r.mapping_quality == 60 for r in recs)
    tlen = sorted(r.template_length for r in recs if r.template_length > 0)
    assert tlen == sorted(right - left + 10)
    got = simbam.read_insertions(path)["chr1"]
    assert list(got) == sorted([*left, *right])


def test_bams_are_sorted_indexed_and_complete(sim):
    depth = pd.read_csv(sim["dir"] / "truth" / "depth.tsv", sep="\t", index_col=0)
    paths = [*sim["layout"]["bams"], *sim["layout"]["protein_free_bams"]]
    for path in paths:
        with pysam.AlignmentFile(str(path)) as fh:
            assert fh.check_index(), path
            assert fh.header["HD"]["SO"] == "coordinate"
            n = 0
            for chrom in fh.references:
                pos = [r.reference_start for r in fh.fetch(chrom)]
                assert pos == sorted(pos), f"{path} is not sorted on {chrom}"
                n += len(pos)
        if path.parent.name == "bams":
            assert n == 2 * depth.loc[path.name.removesuffix(".bam"), "fragments"]
        else:
            assert n == 2 * sim["cfg"].protein_free_fragments


def test_protein_free_insertions_recover_the_bias_model(sim, codes):
    pf = [simbam.read_insertions(p) for p in sim["layout"]["protein_free_bams"]]
    pooled = {c: np.concatenate([d[c] for d in pf]) for c in codes}
    regions = pd.read_csv(sim["dir"] / "protein_free" / "regions.bed", sep="\t", header=None)
    assert len(regions) == sim["cfg"].protein_free_regions
    observed = composition_around(pooled, codes)
    freq = observed / observed.sum(axis=1, keepdims=True)
    bg = np.zeros(4)
    for chrom, start, end in regions.iloc[:, :3].itertuples(index=False):
        bg += np.bincount(codes[chrom][start:end], minlength=5)[:4]
        inside = (pooled[chrom] >= start) & (pooled[chrom] < end)
        assert inside.sum() > 0
    bg /= bg.sum()
    w = bias.tn5_bias_weights(sim["cfg"].tn5_bias_strength)
    expected = bias.expected_composition(w, bg)
    assert np.corrcoef(freq.ravel(), expected.ravel())[0, 1] > 0.9
    assert np.corrcoef(np.log(freq / bg).ravel(), w.ravel())[0, 1] > 0.9
    # control: uniformly random positions in the same regions carry no bias signature
    rng = np.random.default_rng(0)
    random: dict[str, list] = {}
    for chrom, start, end in regions.iloc[:, :3].itertuples(index=False):
        random.setdefault(chrom, []).append(rng.integers(start + 20, end - 20, 20_000))
    ctrl = composition_around({c: np.concatenate(v) for c, v in random.items()}, codes)
    ctrl = ctrl / ctrl.sum(axis=1, keepdims=True)
    assert np.corrcoef(np.log(ctrl / bg).ravel(), w.ravel())[0, 1] < 0.5


def _mean_fragments_per_ocr(cfg: dict) -> float:
    lo, hi = cfg.get("depth_millions", [2.5, 40])
    mean_depth = (hi - lo) / np.log(hi / lo)
    frac = 1 - cfg.get("background_fraction", 0.3)
    return mean_depth * 1e6 / 2 * cfg["depth_scale"] * frac / cfg["n_ocrs"]


def test_insertion_totals_track_planted_accessibility_at_default_depth(sim, insertions):
    # the tiny dataset has the demo's fragments per OCR, i.e. the default depth
    demo = _mean_fragments_per_ocr(_config("config.yaml")["simulate"])
    tiny = _mean_fragments_per_ocr(_config("tiny.yaml")["simulate"])
    assert 0.5 < tiny / demo < 2
    names = sim["celltypes"]
    table = read_ocr_table(sim["dir"] / "ocrs.csv", names)
    acc = pd.read_csv(sim["dir"] / "truth" / "accessibility.tsv", sep="\t", index_col=0)[names]
    frags = pd.read_csv(sim["dir"] / "truth" / "depth.tsv", sep="\t", index_col=0)
    sizes = sim["cfg"].chrom_sizes
    observed = np.column_stack(
        [
            window_totals(coverage(insertions[c], sizes), table.chrom, table.summit.to_numpy())
            for c in names
        ]
    )
    planted = acc.to_numpy() / acc.to_numpy().sum(axis=0) * frags.loc[names, "ocr_fragments"].values
    assert np.corrcoef(observed.ravel(), planted.ravel())[0, 1] > 0.9
    # the quantile-normalised table is monotone in the raw counts within each cell type
    for j, c in enumerate(names):
        order = np.argsort(observed[:, j], kind="stable")
        assert np.all(np.diff(table[c].to_numpy()[order]) >= -1e-6)


def _footprint_free_profiles(
    directory: Path, names: list[str], peaks: list[str], cfg: SimulateConfig
) -> dict[str, tuple[int, np.ndarray]]:
    """Per OCR: (region start, expected insertions per fragment (C, W)) without footprints,
    rebuilt here from the truth tables and docs/simulation.md, step 8: the OCR-wide profile
    weighted by basal + promoter, plus a Gaussian of sd ``site_opening_sd`` (cut at +-4 sd) on
    each site weighted by its effect x occupancy (+ half its pair's synergy x both occupancies),
    times the Tn5 bias, then smoothed by the pairing of insertions into fragments."""
    sites = pd.read_csv(directory / "truth" / "sites.tsv", sep="\t", keep_default_na=False)
    sites = sites[sites.peak_id.isin(peaks)]
    occ = pd.read_csv(directory / "truth" / "occupancy.tsv", sep="\t", index_col=0)[names]
    effects = pd.read_csv(directory / "truth" / "effects.tsv", sep="\t", index_col=0)[names]
    ocrs = pd.read_csv(directory / "truth" / "ocrs.tsv", sep="\t", index_col=0)
    with pysam.FastaFile(str(directory / "genome.fa")) as fa:
        codes = {c: encode_sequence(fa.fetch(c)) for c in fa.references}
    _, weights = bias.read_bias_table(directory / "truth" / "tn5_bias.tsv")
    synergy = {"+".join(p.motifs): p.synergy for p in cfg.pairs}
    weight = effects.loc[sites.motif].to_numpy() * occ.loc[sites.site_id].to_numpy()
    for _, grp in sites[sites.pair_id != ""].groupby("pair_id"):
        rows = [sites.index.get_loc(i) for i in grp.index]
        extra = 0.5 * synergy[grp.pair.iloc[0]] * np.prod(occ.loc[grp.site_id].to_numpy(), axis=0)
        weight[rows] += extra
    half, sd = cfg.ocr_region_halfwidth, cfg.site_opening_sd
    radius = int(np.ceil(4 * sd))
    x = np.arange(2 * half)
    pmf = reads.fragment_length_pmf(cfg.fragment_length)
    out = {}
    for peak in peaks:
        row = ocrs.loc[peak]
        start = int(row.centre) - half
        shape = cfg.shape_flank + np.exp(-0.5 * ((x - half) / row.shape_sd) ** 2)
        ocr_wide = cfg.basal_accessibility + cfg.promoter_accessibility * bool(row.promoter)
        mix = np.tile(ocr_wide * shape / shape.sum(), (len(names), 1))
        kernel_mass = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sd) ** 2).sum()
        here = np.flatnonzero((sites.peak_id == peak).to_numpy())
        for i in here:
            d = x - ((sites.start.iloc[i] + sites.end.iloc[i]) // 2 - start)
            k = np.where(np.abs(d) <= radius, np.exp(-0.5 * (d / sd) ** 2), 0.0) / kernel_mass
            mix += cfg.site_opening_weight * weight[i][:, None] * k[None, :]
        codes_c = codes[row.chrom][start - 10 : start + 2 * half + 10]
        b = np.exp(bias.log_bias(codes_c, weights)[10:-10].astype(float))
        out[peak] = (start, np.stack([reads.pair_insertion_profile(m * b, pmf) for m in mix]))
    return out


def _footprint_ratios(
    directory: Path, names: list[str], motif: str, cfg: SimulateConfig
) -> tuple[float, float]:
    """Observed / footprint-free expected insertions over the core of a motif's sites, relative
    to the same ratio over its flanks: (bound sites, unbound sites), summed over cell types.

    The footprint-free expectation (:func:`_footprint_free_profiles`: OCR-wide profile plus the
    opening around every site, x the Tn5 bias, paired into fragments) is scaled to the
    insertions observed in the window, so bias on the motif and the opening cancel.
    """
    sites = pd.read_csv(directory / "truth" / "sites.tsv", sep="\t", keep_default_na=False)
    sites = sites[sites.motif == motif]
    occ = pd.read_csv(directory / "truth" / "occupancy.tsv", sep="\t", index_col=0)
    occ = occ.loc[sites.site_id, names].to_numpy()
    profiles = _footprint_free_profiles(directory, names, list(sites.peak_id.unique()), cfg)
    radius = 60
    x = np.arange(-radius, radius + 1)
    centre = ((sites.start + sites.end) // 2).to_numpy()
    minus = (sites.strand == "-").to_numpy()
    half = int((sites.end - sites.start).iloc[0]) // 2
    core = np.abs(x) <= half
    flank = (np.abs(x) > half + 15) & (np.abs(x) <= half + 45)
    sums = {k: np.zeros((2, len(x))) for k in ("bound", "unbound")}
    for j, c in enumerate(names):
        ins = simbam.read_insertions(directory / "bams" / f"{c}.bam")
        cov = coverage(ins, cfg.chrom_sizes)
        obs = np.stack([cov[ch][m + x] for ch, m in zip(sites.chrom, centre)])
        null = np.stack(
            [profiles[p][1][j, m + x - profiles[p][0]] for p, m in zip(sites.peak_id, centre)]
        )
        exp = obs.sum(axis=1, keepdims=True) * null / null.sum(axis=1, keepdims=True)
        obs[minus], exp[minus] = obs[minus, ::-1], exp[minus, ::-1]
        for key, mask in (("bound", occ[:, j] > 0.7), ("unbound", occ[:, j] < 0.1)):
            sums[key] += [obs[mask].sum(axis=0), exp[mask].sum(axis=0)]
    out = []
    for key in ("bound", "unbound"):
        o, e = sums[key]
        assert o[core].sum() + o[flank].sum() > 200, f"too few insertions around {key} {motif}"
        out.append((o[core].sum() / e[core].sum()) / (o[flank].sum() / e[flank].sum()))
    return out[0], out[1]


def test_footprints_over_bound_sites_only(sim, tmp_path):
    names, cfg = sim["celltypes"], sim["cfg"]
    # CTCF is bound in every lineage, SPI1 and EBF1 only in some (cell-type-specific binding)
    for motif, most in (("CTCF", 0.4), ("SPI1", 0.75), ("EBF1", 0.75)):
        bound, unbound = _footprint_ratios(sim["dir"], names, motif, cfg)
        assert bound < most, (motif, bound)
        assert 0.8 < unbound < 1.25, (motif, unbound)
    # the same genome and occupancies without footprints: bound sites look like unbound ones
    # (this also checks the footprint-free expectation, opening around bound sites included)
    flat = tmp_path / "flat"
    flat_cfg = _tiny_cfg(footprint_strength=0.0)
    simulate_dataset(flat_cfg, _celltypes(), 0, flat, threads=2)
    for motif in ("CTCF", "SPI1"):
        bound, unbound = _footprint_ratios(flat, names, motif, flat_cfg)
        assert 0.8 < bound < 1.25 and 0.8 < unbound < 1.25, (motif, bound, unbound)


def _near_site_fraction(directory: Path, names: list[str], motif: str, within: int = 50):
    """Per cell type: the fraction of an OCR's insertions (expected per fragment, background
    excluded) within ``within`` bp of the centres of its ``motif`` sites, averaged over OCRs."""
    z = np.load(directory / "truth" / "expected_rates.npz")
    assert list(z["celltypes"]) == names
    per_fragment = z["insertions_per_fragment"]
    row = {p: i for i, p in enumerate(z["peak_id"])}
    sites = pd.read_csv(directory / "truth" / "sites.tsv", sep="\t", keep_default_na=False)
    x = np.arange(per_fragment.shape[2])
    fractions = []
    for peak, grp in sites[sites.motif == motif].groupby("peak_id"):
        k = row[peak]
        mids = ((grp.start + grp.end) // 2 - z["start"][k]).to_numpy()
        near = (np.abs(x[:, None] - mids[None, :]) <= within).any(axis=1)
        fractions.append(per_fragment[k][:, near].sum(axis=1) / per_fragment[k].sum(axis=1))
    assert len(fractions) >= 20, f"too few OCRs with {motif} sites"
    return np.mean(fractions, axis=0)


@pytest.fixture(scope="module")
def opening(tmp_path_factory):
    """The tiny dataset with expected rates for every OCR, with and without site opening."""
    out = {}
    for key, weight in (("on", 1.0), ("off", 0.0)):
        path = tmp_path_factory.mktemp(f"opening_{key}")
        cfg = _tiny_cfg(
            truth_ocrs=_config("tiny.yaml")["simulate"]["n_ocrs"], site_opening_weight=weight
        )
        simulate_dataset(cfg, _celltypes(), 0, path, threads=2)
        out[key] = path
    return out


def test_profiles_open_around_sites_of_active_tfs(opening):
    """Insertions concentrate around a TF's sites in the cell types where it is active: the
    fraction of an OCR's insertions within 50 bp of its sites rises with the TF's activity across
    cell types. Without site opening (site_opening_weight: 0) only footprints depend on binding,
    and they lower that fraction. (EBF1 is left out: its B-module partners SPI1, PAX5, ETS1 and
    IRF8 are all active in B cells too, so opening spreads over every site of those OCRs.)"""
    names = list(_celltypes()["celltype"])
    act = pd.read_csv(opening["on"] / "truth" / "activity.tsv", sep="\t", index_col=0)[names]
    for motif in ("SPI1", "TCF7", "GATA3", "ETS1"):
        on = spearmanr(act.loc[motif], _near_site_fraction(opening["on"], names, motif))[0]
        off = spearmanr(act.loc[motif], _near_site_fraction(opening["off"], names, motif))[0]
        assert on > 0.5, (motif, on)
        assert off < 0, (motif, off)


# ----------------------------------------------------------------------------- exact sampler


def test_site_kernels_match_a_direct_sum(monkeypatch):
    """The vectorised opening-kernel scatter (grouped windows, edge sites base by base) equals
    a direct sum over sites and bases, the kernel cut at the region ends."""
    monkeypatch.setattr(reads, "SITE_CHUNK", 2)
    rng = np.random.default_rng(0)
    n, width = 5, 400
    kernel = reads.opening_kernel(20.0)
    assert kernel.sum() == pytest.approx(1.0) and len(kernel) == 2 * 80 + 1
    ocr = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    col = np.array([10, 200, 230, 5, 300, 120, 390, 100, 150, 200, 380])
    weight = rng.uniform(0, 2, len(ocr))
    got = np.zeros((n, width))
    reads.add_site_kernels(got, reads.site_windows(ocr, col, (n, width), kernel), weight)
    want = np.zeros((n, width))
    for o, c, w in zip(ocr, col, weight):
        for j, kj in zip(range(-80, 81), kernel):
            if 0 <= c + j < width:
                want[o, c + j] += w * kj
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def _rates(rng, n_seg, width):
    shape = reads.ocr_shape(np.arange(-width // 2, width // 2), rng.uniform(50, 120, n_seg), 0.03)
    return (shape * np.exp(rng.normal(0, 1, (n_seg, width)))).ravel()


def _chi2_p(obs: np.ndarray, exp: np.ndarray, bin_size: int = 20) -> float:
    ob = obs.reshape(-1, bin_size).sum(axis=1)
    ex = exp.reshape(-1, bin_size).sum(axis=1)
    keep = ex > 5
    return chisquare(ob[keep], ex[keep] * ob[keep].sum() / ex[keep].sum()).pvalue


@pytest.mark.parametrize("mode", ["short", "long"])
def test_pair_sampler_matches_exact_expected_insertions(mode):
    rng = np.random.default_rng(3)
    width, n_seg = 1200, 3
    rate = _rates(rng, n_seg, width)
    pmf = reads.fragment_length_pmf(SimulateConfig.defaults().fragment_length)
    bounds = np.arange(n_seg + 1) * width
    if mode == "short":
        n = np.array([60_000, 30_000, 10_000])
        seg, left, right = reads.sample_pairs(rate, bounds, pmf, rng, n_per_segment=n)
        assert np.array_equal(np.bincount(seg, minlength=n_seg), n)
    else:
        seg, left, right = reads.sample_pairs(rate, bounds, pmf, rng, n_total=100_000)
        z = [(rate[a:b] * reads.pair_sums(rate[a:b], pmf)[0]).sum() for a, b in pairwise(bounds)]
        np.testing.assert_allclose(np.bincount(seg) / len(seg), np.array(z) / sum(z), atol=0.01)
        n = np.bincount(seg, minlength=n_seg)
    assert np.all(left < right) and np.all(right < bounds[seg + 1]) and np.all(left >= bounds[seg])
    assert np.all(right - left + 10 >= 30)
    obs = np.bincount(np.concatenate([left, right]), minlength=len(rate))
    exact = np.concatenate(
        [reads.pair_insertion_profile(rate[a:b], pmf) * k for a, b, k in zip(bounds, bounds[1:], n)]
    )
    assert _chi2_p(obs, exact) > 1e-3
    naive = np.concatenate(
        [rate[a:b] / rate[a:b].sum() * 2 * k for a, b, k in zip(bounds, bounds[1:], n)]
    )
    assert _chi2_p(obs, naive) < 1e-6  # the pairing matters: the test can tell


def test_expected_rates_in_truth_match_the_bams(sim, insertions):
    z = np.load(sim["dir"] / "truth" / "expected_rates.npz")
    k, c, width = z["expected"].shape
    assert list(z["celltypes"]) == sim["celltypes"] and k == sim["cfg"].truth_ocrs
    np.testing.assert_allclose(z["insertions_per_fragment"].sum(axis=2), 2.0)
    obs = np.zeros((k, c, width))
    for j, name in enumerate(z["celltypes"]):
        for i in range(k):
            pos = insertions[name][str(z["chrom"][i])] - z["start"][i]
            obs[i, j] = np.bincount(pos[(pos >= 0) & (pos < width)], minlength=width)
    assert _chi2_p(obs.sum(axis=1).ravel(), z["expected"].sum(axis=1).ravel()) > 1e-3
    np.testing.assert_allclose(obs.sum(axis=2), z["expected"].sum(axis=2), rtol=0.5, atol=25)


# ----------------------------------------------------------------------------- tables and truth


def test_ocr_table_parses_with_the_immgen_reader(sim):
    names = sim["celltypes"]
    raw = pd.read_csv(sim["dir"] / "ocrs.csv")
    assert list(raw.columns) == [*LEADING_COLUMNS, *names]
    table = read_ocr_table(sim["dir"] / "ocrs.csv", names)
    assert list(table.columns) == ["peak_id", "chrom", "summit", *names]
    assert len(table) == sim["cfg"].n_ocrs
    truth = pd.read_csv(sim["dir"] / "truth" / "ocrs.tsv", sep="\t")
    np.testing.assert_array_equal(table.summit, truth.summit)
    assert np.array_equal(table.summit.to_numpy() + 1, raw["Summit"].to_numpy())
    # quantile normalisation: every cell type has (up to ties) the same sorted values
    srt = np.sort(table[names].to_numpy(), axis=0)
    assert np.abs(srt.mean(axis=0) - srt.mean()).max() < 0.05 * srt.mean()


def _write_table(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def test_ocr_table_reader_errors_name_file_and_fix(sim, tmp_path):
    names = sim["celltypes"]
    raw = pd.read_csv(sim["dir"] / "ocrs.csv")
    bad = _write_table(tmp_path / "a.csv", raw.drop(columns=["Summit"]))
    with pytest.raises(InputError, match=r"a\.csv.*Summit"):
        read_ocr_table(bad, names)
    bad = _write_table(tmp_path / "b.csv", raw.drop(columns=[names[0]]))
    in_use = CellTypeNames(tuple(names), table="config/celltypes.tsv")  # messages name the table
    with pytest.raises(InputError, match="named as in config/celltypes.tsv"):
        read_ocr_table(bad, in_use)
    frame = raw.copy()
    frame.loc[3, "Summit"] = 0
    with pytest.raises(InputError, match=r"c\.csv, line 5: Summit"):
        read_ocr_table(_write_table(tmp_path / "c.csv", frame), names)
    frame = raw.copy()
    frame.loc[7, "ImmGenATAC1219.peakID"] = frame.loc[2, "ImmGenATAC1219.peakID"]
    with pytest.raises(InputError, match="line 9: duplicated"):
        read_ocr_table(_write_table(tmp_path / "d.csv", frame), names)
    text = (sim["dir"] / "ocrs.csv").read_text().replace(f",{names[1]}", f",{names[0]}", 1)
    (tmp_path / "e.csv").write_text(text)
    with pytest.raises(InputError, match="duplicated column"):
        read_ocr_table(tmp_path / "e.csv", names)
    with pytest.raises(InputError, match="not found"):
        read_ocr_table(tmp_path / "missing.csv", names)


def test_closed_pvalues_follow_accessibility(sim):
    names = sim["celltypes"]
    pv = pd.read_csv(sim["dir"] / "closed_pvalues.tsv", sep="\t", index_col=0)
    table = read_ocr_table(sim["dir"] / "ocrs.csv", names)
    assert pv.index.name == "peak_id" and list(pv.index) == list(table.peak_id)
    assert list(pv.columns) == names and (pv.to_numpy() >= 0).all()
    acc = pd.read_csv(sim["dir"] / "truth" / "accessibility.tsv", sep="\t", index_col=0)[names]
    closed = pv.to_numpy() < -np.log10(0.25)
    assert 0.01 < closed.mean() < 0.9
    assert acc.to_numpy()[closed].mean() < 0.5 * acc.to_numpy()[~closed].mean()


def test_truth_files(sim, codes):
    cfg, names = sim["cfg"], sim["celltypes"]
    from memelite.io import read_meme

    meme = read_meme(str(sim["dir"] / "truth" / "motifs.meme"))
    assert [k.split()[0] for k in meme] == [m.name for m in cfg.motifs]
    act = pd.read_csv(sim["dir"] / "truth" / "activity.tsv", sep="\t", index_col=0)
    assert list(act.index) == [m.name for m in cfg.motifs] and list(act.columns) == names
    lineage = dict(zip(_celltypes()["celltype"], _celltypes()["lineage"]))
    b_cells = [c for c in names if lineage[c] == "B"]
    assert act.loc["EBF1", b_cells].min() > act.loc["EBF1"].drop(b_cells).max()
    sites = pd.read_csv(sim["dir"] / "truth" / "sites.tsv", sep="\t", keep_default_na=False)
    motifs = {m.name: m for m in load_motifs(cfg.motifs, cfg.jaspar_release)}
    for row in sites.sample(100, random_state=0).itertuples():
        seq = codes[row.chrom][row.start : row.end]
        assert decode_sequence(seq) == row.sequence
        fwd = seq if row.strand == "+" else reverse_complement(seq)
        score = score_sites(fwd[None, :], motifs[row.motif].ppm)[0]
        assert score == pytest.approx(row.score, abs=1e-3)
    # cooperative pairs keep their planted spacing
    paired = sites[sites.pair_id != ""]
    assert len(paired) > 0
    spacing = {"+".join(p.motifs): p.spacing for p in cfg.pairs}
    for _, grp in paired.groupby("pair_id"):
        a, b = grp.sort_values("start").itertuples()
        assert b.start - a.end == spacing[grp.pair.iloc[0]]
    occ = pd.read_csv(sim["dir"] / "truth" / "occupancy.tsv", sep="\t", index_col=0)
    assert occ.shape == (len(sites), len(names)) and occ.to_numpy().min() >= 0
    assert occ.to_numpy().max() <= 1
    offsets, weights = bias.read_bias_table(sim["dir"] / "truth" / "tn5_bias.tsv")
    np.testing.assert_allclose(weights, bias.tn5_bias_weights(cfg.tn5_bias_strength), atol=1e-6)
    np.testing.assert_array_equal(offsets, bias.OFFSETS)


def _bam_records(path: Path) -> list[tuple]:
    with pysam.AlignmentFile(str(path)) as fh:
        return [(r.query_name, r.flag, r.reference_id, r.reference_start) for r in fh]


def test_same_seed_same_data_any_thread_count(sim, tmp_path):
    again = tmp_path / "again"
    simulate_dataset(_tiny_cfg(), _celltypes(), seed=0, outdir=again, threads=1)
    for rel in ("ocrs.csv", "closed_pvalues.tsv", "genome.fa", "truth/sites.tsv"):
        assert (again / rel).read_bytes() == (sim["dir"] / rel).read_bytes(), rel
    name = sim["celltypes"][3]
    for rel in (f"bams/{name}.bam", "protein_free/rep1.bam"):
        assert _bam_records(again / rel) == _bam_records(sim["dir"] / rel), rel
    rates = [np.load(d / "truth" / "expected_rates.npz")["rate"] for d in (again, sim["dir"])]
    assert np.array_equal(*rates)
    other = tmp_path / "other"
    simulate_dataset(_tiny_cfg(), _celltypes(), seed=1, outdir=other, threads=2)
    assert (other / "ocrs.csv").read_bytes() != (sim["dir"] / "ocrs.csv").read_bytes()


def test_truth_variants_break_create_or_miss_planted_sites(sim, codes):
    """Site-breaking SNVs change a bound site's most informative consensus base to its least
    likely base, site-creating ones give an unbound site the consensus base, background SNVs
    lie outside every site in a site-breaking SNV's OCR with the same bases; the planted
    accessibility change follows the grammar (recomputed here from the truth tables)."""
    from scipy.special import expit

    from bpaitac.simulate.motifs import log_odds
    from bpaitac.simulate.variants import SITE_MARGIN, information_content

    truth = sim["dir"] / "truth"
    cfg, names = sim["cfg"], sim["celltypes"]
    var = pd.read_csv(truth / "variants.tsv", sep="\t", keep_default_na=False)
    var["cls"] = var["class"]
    var[["score_ref", "score_alt"]] = var[["score_ref", "score_alt"]].apply(pd.to_numeric)
    eff = pd.read_csv(truth / "variant_effects.tsv", sep="\t")
    sites = pd.read_csv(truth / "sites.tsv", sep="\t", keep_default_na=False).set_index("site_id")
    occ = pd.read_csv(truth / "occupancy.tsv", sep="\t", index_col=0)
    act = pd.read_csv(truth / "activity.tsv", sep="\t", index_col=0)
    effects = pd.read_csv(truth / "effects.tsv", sep="\t", index_col=0)
    scale = pd.read_csv(truth / "ocrs.tsv", sep="\t", index_col=0)["scale"]
    motifs = {m.name: m for m in load_motifs(cfg.motifs, cfg.jaspar_release)}
    counts = var["class"].value_counts()
    n = cfg.truth_variants
    assert counts["site_breaking"] == n and counts["background"] == n
    assert 0 < counts["site_creating"] <= n
    assert var["id"].is_unique and not var.duplicated(["chrom", "pos"]).any()
    comp = str.maketrans("ACGT", "TGCA")
    checked = 0
    for row in var.itertuples():
        assert decode_sequence(codes[row.chrom][row.pos - 1 : row.pos]) == row.ref
        assert row.ref != row.alt
        if row.cls == "background":
            near = sites[(sites.chrom == row.chrom) & (sites.peak_id == row.peak_id)]
            assert (
                (row.pos - 1 < near.start - SITE_MARGIN) | (row.pos - 1 >= near.end + SITE_MARGIN)
            ).all()
            continue
        site = sites.loc[row.site_id]
        ppm = motifs[site.motif].ppm
        j = row.site_position - 1
        g = site.start + j if site.strand == "+" else site.end - 1 - j
        assert g == row.pos - 1
        plus = site.strand == "+"
        seq = site.sequence if plus else site.sequence[::-1].translate(comp)
        ref_f, alt_f = ("ACGT".index(b if plus else b.translate(comp)) for b in (row.ref, row.alt))
        lo = log_odds(ppm)
        assert row.score_alt - row.score_ref == pytest.approx(lo[j, alt_f] - lo[j, ref_f], abs=1e-3)
        cons = ppm.argmax(axis=1)
        ic = information_content(ppm)
        if row.cls == "site_breaking":
            assert occ.loc[row.site_id].max() >= 0.5 and not site.weak
            assert ref_f == cons[j] and alt_f == ppm[j].argmin()
            at_cons = [k for k, b in enumerate(seq) if "ACGT".index(b) == cons[k]]
            assert ic[j] == max(ic[k] for k in at_cons)
        else:
            assert occ.loc[row.site_id].max() < 0.5 and alt_f == cons[j]
        if site.pair_id:
            continue  # the synergy term needs the partner; single sites are checked exactly
        m = site.motif
        occ_alt = expit(
            np.log(act.loc[m, names]) + site.log_affinity + row.score_alt - row.score_ref
        )
        delta = scale[row.peak_id] * effects.loc[m, names] * (occ_alt - occ.loc[row.site_id, names])
        got = eff[(eff.id == row.id) & (eff.level == "celltype")].set_index("target")
        np.testing.assert_allclose(got.loc[names, "planted_acc_delta"], delta, atol=2e-4)
        checked += 1
    assert checked > 5
    lineage = eff[eff.level == "lineage"].merge(var[["id", "class"]], on="id")
    assert (lineage.loc[lineage["class"] == "background", "planted_log2fc"] == 0).all()
    assert (lineage.loc[lineage["class"] == "site_breaking", "planted_log2fc"] <= 0).all()
    assert (lineage.loc[lineage["class"] == "site_creating", "planted_log2fc"] >= 0).all()
    strongest = lineage[lineage["class"] == "site_breaking"].groupby("id")["planted_log2fc"].min()
    assert (strongest < -0.2).mean() > 0.5


def test_truth_variants_change_no_other_output(sim, tmp_path):
    """The variants come last, from their own random stream: without them every other file of
    the simulation is the same (BAMs: the same records; their @PG line names the temp file)."""
    bare = tmp_path / "bare"
    simulate_dataset(_tiny_cfg(truth_variants=0), _celltypes(), seed=0, outdir=bare, threads=2)
    assert pd.read_csv(bare / "truth" / "variants.tsv", sep="\t").empty
    for path in sorted(Path(sim["dir"]).rglob("*")):
        rel = path.relative_to(sim["dir"])
        if not path.is_file() or rel.name in ("variants.tsv", "variant_effects.tsv"):
            continue
        if rel.suffix == ".bam":
            assert _bam_records(bare / rel) == _bam_records(path), rel
        elif rel.suffix != ".bai":
            assert (bare / rel).read_bytes() == path.read_bytes(), rel


def test_output_layout_lists_every_written_file(sim):
    layout = output_layout(sim["dir"], sim["celltypes"], sim["cfg"].protein_free_replicates)
    listed = {Path(p) for v in layout.values() for p in (v if isinstance(v, list) else [v])}
    written = {p for p in Path(sim["dir"]).rglob("*") if p.is_file()}
    assert listed == written


# ----------------------------------------------------------------------------- config


def test_schema_defaults_match_the_package():
    schema = yaml.safe_load((ROOT / "workflow/schemas/simulate.schema.yaml").read_text())
    schema = schema["$defs"]["simulate"]
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert all("default" in p and "description" in p for p in props.values())
    defaults = {k: p["default"] for k, p in props.items()}
    # the package takes its defaults from the schema: an empty section is the schema's defaults
    assert SimulateConfig.from_dict(defaults) == SimulateConfig.defaults()
    assert set(props) == set(SimulateConfig.defaults().to_dict())


def test_default_simulate_params_are_unchanged():
    """The simulate rule's params are ``SimulateConfig.to_dict()`` (values *and* key order): any
    change re-runs every simulation and everything after it. Update the digest only for a
    change meant to do that (a new knob, a new default)."""
    digest = hashlib.sha256(repr(SimulateConfig.defaults().to_dict()).encode()).hexdigest()
    assert digest == "b73497ca33346f4897b0976203e540f469eb42bf4f68fd5152c1fa36027650dd"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"n_ocr": 5}, r"simulate\.n_ocr.*unknown key"),
        ({"gc_content": 1.2}, r"simulate\.gc_content"),
        ({"motifs": [{"name": "X", "jaspar_id": "MA0080.7", "consensus": "ACGT"}]}, "exactly one"),
        ({"modules": [{"name": "m", "weight": 1, "motifs": {"NOPE": 1}}]}, "NOPE"),
        ({"pairs": [{"motifs": ["SPI1", "NOPE"], "spacing": 2}]}, "NOPE"),
        ({"min_ocr_spacing": 100}, "min_ocr_spacing"),
        ({"n_ocrs": 100_000}, "n_ocrs"),
    ],
)
def test_config_errors_name_the_key(override, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        cfg = _tiny_cfg(**override)
        simulate_dataset(cfg, _celltypes(), 0, tmp_path)


def test_unknown_jaspar_id_is_a_clear_error():
    cfg = SimulateConfig.from_dict(
        {
            "motifs": [{"name": "X", "jaspar_id": "MA9999.9"}],
            "modules": [{"name": "m", "weight": 1, "motifs": {"X": 1}}],
            "pairs": [],
            "promoter_fraction": 0,
        }
    )
    with pytest.raises(ConfigError, match="MA9999.9"):
        load_motifs(cfg.motifs, cfg.jaspar_release)


@pytest.mark.slow
def test_synthetic_motif_has_no_jaspar_match():
    """TomTom (memelite) against JASPAR2024 CORE vertebrates: no match at q < 0.05.

    Positive control: a JASPAR motif of the catalogue matches itself. The first call compiles
    with numba (~65 s) unless NUMBA_CACHE_DIR holds a cache.
    """
    from memelite import tomtom
    from pyjaspar import jaspardb
    from scipy.stats import false_discovery_control

    cfg = SimulateConfig.defaults()
    db = jaspardb(release=cfg.jaspar_release)
    targets = db.fetch_motifs(collection=["CORE"], tax_group=["vertebrates"])
    mats = [np.array([t.counts[b] for b in "ACGT"], float) for t in targets]
    mats = [m / m.sum(axis=0) for m in mats]
    motifs = {m.name: m for m in load_motifs(cfg.motifs, cfg.jaspar_release)}
    synthetic = [s.name for s in cfg.motifs if s.consensus is not None]
    assert synthetic
    queries = [motifs[n].ppm.T for n in [*synthetic, "SPI1"]]
    pvals = tomtom(queries, mats)[0]
    qvals = [false_discovery_control(p) for p in pvals]
    for name, q in zip(synthetic, qvals):
        assert q.min() >= 0.05, f"{name} matches JASPAR {targets[int(np.argmin(q))].name}"
    assert qvals[-1].min() < 0.05
