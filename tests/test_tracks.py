"""Genome-browser tracks: bigWigs read back with pyBigWig against the arrays they came from,
the overlap rule, the IGV session and trackDb, and bad region BEDs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyBigWig
import pysam
import pytest
import torch
from interpret_chain import CT, LINEAGES, interpret_block
from test_dataset import write_bam

from bpaitac.data.sequence import encode_sequence, one_hot
from bpaitac.interpret import tracks
from bpaitac.interpret.tables import save_npz
from bpaitac.io import ConfigError, InputError
from bpaitac.model.network import build_model, save_model
from bpaitac.workflow.config import validate_config
from bpaitac.workflow.tracks_paths import TrackSpec, track_specs

CONTIGS = {"chr1": 12_000, "chr2": 4_000}
# Test OCRs (0-based summits): P2 is 100 bp from P1, so their profiles overlap by 150 bp.
OCRS = [("P1", "chr1", 2000), ("P2", "chr1", 2100), ("P3", "chr1", 6000), ("P4", "chr2", 2000)]
CELLTYPES = list(CT["celltype"])


def _preprocess() -> dict:
    return validate_config({"dataset": "x", "source": "simulate", "celltypes": "c.tsv"})[
        "preprocess"
    ]


def _outputs(root: Path, specs: list[TrackSpec]) -> dict:
    return {
        "bigwigs": [root / f"{s.stem}.bw" for s in specs],
        "session": root / "igv_session.xml",
        "trackdb": root / "trackDb.txt",
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Genome, test split, a 6-task profile model with a bias model, and attributions."""
    tmp = tmp_path_factory.mktemp("tracks")
    rng = np.random.default_rng(0)
    dna = {c: "".join(rng.choice(list("ACGT"), n)) for c, n in CONTIGS.items()}
    genome = tmp / "genome.fa"
    genome.write_text("".join(f">{c}\n{s}\n" for c, s in dna.items()))
    pysam.faidx(str(genome))
    ocrs = pd.DataFrame(OCRS, columns=["peak_id", "chrom", "summit"])
    ocrs.to_csv(tmp / "ocrs.tsv", sep="\t", index=False)
    seq = np.stack([encode_sequence(dna[c][s - 500 : s + 500]) for _, c, s in OCRS])
    np.save(tmp / "seq.npy", seq)
    profile = rng.poisson(0.8, (len(OCRS), 6, 250)).astype(np.uint16)
    np.save(tmp / "profile.npy", profile)
    counts = (profile.sum(-1) * rng.uniform(0.5, 2.0, (len(OCRS), 6))).astype(np.float32)
    np.save(tmp / "counts.npy", counts)
    (tmp / "celltypes.txt").write_text("\n".join(CELLTYPES) + "\n")
    torch.manual_seed(0)
    model = build_model({"filters": 8, "dilated_blocks": 1, "acc_head": "conv", "n_tasks": 6})
    save_model(tmp / "model.pt", model, {"targets": CELLTYPES})
    bias = build_model({"filters": 4, "dilated_blocks": 1, "acc_head": "conv", "n_tasks": 1})
    save_model(tmp / "bias.pt", bias, {"targets": ["tn5_bias"]})
    interpreted = [0, 2]  # P1 and P3
    hyp = rng.normal(size=(2, len(LINEAGES), 4, 1000)).astype(np.float32)
    save_npz(
        tmp / "attr.npz",
        peak_id=np.array(["P3", "P1"]),
        lineages=np.array(LINEAGES),
        seq=seq[[2, 0]],
        hypothetical=hyp,
        pred_lineage=np.zeros((2, 3), np.float32),
        obs_lineage=np.zeros((2, 3), np.float32),
    )
    return {
        "dir": tmp,
        "genome": genome,
        "seq": seq,
        "profile": profile,
        "counts": counts,
        "model": model.eval(),
        "bias": bias.eval(),
        "hyp": hyp,
        "interpreted": interpreted,
    }


