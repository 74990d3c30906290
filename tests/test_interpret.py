"""Interpretation: regions, DeepSHAP, seqlets, clusters, enrichment, TomTom, insertion, truth."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from interpret_chain import (
    BATCH_SIZE,
    CT,
    DEFAULTS,
    LINEAGES,
    criteria,
    figure_context,
    interpret_block,
    run_chain,
    tomtom_options,
    write_predictions,
)
from scipy import stats

from bpaitac.data.sequence import decode_sequence, one_hot
from bpaitac.evaluate.metrics import Predictions
from bpaitac.interpret import attribution as attr
from bpaitac.interpret import motifs as mot
from bpaitac.interpret.clusters import choose_insertions
from bpaitac.interpret.figures import FIGURES, run_figure
from bpaitac.interpret.insertion import (
    effect_tests,
    insertion_effects,
    profile_quantiles,
    run_insertion,
    shuffled_backgrounds,
)
from bpaitac.interpret.regions import region_table, run_regions, selected_regions
from bpaitac.interpret.seqlets import (
    call_seqlets,
    lineage_thresholds,
    projected_per_position,
    run_seqlets,
    seqlets_for_model,
)
from bpaitac.interpret.tables import load_attributions, load_cwms, load_footprints, save_npz
from bpaitac.interpret.tomtom import run_tomtom
from bpaitac.interpret.truth import (
    log_activity,
    planted_name_map,
    planted_site_effects,
    read_activity,
    run_truth,
    truth_recovery,
)
from bpaitac.io import ConfigError, InputError
from bpaitac.model.network import build_model, save_model
from bpaitac.workflow import interpret_paths
from bpaitac.workflow.interpret_paths import attribution_seed, interpret_models, model_labels

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))

MOTIF = "GGGAATTTCC"
NAMES = {"reference": "AI-TAC", "profile": "bpAI-TAC", "nobias": "no bias"}


def tiny_model(seed: int, n_tasks: int = 6):
    torch.manual_seed(seed)
    return build_model(
        {"filters": 8, "dilated_blocks": 1, "acc_head": "conv", "n_tasks": n_tasks}
    ).eval()


def encode(s: str) -> np.ndarray:
    return np.array(["ACGT".index(c) for c in s], dtype=np.uint8)


def preds(peaks, obs, pred) -> Predictions:
    return Predictions(
        peak_id=np.asarray(peaks, dtype=str),
        targets=tuple(CT["celltype"]),
        acc_pred=np.asarray(pred, dtype=np.float64),
        acc_obs=np.asarray(obs, dtype=np.float64),
    )


# --------------------------------------------------------------------------------------------
# Region selection


def _region_inputs():
    """4 OCRs x 6 cell types; OCR 0 passes everything, 1 fails 'all seeds better', 2 signal."""
    base = np.array([0.1, 0.2, 5.0, 0.3, 0.1, 4.0])  # log1p scale, very variable
    obs = np.vstack([base, base, base - 3.0, base[::-1]])
    good = obs + np.array([0.05, -0.05, 0.05, -0.05, 0.05, -0.05])
    bad = obs[:, ::-1]
    peaks = ["p0", "p1", "p2", "p3"]
    ref = [preds(peaks, obs, np.vstack([bad[0], good[1], bad[2], bad[3]])), preds(peaks, obs, bad)]
    prof = [preds(peaks, obs, good), preds(peaks, obs, good)]
    return ref, prof


def test_region_table_applies_all_criteria():
    ref, prof = _region_inputs()
    crit = criteria(min_max_accessibility=100, min_cv=1.0, min_mean_r=0.5)
    table = region_table(ref, prof, crit)
    assert table.loc[table["selected"], "peak_id"].tolist() == ["p0", "p3"]
    row = table.set_index("peak_id")
    assert not row.loc["p1", "pass_better"]  # one reference seed predicts p1 as well
    assert not row.loc["p2", "pass_signal"]  # max expm1(2.0) < 100
    assert (table.loc[table["selected"], "selected_by"] == "criteria").all()
    np.testing.assert_allclose(row.loc["p0", "max_accessibility"], np.expm1(5.0))
    # The cap keeps the largest R gains first.
    capped = region_table(ref, prof, criteria(**{**crit.__dict__, "max_regions": 1}))
    assert capped["selected"].sum() == 1


def test_region_table_stratified_by_lineage_takes_turns():
    ref, prof = _region_inputs()
    lineage_of = dict(zip(CT["celltype"], ["X", "X", "X", "Y", "Y", "Y"]))
    crit = criteria(min_max_accessibility=0, min_cv=0, min_mean_r=-1)
    plain = region_table(ref, prof, crit, lineage_of)
    # p0/p1/p2 are most accessible in the first three cell types, p3 (reversed) in the last.
    top = plain.set_index("peak_id")["top_lineage"]
    assert top.tolist() == ["X", "X", "X", "Y"]
    assert plain.loc[plain["selected"], "peak_id"].tolist() == ["p0", "p2", "p3"]
    strat = region_table(
        ref, prof, criteria(**{**crit.__dict__, "stratify_by_lineage": True}), lineage_of
    )
    chosen = selected_regions(strat)
    # The first two picks cover both lineages, whatever the R gains.
    assert chosen["top_lineage"][:2].tolist() == ["X", "Y"]
    capped = region_table(
        ref,
        prof,
        criteria(**{**crit.__dict__, "stratify_by_lineage": True, "max_regions": 2}),
        lineage_of,
    )
    assert set(capped.loc[capped["selected"], "top_lineage"]) == {"X", "Y"}
    with pytest.raises(InputError, match="stratify_by_lineage"):
        region_table(ref, prof, criteria(stratify_by_lineage=True))


def test_region_table_falls_back_and_says_so(caplog):
    ref, prof = _region_inputs()
    crit = criteria(min_max_accessibility=1e9, fallback_regions=2)
    table = region_table(ref, prof, crit)
    chosen = table[table["selected"]]
    assert len(chosen) == 2
    assert set(chosen["selected_by"]) == {"fallback_top_delta"}
    assert chosen["delta_r"].min() >= table.loc[~table["selected"], "delta_r"].max()
    assert "falling back" in caplog.text


def test_lineage_task_matrix_for_celltype_and_lineage_tasks():
    lineage_of = dict(zip(CT["celltype"], CT["lineage"]))
    mat = attr.lineage_task_matrix(list(CT["celltype"]), lineage_of, LINEAGES)
    np.testing.assert_array_equal(mat.sum(axis=0), [2, 2, 2])
    assert mat[2, 1] == 1 and mat[2, 0] == 0
    np.testing.assert_array_equal(
        attr.lineage_task_matrix(LINEAGES, lineage_of, LINEAGES), np.eye(3)
    )
    with pytest.raises(InputError, match="zz"):
        attr.lineage_task_matrix(["a1", "zz"], lineage_of, LINEAGES)


# --------------------------------------------------------------------------------------------
# DeepSHAP


def test_lineage_wrapper_sums_the_lineage_tasks():
    model = tiny_model(0)
    mat = attr.lineage_task_matrix(
        list(CT["celltype"]), dict(zip(CT.celltype, CT.lineage)), LINEAGES
    )
    x = one_hot(torch.randint(0, 4, (3, 1000)))
    with torch.no_grad():
        _, log_counts = model(x)
        out = attr.LineageAccessibility(model, mat)(x)
    # relu_linear heads (the default; the authors' code): linear predictions summed per lineage.
    counts = torch.expm1(log_counts)
    torch.testing.assert_close(out[:, 1], counts[:, 2] + counts[:, 3], rtol=1e-4, atol=1e-4)


def test_deep_shap_is_additive_seeded_and_converged():
    model = tiny_model(1)
    mat = np.zeros((6, 2), dtype=np.float32)
    mat[:3, 0] = mat[3:, 1] = 1
    wrapper = attr.LineageAccessibility(model, mat)
    x = one_hot(torch.randint(0, 4, (3, 1000), generator=torch.Generator().manual_seed(0)))
    res = attr.deep_shap(wrapper, x, n_shuffles=4, seed=7)
    assert res.hypothetical.shape == (3, 2, 4, 1000)
    assert np.abs(res.deltas).max() < 1e-4
    # Additivity by hand: attributions of the present bases sum to f(x) - mean f(reference).
    refs = attr.references_for(x, 4, 7)
    with torch.no_grad():
        diff = wrapper(x) - wrapper(refs.reshape(-1, 4, 1000)).reshape(3, 4, 2).mean(1)
    proj = res.projected(x.numpy()).sum(axis=(2, 3))
    np.testing.assert_allclose(proj, diff.numpy(), atol=1e-4)
    assert np.abs(proj).max() > 1e-6  # not trivially zero
    again = attr.deep_shap(wrapper, x, n_shuffles=4, seed=7)
    np.testing.assert_array_equal(res.hypothetical, again.hypothetical)
    other = attr.deep_shap(wrapper, x, n_shuffles=4, seed=8)
    assert not np.allclose(res.hypothetical, other.hypothetical)
    # A sequence's references, hence its attributions, do not depend on the rest of the batch.
    order = [2, 0, 1]
    swapped = attr.deep_shap(wrapper, x[order], n_shuffles=4, seed=7)
    np.testing.assert_allclose(swapped.hypothetical, res.hypothetical[order], atol=1e-6)


def test_deep_shap_reports_bad_convergence():
    class FunctionalExp(torch.nn.Module):
        """torch.exp is not a module: DeepLIFT treats it as linear and additivity breaks."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(4, 2, 5)

        def forward(self, x):
            return torch.exp(self.conv(x)).mean(-1)

    torch.manual_seed(0)
    x = one_hot(torch.randint(0, 4, (2, 100), generator=torch.Generator().manual_seed(1)))
    res = attr.deep_shap(FunctionalExp(), x, n_shuffles=3, seed=0)
    assert np.abs(res.deltas).max() > 1e-3
    assert res.n_warnings > 0


