"""Tn5 insertion counting: hand-made edge cases, bedtools on real reads, both engines."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pysam
import pytest

from bpaitac.data import bam_reader
from bpaitac.data import insertions as ins
from bpaitac.data.insertions import ReadFilter, count_insertions
from bpaitac.io import InputError
from bpaitac.workflow.config import validate_config

PREPROCESS = validate_config(
    {"dataset": "t", "source": "simulate", "celltypes": "config/celltypes.tsv"}
)["preprocess"]
DEFAULT = ReadFilter.from_config(PREPROCESS)
"""The read filter of the schema's defaults."""

ENGINES = ["pysam"] + (["numba"] if bam_reader.HAVE_NUMBA else [])
CIGAR_QUERY_OPS = set("MIS=X")


def _query_length(cigar: str) -> int:
    length, num = 0, ""
    for ch in cigar:
        if ch.isdigit():
            num += ch
        else:
            length += int(num) if ch in CIGAR_QUERY_OPS else 0
            num = ""
    return length


def write_bam(path: Path, contigs: dict[str, int], reads: list[tuple], index: bool = True) -> Path:
    """Write a sorted BAM. ``reads``: (name, flag, chrom, pos, cigar, mapq)."""
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": c, "LN": n} for c, n in contigs.items()],
    }
    order = {c: i for i, c in enumerate(contigs)}
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for name, flag, chrom, pos, cigar, mapq in sorted(reads, key=lambda r: (order[r[2]], r[3])):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.flag, a.reference_id, a.reference_start = name, flag, order[chrom], pos
            a.mapping_quality = mapq
            if cigar:
                a.cigarstring = cigar
                a.query_sequence = "A" * _query_length(cigar)
                a.query_qualities = pysam.qualitystring_to_array("I" * _query_length(cigar))
            out.write(a)
    if index:
        pysam.index(str(path))
    return path


# flags
P1F, P2R, P1R, P2F = 99, 147, 83, 163  # proper pairs: read1 +, read2 -, read1 -, read2 +

# name, flag, chrom, pos, cigar, mapq, insertion (None: never counted), counted only when
EDGE_READS = [
    ("start_plus", P1F, "chrA", 0, "10M", 60, 4, None),
    ("start_minus", P2R, "chrA", 0, "3M", 60, None, None),  # insertion -3: off the chromosome
    ("end_minus", P2R, "chrA", 990, "10M", 60, 994, None),
    ("end_plus", P1F, "chrA", 996, "4M", 60, None, None),  # insertion 1000 = chromosome length
    ("clip_plus", P1F, "chrA", 100, "5S20M", 60, 104, None),  # 5' end = first aligned base
    ("clip_minus", P2R, "chrA", 200, "20M7S", 60, 214, None),  # 5' end = last aligned base
    ("del_minus", P1R, "chrA", 300, "10M5D10M", 60, 319, None),
    ("skip_minus", P1R, "chrA", 400, "5M100N5M", 60, 504, None),
    ("ins_minus", P1R, "chrA", 600, "5M3I5M", 60, 604, None),
    ("frag_a", P1F, "chrA", 700, "30M", 60, 704, None),  # both ends of one fragment
    ("frag_a", P2R, "chrA", 750, "30M", 60, 774, None),
    ("lone_mate", P2F, "chrA", 800, "20M", 60, 804, None),  # proper pair, mate absent
    ("mate_unmapped", 1 | 8 | 64, "chrA", 810, "20M", 60, 814, "no_pair_filter"),
    ("improper", 1 | 32 | 64, "chrA", 820, "20M", 60, 824, "no_pair_filter"),
    ("single_plus", 0, "chrA", 830, "20M", 60, 834, None),
    ("single_minus", 16, "chrA", 840, "20M", 60, 854, None),
    ("dup", P1F | 0x400, "chrA", 850, "20M", 60, 854, "keep_dups"),
    ("secondary", P1F | 0x100, "chrA", 860, "20M", 60, None, None),
    ("supplementary", P1F | 0x800, "chrA", 870, "20M", 60, None, None),
    ("qcfail", P1F | 0x200, "chrA", 880, "20M", 60, None, None),
    ("lowq", P1F, "chrA", 890, "20M", 10, 894, "mapq10"),
    ("mapq255", 0, "chrA", 900, "20M", 255, 904, None),
    ("unmapped_placed", 4, "chrA", 910, None, 0, None, None),
    ("b_minus", P2R, "chrB", 10, "50M", 60, 54, None),
    ("b_plus", P1F, "chrB", 10, "50M", 60, 14, None),
    ("b_plus2", P1F, "chrB", 10, "50M", 60, 14, None),
]
CONTIGS = {"chrA": 1000, "chrB": 500}


