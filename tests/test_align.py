"""Simulated FASTQ pairs -> cutadapt -> bowtie2 -> filtered, deduplicated, merged BAMs.

A small Markov genome (three chromosomes, one 2 kb segment copied so that some fragments are not
uniquely mappable) and a few thousand fragments, written as a simulated cell-type BAM; the
simulator's FASTQ writer turns them into three replicate runs, which the alignment module trims,
aligns, filters and merges. The insertions the preprocessing's own code reads from the result must
be the simulated ones.
"""

from __future__ import annotations

import gzip
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest

from bpaitac.data import align
from bpaitac.data.insertions import count_insertions
from bpaitac.io import InputError
from bpaitac.simulate import bam as sim_bam
from bpaitac.simulate import fastq
from bpaitac.simulate import genome as sim_genome
from bpaitac.simulate.config import SimulateConfig
from bpaitac.simulate.reads import fragment_length_pmf
from bpaitac.workflow.config import validate_config

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("bowtie2", "bowtie2-build", "samtools"))
    or not (
        shutil.which("cutadapt")
        or (Path(__import__("sys").executable).parent / "cutadapt").exists()
    ),
    reason="needs bowtie2, samtools (make system-deps) and cutadapt (pip)",
)

CHROMS = {"chr1": 150_000, "chr2": 100_000, "chr3": 60_000}
REPEAT = (("chr1", 40_000), ("chr2", 30_000), 2_000)  # chr1[40k:42k] copied onto chr2[30k:32k]
N_FRAGMENTS = 4000
SPEC = fastq.FastqSpec(
    read_length=50, error_rate=0.005, duplicate_fraction=0.05, chrm_fraction=0.03
)
ALIGN = validate_config(
    {"dataset": "t", "source": "simulate", "celltypes": "config/celltypes.tsv"}
)["align"]
CFG = align.AlignConfig.from_config({**ALIGN, "keep_contigs": list(CHROMS)})
SEED = 7


def _genome() -> dict[str, np.ndarray]:
    model = sim_genome.build_markov_model(3, 0.42, 0.2)
    codes = {
        c: sim_genome.sample_sequence(model, n, np.random.default_rng([SEED, i]))
        for i, (c, n) in enumerate(CHROMS.items())
    }
    (src, s), (dst, d), n = REPEAT
    codes[dst][d : d + n] = codes[src][s : s + n]
    return codes