# --------------------------------------------------------------------------------------------
# Seqlets


def test_call_seqlets_paper_rule():
    track = np.zeros((1, 40))
    track[0, [2, 3, 5, 6]] = 1.0  # 4 significant bases, one single-base gap: one seqlet
    track[0, [12, 13, 14]] = 1.0  # only 3 significant: none
    track[0, [20, 21, 24, 25]] = 1.0  # a 2-base gap splits into two groups of 2: none
    track[0, [30, 32, 34, 36, 37]] = 1.0  # single gaps all along: one seqlet of 5
    calls = call_seqlets(track, 0.5, min_bases=4, max_gap=1)
    assert calls[["start", "end", "n_significant"]].values.tolist() == [[2, 7, 4], [30, 38, 5]]
    np.testing.assert_allclose(calls["attribution"], [4.0, 5.0])
    # With two-base gaps allowed the split pair joins.
    wide = call_seqlets(track, 0.5, min_bases=4, max_gap=2)
    assert [20, 26] in wide[["start", "end"]].values.tolist()
    # Negative attributions are never seqlets.
    assert call_seqlets(-track, 0.5, min_bases=4, max_gap=1).empty


def test_seqlets_for_model_uses_per_lineage_sd_threshold():
    rng = np.random.default_rng(0)
    proj = rng.normal(0, 1, (4, 2, 200))
    proj[1, 1, 50:58] = 10.0
    seqs = rng.integers(0, 4, (4, 200)).astype(np.uint8)
    thresholds = lineage_thresholds(proj, 1.96)
    table = seqlets_for_model(
        "m", proj, seqs, ["a", "b", "c", "d"], ["A", "B"], thresholds, min_bases=4, max_gap=1
    )
    hit = table[(table["peak_id"] == "b") & (table["lineage"] == "B")]
    assert ((hit["start"] <= 50) & (hit["end"] >= 58)).any()
    thr = table.groupby("lineage")["threshold"].first()
    np.testing.assert_allclose(thr["B"], 1.96 * proj[:, 1].std())
    row = hit.iloc[0]
    assert row["sequence"] == decode_sequence(seqs[1, row["start"] : row["end"]])