def expected_counts(flt: ReadFilter) -> dict[str, np.ndarray]:
    """Per-base insertion counts of EDGE_READS under ``flt``, worked out by hand above."""
    allowed = {
        None: True,
        "no_pair_filter": not flt.require_proper_pair,
        "keep_dups": not flt.drop_duplicates,
        "mapq10": flt.min_mapq <= 10,
    }
    out = {c: np.zeros(n, np.int64) for c, n in CONTIGS.items()}
    for *_, chrom, _, _, _, p, when in EDGE_READS:
        if p is not None and allowed[when]:
            out[chrom][p] += 1
    return out


@pytest.fixture(scope="module")
def edge_bam(tmp_path_factory) -> Path:
    reads = [r[:6] for r in EDGE_READS]
    return write_bam(tmp_path_factory.mktemp("edge") / "edge.bam", CONTIGS, reads)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    "flt",
    [
        DEFAULT,
        replace(DEFAULT, min_mapq=0, drop_duplicates=False),
    ],
    ids=["default", "keep_dups_lowq"],
)
def test_edge_cases_whole_chromosomes(edge_bam, engine, flt):
    got = count_insertions(edge_bam, ["chrA", "chrB"], [0, 0], 1000, read_filter=flt, engine=engine)
    exp = expected_counts(flt)
    np.testing.assert_array_equal(got[0], exp["chrA"])
    np.testing.assert_array_equal(got[1, :500], exp["chrB"])
    assert got[1, 500:].sum() == 0  # beyond chrB's end


@pytest.mark.parametrize("engine", ENGINES)
def test_unpaired_reads_count_without_proper_pair_filter(edge_bam, engine):
    flt = replace(DEFAULT, require_proper_pair=False)
    got = count_insertions(edge_bam, ["chrA"], [800], 40, read_filter=flt, engine=engine)[0]
    # lone_mate 804, mate_unmapped 814, improper 824, single_plus 834
    assert [int(i) + 800 for i in np.flatnonzero(got)] == [804, 814, 824, 834]


@pytest.mark.parametrize("engine", ENGINES)
def test_windows_overlapping_and_off_chromosome(edge_bam, engine):
    chroms = ["chrA", "chrA", "chrA", "chrB", "chrA"]
    starts = [-10, 0, 980, 5, 95]
    got = count_insertions(edge_bam, chroms, starts, 30, DEFAULT, engine=engine)
    exp = expected_counts(DEFAULT)
    a = np.concatenate([np.zeros(10, np.int64), exp["chrA"], np.zeros(30, np.int64)])
    np.testing.assert_array_equal(got[0], a[0:30])
    np.testing.assert_array_equal(got[1], exp["chrA"][0:30])
    np.testing.assert_array_equal(got[2], a[990:1020])  # runs off the end at 1000
    np.testing.assert_array_equal(got[3], exp["chrB"][5:35])
    assert got[3, 9] == 2 and got[4, 9] == 1  # chrB 14 (two reads), chrA 104 (soft clip)


def test_shifts_are_configurable(edge_bam):
    flt = replace(DEFAULT, shift_plus=0, shift_minus=0)
    got = count_insertions(edge_bam, ["chrA"], [0], 1000, read_filter=flt, engine="pysam")[0]
    assert got[100] == 1 and got[219] == 1  # clip_plus starts at 100, clip_minus ends at 219
    for engine in ENGINES[1:]:
        other = count_insertions(edge_bam, ["chrA"], [0], 1000, read_filter=flt, engine=engine)
        np.testing.assert_array_equal(other[0], got)


