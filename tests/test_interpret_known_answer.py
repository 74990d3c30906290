"""Known-answer test of the interpretation chain.

Two tiny bpAI-TAC networks are built by hand (weights set directly, no training) so that the
predicted accessibility of lineage A is a known function of a known motif: the first body
filters compute the log-odds score of a JASPAR matrix (forward and reverse strand) minus a
threshold, the residual block and the accessibility head pass those channels through, and the
final linear layer adds them up for the lineage-A tasks only. The "profile" model scores SPI1
(MA0080.7), the "reference" model EBF1 (MA0154.5). Sequences carry planted sites of both.

A network whose weights compute a known motif's score must be interpreted back to that motif.
Running the real pipeline functions (regions -> DeepSHAP -> seqlets -> clusters -> Fisher
enrichment -> TomTom against JASPAR -> truth recovery) on these networks therefore validates
the chain independently of training quality: the profile model's seqlets must lie on the SPI1
sites, its cluster must be named SPI1 by TomTom and be enriched in profile-model seqlets, and
the truth table must report SPI1 recovered by the profile model (EBF1 by the reference model).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from interpret_chain import (
    BATCH_SIZE,
    CT,
    LINEAGES,
    criteria,
    run_chain,
    tomtom_options,
    write_predictions,
)

from bpaitac.interpret import motifs as mot
from bpaitac.interpret.regions import run_regions
from bpaitac.interpret.tomtom import run_tomtom
from bpaitac.interpret.truth import run_truth
from bpaitac.model.network import build_model, save_model
from bpaitac.simulate.motifs import sample_sites

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))

NAMES = {"reference": "AI-TAC", "profile": "bpAI-TAC"}
RELEASE = "JASPAR2024"
SPI1, EBF1 = "MA0080.7", "MA0154.5"
MOTIF_OF = {"profile": SPI1, "reference": EBF1}
FAMILY = {SPI1: "SPI", EBF1: "EBF"}
N_SEQ, SEQ_LEN = 20, 1000
THRESHOLD = 10.0  # log2-odds a window must exceed to count (random 13-mers: ~1e-4 do)
MIN_SITE_SCORE = 13.0  # planted sites are PPM samples scoring at least this


def log_odds(ppm: np.ndarray, pseudocount: float = 0.01) -> np.ndarray:
    """log2 odds of a (4, w) PPM against a uniform background."""
    p = (ppm + pseudocount) / (1.0 + 4 * pseudocount)
    return np.log2(p / 0.25)


def motif_model(ppm: np.ndarray, threshold: float = THRESHOLD):
    """A BpAITAC whose lineage-A accessibility sums ReLU(motif score - threshold) maxima.

    Filter 0 scores the forward strand, filter 1 the reverse strand; the residual block is the
    identity (zero conv), each accessibility-head conv passes channels 0 and 1 through (centre
    tap) and every batch norm is the identity (eval mode, fresh running statistics), so after
    the 3 max-pools each of the 8 positions holds the best site score of a 125 bp window, and
    the linear layer sums them for tasks a1 and a2.
    """
    model = build_model({"filters": 4, "dilated_blocks": 1, "acc_head": "conv", "n_tasks": 6})
    lo = log_odds(ppm)
    width = lo.shape[1]
    k = model.spec.input_kernel
    start = (k - width) // 2
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.input_conv.weight[0, :, start : start + width] = torch.from_numpy(lo)
        model.input_conv.weight[1, :, start : start + width] = torch.from_numpy(
            mot.reverse_complement(lo)
        )
        model.input_conv.bias[:2] = -threshold
        for layer in model.acc_head.layers:
            if isinstance(layer, torch.nn.Conv1d):
                layer.weight[0, 0, 1] = layer.weight[1, 1, 1] = 1.0
        # Batch norm (eval mode, running mean 0 and variance 1) as the identity up to
        # 1 / sqrt(1 + eps): DeepSHAP then also runs through BN modules.
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm1d):
                bn.weight.fill_(1.0)
                bn.reset_running_stats()
        lin = model.acc_head.linear
        n_pos = lin.in_features // model.spec.filters  # 8; flatten is channel-major
        a_tasks = np.flatnonzero(CT["lineage"].to_numpy() == "A")
        for t in a_tasks:
            lin.weight[t, : 2 * n_pos] = 0.5
        lin.bias[:] = 1.0
    return model.eval()


def sample_site(rng: np.random.Generator, ppm: np.ndarray, min_score: float) -> np.ndarray:
    """A site drawn from the PPM, redrawn until its log-odds score reaches ``min_score``."""
    lo = log_odds(ppm)
    cols = np.arange(ppm.shape[1])
    while True:
        site = sample_sites(ppm.T / ppm.sum(axis=0)[:, None], 1, rng)[0]
        if lo[site, cols].sum() >= min_score:
            return site


def plant_sequences(rng: np.random.Generator, ppms: dict[str, np.ndarray]):
    """Random sequences with 2-3 SPI1 sites (central 600 bp) and 2-3 EBF1 sites elsewhere.

    Returns the sequences (N, L) uint8 and the planted sites: motif, example, start, end,
    strand.
    """
    seqs = rng.integers(0, 4, (N_SEQ, SEQ_LEN)).astype(np.uint8)
    sites = []
    for i in range(N_SEQ):
        taken: list[tuple[int, int]] = []
        for motif, (lo, hi) in ((SPI1, (200, 800)), (EBF1, (20, SEQ_LEN - 20))):
            ppm = ppms[motif]
            width = ppm.shape[1]
            for _ in range(int(rng.integers(2, 4))):
                while True:
                    pos = int(rng.integers(lo, hi - width))
                    if all(pos + width + 20 <= a or pos >= b + 20 for a, b in taken):
                        break
                site = sample_site(rng, ppm, MIN_SITE_SCORE)
                strand = int(rng.integers(0, 2))
                seqs[i, pos : pos + width] = 3 - site[::-1] if strand else site
                taken.append((pos, pos + width))
                sites.append(
                    {
                        "motif": motif,
                        "example": i,
                        "start": pos,
                        "end": pos + width,
                        "strand": strand,
                    }
                )
    sites = pd.DataFrame(sites)
    sites["peak_id"] = [f"peak{i}" for i in sites["example"]]
    return seqs, sites


def on_site(seqlets: pd.DataFrame, sites: pd.DataFrame, min_overlap: int = 4) -> pd.Series:
    """Per seqlet: the planted motif it overlaps by at least ``min_overlap`` bases, or ''.

    Seqlets and sites are matched by ``peak_id``: a seqlet's ``example`` indexes the selected
    regions (in selection rank order), not the rows of ``seq.npy``.
    """
    out = []
    for row in seqlets.itertuples():
        s = sites[sites["peak_id"] == row.peak_id]
        overlap = np.minimum(s["end"], row.end) - np.maximum(s["start"], row.start)
        hit = s[overlap >= min_overlap]
        out.append(hit["motif"].iloc[0] if len(hit) else "")
    return pd.Series(out, index=seqlets.index)


@pytest.fixture(scope="module")
def known(tmp_path_factory):
    """The whole interpretation chain on the two hand-built motif networks."""
    tmp = tmp_path_factory.mktemp("known_answer")
    jaspar, _ = mot.jaspar_motifs(RELEASE)
    ppms = {SPI1: jaspar[SPI1], EBF1: jaspar[EBF1]}
    rng = np.random.default_rng(0)
    seqs, sites = plant_sequences(rng, ppms)
    np.save(tmp / "seq.npy", seqs)
    peaks = [f"peak{i}" for i in range(N_SEQ)]  # as named by plant_sequences
    pd.DataFrame({"peak_id": peaks, "chrom": "chr1", "summit": np.arange(N_SEQ)}).to_csv(
        tmp / "ocrs.tsv", sep="\t", index=False
    )
    # Predictions only gate the region selection: the profile model tracks the observations
    # (R ~ 1), the reference model mirrors them (R = -1), so every OCR is selected.
    obs = rng.normal(3, 1, (N_SEQ, 6))
    files = {}
    for role in ("reference", "profile"):
        files[role] = []
        for seed in (1, 2):
            if role == "profile":
                pred = obs + 0.1 * rng.normal(size=obs.shape)
            else:
                pred = 2 * obs.mean(axis=1, keepdims=True) - obs
            files[role].append(write_predictions(tmp / f"{role}{seed}.npz", peaks, obs, pred))
        save_model(tmp / f"{role}.pt", motif_model(ppms[MOTIF_OF[role]]), {"name": role})
    crit = criteria(min_max_accessibility=0, min_cv=0, min_mean_r=0.5, max_regions=N_SEQ)
    regions = run_regions(files["reference"], files["profile"], crit, tmp / "regions.tsv")
    chain = run_chain(tmp, files, NAMES, n_sequences=8, max_motifs=2)
    tomtom = run_tomtom(
        tmp / "clusters.meme", tmp / "tomtom.tsv", **tomtom_options(jaspar_release=RELEASE)
    )
    mot.write_meme(tmp / "truth.meme", {f"{SPI1} SPI1": ppms[SPI1], f"{EBF1} EBF1": ppms[EBF1]})
    # Planted activities: both TFs act in lineage A (as the networks do), a little in C.
    pd.DataFrame(
        [[6.0, 6.0, 0.1, 0.1, 1.0, 1.0], [5.0, 5.0, 0.1, 0.1, 1.0, 1.0]],
        index=["SPI1", "EBF1"],
        columns=CT["celltype"],
    ).to_csv(tmp / "activity.tsv", sep="\t")
    truth = run_truth(
        clusters_tsv=tmp / "clusters.tsv",
        clusters_meme=tmp / "clusters.meme",
        effects_tsv=tmp / "effects.tsv",
        truth_meme=tmp / "truth.meme",
        activity_tsv=tmp / "activity.tsv",
        models={r: tmp / f"{r}.pt" for r in ("reference", "profile")},
        predictions={r: files[r][0] for r in ("reference", "profile")},
        seq_path=tmp / "seq.npy",
        celltypes=CT,
        lineages=LINEAGES,
        out_tsv=tmp / "truth.tsv",
        **tomtom_options(jaspar_release=RELEASE, q_threshold=0.05),
        n_sequences=8,
        seed=0,
        batch_size=BATCH_SIZE,
        device="cpu",
    )
    members = pd.read_csv(tmp / "seqlet_clusters.tsv", sep="\t")
    members["site"] = on_site(members, sites)
    return {
        "dir": tmp,
        "sites": sites,
        "regions": regions,
        "deltas": chain["deltas"],
        "seqlets": chain["seqlets"],
        "members": members,
        "clusters": chain["clusters"],
        "tomtom": tomtom,
        "truth": truth.set_index("planted_motif"),
    }


def cluster_for(known, motif: str) -> pd.Series:
    """The tested cluster with the most seqlets on planted ``motif`` sites."""
    members = known["members"]
    counts = members[members["site"] == motif].groupby("cluster").size().drop(-1, errors="ignore")
    tested = known["clusters"].set_index("cluster")
    counts = counts[counts.index.isin(tested.index[tested["tested"]])]
    assert len(counts), f"no tested cluster holds seqlets on {motif} sites"
    return tested.loc[counts.idxmax()]


def best_score(seq: np.ndarray, start: int, end: int, ppm: np.ndarray) -> float:
    """Best log-odds score (either strand) of the motif windows overlapping [start, end)."""
    lo = log_odds(ppm)
    width = lo.shape[1]
    rc = mot.reverse_complement(lo)
    cols = np.arange(width)
    scores = [
        max(lo[seq[p : p + width], cols].sum(), rc[seq[p : p + width], cols].sum())
        for p in range(max(start - width + 1, 0), min(end, len(seq) - width + 1))
    ]
    return float(max(scores))


@pytest.mark.slow
def test_attributions_converge_and_only_lineage_a_has_seqlets(known):
    assert known["regions"]["selected"].sum() == N_SEQ
    assert max(known["deltas"].values()) < 1e-4
    # Lineages B and C read no motif: their attributions are zero, so no seqlets.
    assert set(known["seqlets"]["lineage"]) == {"A"}
    assert set(known["seqlets"]["role"]) == {"profile", "reference"}


@pytest.mark.slow
@pytest.mark.parametrize("role", ["profile", "reference"])
def test_seqlets_lie_on_the_planted_sites_of_the_models_motif(known, role):
    motif = MOTIF_OF[role]
    members, sites = known["members"], known["sites"]
    mine = members[members["role"] == role]
    assert len(mine) >= 20
    # Precision: (nearly) every seqlet is on a planted site of the model's own motif...
    assert (mine["site"] == motif).mean() >= 0.9
    # ... and every other one is on a background window the network itself scores as the motif.
    seqs = np.load(known["dir"] / "seq.npy")
    jaspar, _ = mot.jaspar_motifs(RELEASE)
    for row in mine[mine["site"] != motif].itertuples():
        seq = seqs[int(row.peak_id.removeprefix("peak"))]
        assert best_score(seq, row.start, row.end, jaspar[motif]) > THRESHOLD, row
    # Recall: most planted sites get a seqlet (sites sharing a 125 bp max-pool window compete).
    planted = sites[sites["motif"] == motif]
    covered = [
        (np.minimum(hit["end"], s.end) - np.maximum(hit["start"], s.start) >= 4).any()
        for s in planted.itertuples()
        for hit in [mine[mine["peak_id"] == s.peak_id]]
    ]
    assert np.mean(covered) >= 0.7


@pytest.mark.slow
@pytest.mark.parametrize("role", ["profile", "reference"])
def test_each_motif_forms_one_cluster_of_its_models_seqlets(known, role):
    motif = MOTIF_OF[role]
    other = "reference" if role == "profile" else "profile"
    cluster = cluster_for(known, motif)
    assert cluster[f"n_{role}"] >= 20 and cluster[f"n_{other}"] == 0
    members = known["members"]
    on_motif = members[(members["role"] == role) & (members["site"] == motif)]
    assert (on_motif["cluster"] == cluster.name).mean() >= 0.9


@pytest.mark.slow
@pytest.mark.parametrize("role", ["profile", "reference"])
def test_tomtom_names_each_cluster_after_its_motif(known, role):
    motif = MOTIF_OF[role]
    cluster = cluster_for(known, motif)
    tt = known["tomtom"]
    hits = tt[tt["query"] == cluster["motif"]].sort_values("q_value")
    assert len(hits) and (hits["q_value"] < 0.05).all()
    assert motif in set(hits["target"])
    # The best match is the planted TF's family (EBF1-4 and SPI1/SPIB are near-identical).
    assert hits["target_name"].iloc[0].upper().startswith(FAMILY[motif])


@pytest.mark.slow
def test_spi1_cluster_is_enriched_in_profile_model_seqlets(known):
    spi1 = cluster_for(known, SPI1)
    assert spi1["n_profile"] > spi1["n_reference"]
    assert spi1["q_value"] < 0.05 and spi1["enriched"]
    ebf1 = cluster_for(known, EBF1)
    assert not ebf1["enriched"]
    assert bool(spi1["insert"])


@pytest.mark.slow
def test_truth_recovers_spi1_by_profile_and_ebf1_by_reference(known):
    truth = known["truth"]
    spi1, ebf1 = truth.loc[f"{SPI1} SPI1"], truth.loc[f"{EBF1} EBF1"]
    assert spi1["recovered"] and spi1["recovered_by"] == "profile"
    assert spi1["best_cluster"] == cluster_for(known, SPI1)["motif"]
    assert ebf1["recovered"] and ebf1["recovered_by"] == "reference"
    assert ebf1["best_cluster"] == cluster_for(known, EBF1)["motif"]
    # Inserting a planted consensus raises lineage A in the model that reads it, which is
    # where the planted activity is highest.
    assert spi1["r_activity_profile"] > 0.9
    assert ebf1["r_activity_reference"] > 0.9
