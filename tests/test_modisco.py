"""TF-MoDISco (modisco-lite) beside the paper's clustering: input export, its result files,
TomTom of its patterns and both callers scored on planted motifs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from interpret_chain import LINEAGES, interpret_block

from bpaitac.data.sequence import one_hot
from bpaitac.interpret import modisco
from bpaitac.interpret import motifs as mot
from bpaitac.interpret.tables import save_npz
from bpaitac.io import ConfigError, InputError
from bpaitac.workflow.interpret_paths import InterpretPaths

TOMTOM = interpret_block({})["tomtom"]


def _attributions(path: Path, seq: np.ndarray, hyp: np.ndarray, peaks: list[str]) -> Path:
    save_npz(
        path,
        peak_id=np.array(peaks),
        lineages=np.array(LINEAGES),
        seq=seq,
        hypothetical=hyp,
        pred_lineage=np.zeros((len(peaks), 3), np.float32),
        obs_lineage=np.zeros((len(peaks), 3), np.float32),
    )
    return path


def test_export_writes_modisco_input_layout(tmp_path):
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 5, (2, 1000)).astype(np.uint8)
    hyp = {r: rng.normal(size=(2, 3, 4, 1000)).astype(np.float32) for r in ("reference", "profile")}
    peaks = ["p1", "p0"]
    pd.DataFrame(
        {"peak_id": ["p0", "p1"], "chrom": ["chr2", "chr1"], "summit": [700, 5000]}
    ).to_csv(tmp_path / "ocrs.tsv", sep="\t", index=False)
    files = {r: _attributions(tmp_path / f"{r}.npz", seq, hyp[r], peaks) for r in hyp}
    out = [tmp_path / n for n in ("ohe.npz", "hyp.npz", "regions.bed")]
    n = modisco.export_modisco_inputs(files, tmp_path / "ocrs.tsv", ["A", "C"], *out)
    assert n == 2 * 2 * 2
    with np.load(out[0]) as z, np.load(out[1]) as h:
        assert z.files == ["arr_0"] and h.files == ["arr_0"]
        ohe, hy = z["arr_0"], h["arr_0"]
    assert ohe.shape == hy.shape == (8, 4, 1000) and hy.dtype == np.float32
    np.testing.assert_array_equal(ohe[5], one_hot(seq)[1])
    np.testing.assert_array_equal(hy[0], hyp["reference"][0, 0])  # role, lineage, region
    np.testing.assert_array_equal(hy[3], hyp["reference"][1, 2])
    np.testing.assert_array_equal(hy[6], hyp["profile"][0, 2])
    bed = pd.read_csv(out[2], sep="\t", header=None)
    assert bed.iloc[0].tolist() == ["chr1", 4500, 5500, "p1|reference|A", 0, "."]
    assert bed.iloc[7].tolist() == ["chr2", 200, 1200, "p0|profile|C", 0, "."]
    with pytest.raises(InputError, match="no attributions of lineage"):
        modisco.export_modisco_inputs(files, tmp_path / "ocrs.tsv", ["Z"], *out)


def test_modisco_groups_pooled_or_per_lineage():
    base = {"dataset": "d", "source": "simulate"}
    pooled = InterpretPaths({**base, "interpret": interpret_block({})}, {})
    assert pooled.modisco_groups(["Stem&Prog", "B"]) == {"pooled": ["Stem&Prog", "B"]}
    per = InterpretPaths(
        {**base, "interpret": interpret_block({"modisco_options": {"by": "lineage"}})}, {}
    )
    assert per.modisco_groups(["Stem&Prog", "B"]) == {"Stem_Prog": ["Stem&Prog"], "B": ["B"]}
    with pytest.raises(ConfigError, match="share a modisco directory"):
        per.modisco_groups(["a&b", "a+b"])
    targets = pooled.modisco_targets("d", ["A"])
    assert targets == [
        f"results/d/interpret/modisco/pooled/{n}" for n in ("ohe.npz", "hyp.npz", "regions.bed")
    ]
    on = InterpretPaths({**base, "interpret": interpret_block({"modisco": True})}, {})
    assert "results/d/interpret/motif_callers_summary.tsv" in on.modisco_targets("d", ["A"])


def _write_results(path: Path, patterns: dict[str, list[np.ndarray]]) -> Path:
    """A result file in modisco-lite's layout: sign -> list of (w, 4) PPMs."""
    with h5py.File(path, "w") as f:
        f.attrs["window_size"] = 400
        for sign, ppms in patterns.items():
            group = f.create_group(f"{sign}_patterns")
            for i, ppm in enumerate(ppms):
                p = group.create_group(f"pattern_{i}")
                p.create_dataset("sequence", data=ppm)
                cwm = ppm * (1 if sign == "pos" else -1)
                cwm[[0, -1]] = 0.0  # flat ends: trimmed like a cluster motif
                p.create_dataset("contrib_scores", data=cwm)
                p.create_dataset("hypothetical_contribs", data=cwm)
                p.create_group("seqlets").create_dataset("n_seqlets", data=np.array([20 + i]))
    return path