# --------------------------------------------------------------------------------------------
# Real reads: pybedtools' x.bam against bedtools genomecov -5 on shifted reads
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xbam(tmp_path_factory) -> Path:
    pybedtools = pytest.importorskip("pybedtools")
    src = Path(pybedtools.example_filename("x.bam"))
    dst = tmp_path_factory.mktemp("xbam") / "x.bam"
    shutil.copy(src, dst)
    return dst


def _bedtools_insertions(bam: Path, min_mapq: int, tmp: Path) -> dict[str, dict[int, int]]:
    """Insertion counts by bedtools: bamtobed, shift the reads in BED, genomecov -bg -5."""
    if shutil.which("bedtools") is None:
        pytest.skip("bedtools not installed")
    bed = subprocess.run(
        ["bedtools", "bamtobed", "-i", str(bam)], capture_output=True, text=True, check=True
    ).stdout
    shifted = []
    for line in bed.splitlines():
        chrom, start, end, name, score, strand = line.split("\t")
        if int(score) < min_mapq:
            continue
        d = 4 if strand == "+" else -5
        if int(start) + d < 0:
            continue
        shifted.append(f"{chrom}\t{int(start) + d}\t{int(end) + d}\t{name}\t{score}\t{strand}")
    (tmp / "shifted.bed").write_text("\n".join(shifted) + "\n")
    contigs = ins.bam_contigs(bam)
    (tmp / "genome.txt").write_text("".join(f"{c}\t{n}\n" for c, n in contigs.items()))
    bg = subprocess.run(
        ["bedtools", "genomecov", "-i", str(tmp / "shifted.bed"), "-g", str(tmp / "genome.txt")]
        + ["-bg", "-5"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    out: dict[str, dict[int, int]] = {}
    for line in bg.splitlines():
        chrom, start, end, val = line.split("\t")
        for p in range(int(start), int(end)):
            out.setdefault(chrom, {})[p] = int(val)
    return out


def test_x_bam_needs_index_then_gets_one(xbam, tmp_path):
    bam = tmp_path / "noindex.bam"
    shutil.copy(xbam, bam)
    with pytest.raises(InputError, match=r"samtools index .*noindex\.bam") as err:
        ins.ensure_bam_index(bam, index_missing=False)
    assert "preprocess.index_missing" in str(err.value)
    with pytest.raises(InputError, match="samtools index"):
        count_insertions(bam, ["chr2L"], [0], 10, DEFAULT)
    idx = ins.ensure_bam_index(bam, index_missing=True)
    assert idx.exists() and idx.name == "noindex.bam.bai"


@pytest.mark.parametrize("engine", ENGINES)
def test_x_bam_matches_bedtools_genomecov(xbam, tmp_path, engine):
    ins.ensure_bam_index(xbam, index_missing=True)
    flt = replace(DEFAULT, min_mapq=30)  # x.bam is single-end: no proper-pair filter
    truth = _bedtools_insertions(xbam, 30, tmp_path)
    # windows around every 97th read's position plus fixed windows, some overlapping
    chroms, starts = [], []
    with pysam.AlignmentFile(str(xbam)) as f:
        for i, r in enumerate(f.fetch()):
            if i % 97 == 0:
                chroms.append(r.reference_name)
                starts.append(r.reference_start - 300 + (i % 7) * 40)
    chroms += ["chr2L", "chr2L", "chr4"]
    starts += [0, 500, 1_351_857 - 400]
    width = 1000
    got = count_insertions(xbam, chroms, starts, width, read_filter=flt, engine=engine)
    exp = np.zeros_like(got)
    for k, (c, s) in enumerate(zip(chroms, starts)):
        cov = truth.get(c, {})
        exp[k] = [cov.get(p, 0) for p in range(s, s + width)]
    assert exp.sum() > 10_000  # the windows do hold reads
    np.testing.assert_array_equal(got, exp)


def test_x_bam_engines_agree_including_low_mapq(xbam):
    ins.ensure_bam_index(xbam, index_missing=True)
    flt = replace(DEFAULT, min_mapq=0)
    total = 0
    for chrom, length in ins.bam_contigs(xbam).items():  # each whole chromosome as one window
        got = [count_insertions(xbam, [chrom], [0], length, flt, engine=e) for e in ENGINES]
        for other in got[1:]:
            np.testing.assert_array_equal(other, got[0])
        total += int(got[0].sum())
    assert total == 45_593  # every read of x.bam, none near a chromosome end


# --------------------------------------------------------------------------------------------
# Simulated paired-end BAM: engines agree on many BGZF blocks, seeks, threads
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_bam(tmp_path_factory) -> Path:
    rng = np.random.default_rng(1)
    contigs = {"chr1": 2_000_000, "chr2": 800_000, "chr3": 50_000}
    cigars = ["50M", "5S45M", "45M5S", "20M2D30M", "20M1I29M", "10M50N40M"]
    reads = []
    for i in range(30_000):
        chrom = rng.choice(list(contigs)[:2], p=[0.7, 0.3])
        length = rng.integers(60, 500)
        start = int(rng.integers(0, contigs[chrom] - length))
        flag1, flag2 = (P1F, P2R) if rng.random() < 0.5 else (P2F, P1R)
        extra = 0x400 if rng.random() < 0.05 else 0
        mapq = int(rng.choice([0, 10, 60, 60, 60]))
        reads.append((f"f{i}", flag1 | extra, chrom, start, str(rng.choice(cigars)), mapq))
        reads.append((f"f{i}", flag2 | extra, chrom, start + int(length) - 50, "50M", mapq))
    return write_bam(tmp_path_factory.mktemp("sim") / "sim.bam", contigs, reads)


@pytest.mark.skipif(not bam_reader.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("layout", ["dense", "sparse", "overlapping", "ends"])
def test_numba_engine_equals_pysam_engine(sim_bam, layout):
    rng = np.random.default_rng(7)
    if layout == "dense":
        chroms = ["chr1"] * 4000 + ["chr2"] * 1500
        starts = np.r_[np.arange(4000) * 500, np.arange(1500) * 500]
    elif layout == "sparse":  # far apart: the scan seeks with the index
        chroms = ["chr2"] * 5 + ["chr1"] * 10
        starts = np.r_[np.arange(5) * 150_000 + 3, np.arange(10) * 190_000 + 11]
    elif layout == "overlapping":
        chroms = list(rng.choice(["chr1", "chr2"], 3000))
        starts = rng.integers(0, 790_000, 3000)
    else:  # windows at and beyond both ends, and on a chromosome without reads
        chroms = ["chr1", "chr1", "chr2", "chr2", "chr3"]
        starts = np.array([-100, 2_000_000 - 150, -5, 800_000 - 10, 0])
    flt = DEFAULT
    width = 250
    ref = count_insertions(sim_bam, chroms, starts, width, flt, engine="pysam")
    assert ref.sum() > 0
    for threads in (1, 2):
        got = count_insertions(sim_bam, chroms, starts, width, flt, engine="numba", threads=threads)
        np.testing.assert_array_equal(got, ref)


# --------------------------------------------------------------------------------------------
# Inputs that are wrong
# --------------------------------------------------------------------------------------------


def test_contigs_must_match_the_genome(edge_bam):
    ins.check_bam_contigs(edge_bam, {"chrA": 1000, "chrB": 500, "chrC": 5}, ["chrA"])
    with pytest.raises(InputError, match=r"chrA has length 1000 .* 999"):
        ins.check_bam_contigs(edge_bam, {"chrA": 999}, ["chrA"])
    with pytest.raises(InputError, match="none of its contigs"):
        ins.check_bam_contigs(edge_bam, {"1": 1000, "2": 500})
    with pytest.raises(InputError, match="chrC"):
        ins.check_bam_contigs(edge_bam, {"chrA": 1000, "chrB": 500, "chrC": 5}, ["chrC"])
    with pytest.raises(InputError, match="not in the BAM header"):
        count_insertions(edge_bam, ["chrZ"], [0], 10, DEFAULT)


def test_missing_bam_and_bad_engine(tmp_path, edge_bam):
    with pytest.raises(InputError, match="not found"):
        ins.ensure_bam_index(tmp_path / "absent.bam")
    with pytest.raises(InputError, match="preprocess.engine"):
        count_insertions(edge_bam, ["chrA"], [0], 10, DEFAULT, engine="fast")


def test_read_filter_from_config_and_uint16_clip(caplog):
    flt = ReadFilter.from_config(
        {**PREPROCESS, "min_mapq": 5, "tn5_shift_minus": -4, "drop_duplicates": False}
    )
    assert (flt.min_mapq, flt.shift_plus, flt.shift_minus) == (5, 4, -4)
    assert not flt.exclude_flags & ins.FLAG_DUPLICATE
    assert flt.margin == 5
    with caplog.at_level("WARNING"):
        out = ins.clip_uint16(np.array([1, 70_000, 65_535]), "test")
    assert out.dtype == np.uint16 and out.tolist() == [1, 65_535, 65_535]
    assert "1 value(s) above 65535 clipped" in caplog.text


def test_merge_windows():
    s, e = ins.merge_windows(np.array([50, 0, 10, 200, 30]), np.array([60, 20, 25, 210, 50]))
    assert s.tolist() == [0, 30, 200] and e.tolist() == [25, 60, 210]


@pytest.mark.parametrize("engine", ENGINES)
def test_counts_saturate_at_uint16_max(tmp_path, engine, caplog):
    n = 65_535 + 7
    reads = [(f"r{i}", 0, "chrA", 100, "20M", 60) for i in range(n)] + [
        ("other", 16, "chrA", 200, "20M", 60)
    ]
    bam = write_bam(tmp_path / "deep.bam", {"chrA": 1000}, reads)
    with caplog.at_level("WARNING"):
        got = count_insertions(bam, ["chrA"], [0], 300, DEFAULT, engine=engine)[0]
    assert got.dtype == np.uint16
    assert got[104] == 65_535 and got[214] == 1 and got.sum() == 65_536
    assert "7 insertions dropped" in caplog.text


@pytest.mark.skipif(not bam_reader.HAVE_NUMBA, reason="numba not installed")
def test_numba_engine_with_zlib_inflater(sim_bam, monkeypatch):
    chroms, starts = (
        ["chr1"] * 300 + ["chr2"] * 100,
        np.r_[np.arange(300) * 6000, np.arange(100) * 7000],
    )
    ref = count_insertions(sim_bam, chroms, starts, 250, DEFAULT, engine="numba")
    monkeypatch.setattr(bam_reader, "_load_libdeflate", lambda: None)
    assert bam_reader._Inflater().name == "zlib"
    got = count_insertions(sim_bam, chroms, starts, 250, DEFAULT, engine="numba", threads=2)
    np.testing.assert_array_equal(got, ref)
    assert ref.sum() > 1000


@pytest.mark.skipif(not bam_reader.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("inflater", ["libdeflate", "zlib"])
def test_corrupt_bgzf_block_is_reported(sim_bam, tmp_path, monkeypatch, inflater):
    if inflater == "zlib":
        monkeypatch.setattr(bam_reader, "_load_libdeflate", lambda: None)
    elif bam_reader._load_libdeflate() is None:
        pytest.skip("libdeflate not installed")
    bad = tmp_path / "bad.bam"
    data = bytearray(sim_bam.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the compressed data
    bad.write_bytes(bytes(data))
    shutil.copy(f"{sim_bam}.bai", f"{bad}.bai")
    with pytest.raises(InputError, match="corrupt"):
        count_insertions(bad, ["chr1", "chr2"], [0, 0], 800_000, DEFAULT, engine="numba")