def _run(data, out: Path, **overrides) -> dict:
    d = data["dir"]
    specs = track_specs(LINEAGES, CELLTYPES, per_celltype=True, with_bias=True)
    outputs = _outputs(out, specs)
    shap = interpret_block({})["deepshap"]
    kwargs = dict(
        model_path=d / "model.pt",
        bias_model_path=d / "bias.pt",
        genome=data["genome"],
        seq_path=d / "seq.npy",
        ocrs_path=d / "ocrs.tsv",
        profile_path=d / "profile.npy",
        counts_path=d / "counts.npy",
        celltypes_path=d / "celltypes.txt",
        celltypes=CT,
        lineages=LINEAGES,
        per_celltype=True,
        preprocess=_preprocess(),
        deepshap={**shap, "n_shuffles": 2},
        seed=0,
        device="cpu",
        batch_size=3,
        max_contribution_windows=3,
        attributions=d / "attr.npz",
        chunk_windows=1,
        **outputs,
    )
    kwargs.update(overrides)
    written = tracks.run_tracks(**kwargs)
    return {"specs": specs, "written": written, **outputs}


@pytest.fixture(scope="module")
def ocr_tracks(data, tmp_path_factory):
    return _run(data, tmp_path_factory.mktemp("ocr_tracks"))


def _values(path: Path, chrom: str, start: int, end: int) -> np.ndarray:
    with pyBigWig.open(str(path)) as bw:
        return np.asarray(bw.values(chrom, start, end, numpy=True))


def _bw(out: dict, stem: str) -> Path:
    return next(p for p in out["bigwigs"] if p.name == f"{stem}.bw")


def test_track_specs_names_and_kinds():
    specs = track_specs(["Stem&Prog", "B"], ["B.Fr.E.BM"], per_celltype=True, with_bias=False)
    stems = [s.stem for s in specs]
    assert stems[:3] == [
        "lineage.Stem_Prog.observed",
        "lineage.Stem_Prog.predicted",
        "lineage.Stem_Prog.contributions",
    ]
    assert "celltype.B.Fr.E.BM.predicted" in stems
    assert not any(s.endswith("contributions") and s.startswith("celltype") for s in stems)
    with pytest.raises(ConfigError, match="same track file lineage.a_b.observed"):
        track_specs(["a&b", "a+b"], [], per_celltype=False, with_bias=True)


def test_nearest_centre_rule():
    # spans [0, 10) centre 5 and [4, 14) centre 9: bases 4..6 nearer 5, base 7 tie -> first
    pos, win, off = tracks.nearest_centre(np.array([0, 4]), 10, np.array([5, 9]))
    assert pos.tolist() == list(range(14))
    assert win.tolist() == [0] * 8 + [1] * 6
    assert off.tolist() == list(range(8)) + [4, 5, 6, 7, 8, 9]


def test_cover_regions_tiles_profiles_without_gap():
    regions = pd.DataFrame({"chrom": ["c"], "start": [100], "end": [1700], "name": ["r"]})
    w = tracks.cover_regions(regions, 1000, 250)
    assert w.start.tolist() == [100, 350, 600, 700]  # the last one ends at the region's end
    covered = set()
    for s in w.start:
        covered |= set(range(s + 375, s + 625))
    assert covered == set(range(475, 1325))


def test_observed_tracks_are_exact(data, ocr_tracks):
    profile, counts = data["profile"], data["counts"]
    factor = counts.astype(np.float64) / profile.sum(-1)
    for i in (2, 3):  # P3 and P4 overlap no other OCR
        _, chrom, summit = OCRS[i]
        got = {
            ct: _values(
                _bw(ocr_tracks, f"celltype.{ct}.observed"), chrom, summit - 125, summit + 125
            )
            for ct in CELLTYPES
        }
        for j, ct in enumerate(CELLTYPES):
            want = (profile[i, j] * factor[i, j]).astype(np.float32)
            np.testing.assert_array_equal(got[ct], want)
        # the lineage track is the mean of its cell types: exact in float32
        lin = _values(_bw(ocr_tracks, "lineage.A.observed"), chrom, summit - 125, summit + 125)
        want = ((profile[i, 0] * factor[i, 0] + profile[i, 1] * factor[i, 1]) / 2).astype(
            np.float32
        )
        np.testing.assert_array_equal(lin, want)
        assert lin.sum() == pytest.approx((counts[i, 0] + counts[i, 1]) / 2, rel=1e-5)
    # nothing outside the profiles
    assert np.isnan(_values(_bw(ocr_tracks, "lineage.A.observed"), "chr1", 0, 1875)).all()