def test_run_seqlets_applies_the_profile_models_cutoff_to_both_models(tmp_path):
    """threshold_from: profile_model (the authors' code) gives both models bpAI-TAC's cutoff,
    so a model with smaller attributions calls fewer seqlets; each_model rescales it away."""
    rng = np.random.default_rng(1)
    n = 30
    seqs = rng.integers(0, 4, (n, 120)).astype(np.uint8)
    hyp = rng.normal(0, 1, (n, 2, 4, 120)).astype(np.float32)
    hyp[:, :, :, 40:48] = 10.0  # one strong motif in every sequence and lineage
    hyp[0, :, :, 80:88] = 60.0  # and a very strong one that both models call
    paths = {}
    for role, scale in (("reference", 0.2), ("profile", 1.0)):
        paths[role] = tmp_path / f"{role}.npz"
        save_npz(
            paths[role],
            peak_id=np.array([f"p{i}" for i in range(n)]),
            lineages=np.array(["A", "B"]),
            seq=seqs,
            hypothetical=hyp * scale,
            deltas=np.zeros((n, 2), np.float32),
            output=np.zeros((n, 2), np.float32),
            pred_lineage=np.zeros((n, 2), np.float32),
            obs_lineage=np.zeros((n, 2), np.float32),
            max_abs_delta=np.float32(0),
            n_warnings=np.int64(0),
            n_shuffles=np.int64(2),
        )
    names = {"reference": "aitac", "profile": "bpaitac"}
    kw = dict(z=1.96, min_bases=4, max_gap=1)
    shared = run_seqlets(paths, names, tmp_path / "s.tsv", threshold_from="profile_model", **kw)
    per_model = run_seqlets(paths, names, tmp_path / "m.tsv", threshold_from="each_model", **kw)
    thr = shared.groupby(["role", "lineage"])["threshold"].first()
    assert thr["reference"].tolist() == thr["profile"].tolist()
    counts = shared.groupby("role").size()
    assert counts.get("reference", 0) < counts["profile"]
    own = per_model.groupby(["role", "lineage"])["threshold"].first()
    np.testing.assert_allclose(own["reference"].to_numpy(), 0.2 * own["profile"].to_numpy())
    assert per_model.groupby("role").size()["reference"] == counts["profile"]
    with pytest.raises(ValueError, match="threshold_from"):
        run_seqlets(paths, names, tmp_path / "x.tsv", threshold_from="both", **kw)


# --------------------------------------------------------------------------------------------
# Alignment, clustering, cluster motifs, enrichment


def _family_matrices(rng, n_per=20, n_fam=3, width=8):
    fams = [rng.normal(size=(4, width)) for _ in range(n_fam)]
    mats, labels = [], []
    for i in range(n_per * n_fam):
        f = i % n_fam
        left, right = rng.integers(0, 4, 2)
        core = fams[f] + 0.3 * rng.normal(size=(4, width))
        m = np.concatenate(
            [0.3 * rng.normal(size=(4, left)), core, 0.3 * rng.normal(size=(4, right))], axis=1
        )
        if rng.random() < 0.5:
            m = mot.reverse_complement(m)
        mats.append(m)
        labels.append(f)
    return mats, np.array(labels)


def test_aligned_correlations_find_offset_and_strand():
    rng = np.random.default_rng(1)
    core = rng.normal(size=(4, 8))
    a = np.concatenate([rng.normal(size=(4, 3)), core], axis=1)
    b = mot.reverse_complement(np.concatenate([core, rng.normal(size=(4, 2))], axis=1))
    lp, off, strand, r = mot.aligned_correlations([a], [b, rng.normal(size=(4, 10))], min_overlap=5)
    assert strand[0, 0] == 1 and off[0, 0] == 3  # rc(b) column 0 sits on a's column 3
    assert r[0, 0] > 0.9
    assert lp[0, 0] < -10 < lp[0, 1]


def test_alignment_pvalue_is_the_one_sided_pearson_test():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 9)), rng.normal(size=(4, 12))
    lp, off, strand, r = mot.aligned_correlations([a], [b], min_overlap=5)
    bb = mot.reverse_complement(b) if strand[0, 0] else b
    pairs = [(c + off[0, 0], c) for c in range(bb.shape[1]) if 0 <= c + off[0, 0] < a.shape[1]]
    x = np.concatenate([a[:, i] for i, _ in pairs])
    y = np.concatenate([bb[:, j] for _, j in pairs])
    res = stats.pearsonr(x, y, alternative="greater")
    np.testing.assert_allclose(
        [r[0, 0], lp[0, 0]], [res.statistic, np.log10(res.pvalue)], rtol=1e-8
    )


def test_complete_linkage_recovers_motif_families():
    mats, truth = _family_matrices(np.random.default_rng(0))
    lp, _, _, _ = mot.aligned_correlations(mats, mats, min_overlap=5)
    labels = mot.cluster_by_pvalue(lp, 0.05)
    table = pd.crosstab(truth, labels)
    assert table.shape == (3, 3)
    assert (table.values > 0).sum(axis=1).tolist() == [1, 1, 1]


