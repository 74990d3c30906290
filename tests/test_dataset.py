"""From OCR table + genome + BAMs to the split arrays (bpaitac.data.arrays) and the bias sets
(bpaitac.data.bias_sets)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from bpaitac.data import arrays, bias_sets, splits
from bpaitac.data.insertions import ReadFilter, count_insertions
from bpaitac.data.sequence import decode_sequence, encode_sequence
from bpaitac.io import InputError
from bpaitac.workflow.config import validate_config
from bpaitac.workflow.splits import BIAS_SET_SPLITS, SPLITS

CELLTYPES = ["LTHSC.34-.BM", "B.Fr.E.BM", "DC.4+.Sp"]
PREPROCESS = validate_config(
    {"dataset": "t", "source": "simulate", "celltypes": "config/celltypes.tsv"}
)["preprocess"]
CFG = {
    **PREPROCESS,
    "window": 1000,
    "profile_width": 250,
    "max_n_fraction": 0.01,
    "splits": {"test": ["chr11"], "val": ["chr12"]},
    "min_mapq": 30,
    "closed_p": 0.25,
    "protein_free_stride": 500,
    "protein_free_val_fraction": 0.34,
    "bias_min_counts": 1,
}
FILTER = ReadFilter.from_config(CFG)


# --------------------------------------------------------------------------------------------
# Fixtures: a small genome, an OCR table, one BAM per cell type
# --------------------------------------------------------------------------------------------


def _random_dna(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), n))


@pytest.fixture(scope="module")
def genome(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    seqs = {
        c: _random_dna(rng, n) for c, n in {"chr1": 20_000, "chr11": 6000, "chr12": 6000}.items()
    }
    s = seqs["chr1"]
    seqs["chr1"] = s[:15_000] + "N" * 30 + s[15_030:]  # N block inside one OCR window
    seqs["chr1"] = seqs["chr1"][:5000] + "acgt" + seqs["chr1"][5004:]  # soft-masked bases
    path = tmp_path_factory.mktemp("genome") / "genome.fa"
    path.write_text("".join(f">{c}\n{s}\n" for c, s in seqs.items()))
    pysam.faidx(str(path))
    return path


# peak id, chrom, 1-based Summit; the window is [Summit - 1 - 500, Summit - 1 + 500)
OCRS = [
    ("P1", "chr1", 2001),
    ("P2", "chr1", 300),  # runs off the start of chr1: dropped
    ("P3", "chr1", 5001),  # soft-masked bases count as bases
    ("P4", "chr1", 15_001),  # 30 N of 1000 > 1 %: dropped
    ("P5", "chr11", 3001),
    ("P6", "chr12", 2501),
    ("P7", "chr12", 5800),  # runs off the end of chr12: dropped
    ("P8", "chr1", 2101),  # overlaps P1
    ("P9", "chr1", 10_001),
]
KEPT = ["P1", "P3", "P5", "P6", "P8", "P9"]


def write_ocr_table(path: Path, ocrs=OCRS, celltypes=CELLTYPES, extra_header=()) -> Path:
    header = ["ImmGenATAC1219.peakID", "chrom", "Summit", "TSS", *celltypes, *extra_header]
    rows = [
        [pid, chrom, str(summit), "", *["1.5"] * (len(celltypes) + len(extra_header))]
        for pid, chrom, summit in ocrs
    ]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def write_bam(path: Path, contigs: dict[str, int], reads: list[tuple[str, int, bool]]) -> Path:
    """Proper-pair reads given as (chrom, insertion, is_reverse), 20M each, MAPQ 60."""
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": c, "LN": n} for c, n in contigs.items()],
    }
    order = {c: i for i, c in enumerate(contigs)}
    placed = []
    for chrom, p, rev in reads:
        start = p - 20 + 6 if rev else p - 4  # reference_end - 1 - 5 = p  /  start + 4 = p
        placed.append((order[chrom], start, rev))
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, (ref, start, rev) in enumerate(sorted(placed)):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start = f"r{i}", ref, start
            a.flag = 147 if rev else 99
            a.mapping_quality, a.cigarstring = 60, "20M"
            a.query_sequence = "A" * 20
            a.query_qualities = pysam.qualitystring_to_array("I" * 20)
            out.write(a)
    pysam.index(str(path))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, genome) -> dict:
    """OCR table and one BAM per cell type with insertions around the OCR summits."""
    root = tmp_path_factory.mktemp("inputs")
    contigs = arrays.genome_lengths(genome)
    rng = np.random.default_rng(3)
    bams = {}
    for k, ct in enumerate(CELLTYPES):
        reads = []
        for _, chrom, summit in OCRS:
            n = int(rng.integers(5, 60)) * (k + 1)
            for p in rng.integers(summit - 1 - 200, summit - 1 + 200, n):
                if 0 <= p < contigs[chrom] - 30:
                    reads.append((chrom, int(p), bool(rng.random() < 0.5)))
        bams[ct] = write_bam(root / f"{ct}.bam", contigs, reads)
    return {"table": write_ocr_table(root / "ocrs.csv"), "bams": bams}


def _split_outputs(root: Path) -> dict:
    return {s: (root / s / "seq.npy", root / s / "ocrs.tsv") for s in SPLITS}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, genome, inputs) -> dict:
    root = tmp_path_factory.mktemp("data")
    kept = arrays.prepare_ocrs(
        inputs["table"], genome, CELLTYPES, CFG, root / "ocrs_all.tsv", _split_outputs(root)
    )
    ins = {}
    for ct, bam in inputs["bams"].items():
        ins[ct] = root / "insertions" / f"{ct}.npy"
        arrays.count_ocr_insertions(bam, root / "ocrs_all.tsv", genome, CFG, ins[ct], celltype=ct)
    return {"root": root, "kept": kept, "insertions": ins}


# --------------------------------------------------------------------------------------------
# Pure functions
# --------------------------------------------------------------------------------------------


def test_encode_sequence():
    assert encode_sequence("ACGTNacgtnRY-").tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 4, 4, 4]
    assert decode_sequence(encode_sequence("GATTACAN")) == "GATTACAN"


def test_quantile_normalise_hand_example():
    # The textbook example: reference = means of the sorted columns = 2, 3, 14/3, 17/3.
    x = np.array([[5, 4, 3], [2, 1, 4], [3, 4, 6], [4, 2, 8]], float)
    ref = [2, 3, 14 / 3, 17 / 3]
    tie = (ref[2] + ref[3]) / 2  # column 2 has 4 twice at ranks 3 and 4
    expected = np.array(
        [
            [ref[3], tie, ref[0]],
            [ref[0], ref[0], ref[1]],
            [ref[1], tie, ref[2]],
            [ref[2], ref[1], ref[3]],
        ]
    )
    np.testing.assert_allclose(arrays.quantile_normalise(x), expected)


def test_quantile_normalise_properties():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, [1.0, 5.0, 20.0], size=(500, 3))  # no ties, different depths
    q = arrays.quantile_normalise(x)
    for j in range(3):
        np.testing.assert_allclose(np.sort(q[:, j]), np.sort(q[:, 0]))
        assert (np.argsort(q[:, j]) == np.argsort(x[:, j])).all()  # order within a column kept
    counts = rng.poisson(0.5, size=(400, 4)).astype(float)  # many ties at 0, 1, 2
    q = arrays.quantile_normalise(counts)
    np.testing.assert_allclose(q.sum(axis=0), q.sum(axis=0)[0])  # ties: column sums preserved
    for j in range(4):  # tied inputs stay tied
        for v in np.unique(counts[:, j]):
            assert np.ptp(q[counts[:, j] == v, j]) == 0
    with pytest.raises(ValueError, match="NaN"):
        arrays.quantile_normalise(np.array([[1.0, np.nan]]))


def test_split_of_chroms():
    got = splits.split_of_chroms(
        ["chr1", "chr11", "chr12", "chr16", "chrX"], {"test": ["chr11", "chr16"], "val": ["chr12"]}
    )
    assert got.tolist() == ["train", "test", "val", "test", "train"]
    with pytest.raises(InputError, match="chr11 listed as both"):
        splits.split_of_chroms(["chr1"], {"test": ["chr11"], "val": ["chr11"]})
    with pytest.raises(InputError, match="unknown split"):
        splits.split_of_chroms(["chr1"], {"holdout": ["chr11"]})


def test_npy_row_writer_and_reader(tmp_path):
    a = np.arange(7 * 2 * 3, dtype=np.uint16).reshape(7, 2, 3)
    for n_rows in (7, None):
        path = tmp_path / f"a{n_rows}.npy"
        with arrays.NpyRowWriter(path, np.uint16, (2, 3), n_rows) as w:
            w.write(a[:3])
            w.write(a[3:3])
            w.write(a[3:])
        np.testing.assert_array_equal(np.load(path), a)
        with arrays.NpyRowReader(path) as r:
            np.testing.assert_array_equal(r.read(2, 5), a[2:5])
            np.testing.assert_array_equal(r.read(6, 10), a[6:])
    with pytest.raises(RuntimeError, match="wrote 3 rows, expected 4"):
        with arrays.NpyRowWriter(tmp_path / "b.npy", np.uint8, (1,), 4) as w:
            w.write(np.zeros((3, 1)))
    with pytest.raises(ValueError, match="rows of shape"):
        with arrays.NpyRowWriter(tmp_path / "c.npy", np.uint8, (2,)) as w:
            w.write(np.zeros((3, 1)))
    assert not list(tmp_path.glob("*.body"))  # side file removed on error


# --------------------------------------------------------------------------------------------
# OCR selection, insertion counts, assembly
# --------------------------------------------------------------------------------------------


def test_prepare_ocrs_drops_and_splits(prepared, genome, caplog):
    root = prepared["root"]
    all_ocrs = pd.read_csv(root / "ocrs_all.tsv", sep="\t")
    assert all_ocrs["peak_id"].tolist() == KEPT
    summit = dict((p, s - 1) for p, _, s in OCRS)
    assert all_ocrs["summit"].tolist() == [summit[p] for p in KEPT]  # 0-based
    assert dict(zip(all_ocrs.peak_id, all_ocrs.split)) == {
        "P1": "train", "P3": "train", "P5": "test", "P6": "val", "P8": "train", "P9": "train"
    }  # fmt: skip
    with pysam.FastaFile(str(genome)) as fa:
        for split in SPLITS:
            seq = np.load(root / split / "seq.npy")
            table = pd.read_csv(root / split / "ocrs.tsv", sep="\t")
            assert seq.dtype == np.uint8 and seq.shape == (len(table), 1000)
            assert list(table.columns) == ["peak_id", "chrom", "summit"]
            for row, s in zip(table.itertuples(), seq):
                ref = fa.fetch(row.chrom, row.summit - 500, row.summit + 500)
                assert decode_sequence(s) == ref.upper()


def test_prepare_ocrs_logs_drop_counts(tmp_path, genome, inputs, caplog):
    with caplog.at_level(logging.INFO):
        arrays.prepare_ocrs(
            inputs["table"], genome, CELLTYPES, CFG, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )
    assert (
        "9 OCRs; dropped 2 whose 1000 bp window runs off a chromosome end and 1 with more"
        in caplog.text
    )


def _with_included(path: Path, flags: list[str]) -> Path:
    """Add an Included.in.systematic.analysis column (one flag per OCR row) to a table."""
    lines = path.read_text().splitlines()
    out = [lines[0] + ",Included.in.systematic.analysis"]
    out += [f"{line},{flag}" for line, flag in zip(lines[1:], flags)]
    path.write_text("\n".join(out) + "\n")
    return path


def test_prepare_ocrs_keeps_only_included_ocrs(tmp_path, genome, caplog):
    flags = ["1", "0", "TRUE", "", "yes", "1", "1", "No", "1"]  # P2, P4, P8 excluded
    table = _with_included(write_ocr_table(tmp_path / "ocrs.csv"), flags)
    cfg = {**CFG, "included_only": True}
    with caplog.at_level(logging.INFO):
        kept = arrays.prepare_ocrs(
            table, genome, CELLTYPES, cfg, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )
    assert "6 OCRs flagged in Included.in.systematic.analysis" in caplog.text
    assert kept["peak_id"].tolist() == [p for p in KEPT if p not in {"P2", "P4", "P8"}]
    # Off (the default), the flag column is ignored.
    kept = arrays.prepare_ocrs(
        table, genome, CELLTYPES, CFG, tmp_path / "all.tsv", _split_outputs(tmp_path)
    )
    assert kept["peak_id"].tolist() == KEPT


def test_included_only_errors_name_the_line_or_the_column(tmp_path, genome):
    cfg = {**CFG, "included_only": True}
    table = _with_included(write_ocr_table(tmp_path / "a.csv"), ["1", "1", "maybe"] + ["1"] * 6)
    with pytest.raises(InputError, match=r"a.csv, line 4, column 'Included.*'maybe' is not a flag"):
        arrays.prepare_ocrs(
            table, genome, CELLTYPES, cfg, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )
    table = write_ocr_table(tmp_path / "b.csv")
    with pytest.raises(InputError, match="no Included.in.systematic.analysis column"):
        arrays.prepare_ocrs(
            table, genome, CELLTYPES, cfg, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )
    table = _with_included(write_ocr_table(tmp_path / "c.csv"), ["0"] * 9)
    with pytest.raises(InputError, match="no OCR is flagged"):
        arrays.prepare_ocrs(
            table, genome, CELLTYPES, cfg, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )


@pytest.mark.parametrize(
    "problem, match",
    [
        ("missing_celltype", r"no signal column for cell type\(s\) \['DC.4\+.Sp'\]"),
        ("duplicated", r"duplicated column\(s\) \['B.Fr.E.BM'\]"),
        ("unknown_chrom", r"ocrs.csv, line 11: chromosome 'chr7' is not in .*genome.fa;"),
        ("profile_too_wide", "profile_width"),
    ],
)
def test_prepare_ocrs_bad_input(tmp_path, genome, problem, match):
    table, cfg = tmp_path / "ocrs.csv", dict(CFG)
    if problem == "missing_celltype":
        write_ocr_table(table, celltypes=CELLTYPES[:2])
    elif problem == "duplicated":
        write_ocr_table(table, extra_header=["B.Fr.E.BM"])
    elif problem == "unknown_chrom":
        write_ocr_table(table, ocrs=[*OCRS, ("P10", "chr7", 1000)])
    else:
        write_ocr_table(table)
        cfg["profile_width"] = 2000
    with pytest.raises(InputError, match=match):
        arrays.prepare_ocrs(
            table, genome, CELLTYPES, cfg, tmp_path / "all.tsv", _split_outputs(tmp_path)
        )
    assert not (tmp_path / "all.tsv").exists()


def test_insertions_are_the_central_profile(prepared, inputs, genome):
    table = pd.read_csv(prepared["root"] / "ocrs_all.tsv", sep="\t")
    for ct, path in prepared["insertions"].items():
        got = np.load(path)
        assert got.dtype == np.uint16 and got.shape == (len(table), 250)
        exp = count_insertions(
            inputs["bams"][ct], table.chrom, table.summit - 125, 250, FILTER, engine="pysam"
        )
        np.testing.assert_array_equal(got, exp)
        assert got.sum() > 100


def test_missing_bam_and_index_errors(tmp_path, prepared, genome, inputs):
    with pytest.raises(InputError, match=r"cell type 'X.Sp' is in the OCR table .* no BAM"):
        arrays.count_ocr_insertions(
            tmp_path / "X.Sp.bam",
            prepared["root"] / "ocrs_all.tsv",
            genome,
            CFG,
            tmp_path / "o.npy",
            celltype="X.Sp",
        )
    bam = tmp_path / "noindex.bam"
    bam.write_bytes(Path(inputs["bams"][CELLTYPES[0]]).read_bytes())
    with pytest.raises(InputError, match=f"samtools index {bam}"):
        arrays.count_ocr_insertions(
            bam, prepared["root"] / "ocrs_all.tsv", genome, CFG, tmp_path / "o.npy"
        )
    arrays.count_ocr_insertions(
        bam,
        prepared["root"] / "ocrs_all.tsv",
        genome,
        {**CFG, "index_missing": True},
        tmp_path / "o.npy",
    )
    assert (tmp_path / "noindex.bam.bai").exists() and (tmp_path / "o.npy").exists()


def test_bam_of_another_assembly_is_refused(tmp_path, prepared, genome):
    bam = write_bam(
        tmp_path / "other.bam",
        {"chr1": 20_001, "chr11": 6000, "chr12": 6000},
        [("chr1", 100, False)],
    )
    with pytest.raises(InputError, match="chr1 has length 20001 in the BAM header but 20000"):
        arrays.count_ocr_insertions(
            bam, prepared["root"] / "ocrs_all.tsv", genome, CFG, tmp_path / "o.npy"
        )


@pytest.mark.parametrize("chunk_bytes", [1, 10_000, 1 << 25])
def test_assemble_dataset(tmp_path, prepared, chunk_bytes):
    root = prepared["root"]
    out = {
        s: (
            tmp_path / s / "profile.npy",
            tmp_path / s / "counts.npy",
            tmp_path / s / "celltypes.txt",
        )
        for s in SPLITS
    }
    paths = [prepared["insertions"][ct] for ct in CELLTYPES]
    totals = arrays.assemble_dataset(
        root / "ocrs_all.tsv", paths, CELLTYPES, out, chunk_bytes=chunk_bytes
    )
    per_ct = np.stack([np.load(p) for p in paths], axis=1)  # (N, C, 250)
    np.testing.assert_array_equal(totals, per_ct.sum(-1))
    qn = arrays.quantile_normalise(totals)
    split = pd.read_csv(root / "ocrs_all.tsv", sep="\t")["split"].to_numpy()
    for s in SPLITS:
        profile, counts = np.load(out[s][0]), np.load(out[s][1])
        assert profile.dtype == np.uint16 and counts.dtype == np.float32
        np.testing.assert_array_equal(profile, per_ct[split == s])
        np.testing.assert_allclose(counts, qn[split == s], rtol=1e-6)
        assert out[s][2].read_text().split() == CELLTYPES
        n_tsv = len(pd.read_csv(root / s / "ocrs.tsv", sep="\t"))
        assert profile.shape == (n_tsv, 3, 250) and counts.shape == (n_tsv, 3)


def test_assemble_refuses_mismatched_insertions(tmp_path, prepared):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 250), np.uint16))
    paths = [prepared["insertions"][ct] for ct in CELLTYPES[:2]] + [bad]
    out = {
        s: (tmp_path / s / "p.npy", tmp_path / s / "c.npy", tmp_path / s / "t.txt") for s in SPLITS
    }
    with pytest.raises(InputError, match="re-run its insertions rule"):
        arrays.assemble_dataset(prepared["root"] / "ocrs_all.tsv", paths, CELLTYPES, out)
    assert not any((tmp_path / s / "p.npy").exists() for s in SPLITS)


# --------------------------------------------------------------------------------------------
# Bias sets
# --------------------------------------------------------------------------------------------


def test_closed_ocr_set(tmp_path, prepared, genome):
    root = prepared["root"]
    table = pd.read_csv(root / "ocrs_all.tsv", sep="\t")
    thr = -math.log10(0.25)
    # -log10 p per OCR x cell type; closed when below thr (p > 0.25)
    neglog = {
        "P1": [0.1, 5.0, 0.5],  # closed in ct0 and ct2
        "P3": [5.0, 5.0, 5.0],  # open everywhere: not in the set
        "P5": [0.0, 5.0, 5.0],  # closed in ct0, test chromosome
        "P6": [5.0, thr, 0.2],  # p = 0.25 exactly is not closed; closed in ct2
        "P8": [5.0, 0.3, 5.0],
        "P9": [np.nan, 5.0, 0.1],  # missing value: not closed there
        "EXTRA": [0.0, 0.0, 0.0],  # rows of OCRs that were dropped are ignored
    }
    pv = tmp_path / "closed.tsv"
    pd.DataFrame.from_dict(neglog, orient="index", columns=CELLTYPES).rename_axis("peak_id").to_csv(
        pv, sep="\t"
    )
    ins = [prepared["insertions"][ct] for ct in CELLTYPES]
    per_ct = [np.load(p) for p in ins]
    # make one closed OCR empty to exercise bias_min_counts: P8 in ct1
    i8 = int(np.flatnonzero(table.peak_id == "P8")[0])
    per_ct[1][i8] = 0
    np.save(tmp_path / "ct1.npy", per_ct[1])
    ins[1] = tmp_path / "ct1.npy"
    out = {s: tmp_path / "closed" / s for s in BIAS_SET_SPLITS["closed_ocrs"]}
    n = bias_sets.closed_ocr_set(root / "ocrs_all.tsv", pv, ins, CELLTYPES, genome, CFG, out)
    expected = {"train": {"P1": [0, 2], "P9": [2]}, "val": {"P6": [2]}, "test": {"P5": [0]}}
    assert n == {s: len(v) for s, v in expected.items()}
    with pysam.FastaFile(str(genome)) as fa:
        for s, exp in expected.items():
            profile, seq = np.load(out[s] / "profile.npy"), np.load(out[s] / "seq.npy")
            windows = pd.read_csv(out[s] / "windows.tsv", sep="\t")
            assert profile.dtype == np.uint16 and profile.shape == (len(exp), 1, 250)
            assert seq.shape == (len(exp), 1000) and windows["name"].tolist() == list(exp)
            for k, (pid, cts) in enumerate(exp.items()):
                i = int(np.flatnonzero(table.peak_id == pid)[0])
                np.testing.assert_array_equal(
                    profile[k, 0], sum(per_ct[c][i].astype(int) for c in cts)
                )
                assert windows["n_closed"][k] == len(cts)
                w = windows.iloc[k]
                assert (
                    decode_sequence(seq[k]) == fa.fetch(w.chrom, int(w.start), int(w.end)).upper()
                )


def test_closed_pvalues_bad_input(tmp_path):
    pv = tmp_path / "p.tsv"
    pv.write_text("peak_id\tA\nP1\t0.1\n")
    with pytest.raises(InputError, match=r"no p-value column for cell type\(s\) \['B'\]"):
        bias_sets.read_closed_pvalues(pv, ["P1"], ["A", "B"])
    with pytest.raises(InputError, match="1 OCR\\(s\\) have no p-values \\(e.g. 'P2'\\)"):
        bias_sets.read_closed_pvalues(pv, ["P1", "P2"], ["A"])
    pv.write_text("id\tA\nP1\t0.1\n")
    with pytest.raises(InputError, match="no peak-ID column; name it peak_id or ImmGenATAC1219"):
        bias_sets.read_closed_pvalues(pv, ["P1"], ["A"])
    pv.write_text("ImmGenATAC1219.peakID,chrom,Summit,A\nP1,chr1,10,0.1\n")  # as the OCR table
    assert bias_sets.read_closed_pvalues(pv, ["P1"], ["A"]).tolist() == [[0.1]]


def test_protein_free_set(tmp_path, genome):
    contigs = arrays.genome_lengths(genome)
    bed = tmp_path / "regions.bed"
    bed.write_text(
        "chr1\t0\t3000\tr1\nchr1\t14000\t17000\tr2\nchr11\t1000\t4200\tr3\nchr12\t0\t900\tshort\n"
    )
    rng = np.random.default_rng(5)
    bams = []
    for rep in range(2):
        reads = [
            (c, int(p), bool(rng.random() < 0.5))
            for c, lo, hi in [("chr1", 0, 3000), ("chr1", 14000, 17000), ("chr11", 1000, 4200)]
            for p in rng.integers(lo + 10, hi - 30, 300)
        ]
        bams.append(write_bam(tmp_path / f"rep{rep}.bam", contigs, reads))
    out = {s: tmp_path / "pf" / s for s in BIAS_SET_SPLITS["protein_free"]}
    n = bias_sets.protein_free_set(bed, bams, genome, CFG, seed=1, out_splits=out)
    tiles = {s: pd.read_csv(out[s] / "windows.tsv", sep="\t") for s in out}
    regions = {s: set(t["name"]) for s, t in tiles.items()}
    assert regions["train"].isdisjoint(regions["val"]) and len(regions["val"]) == 1  # 0.34 * 4
    # 1000 bp tiles every 500 bp: r1 and r3 give 5, r2 loses the 2 tiles over its N block
    exp_starts = {
        "r1": [0, 500, 1000, 1500, 2000],
        "r2": [14000, 15500, 16000],
        "r3": [1000, 1500, 2000, 2500, 3000],
    }
    for s, t in tiles.items():
        for name, grp in t.groupby("name"):
            assert grp["start"].tolist() == exp_starts[name]
        profile, seq = np.load(out[s] / "profile.npy"), np.load(out[s] / "seq.npy")
        assert profile.shape == (len(t), 1, 250) and seq.shape == (len(t), 1000)
        pooled = sum(
            count_insertions(b, t.chrom, t.start + 375, 250, FILTER, engine="pysam") for b in bams
        )
        np.testing.assert_array_equal(profile[:, 0], pooled)
        np.testing.assert_array_equal(profile.sum(axis=(1, 2)), t["total"])
    assert n == {s: len(t) for s, t in tiles.items()}
    again = {s: tmp_path / "pf2" / s for s in BIAS_SET_SPLITS["protein_free"]}
    bias_sets.protein_free_set(bed, bams, genome, CFG, seed=1, out_splits=again)
    assert pd.read_csv(again["val"] / "windows.tsv", sep="\t").equals(tiles["val"])  # seeded


def test_split_regions_and_bed_errors(tmp_path):
    assert (splits.split_regions(25, 0.2, 0) == "val").sum() == 5
    assert (splits.split_regions(2, 0.01, 0) == "val").sum() == 1
    assert (splits.split_regions(1, 0.5, 0) == "val").sum() == 0
    assert (splits.split_regions(10, 0.0, 0) == "val").sum() == 0
    bed = tmp_path / "r.bed"
    bed.write_text("chr1\t10\t5\n")
    with pytest.raises(InputError, match=r"r.bed, line 1: chr1:10-5 is not inside the genome"):
        bias_sets.read_regions_bed(bed, {"chr1": 100})
    bed.write_text("chr1\t9963058\t11295918\tRP11-874A11\n")  # hg38 against another genome
    with pytest.raises(InputError, match=r"line 1: chromosome 'chr1' is not in mm.fa; .*hg38"):
        bias_sets.read_regions_bed(bed, {"chr19": 100}, "mm.fa")
    bed.write_text("# header\nchr1\tten\t50\n")
    with pytest.raises(InputError, match="line 2: expected chrom<TAB>start<TAB>end"):
        bias_sets.read_regions_bed(bed, {"chr1": 100})