def test_overlapping_profiles_take_the_nearest_summit(data, ocr_tracks):
    profile, counts = data["profile"], data["counts"]
    factor = counts.astype(np.float64) / profile.sum(-1)
    got = _values(_bw(ocr_tracks, f"celltype.{CELLTYPES[0]}.observed"), "chr1", 1875, 2225)
    p1 = (profile[0, 0] * factor[0, 0]).astype(np.float32)  # span 1875..2124
    p2 = (profile[1, 0] * factor[1, 0]).astype(np.float32)  # span 1975..2224
    # midpoint of the summits 2000 and 2100: bases up to 2050 (tie) from P1, then P2
    np.testing.assert_array_equal(got[: 2051 - 1875], p1[: 2051 - 1875])
    np.testing.assert_array_equal(got[2051 - 1875 :], p2[2051 - 1975 :])


def test_predicted_tracks_match_the_model(data, ocr_tracks):
    x = one_hot(torch.from_numpy(data["seq"]))
    with torch.no_grad():
        bias = data["bias"](x)[0][:, 0]
        expected = {}
        for kind, b in (("predicted", bias), ("predicted_nobias", None)):
            logits, log_counts = data["model"](x, b)
            total = np.maximum(np.expm1(log_counts.double().numpy()), 0)
            expected[kind] = torch.softmax(logits.double(), -1).numpy() * total[:, :, None]
    assert not np.allclose(expected["predicted"], expected["predicted_nobias"])
    for i in (2, 3):
        _, chrom, summit = OCRS[i]
        for kind in expected:
            for k, lin in enumerate(LINEAGES):
                got = _values(
                    _bw(ocr_tracks, f"lineage.{lin}.{kind}"), chrom, summit - 125, summit + 125
                )
                want = expected[kind][i, 2 * k : 2 * k + 2].mean(axis=0)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)
            got = _values(
                _bw(ocr_tracks, f"celltype.{CELLTYPES[5]}.{kind}"),
                chrom,
                summit - 125,
                summit + 125,
            )
            np.testing.assert_allclose(got, expected[kind][i, 5], rtol=1e-5, atol=1e-9)


def test_contribution_tracks_are_the_observed_base(data, ocr_tracks):
    hyp, seq = data["hyp"], data["seq"]
    for row, i in ((0, 2), (1, 0)):  # the npz holds P3 then P1
        _, chrom, summit = OCRS[i]
        onehot = one_hot(seq[i : i + 1])[0]
        for k, lin in enumerate(LINEAGES):
            got = _values(
                _bw(ocr_tracks, f"lineage.{lin}.contributions"), chrom, summit - 500, summit + 500
            )
            want = (hyp[row, k] * onehot).sum(axis=0).astype(np.float32)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # P2 and P4 are not interpreted
    assert np.isnan(_values(_bw(ocr_tracks, "lineage.A.contributions"), "chr2", 0, 4000)).all()


def test_header_is_the_fai_and_intervals_are_sorted(data, ocr_tracks):
    with pyBigWig.open(str(_bw(ocr_tracks, "lineage.B.observed"))) as bw:
        assert bw.chroms() == CONTIGS
        starts = [iv[0] for iv in bw.intervals("chr1")]
    assert starts == sorted(starts) and len(starts) == 250 + 100 + 250


def test_igv_session_and_trackdb_name_and_colour_the_tracks(ocr_tracks):
    root = ET.parse(ocr_tracks["session"]).getroot()
    assert root.get("genome").endswith("genome.fa") and root.get("locus") == "chr1:1501-2500"
    names = {t.get("name"): t for t in root.iter("Track")}
    assert len(names) == len(ocr_tracks["specs"])
    assert "A observed (QN per OCR)" in names
    a, c = names["A observed (QN per OCR)"], names["C predicted"]
    assert a.get("color") == "31,119,180" and c.get("color") == "44,160,44"  # tab10
    assert names[f"{CELLTYPES[0]} observed (QN per OCR)"].get("color") == a.get("color")
    assert "quantile-normalisation factor" in a.get("attributeKey")
    paths = {r.get("path") for r in root.iter("Resource")}
    assert paths == {p.name for p in ocr_tracks["bigwigs"]}
    text = ocr_tracks["trackdb"].read_text()
    assert text.count("type bigWig") == len(ocr_tracks["specs"])
    assert (
        "track lineage.A.contributions\ntype bigWig\nbigDataUrl lineage.A.contributions.bw" in text
    )