def test_cluster_motif_rebuilds_planted_consensus_on_both_strands():
    rng = np.random.default_rng(2)
    n, length, motif = 12, 60, encode("GATTACA")
    rc = 3 - motif[::-1]
    seqs = rng.integers(0, 4, (n, length)).astype(np.uint8)
    hyp = rng.normal(0, 0.05, (n, 1, 4, length))
    rows = []
    for i in range(n):
        site = motif if i % 2 == 0 else rc
        pos = int(rng.integers(10, 40))
        seqs[i, pos : pos + 7] = site
        hyp[i, 0, site, np.arange(pos, pos + 7)] += 1.0
        start = pos + int(rng.integers(0, 2))  # seqlet calls are a base off now and then
        rows.append({"model": "m", "example": i, "lineage": "A", "start": start, "end": pos + 7})
    members = pd.DataFrame(rows)
    onehot = one_hot(seqs)
    res = mot.cluster_motif(members, {"m": hyp}, onehot, {"A": 0}, flank=2, min_overlap=5, trim=0.3)
    assert res["consensus"] in ("GATTACA", "TGTAATC")
    assert res["pfm"].shape == res["cwm"].shape == (4, 7)
    np.testing.assert_allclose(res["pfm"].sum(axis=0), 1.0)
    assert res["pfm"].max(axis=0).min() > 0.9


def test_sampled_clustering_assigns_the_rest_to_the_same_families():
    mats, truth = _family_matrices(np.random.default_rng(0), n_per=40)
    labels, sample, lp = mot.cluster_seqlets(
        mats, p_threshold=0.05, min_overlap=5, max_seqlets=45, min_cluster_size=3, seed=0
    )
    assert len(sample) == 45 and lp.shape == (45, 45)
    assert np.array_equal(sample, np.sort(sample))
    # Each family keeps one cluster label, no two families share one, and at least 90% of
    # the seqlets outside the sample pass the complete-linkage rule to join their family.
    assigned = labels >= 0
    table = pd.crosstab(truth[assigned], labels[assigned])
    assert (table.values > 0).sum(axis=1).tolist() == [1, 1, 1]
    assert (table.values > 0).sum(axis=0).tolist() == [1, 1, 1]
    assert assigned.mean() >= 0.9


def test_sampled_clustering_is_exact_below_the_cap():
    mats, _ = _family_matrices(np.random.default_rng(0))
    lp, _, _, _ = mot.aligned_correlations(mats, mats, min_overlap=5)
    labels, sample, _ = mot.cluster_seqlets(
        mats, p_threshold=0.05, min_overlap=5, max_seqlets=len(mats), min_cluster_size=3
    )
    assert np.array_equal(sample, np.arange(len(mats)))
    assert np.array_equal(labels, mot.cluster_by_pvalue(lp, 0.05))


def test_cluster_enrichment_counts_unassigned_seqlets_only_in_totals():
    labels = pd.Series([0] * 10 + [-1] * 10)
    models = pd.Series(["p"] * 9 + ["r"] + ["p"] * 2 + ["r"] * 8)
    table = mot.cluster_enrichment(labels, models, "p", "r")
    assert table["cluster"].tolist() == [0]
    expected = stats.fisher_exact([[9, 1], [2, 8]], alternative="greater").pvalue
    np.testing.assert_allclose(table["p_value"].iloc[0], expected)


def test_cluster_enrichment_is_fishers_test():
    labels = pd.Series([0] * 10 + [1] * 10)
    models = pd.Series(["p"] * 9 + ["r"] + ["p"] * 2 + ["r"] * 8)
    table = mot.cluster_enrichment(labels, models, "p", "r").set_index("cluster")
    assert table.loc[0, ["n_profile", "n_reference"]].tolist() == [9, 1]
    expected = stats.fisher_exact([[9, 1], [2, 8]], alternative="greater").pvalue
    np.testing.assert_allclose(table.loc[0, "p_value"], expected)
    assert table.loc[0, "q_value"] < 0.05 < table.loc[1, "q_value"]


def test_choose_insertions_prefers_enriched_and_flags_fallback():
    table = pd.DataFrame(
        {
            "cluster": [0, 1, 2],
            "tested": [True, True, True],
            "q_value": [0.5, 0.01, 0.2],
            "p_value": [0.3, 0.001, 0.05],
            "odds_ratio": [1.0, 5.0, 2.0],
            "n_profile": [3, 5, 4],
            "n_seqlets": [6, 6, 6],
        }
    )
    out = choose_insertions(table, fdr=0.05, max_motifs=5)
    assert out.loc[out["insert"], "cluster"].tolist() == [1]
    assert set(out.loc[out["insert"], "insert_reason"]) == {"enriched"}
    out = choose_insertions(table, fdr=0.001, max_motifs=2)
    assert out.loc[out["insert"], "cluster"].tolist() == [1, 2]
    assert set(out.loc[out["insert"], "insert_reason"]) == {"fallback_top_p"}


# --------------------------------------------------------------------------------------------
# Motif insertion and footprints


def test_shuffled_backgrounds_keep_dinucleotides_and_are_seeded():
    rng = np.random.default_rng(3)
    seqs = rng.integers(0, 4, (5, 200)).astype(np.uint8)
    seqs[0, 5] = 4  # sequences with N are avoided
    bg = shuffled_backgrounds(seqs, 8, seed=1)
    assert bg.shape == (8, 4, 200)
    assert torch.equal(bg, shuffled_backgrounds(seqs, 8, seed=1))
    idx = bg.argmax(1).numpy()
    clean = {tuple(np.bincount(s[:-1] * 4 + s[1:], minlength=16)) for s in seqs[1:]}
    for s in idx:
        assert tuple(np.bincount(s[:-1] * 4 + s[1:], minlength=16)) in clean