def _sample(rng: np.random.Generator, ppm: np.ndarray, k: int = 30) -> np.ndarray:
    """Base frequencies of ``k`` sites drawn from a (4, w) PPM, with a small pseudocount."""
    counts = np.zeros_like(ppm)
    for j in range(ppm.shape[1]):
        np.add.at(counts[:, j], rng.choice(4, k, p=ppm[:, j] / ppm[:, j].sum()), 1)
    return (counts + 0.25) / (k + 1)


def _flanked(ppm: np.ndarray) -> np.ndarray:
    """(w + 2, 4) PPM with a flat column on each side, as modisco stores it (positions x bases)."""
    flat = np.full((4, 1), 0.25)
    return np.concatenate([flat, ppm, flat], axis=1).T


def test_read_patterns_and_empty_results(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.dirichlet(np.ones(4), 8).T, rng.dirichlet(np.ones(4), 6).T
    h5 = _write_results(
        tmp_path / "m.h5", {"pos": [_flanked(a), _flanked(b)], "neg": [_flanked(b)]}
    )
    patterns = modisco.read_patterns(h5)
    assert list(patterns) == ["pos.pattern_0", "pos.pattern_1", "neg.pattern_0"]
    assert patterns["pos.pattern_1"]["n_seqlets"] == 21
    np.testing.assert_allclose(patterns["pos.pattern_0"]["pfm"][:, 1:-1], a)
    pfms, table = modisco.pattern_motifs({"pooled": h5}, trim=0.3)
    assert list(table["motif"]) == [
        "modisco_pooled_pos_0",
        "modisco_pooled_pos_1",
        "modisco_pooled_neg_0",
    ]
    np.testing.assert_allclose(pfms["modisco_pooled_pos_0"], a / a.sum(0))  # flat ends trimmed
    assert table["width"].tolist() == [8, 6, 6]
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.attrs["window_size"] = 400
    assert modisco.read_patterns(empty) == {}


def test_modisco_window_longer_than_the_sequences(tmp_path):
    np.savez(tmp_path / "ohe.npz", np.zeros((2, 4, 300), np.float32))
    with pytest.raises(InputError, match="modisco_options.window`: 400 exceeds the 300 bp"):
        modisco.run_modisco_motifs(
            tmp_path / "ohe.npz", tmp_path / "ohe.npz", tmp_path / "m.h5",
            max_seqlets=10, n_leiden=1, window=400,
        )  # fmt: skip
    assert not (tmp_path / "m.h5").exists()


def _benchmark(path: Path, seconds: float, rss: float) -> Path:
    pd.DataFrame({"s": [seconds], "h:m:s": ["0:00:01"], "max_rss": [rss]}).to_csv(
        path, sep="\t", index=False
    )
    return path


@pytest.mark.slow
def test_both_callers_scored_on_planted_motifs(tmp_path):
    jaspar, _ = mot.jaspar_motifs(TOMTOM["jaspar_release"])
    rng = np.random.default_rng(3)
    spi1, ebf1 = jaspar["MA0080.7"], jaspar["MA0154.5"]
    novel = np.eye(4)[:, [0, 2, 3, 1, 3, 0, 2, 2, 1, 0, 3, 1]] * 0.94 + 0.015
    mot.write_meme(
        tmp_path / "truth.meme",
        {
            "SPI1 JASPAR2024_MA0080.7": spi1,
            "EBF1 JASPAR2024_MA0154.5": ebf1,
            "NOVEL1 synthetic_x": novel,
        },
    )
    # the clustering finds SPI1; modisco finds EBF1 and NOVEL1
    mot.write_meme(tmp_path / "clusters.meme", {"cluster_0": _sample(rng, spi1)})
    h5 = _write_results(
        tmp_path / "m.h5", {"pos": [_flanked(_sample(rng, ebf1)), _flanked(_sample(rng, novel))]}
    )
    options = {k: TOMTOM[k] for k in ("q_threshold", "min_ic", "min_width")}
    matches = modisco.run_modisco_tomtom(
        {"pooled": h5},
        tmp_path / "patterns.meme",
        tmp_path / "patterns.tsv",
        tmp_path / "modisco_tomtom.tsv",
        trim=0.3,
        release=TOMTOM["jaspar_release"],
        **options,
    )
    assert "MA0154.5" in set(matches.loc[matches["query"] == "modisco_pooled_pos_0", "target"])
    assert "modisco_pooled_pos_1" not in set(matches["query"])  # NOVEL1 matches no JASPAR motif
    clusters_tomtom = mot.tomtom_table(
        mot.read_meme(tmp_path / "clusters.meme"), jaspar, None, **options
    )
    clusters_tomtom.to_csv(tmp_path / "clusters_tomtom.tsv", sep="\t", index=False)
    summary = modisco.run_motif_callers(
        truth_meme=tmp_path / "truth.meme",
        callers={
            "clustering": {
                "meme": tmp_path / "clusters.meme",
                "tomtom": tmp_path / "clusters_tomtom.tsv",
                "benchmarks": [
                    _benchmark(tmp_path / f"c{i}.tsv", 10.0 * i, 100.0 * i) for i in (1, 2)
                ],
            },
            "modisco": {
                "meme": tmp_path / "patterns.meme",
                "tomtom": tmp_path / "modisco_tomtom.tsv",
                "benchmarks": [_benchmark(tmp_path / "m1.tsv", 5.5, 700.0)],
            },
        },
        out_table=tmp_path / "callers.tsv",
        out_summary=tmp_path / "summary.tsv",
        release=TOMTOM["jaspar_release"],
        **options,
    ).set_index("caller")
    assert summary.loc["clustering", "named_motifs"] == "SPI1"
    assert summary.loc["modisco", "named_motifs"] == "EBF1"
    assert summary.loc["clustering", "planted_jaspar_motifs"] == 2
    assert not summary.loc["clustering", "novel_found"]
    assert summary.loc["modisco", "novel_found"]
    assert summary.loc["modisco", "novel_motif"] == "modisco_pooled_pos_1"
    assert (
        summary.loc["clustering", "seconds"] == 30.0
        and summary.loc["clustering", "max_rss_mb"] == 200.0
    )
    assert (
        summary.loc["modisco", "seconds"] == 5.5 and summary.loc["modisco", "max_rss_mb"] == 700.0
    )
    table = pd.read_csv(tmp_path / "callers.tsv", sep="\t").set_index("planted_motif")
    assert table.loc["SPI1", "clustering_named"] and not table.loc["SPI1", "modisco_named"]
    assert table.loc["EBF1", "modisco_motif"] == "modisco_pooled_pos_0"
    assert table.loc["EBF1", "modisco_q"] < 0.05
    assert pd.read_csv(tmp_path / "summary.tsv", sep="\t").shape[0] == 2


def test_jaspar_meme_names_matrix_and_tf(tmp_path):
    n = modisco.write_jaspar_meme(TOMTOM["jaspar_release"], tmp_path / "jaspar.meme")
    motifs = mot.read_meme(tmp_path / "jaspar.meme", full_names=True)
    assert len(motifs) == n == 879 and "MA0080.7 SPI1" in {k.upper() for k in motifs}


def test_report_of_a_run_without_patterns_says_so(tmp_path):
    h5 = tmp_path / "empty.h5"
    with h5py.File(h5, "w") as f:
        f.attrs["window_size"] = 400
    (tmp_path / "jaspar.meme").write_text("MEME version 4\n")
    modisco.run_modisco_report(h5, tmp_path / "jaspar.meme", tmp_path / "report", n_examples=1)
    assert "found no pattern" in (tmp_path / "report" / "report.html").read_text()