def _fragments(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Insertion pairs (chrom index, left, right): 60 % in 20 OCRs, the rest anywhere."""
    pmf = fragment_length_pmf(SimulateConfig.defaults().fragment_length)
    sizes = np.array(list(CHROMS.values()))
    n_ocr = int(0.6 * N_FRAGMENTS)
    centres = [(int(c), int(rng.integers(2_000, sizes[c] - 2_000))) for c in rng.integers(0, 3, 20)]
    pick = rng.integers(0, 20, n_ocr)
    chrom = np.concatenate(
        [[centres[k][0] for k in pick], rng.integers(0, 3, N_FRAGMENTS - n_ocr)]
    ).astype(np.int64)
    centre = np.concatenate(
        [
            [centres[k][1] for k in pick],
            rng.integers(1_000, sizes[chrom[n_ocr:]] - 1_000),
        ]
    )
    dist = rng.choice(len(pmf), size=N_FRAGMENTS, p=pmf)
    left = centre + np.round(rng.normal(0, 80, N_FRAGMENTS)).astype(np.int64) - dist // 2
    ocrs = pd.DataFrame(
        {
            "chrom": [list(CHROMS)[c] for c, _ in centres],
            "start": [x - 300 for _, x in centres],
            "end": [x + 300 for _, x in centres],
        }
    )
    return chrom, left, left + dist, ocrs


def _unique_kmers(codes: dict[str, np.ndarray], k: int) -> Counter:
    letters = np.frombuffer(b"ACGTN", np.uint8)
    counts: Counter = Counter()
    for seq in codes.values():
        for s in (letters[seq].tobytes(), _revcomp(letters[seq].tobytes())):
            counts.update(s[i : i + k] for i in range(len(s) - k + 1))
    return counts


def _revcomp(s: bytes) -> bytes:
    return s.translate(bytes.maketrans(b"ACGTN", b"TGCAN"))[::-1]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """Genome, fragments, a simulated cell-type BAM and three replicate FASTQ pairs."""
    d = tmp_path_factory.mktemp("align")
    codes = _genome()
    sim_genome.write_fasta(d / "genome.fa", codes)
    fastq.write_chrm_fasta(d / "chrM.fa", SEED)
    rng = np.random.default_rng(SEED)
    chrom, left, right, ocrs = _fragments(rng)
    sim_bam.write_fragments_bam(
        d / "celltype.bam", list(CHROMS), list(CHROMS.values()), chrom, left, right, 50, rng
    )
    ocrs.to_csv(d / "ocrs.bed", sep="\t", header=False, index=False)
    runs = [(f"SRR{i}", d / f"SRR{i}_R1.fastq.gz", d / f"SRR{i}_R2.fastq.gz") for i in (1, 2, 3)]
    written = fastq.celltype_fastqs(d / "celltype.bam", d / "genome.fa", runs, SPEC, seed=SEED)
    return {
        "dir": d,
        "codes": codes,
        "chrom": chrom,
        "left": left,
        "right": right,
        "runs": runs,
        "written": written,
    }


@pytest.fixture(scope="module")
def aligned(sim):
    """The three runs trimmed, aligned and filtered (1 thread), with their QC rows."""
    d = sim["dir"]
    index = d / "index" / "genome"
    align.build_bowtie2_index([d / "genome.fa", d / "chrM.fa"], index, threads=1)
    out = {}
    for run, r1, r2 in sim["runs"]:
        bam = d / f"{run}.filtered.bam"
        row = align.process_run(
            run, r1, r2, index, bam, d / f"{run}.qc.tsv", CFG, ocrs=d / "ocrs.bed", threads=1
        )
        out[run] = (bam, row)
    return {"index": index, "runs": out}


def _read_names(path: Path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return [line[1:].strip() for i, line in enumerate(fh) if i % 4 == 0]


def test_fastq_reads_follow_the_molecule_and_the_tn5_convention(sim):
    codes = sim["codes"]
    letters = np.frombuffer(b"ACGTN", np.uint8)
    run, r1, r2 = sim["runs"][0]
    recs1 = list(pysam.FastxFile(str(r1)))
    recs2 = list(pysam.FastxFile(str(r2)))
    assert [a.name for a in recs1] == [b.name for b in recs2]
    assert all(len(a.sequence) == 50 and a.quality == SPEC.cycle_quality() for a in recs1)
    mism, bases, readthrough = 0, 0, 0
    for a, b in zip(recs1, recs2):
        chrom, start, end, _ = fastq.parse_read_name(a.name)
        if chrom == fastq.CHRM:
            continue
        mol = letters[codes[chrom][start:end]].tobytes().decode()
        n = min(50, len(mol))
        reads = {a.sequence[:n], b.sequence[:n]}
        want = {mol[:n], _revcomp(mol.encode()).decode()[:n]}
        # each read is one end of the molecule, up to sequencing errors
        for got in reads:
            best = min(sum(x != y for x, y in zip(got, w)) for w in want)
            mism += best
            bases += n
        if len(mol) < 50:
            readthrough += 1
            assert "CTGTCTCTTATACACATCT"[: 50 - n][:8] in (a.sequence[n:] + b.sequence[n:])
    assert 0.002 < mism / bases < 0.01
    assert readthrough > 50
    # the insertions of the named molecule are the simulated pair
    chrom, start, end, _ = fastq.parse_read_name(recs1[0].name)
    left, right = fastq.insertions_of_molecule(start, end)
    assert fastq.molecule_bounds(left, right) == (start, end)


def test_fastq_counts_and_seeding(sim, tmp_path):
    w = sim["written"]
    assert w["fragments"].sum() == N_FRAGMENTS
    assert set(w["run"]) == {"SRR1", "SRR2", "SRR3"}
    dup_share = w["duplicates"].sum() / w["pairs"].sum()
    chrm_share = w["chrm_pairs"].sum() / w["pairs"].sum()
    assert dup_share == pytest.approx(0.05, abs=0.01)
    assert chrm_share == pytest.approx(0.03 * 0.95, abs=0.01)
    names = _read_names(sim["runs"][0][1])
    assert sum(n.endswith(":d") for n in names) == w["duplicates"].iloc[0]
    again = [("SRR1", tmp_path / "a1.fq.gz", tmp_path / "a2.fq.gz")]
    fastq.celltype_fastqs(sim["dir"] / "celltype.bam", sim["dir"] / "genome.fa", again, SPEC, SEED)
    twice = [("SRR1", tmp_path / "b1.fq.gz", tmp_path / "b2.fq.gz")]
    fastq.celltype_fastqs(sim["dir"] / "celltype.bam", sim["dir"] / "genome.fa", twice, SPEC, SEED)
    assert (tmp_path / "a1.fq.gz").read_bytes() == (tmp_path / "b1.fq.gz").read_bytes()


def _expected_counts(sim, runs: list[str]) -> tuple[dict[str, np.ndarray], int, int]:
    """Per-base insertions of the distinct, uniquely mappable nuclear molecules of ``runs``;
    also the number of such molecules and of those shorter than the read."""
    kmers = _unique_kmers({**sim["codes"], "chrM": np.zeros(0, np.uint8)}, 30)
    letters = np.frombuffer(b"ACGTN", np.uint8)
    mols = set()
    for run, r1, _ in sim["runs"]:
        if run not in runs:
            continue
        for name in _read_names(r1):
            chrom, start, end, _ = fastq.parse_read_name(name)
            if chrom != fastq.CHRM:
                mols.add((chrom, start, end))
    counts = {c: np.zeros(n, np.int64) for c, n in CHROMS.items()}
    n_unique, n_short = 0, 0
    for chrom, start, end in mols:
        seq = letters[sim["codes"][chrom][start:end]].tobytes()
        if kmers[seq[:30]] != 1 or kmers[_revcomp(seq)[:30]] != 1:
            continue
        n_unique += 1
        n_short += end - start < 50
        left, right = fastq.insertions_of_molecule(start, end)
        counts[chrom][left] += 1
        counts[chrom][right] += 1
    return counts, n_unique, n_short


def _observed_counts(bam: Path) -> dict[str, np.ndarray]:
    """Per-base insertions with the preprocessing's own reader (whole chromosomes as windows)."""
    return {
        c: count_insertions(bam, [c], [0], n, CFG.qc_filter())[0].astype(np.int64)
        for c, n in CHROMS.items()
    }


def test_insertions_after_alignment_are_the_simulated_ones(sim, aligned, tmp_path):
    merged = align.merge_bams([b for b, _ in aligned["runs"].values()], tmp_path / "ct.bam")
    expected, n_unique, n_short = _expected_counts(sim, ["SRR1", "SRR2", "SRR3"])
    observed = _observed_counts(merged)
    exp_total = sum(v.sum() for v in expected.values())
    found = sum(np.minimum(observed[c], expected[c]).sum() for c in CHROMS)
    recovery = found / exp_total
    print(f"insertion recovery: {recovery:.4%} of {exp_total} insertions ({n_unique} molecules)")
    assert recovery >= 0.99
    # nothing lands where nothing was simulated (non-unique fragments are filtered, not moved)
    extra = sum(np.maximum(observed[c] - expected[c], 0).sum() for c in CHROMS)
    assert extra <= 0.01 * exp_total
    assert n_short > 100  # adapter read-through was trimmed and the short fragments aligned


def test_short_fragments_align_after_trimming(sim, aligned):
    """Molecules shorter than the read (adapter read-through in both reads) still align."""
    bam, _ = aligned["runs"]["SRR1"]
    with pysam.AlignmentFile(str(bam)) as fh:
        got = {fastq.parse_read_name(a.query_name)[:3] for a in fh.fetch(until_eof=True)}
    mols = {fastq.parse_read_name(n)[:3] for n in _read_names(sim["runs"][0][1])}
    (src, s), (dst, d), n = REPEAT
    short = {
        m
        for m in mols
        if m[0] != fastq.CHRM
        and m[2] - m[1] < SPEC.read_length
        and not (m[0] == src and s <= m[1] < s + n)
        and not (m[0] == dst and d <= m[1] < d + n)
    }
    missing = short - got
    print(f"short molecules aligned: {len(short) - len(missing)} of {len(short)}")
    assert len(short) > 50
    # A substitution in the few read-through bases of a read stops cutadapt from recognising
    # them (-e 0.1 allows no error under 10 bp), and such a pair no longer aligns end to end, as
    # with real reads: a few % of the short molecules (and < 0.5 % of all insertions) are lost.
    assert len(missing) <= 0.1 * len(short)


def test_duplicates_and_chrm_are_gone(sim, aligned):
    for run, (bam, row) in aligned["runs"].items():
        with pysam.AlignmentFile(str(bam)) as fh:
            assert fh.references == (*CHROMS, "chrM")  # the header still lists every contig
            reads = list(fh.fetch(until_eof=True))
        assert all(a.reference_name != "chrM" for a in reads)
        assert not any(a.is_duplicate for a in reads)
        assert all(a.is_proper_pair and a.mapping_quality >= 30 for a in reads)
        frags = Counter(
            (a.reference_name, a.reference_start, a.next_reference_start, a.template_length)
            for a in reads
            if a.template_length > 0
        )
        assert max(frags.values()) == 1  # one pair per molecule
        w = sim["written"].set_index("run").loc[run]
        assert row["duplicate_pct"] == pytest.approx(100 * w["duplicates"] / w["pairs"], abs=2.0)
        assert row["chrm_pct"] == pytest.approx(100 * w["chrm_pairs"] / w["pairs"], abs=1.5)
        assert row["read_pairs"] == w["pairs"]
        assert row["aligned_pct"] > 90
        assert 0.3 < row["frip"] < 0.9


@pytest.mark.parametrize("n_runs", [1, 2, 3])
def test_replicates_merge_into_one_indexed_bam(aligned, tmp_path, n_runs):
    bams = [b for b, _ in list(aligned["runs"].values())[:n_runs]]
    out = align.merge_bams(bams, tmp_path / "B.Fo.Sp.bam", name="B.Fo.Sp")
    assert Path(f"{out}.bai").exists()

    def n_reads(p):
        with pysam.AlignmentFile(str(p)) as fh:
            return sum(1 for _ in fh.fetch(until_eof=True))

    assert n_reads(out) == sum(n_reads(b) for b in bams)
    with pysam.AlignmentFile(str(out)) as fh:
        assert fh.header["HD"]["SO"] == "coordinate"
        assert fh.mapped == n_reads(out)  # the index answers
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_qc_table_and_figure(aligned, tmp_path):
    paths = [aligned["runs"][r][0].with_name(f"{r}.qc.tsv") for r in aligned["runs"]]
    runs = pd.DataFrame({"run": ["SRR1", "SRR2", "SRR3"], "celltype": ["B.Fo.Sp"] * 3})
    table = align.qc_table(paths, runs)
    assert list(table.columns[:2]) == ["run", "celltype"]
    assert set(align.QC_COLUMNS) <= set(table.columns) and len(table) == 3
    align.plot_qc(table, tmp_path / "qc.png")
    assert (tmp_path / "qc.png").stat().st_size > 1000


def test_corrupt_fastq_stops_naming_the_run_and_command(sim, aligned, tmp_path):
    _, r1, r2 = sim["runs"][0]
    bad = tmp_path / "SRRBAD_R1.fastq.gz"
    with gzip.open(bad, "wt") as fh:
        fh.write("@read1\nACGTACGT\n+\nIII\n")  # quality shorter than the sequence
    out = tmp_path / "SRRBAD.bam"
    with pytest.raises(align.ToolError, match=r"(?s)run SRRBAD: `\S*cutadapt .*` failed.*"):
        align.process_run("SRRBAD", bad, r2, aligned["index"], out, tmp_path / "qc.tsv", CFG)
    assert not out.exists() and not (tmp_path / "qc.tsv").exists()
    assert [p.name for p in tmp_path.iterdir()] == [bad.name]  # nothing half-written


def test_missing_inputs_and_index_are_input_errors(sim, tmp_path):
    _, r1, r2 = sim["runs"][0]
    with pytest.raises(InputError, match="run SRRX: .*not found"):
        align.trim_pair("SRRX", tmp_path / "no.fq.gz", r2, tmp_path / "a", tmp_path / "b", CFG)
    with pytest.raises(InputError, match=r"bowtie2 index .*missing .*align.bowtie2_index"):
        align.align_pair("SRRX", r1, r2, tmp_path / "noindex", tmp_path / "x.bam", CFG)


def test_bowtie2_failure_names_the_command(sim, aligned, tmp_path):
    _, r1, r2 = sim["runs"][0]
    cfg = replace(CFG, bowtie2_extra=("--no-such-option",))
    with pytest.raises(align.ToolError, match=r"run SRR1: `\S*bowtie2 .*--no-such-option"):
        align.align_pair("SRR1", r1, r2, aligned["index"], tmp_path / "x.bam", cfg)
    assert not (tmp_path / "x.bam").exists()