def test_insertion_effects_zero_for_no_change_and_profiles_normalised():
    model = tiny_model(2)
    mat = attr.lineage_task_matrix(
        list(CT["celltype"]), dict(zip(CT.celltype, CT.lineage)), LINEAGES
    )
    bg = shuffled_backgrounds(np.random.default_rng(0).integers(0, 4, (4, 1000)), 6, 0)
    same = insertion_effects(model, bg, "NNNNNN", mat)  # N keeps the original bases
    np.testing.assert_allclose(same["delta"], 0.0, atol=1e-6)
    res = insertion_effects(model, bg, MOTIF, mat)
    assert res["delta"].shape == (6, 3)
    assert np.abs(res["delta"]).max() > 0
    assert res["after"].shape == (6, 4, 250)
    np.testing.assert_allclose(res["after"].sum(-1), 1.0, rtol=1e-5)
    q = profile_quantiles(res["after"])
    assert q.shape == (3, 4, 250) and (q[0] <= q[1]).all() and (q[1] <= q[2]).all()


def test_effect_tests_rank_sum_between_models():
    rng = np.random.default_rng(4)
    rows = []
    for role, shift in (("profile", 1.0), ("reference", 0.0)):
        for lin, effect in (("A", shift), ("B", 0.0)):
            for v in rng.normal(effect, 0.3, 50):
                rows.append({"motif": "m", "role": role, "lineage": lin, "delta": v})
    tests = effect_tests(pd.DataFrame(rows)).set_index("lineage")
    assert tests.loc["A", "q_value"] < 1e-6
    assert tests.loc["B", "p_value"] > 0.01
    assert tests.loc["A", "median_profile"] > tests.loc["A", "median_reference"] + 0.5


# --------------------------------------------------------------------------------------------
# Truth recovery


def test_read_activity_averages_lineages(tmp_path):
    table = pd.DataFrame([[1.0, 3.0, 0.0, 0.0, 5.0, 5.0]], index=["SPI1"], columns=CT["celltype"])
    table.index.name = "tf"
    table.to_csv(tmp_path / "activity.tsv", sep="\t")
    act = read_activity(tmp_path / "activity.tsv", CT, LINEAGES)
    assert act.loc["SPI1"].tolist() == [2.0, 0.0, 5.0]


def test_log_activity_leaves_zero_activity_out():
    act = pd.Series([0.0, 1.0, np.e], index=["a", "b", "c"])
    out = log_activity(act)
    assert np.isnan(out["a"]) and out["b"] == 0 and out["c"] == pytest.approx(1.0)


def test_truth_recovery_table():
    clusters = pd.DataFrame(
        {
            "motif": ["cluster_0", "cluster_1"],
            "tested": [True, True],
            "n_profile": [7, 0],
            "n_reference": [2, 4],
        }
    )
    matches = pd.DataFrame(
        {
            "query": ["cluster_0", "cluster_1"],
            "target": ["planted:X SPI1"] * 2,
            "q_value": [1e-4, 0.01],
        }
    )
    activity = pd.DataFrame(
        [[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]], index=["SPI1", "EBF1"], columns=LINEAGES
    )
    names = planted_name_map(["planted:X SPI1", "planted:Y EBF1"], activity.index)
    assert names == {"planted:X SPI1": "SPI1", "planted:Y EBF1": "EBF1"}
    effects = pd.DataFrame(
        [
            {"motif": m, "role": role, "lineage": lin, "delta": scale * a}
            for m in ("planted:X SPI1", "planted:Y EBF1")
            for role, scale in (("profile", 2.0), ("reference", -1.0))
            for lin, a in zip(LINEAGES, [1.0, 2.0, 4.0])
        ]
    )
    table = truth_recovery(
        clusters, matches, ["planted:X SPI1", "planted:Y EBF1"], activity, names, effects
    ).set_index("planted_motif")
    spi1 = table.loc["planted:X SPI1"]
    assert spi1["recovered"] and spi1["best_cluster"] == "cluster_0"
    assert spi1["recovered_by"] == "both"
    assert (spi1["n_profile_seqlets"], spi1["n_reference_seqlets"]) == (7, 6)
    np.testing.assert_allclose([spi1["r_activity_profile"], spi1["r_activity_reference"]], [1, -1])
    # effects linear in the activity 1, 2, 4 against its log 0, 0.69, 1.39: R below 1
    r_log = stats.pearsonr([1.0, 2.0, 4.0], np.log([1.0, 2.0, 4.0])).statistic
    np.testing.assert_allclose(
        [spi1["r_log_activity_profile"], spi1["r_log_activity_reference"]], [r_log, -r_log]
    )
    assert r_log < 0.999
    ebf1 = table.loc["planted:Y EBF1"]
    assert not ebf1["recovered"] and ebf1["recovered_by"] == "none"
    assert np.isnan(ebf1["r_activity_profile"])  # constant activity: undefined R


# --------------------------------------------------------------------------------------------
# Config


def test_interpret_schema_defaults_and_config_blocks():
    defaults = interpret_block({})
    assert defaults["regions"]["min_max_accessibility"] == 150
    assert defaults["regions"]["min_cv"] == 1.0 and defaults["seqlets"]["z"] == 1.96
    assert defaults["insertion"]["n_sequences"] == 1000
    assert defaults["tomtom"]["jaspar_release"] == "JASPAR2024"
    for name in ("config.yaml", "tiny.yaml"):
        raw = yaml.safe_load((ROOT / "config" / name).read_text())
        block = interpret_block(raw["interpret"])
        for role in ("reference_model", "profile_model"):
            assert block[role] in raw["models"], f"{name}: interpret.{role} not in models"
        if block["nobias_model"]:
            assert raw["models"][block["nobias_model"]]["bias"] == "none"
    with pytest.raises(ConfigError, match="min_cv"):
        interpret_block({"regions": {"min_cv": "high"}})