@pytest.mark.slow
def test_bed_regions_count_the_bams_and_run_deepshap(data, tmp_path):
    bed = tmp_path / "regions.bed"
    bed.write_text("# regions\nchr2\t1000\t2300\tr2\nchr1\t3000\t4000\n")
    # insertions of every cell type at chr2:1600 (3 reads) and chr1:3500 (1 read)
    bams = [
        write_bam(
            tmp_path / f"{ct}.bam", CONTIGS, [("chr2", 1600, False)] * 3 + [("chr1", 3500, True)]
        )
        for ct in CELLTYPES
    ]
    out = _run(
        data,
        tmp_path / "out",
        regions_bed=bed,
        bams=bams,
        contributions_bed=bed,
        max_contribution_windows=2,
    )
    raw = data["profile"].sum(axis=(0, 2)).astype(np.float64)
    size = data["counts"].astype(np.float64).sum(axis=0) / raw
    obs = _values(_bw(out, f"celltype.{CELLTYPES[1]}.observed"), "chr2", 1375, 1925)
    want = np.zeros(550, np.float32)
    want[1600 - 1375] = np.float32(3 * size[1])
    np.testing.assert_array_equal(obs, want)  # chr2 region: windows at 1000, 1250, 1300
    one = _values(_bw(out, "lineage.A.observed"), "chr1", 3375, 3625)
    assert one[3500 - 3375] == np.float32((size[0] + size[1]) / 2) and one.sum() == one[125]
    # the windows inside the chr1 region cover its central 250 bp only
    assert np.isnan(_values(_bw(out, "lineage.A.predicted"), "chr1", 3000, 3375)).all()
    assert np.isfinite(_values(_bw(out, "lineage.A.predicted"), "chr1", 3375, 3625)).all()
    # DeepSHAP over the first 2 windows (file order: chr2 1000-2000 and 1250-2250)
    contrib = _values(_bw(out, "lineage.B.contributions"), "chr2", 900, 2400)
    assert np.isnan(contrib[:100]).all() and np.isfinite(contrib[100:1350]).all()
    assert np.isnan(contrib[1350:]).all()
    assert "QN size factor" in out["session"].read_text()


@pytest.mark.parametrize(
    "line, message",
    [
        ("chrX\t0\t2000", r"line 2: chromosome 'chrX' is not in .*genome.fa"),
        ("chr2\t3000\t4500", r"line 2: chr2:3000-4500 is not inside the genome \(chr2 has 4000"),
        ("chr1\t100\t900", r"line 2: chr1:100-900 is 800 bp, narrower than 1000 bp"),
        ("", r"regions.bed: no regions; the region BED file .* is empty"),
    ],
)
def test_bad_region_bed_names_file_and_line(data, tmp_path, line, message):
    bed = tmp_path / "regions.bed"
    bed.write_text(f"track name=x\n{line}\n")
    lengths = dict(CONTIGS)
    with pytest.raises(InputError, match=message):
        tracks.read_region_windows(
            bed, lengths, data["genome"], 1000, 250, "interpret.tracks.regions"
        )


def test_empty_test_split_is_an_empty_region_set(tmp_path):
    np.save(tmp_path / "seq.npy", np.zeros((0, 1000), np.uint8))
    np.save(tmp_path / "profile.npy", np.zeros((0, 6, 250), np.uint16))
    np.save(tmp_path / "counts.npy", np.zeros((0, 6), np.float32))
    (tmp_path / "ocrs.tsv").write_text("peak_id\tchrom\tsummit\n")
    with pytest.raises(InputError, match=r"ocrs.tsv: no test OCRs; the region set is empty"):
        tracks.ocr_source(
            *(tmp_path / n for n in ("seq.npy", "ocrs.tsv", "profile.npy", "counts.npy")),
            CONTIGS,
            1000,
        )


def test_per_celltype_tracks_need_a_celltype_model():
    from bpaitac.workflow.tracks_paths import TrackPaths

    block = {"profile_model": "m", "reference_model": "r", "tracks": {"per_celltype": True}}
    config = {"source": "simulate", "interpret": interpret_block(block)}
    catalogue = {"m": {"bias": "none", "targets": "lineages", "seeds": [1]}, "r": {}}
    with pytest.raises(ConfigError, match="interpret.tracks.per_celltype"):
        TrackPaths(config, catalogue, LINEAGES, CELLTYPES).specs()