def test_interpret_models_names_missing_catalogue_entry():
    catalogue = {"aitac": {"seeds": [1]}, "bpaitac": {"seeds": [1, 2], "label": "bpAI-TAC"}}
    roles = interpret_models({"interpret": interpret_block({})}, catalogue)
    assert roles == {"reference": "aitac", "profile": "bpaitac"}
    assert model_labels(roles, catalogue) == {"reference": "aitac", "profile": "bpAI-TAC"}
    with pytest.raises(ConfigError, match="interpret.nobias_model"):
        interpret_models({"interpret": interpret_block({"nobias_model": "nope"})}, catalogue)
    assert attribution_seed(catalogue["bpaitac"], None) == 1
    with pytest.raises(ConfigError, match="interpret.seed"):
        attribution_seed(catalogue["bpaitac"], 5)


# --------------------------------------------------------------------------------------------
# The pipeline on a tiny example


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Regions -> attributions (3 models) -> seqlets -> clusters -> insertion, tiny models."""
    tmp = tmp_path_factory.mktemp("interpret")
    rng = np.random.default_rng(0)
    n = 24
    seqs = rng.integers(0, 4, (n, 1000)).astype(np.uint8)
    for i in range(n):
        for p in rng.choice(np.arange(100, 880, 40), 3, replace=False):
            seqs[i, p : p + len(MOTIF)] = encode(MOTIF)
    np.save(tmp / "seq.npy", seqs)
    peaks = [f"peak{i}" for i in range(n)]
    pd.DataFrame({"peak_id": peaks, "chrom": "chr11", "summit": np.arange(n)}).to_csv(
        tmp / "ocrs.tsv", sep="\t", index=False
    )
    obs = rng.normal(3, 1, (n, 6)).astype(np.float32)
    files = {}
    for role, noise in (("reference", 1.5), ("profile", 0.3), ("nobias", 0.3)):
        files[role] = [
            write_predictions(
                tmp / f"{role}{seed}.npz", peaks, obs, obs + noise * rng.normal(size=obs.shape)
            )
            for seed in (1, 2)
        ]
        save_model(tmp / f"{role}.pt", tiny_model(len(files) * 10), {"name": role})
    crit = criteria(min_max_accessibility=0, min_cv=0, min_mean_r=0.5, max_regions=5)
    regions = run_regions(files["reference"], files["profile"], crit, tmp / "regions.tsv")
    chain = run_chain(tmp, files, NAMES, n_sequences=12, min_cluster_size=2, max_motifs=2)
    return {"dir": tmp, "regions": regions, **chain}


def test_pipeline_attributions(pipeline):
    regions = pipeline["regions"]
    assert regions["selected"].sum() == 5
    data = load_attributions(pipeline["attrs"]["profile"])
    assert (
        list(data["peak_id"])
        == regions.loc[regions["selected"]].sort_values("rank")["peak_id"].tolist()
    )
    assert data["hypothetical"].shape == (5, 3, 4, 1000)
    assert data["pred_lineage"].shape == data["obs_lineage"].shape == (5, 3)
    assert max(pipeline["deltas"].values()) < 1e-4
    assert float(data["max_abs_delta"]) == pytest.approx(pipeline["deltas"]["profile"])


def test_pipeline_seqlets_and_clusters(pipeline):
    seqlets, clusters = pipeline["seqlets"], pipeline["clusters"]
    assert set(seqlets["role"]) == {"reference", "profile"}
    data = load_attributions(pipeline["attrs"]["profile"])
    proj = projected_per_position(data)
    k = list(data["lineages"]).index(seqlets["lineage"].iloc[-1])
    row = seqlets.iloc[-1]
    seg = proj[row["example"], k, row["start"] : row["end"]]
    assert seg[0] > row["threshold"] and seg[-1] > row["threshold"]
    member = pd.read_csv(pipeline["dir"] / "seqlet_clusters.tsv", sep="\t")
    assert len(member) == len(seqlets)
    counts = member.groupby(["cluster", "role"]).size().unstack(fill_value=0)
    c = clusters.set_index("cluster")
    assert (counts.get("profile", 0) == c.loc[counts.index, "n_profile"]).all()
    assert c["n_seqlets"].sum() == len(seqlets)
    meme = mot.read_meme(pipeline["dir"] / "clusters.meme")
    assert set(meme) == set(clusters.loc[clusters["tested"], "motif"])
    assert clusters["insert"].sum() == min(
        2, int((clusters["tested"] & (clusters["n_profile"] > 0)).sum())
    )


def test_pipeline_insertion_outputs(pipeline):
    effects = pd.read_csv(pipeline["dir"] / "effects.tsv", sep="\t")
    inserted = pipeline["clusters"].loc[pipeline["clusters"]["insert"], "motif"]
    assert set(effects["motif"]) == set(inserted)
    assert len(effects) == len(inserted) * 2 * 3 * 12
    fp = load_footprints(pipeline["dir"] / "footprints.npz")
    assert fp["profiles"].shape == (2, len(inserted), 2, 3, 4, 250)
    assert list(fp["lineages"]) == [*LINEAGES, "all"]
    assert len(pipeline["stats"]) == len(inserted) * 3


def test_pipeline_figures(pipeline, tmp_path):
    tmp = pipeline["dir"]
    empty = tmp_path / "tomtom.tsv"
    pd.DataFrame(columns=["query", "target", "target_name", "q_value"]).to_csv(
        empty, sep="\t", index=False
    )
    inputs = {
        "regions": tmp / "regions.tsv",
        **pipeline["attrs"],
        "effects": tmp / "effects.tsv",
        "stats": tmp / "stats.tsv",
        "clusters": tmp / "clusters.tsv",
        "footprints": tmp / "footprints.npz",
        "cwms": tmp / "cwms.npz",
        "tomtom": empty,
    }
    for figure in FIGURES:
        pdf, png = tmp_path / f"{figure}.pdf", tmp_path / f"{figure}.png"
        run_figure(figure, inputs, figure_context(NAMES, logo_width=40, s7_regions=2), pdf, png)
        assert pdf.stat().st_size > 1000 and png.stat().st_size > 1000
    with pytest.raises(InputError, match="example_region"):
        run_figure(
            "figS5",
            inputs,
            figure_context(NAMES, example_region="nope"),
            tmp_path / "x.pdf",
            tmp_path / "x.png",
        )


def test_figure_registry_draws_the_figures_the_workflow_names():
    assert tuple(FIGURES) == interpret_paths.FIGURES
    assert all(spec.title and callable(spec.draw) for spec in FIGURES.values())
    with pytest.raises(ValueError, match="fig9"):
        run_figure("fig9", {}, figure_context(NAMES), "x.pdf", "x.png")


def test_footprint_and_cwm_loaders_read_their_own_files(pipeline):
    cwms = load_cwms(pipeline["dir"] / "cwms.npz")
    clusters = pipeline["clusters"]
    assert set(cwms) == set(clusters.loc[clusters["tested"], "motif"])
    with pytest.raises(InputError, match="profiles"):
        load_footprints(pipeline["attrs"]["profile"])


def test_one_meme_reader_and_writer_for_clusters_and_planted_motifs(tmp_path):
    from bpaitac.simulate.motifs import Motif, meme_motifs

    ppm = np.random.default_rng(0).dirichlet(np.ones(4), size=6)  # (L, 4)
    planted = meme_motifs([Motif("SPI1", "JASPAR MA0080.7", ppm)])
    mot.write_meme(tmp_path / "m.meme", {**planted, "cluster_0": ppm.T})
    assert set(mot.read_meme(tmp_path / "m.meme")) == {"SPI1", "cluster_0"}
    full = mot.read_meme(tmp_path / "m.meme", full_names=True)
    assert set(full) == {"SPI1 JASPAR_MA0080.7", "cluster_0"}
    np.testing.assert_allclose(full["SPI1 JASPAR_MA0080.7"], ppm.T)
    assert planted_name_map(list(full), ["SPI1"]) == {"SPI1 JASPAR_MA0080.7": "SPI1"}


# --------------------------------------------------------------------------------------------
# TomTom against JASPAR (numba compiles memelite once per cache: slow)


def _sample_pfm(rng, ppm: np.ndarray, k: int) -> np.ndarray:
    counts = np.zeros_like(ppm)
    for _ in range(k):
        counts[[rng.choice(4, p=c / c.sum()) for c in ppm.T], np.arange(ppm.shape[1])] += 1
    return (counts + 0.25) / (k + 1)


@pytest.mark.slow
def test_tomtom_names_a_jaspar_motif_and_ignores_flat_queries(tmp_path):
    jaspar, names = mot.jaspar_motifs("JASPAR2024")
    assert len(jaspar) == 879  # CORE vertebrates, latest versions (non-redundant)
    rng = np.random.default_rng(0)
    queries = {"spi1": _sample_pfm(rng, jaspar["MA0080.7"], 20), "flat": np.full((4, 10), 0.25)}
    mot.write_meme(tmp_path / "q.meme", queries)
    table = run_tomtom(
        tmp_path / "q.meme", tmp_path / "tt.tsv", **tomtom_options(jaspar_release="JASPAR2024")
    )
    assert "MA0080.7" in set(table.loc[table["query"] == "spi1", "target"])
    assert (table["q_value"] < 0.05).all()
    assert "flat" not in set(table["query"])
    # Without the information trim, the flat query matches degenerate motifs: why it exists.
    raw = mot.tomtom_table(
        {"flat": queries["flat"]},
        jaspar,
        names,
        q_threshold=DEFAULTS["tomtom"]["q_threshold"],
        min_ic=0.0,
        min_width=DEFAULTS["tomtom"]["min_width"],
    )
    assert len(raw) > 0


@pytest.mark.slow
def test_run_truth_recovers_a_planted_motif(tmp_path, pipeline):
    jaspar, _ = mot.jaspar_motifs("JASPAR2024")
    rng = np.random.default_rng(5)
    mot.write_meme(
        tmp_path / "clusters.meme",
        {"cluster_0": _sample_pfm(rng, jaspar["MA0080.7"], 20), "cluster_1": np.full((4, 8), 0.25)},
    )
    pd.DataFrame(
        {
            "cluster": [0, 1],
            "motif": ["cluster_0", "cluster_1"],
            "consensus": ["".join("ACGT"[i] for i in jaspar["MA0080.7"].argmax(0)), "ACGTACGT"],
            "tested": [True, True],
            "n_profile": [9, 3],
            "n_reference": [0, 3],
        }
    ).to_csv(tmp_path / "clusters.tsv", sep="\t", index=False)
    mot.write_meme(
        tmp_path / "truth.meme",
        {"MA0080.7 SPI1": jaspar["MA0080.7"], "MA0154.5 EBF1": jaspar["MA0154.5"]},
    )
    act = pd.DataFrame(
        [[6.0, 6.0, 0.1, 0.1, 2.0, 2.0], [0.1, 0.1, 8.0, 8.0, 0.1, 0.1]],
        index=["SPI1", "EBF1"],
        columns=CT["celltype"],
    )
    act.to_csv(tmp_path / "activity.tsv", sep="\t")
    (act * 0 + 1.5).to_csv(tmp_path / "site_effects.tsv", sep="\t")  # e_TF,c
    src = pipeline["dir"]
    # Figure 3c's insertions without cluster_0: truth recovery must insert it itself.
    inserted = pd.read_csv(src / "effects.tsv", sep="\t")
    inserted[inserted["motif"] != "cluster_0"].to_csv(tmp_path / "effects.tsv", sep="\t")
    table = run_truth(
        clusters_tsv=tmp_path / "clusters.tsv",
        clusters_meme=tmp_path / "clusters.meme",
        effects_tsv=tmp_path / "effects.tsv",
        truth_meme=tmp_path / "truth.meme",
        activity_tsv=tmp_path / "activity.tsv",
        site_effects_tsv=tmp_path / "site_effects.tsv",
        models={r: src / f"{r}.pt" for r in ("reference", "profile")},
        predictions={r: src / f"{r}1.npz" for r in ("reference", "profile")},
        seq_path=src / "seq.npy",
        celltypes=CT,
        lineages=LINEAGES,
        out_tsv=tmp_path / "truth.tsv",
        **tomtom_options(jaspar_release="JASPAR2024", q_threshold=0.05),
        n_sequences=8,
        seed=0,
        batch_size=BATCH_SIZE,
        device="cpu",
    ).set_index("planted_motif")
    spi1, ebf1 = table.loc["MA0080.7 SPI1"], table.loc["MA0154.5 EBF1"]
    assert spi1["recovered"] and spi1["best_cluster"] == "cluster_0"
    assert spi1["recovered_by"] == "profile" and spi1["activity_row"] == "SPI1"
    assert not ebf1["recovered"] and ebf1["recovered_by"] == "none"
    assert np.isfinite(table[["r_activity_profile", "r_activity_reference"]].to_numpy()).all()
    assert np.isfinite(
        spi1[["r_cluster_activity_profile", "r_cluster_activity_reference"]].astype(float)
    ).all()
    assert np.isnan(ebf1["r_cluster_activity_profile"])
    # The consensus site's planted effect rises with SPI1's activity but saturates (the
    # consensus is largely bound even at activity 0.1), so it is no linear copy of it.
    assert 0 < spi1["r_site_effect_activity"] < 0.95
    # occupancy depends on log activity, so the consensus site's effect follows it more closely
    assert spi1["r_site_effect_log_activity"] > spi1["r_site_effect_activity"]
    assert np.isfinite(
        spi1[["r_site_effect_profile", "r_cluster_site_effect_profile"]].astype(float)
    ).all()
    assert spi1["consensus"] == "".join("ACGT"[i] for i in jaspar["MA0080.7"].argmax(0))
    assert (tmp_path / "truth.tsv").exists()


def test_planted_site_effects_saturate_with_activity(tmp_path):
    jaspar, _ = mot.jaspar_motifs("JASPAR2024")
    ppm = jaspar["MA0080.7"]
    # Lineage A: activity far above the consensus's dissociation constant; B: 0.5x A's effect
    # at the same saturation; C: activity 1e-9, unbound.
    act = pd.DataFrame([[1e3, 1e3, 1e3, 1e3, 1e-9, 1e-9]], index=["SPI1"], columns=CT["celltype"])
    eff = pd.DataFrame([[2.0, 2.0, 1.0, 1.0, 2.0, 2.0]], index=["SPI1"], columns=CT["celltype"])
    act.to_csv(tmp_path / "activity.tsv", sep="\t")
    eff.to_csv(tmp_path / "effects.tsv", sep="\t")
    out = planted_site_effects(
        {"planted:SPI1": ppm},
        {"planted:SPI1": "SPI1"},
        tmp_path / "activity.tsv",
        tmp_path / "effects.tsv",
        CT,
        LINEAGES,
    )
    np.testing.assert_allclose(out.loc["SPI1"].to_numpy(), [2.0, 1.0, 0.0], atol=1e-3)


def test_typical_site_is_half_bound_at_activity_one(tmp_path):
    """Sampled sites are about half bound at activity 1 (typical site's Kd), the consensus more."""
    jaspar, _ = mot.jaspar_motifs("JASPAR2024")
    act = pd.DataFrame([[1.0] * 6], index=["SPI1"], columns=CT["celltype"])
    eff = pd.DataFrame([[1.0] * 6], index=["SPI1"], columns=CT["celltype"])
    act.to_csv(tmp_path / "activity.tsv", sep="\t")
    eff.to_csv(tmp_path / "effects.tsv", sep="\t")
    args = (
        {"planted:SPI1": jaspar["MA0080.7"]},
        {"planted:SPI1": "SPI1"},
        tmp_path / "activity.tsv",
        tmp_path / "effects.tsv",
        CT,
        LINEAGES,
    )
    typical = planted_site_effects(*args, n_sampled=4000).loc["SPI1"].to_numpy()
    consensus = planted_site_effects(*args).loc["SPI1"].to_numpy()
    # the mean of expit over sampled scores sits near, not at, expit(mean score) = 0.5
    assert ((typical > 0.3) & (typical < 0.7)).all()
    assert (consensus > 0.95).all()


def test_nothing_to_insert_still_writes_tables_and_figures(pipeline, tmp_path):
    src = pipeline["dir"]
    clusters = pd.read_csv(src / "clusters.tsv", sep="\t").assign(insert=False)
    clusters.to_csv(tmp_path / "clusters.tsv", sep="\t", index=False)
    out = {
        k: tmp_path / f"{k}.{ext}"
        for k, ext in (("effects", "tsv"), ("stats", "tsv"), ("fp", "npz"))
    }
    run_insertion(
        clusters_tsv=tmp_path / "clusters.tsv",
        models={r: src / f"{r}.pt" for r in ("reference", "profile")},
        predictions={r: src / f"{r}1.npz" for r in ("reference", "profile")},
        model_names=NAMES,
        seq_path=src / "seq.npy",
        celltypes=CT,
        lineages=LINEAGES,
        out_effects=out["effects"],
        out_stats=out["stats"],
        out_footprints=out["fp"],
        n_sequences=4,
        seed=0,
        batch_size=BATCH_SIZE,
        device="cpu",
    )
    assert pd.read_csv(out["stats"], sep="\t").empty
    inputs = {
        "effects": out["effects"],
        "stats": out["stats"],
        "clusters": tmp_path / "clusters.tsv",
        "footprints": out["fp"],
    }
    for figure in ("fig3c", "fig3d"):
        run_figure(figure, inputs, figure_context(NAMES), tmp_path / "f.pdf", tmp_path / "f.png")
        assert (tmp_path / "f.png").stat().st_size > 0
