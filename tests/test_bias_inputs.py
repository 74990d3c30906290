"""The real Tn5-bias inputs: protein-free DNA on its own genome from a fragments file, and the
closed-OCR p-values computed with MACS3 (bpaitac.data.fragments, bpaitac.data.peaks, the preprocess
rules).

Two simulated datasets stand in for the real ones: `tiny` (config/tiny.yaml's simulate block, one
cell type per lineage) plays ImmGen on mm10, and a second simulation on other chromosomes plays
PRINT's protein-free DNA on hg38.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from scipy.stats import mannwhitneyu

from bpaitac.data import bias_sets, peaks
from bpaitac.data.fragments import count_fragment_insertions
from bpaitac.data.ocr_table import PEAK_ID, read_ocr_table
from bpaitac.io import InputError, read_celltypes
from bpaitac.simulate import SimulateConfig, simulate_dataset
from bpaitac.workflow.config import load_config
from bpaitac.workflow.splits import BIAS_SET_SPLITS

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
TINY = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
PREPROCESS = {
    **load_config(ROOT / "config" / "tiny.yaml")["preprocess"],
    "protein_free_stride": 200,
}
# The protein-free DNA's own assembly: other chromosome names than the dataset's genome.
PF_CHROMS = {"chr5": 150_000, "chr7": 150_000, "chrX": 150_000}
REPLICATES = ["rep1", "rep2"]


def _simulate(out: Path, seed: int, **overrides) -> Path:
    cfg = SimulateConfig.from_dict({**TINY["simulate"], **overrides})
    celltypes = read_celltypes(ROOT / "config" / "celltypes.tsv", 1)
    simulate_dataset(cfg, celltypes, seed=seed, outdir=out, threads=1)
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny dataset, one cell type per lineage (10 cell types)."""
    return _simulate(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="module")
def protein_free(tmp_path_factory) -> Path:
    """A second simulation on its own genome; its protein-free BAMs and regions are the input."""
    return _simulate(
        tmp_path_factory.mktemp("pf"), seed=7, chrom_sizes=PF_CHROMS, n_ocrs=40, truth_ocrs=2
    )


def write_fragments(bams: list[Path], path: Path, shift: str, barcodes: list[str]) -> int:
    """A fragments file of the BAMs' read pairs (one barcode per BAM), a header line and a
    fragment of an unlisted barcode; ``applied`` carries the +4/-5 shift, ``raw`` does not."""
    rows = []
    for bam, barcode in zip(bams, barcodes):
        mates: dict[str, list] = {}
        with pysam.AlignmentFile(str(bam)) as fh:
            for read in fh:
                mates.setdefault(read.query_name, []).append(read)
        for pair in mates.values():
            plus = next(r for r in pair if not r.is_reverse)
            minus = next(r for r in pair if r.is_reverse)
            start, end = plus.reference_start, minus.reference_end
            if shift == "applied":
                start, end = start + 4, end - 5
            rows.append((plus.reference_name, start, end, barcode, 1 + len(rows) % 3))
    first = rows[0]
    rows.append((first[0], first[1], first[2], "not_a_replicate", 1))
    frame = pd.DataFrame(rows).sort_values([0, 1, 2], kind="stable")
    text = "# bpaitac test fragments\n" + frame.to_csv(sep="\t", header=False, index=False)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as fh:
        fh.write(text)
    return len(rows)


def _bias_set(root: Path) -> dict:
    return {
        s: (
            np.load(root / s / "seq.npy"),
            np.load(root / s / "profile.npy"),
            pd.read_csv(root / s / "windows.tsv", sep="\t"),
        )
        for s in BIAS_SET_SPLITS["protein_free"]
    }


def _assert_same_bias_set(a: dict, b: dict) -> None:
    for split in BIAS_SET_SPLITS["protein_free"]:
        np.testing.assert_array_equal(a[split][0], b[split][0])
        np.testing.assert_array_equal(a[split][1], b[split][1])
        pd.testing.assert_frame_equal(a[split][2], b[split][2])
    assert sum(len(v[0]) for v in a.values()) > 0


@pytest.fixture(scope="module")
def bam_route(protein_free, tmp_path_factory) -> dict:
    """The protein-free bias set from the per-replicate BAMs (the reference)."""
    out = tmp_path_factory.mktemp("bam_route")
    bams = [protein_free / "protein_free" / f"{r}.bam" for r in REPLICATES]
    bias_sets.protein_free_set(
        protein_free / "protein_free" / "regions.bed",
        bams,
        protein_free / "genome.fa",
        PREPROCESS,
        seed=0,
        out_splits={s: out / s for s in BIAS_SET_SPLITS["protein_free"]},
    )
    return _bias_set(out)


# --------------------------------------------------------------------------------------------
# Protein-free DNA: a fragments file on its own genome
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("shift", "name"), [("applied", "frags.tsv.gz"), ("raw", "frags.txt")])
def test_fragments_file_gives_the_bias_set_of_the_bams(
    protein_free, bam_route, tmp_path, shift, name, caplog
):
    bams = [protein_free / "protein_free" / f"{r}.bam" for r in REPLICATES]
    frags = tmp_path / name
    write_fragments(bams, frags, shift, barcodes=["AAAC-1", "rep2"])  # rep2 names itself
    out = tmp_path / "pf"
    with caplog.at_level(logging.INFO):
        bias_sets.protein_free_set(
            protein_free / "protein_free" / "regions.bed",
            [],
            protein_free / "genome.fa",
            PREPROCESS,
            seed=0,
            out_splits={s: out / s for s in BIAS_SET_SPLITS["protein_free"]},
            fragments=frags,
            replicates=REPLICATES,
            barcodes={"AAAC-1": "rep1"},
            fragments_shift=shift,
        )
    _assert_same_bias_set(_bias_set(out), bam_route)
    assert "not_a_replicate" in caplog.text  # the unlisted barcode is reported, not counted


def test_fragment_counts_weigh_duplicates_only_when_kept(protein_free, tmp_path):
    bams = [protein_free / "protein_free" / f"{r}.bam" for r in REPLICATES]
    frags = tmp_path / "f.tsv"
    write_fragments(bams, frags, "applied", barcodes=REPLICATES)
    table = pd.read_csv(frags, sep="\t", comment="#", header=None)
    table = table[table[3] != "not_a_replicate"]
    chrom, start = table.iloc[0, 0], int(table.iloc[0, 1])
    kwargs = {"replicates": REPLICATES, "shift": "applied"}
    once = count_fragment_insertions(frags, [chrom], [start], 1, **kwargs)
    weighted = count_fragment_insertions(
        frags, [chrom], [start], 1, drop_duplicates=False, **kwargs
    )
    here = table[(table[0] == chrom) & ((table[1] == start) | (table[2] - 1 == start))]
    assert once[0, 0] == len(here) and weighted[0, 0] == here[4].sum()


def test_fragments_file_errors_name_the_fix(protein_free, tmp_path):
    frags = tmp_path / "f.tsv"
    frags.write_text("chr5\t100\t300\tcellA\t1\n")
    with pytest.raises(InputError, match=r"no fragment belongs to the replicates.*cellA"):
        count_fragment_insertions(frags, ["chr5"], [0], 500, ["rep1"])
    frags.write_text("chr5\t100\t300\trep1\nchr5\t400\t400\trep1\n")
    with pytest.raises(InputError, match=r"fragment 2 \(chr5:400-400\).*half-open"):
        count_fragment_insertions(frags, ["chr5"], [0], 500, ["rep1"])
    frags.write_text("chr5\t100\t300\n")
    with pytest.raises(InputError, match="chrom, start, end, barcode"):
        count_fragment_insertions(frags, ["chr5"], [0], 500, ["rep1"])
    with pytest.raises(InputError, match="either one BAM per replicate .* not both"):
        bias_sets.protein_free_set(
            protein_free / "protein_free" / "regions.bed",
            [protein_free / "protein_free" / "rep1.bam"],
            protein_free / "genome.fa",
            PREPROCESS,
            seed=0,
            out_splits={"train": tmp_path / "t"},
            fragments=frags,
            replicates=REPLICATES,
        )


def test_region_on_a_chromosome_missing_from_the_genome_names_it(tiny, protein_free, tmp_path):
    """PRINT's hg38 regions against the dataset's (mm10) genome: stop, naming the chromosome."""
    with pytest.raises(InputError, match=r"regions.bed, line 1: chromosome 'chr5' is not in .*"):
        bias_sets.protein_free_set(
            protein_free / "protein_free" / "regions.bed",
            [protein_free / "protein_free" / f"{r}.bam" for r in REPLICATES],
            tiny / "genome.fa",
            PREPROCESS,
            seed=0,
            out_splits={"train": tmp_path / "t"},
        )


# --------------------------------------------------------------------------------------------
# Closed-OCR p-values with MACS3
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def macs3_pvalues(tiny, tmp_path_factory) -> tuple[pd.DataFrame, list[str], Path]:
    """MACS3 -log10 p at every OCR summit of the tiny dataset, per cell type, merged."""
    celltypes = list(pd.read_csv(tiny / "truth" / "accessibility.tsv", sep="\t", nrows=0).columns)
    celltypes = celltypes[1:]
    ocrs = read_ocr_table(tiny / "ocrs.csv", celltypes).loc[:, ["peak_id", "chrom", "summit"]]
    out = tmp_path_factory.mktemp("macs3")
    parts = [
        peaks.celltype_pvalues(
            tiny / "bams" / f"{ct}.bam",
            ocrs,
            ct,
            {**PREPROCESS["macs3"], "format": "BAM", "shift": -100, "extsize": 200},
            out / f"{ct}.tsv",
            genome_fai=tiny / "genome.fa.fai",
        )
        for ct in celltypes
    ]
    assert all(len(p) == len(ocrs) for p in parts)
    peaks.merge_pvalues([out / f"{ct}.tsv" for ct in celltypes], celltypes, out / "closed.tsv")
    return ocrs, celltypes, out / "closed.tsv"


def test_macs3_pvalues_separate_planted_closed_from_open_ocrs(tiny, macs3_pvalues):
    """Planted closed = the OCR x cell-type pairs in the lowest quartile of the simulator's
    planted accessibility (truth/accessibility.tsv); planted open = all other pairs. AUC = the
    probability that an open pair has a larger MACS3 -log10 p than a closed one."""
    ocrs, celltypes, table = macs3_pvalues
    neglog = bias_sets.read_closed_pvalues(table, ocrs["peak_id"].tolist(), celltypes)
    truth = pd.read_csv(tiny / "truth" / "accessibility.tsv", sep="\t").set_index("peak_id")
    planted = truth.loc[ocrs["peak_id"], celltypes].to_numpy()
    closed = planted <= np.quantile(planted, 0.25)
    u = mannwhitneyu(neglog[~closed], neglog[closed]).statistic
    auc = u / ((~closed).sum() * closed.sum())
    called_closed = neglog < -np.log10(0.25)
    print(
        f"\nMACS3 on the tiny dataset ({len(ocrs)} OCRs x {len(celltypes)} cell types): AUC "
        f"{auc:.3f} of -log10 p, planted open vs planted closed (lowest quartile); p > 0.25 in "
        f"{called_closed[closed].mean():.0%} of planted-closed and "
        f"{called_closed[~closed].mean():.0%} of planted-open pairs"
    )
    assert auc > 0.9
    assert called_closed[closed].mean() > 5 * called_closed[~closed].mean()


def test_pvalue_table_with_the_immgen_peak_id_header_is_read(tmp_path, macs3_pvalues):
    """A table headed like the OCR table (ImmGen peak ID, chrom, Summit, cell types; CSV or TSV)."""
    ocrs, celltypes, table = macs3_pvalues
    ours = pd.read_csv(table, sep="\t")
    expected = bias_sets.read_closed_pvalues(table, ocrs["peak_id"].tolist(), celltypes)
    immgen = ours.rename(columns={"peak_id": PEAK_ID})
    immgen.insert(1, "chrom", ocrs["chrom"].to_numpy())
    immgen.insert(2, "Summit", ocrs["summit"].to_numpy() + 1)
    for sep, name in (("\t", "immgen.tsv"), (",", "immgen.csv")):
        immgen.to_csv(tmp_path / name, sep=sep, index=False)
        got = bias_sets.read_closed_pvalues(tmp_path / name, ocrs["peak_id"].tolist(), celltypes)
        np.testing.assert_array_equal(got, expected)
    (tmp_path / "bad.tsv").write_text("id\tA\nP1\t0.1\n")
    with pytest.raises(InputError, match="no peak-ID column; name it peak_id or ImmGenATAC1219"):
        bias_sets.read_closed_pvalues(tmp_path / "bad.tsv", ["P1"], ["A"])


def test_macs3_failure_names_the_bam_and_the_command_and_is_logged(tmp_path, caplog):
    bad = tmp_path / "broken.bam"
    bad.write_bytes(b"this is not a BAM file\n")
    with (
        caplog.at_level(logging.INFO),
        pytest.raises(peaks.Macs3Error, match=r"macs3 callpeak on .*broken\.bam: `.*callpeak -t"),
    ):
        peaks.summit_log10p(
            bad, ["chr1"], [100], {**PREPROCESS["macs3"], "genome_size": 100_000}, workdir=tmp_path
        )
    assert "Traceback" in caplog.text  # MACS3's own output went to the log
    assert not list(tmp_path.glob(".macs3.*"))  # its scratch directory is gone


# --------------------------------------------------------------------------------------------
# The rules: downloads through a loopback mirror, MACS3 errors in the rule's log
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_rules_protein_free_from_mirror_and_macs3_errors_in_the_log(
    tiny, protein_free, bam_route, mirror, tmp_path
):
    """source: download with the protein-free genome, fragments and regions fetched from a
    mirror; the dataset's files placed by hand, one cell type's BAM broken."""
    www, url = mirror
    with open(protein_free / "genome.fa", "rb") as src, gzip.open(www / "hg.fa.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    bams = [protein_free / "protein_free" / f"{r}.bam" for r in REPLICATES]
    write_fragments(bams, www / "all.fragments.tsv.gz", "applied", barcodes=REPLICATES)
    shutil.copy(protein_free / "protein_free" / "regions.bed", www / "BACs.bed")

    good, bad = "LTHSC.34-.BM", "GN.BM"
    work = tmp_path / "work"
    res = work / "resources" / "mirror"
    (res / "bams").mkdir(parents=True)
    for name in ("genome.fa", "genome.fa.fai", "ocrs.csv"):
        shutil.copy(tiny / name, res / name)
    for suffix in (".bam", ".bam.bai"):
        shutil.copy(tiny / "bams" / f"{good}{suffix}", res / "bams" / f"{good}{suffix}")
    (res / "bams" / f"{bad}.bam").write_bytes(b"this is not a BAM file\n")
    shutil.copy(tiny / "bams" / f"{good}.bam.bai", res / "bams" / f"{bad}.bam.bai")
    celltypes = read_celltypes(ROOT / "config" / "celltypes.tsv")
    celltypes[celltypes.celltype.isin([good, bad])].to_csv(
        work / "celltypes.tsv", sep="\t", index=False
    )
    config = {
        **TINY,
        "dataset": "mirror",
        "source": "download",
        "celltypes": str(work / "celltypes.tsv"),
        "celltypes_per_lineage": None,
        "figures": [],
        "download": {
            "protein_free_genome_url": f"{url}/hg.fa.gz",
            "protein_free_fragments_url": f"{url}/all.fragments.tsv.gz?download=1",
            "protein_free_regions_url": f"{url}/BACs.bed",
            "protein_free_replicates": REPLICATES,
        },
        "preprocess": {**PREPROCESS, "closed_pvalues": "macs3"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    targets = [
        f"results/mirror/data/bias_sets/protein_free/{s}/{f}"
        for s in BIAS_SET_SPLITS["protein_free"]
        for f in ("seq.npy", "profile.npy", "windows.tsv")
    ] + ["results/mirror/data/closed_pvalues.tsv"]
    proc = subprocess.run(
        ["snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
         "--directory", str(work), "--configfile", str(work / "config.yaml"),
         "--cores", "2", "--keep-going", *targets],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode != 0  # the broken BAM fails its MACS3 job
    _assert_same_bias_set(_bias_set(work / "results/mirror/data/bias_sets/protein_free"), bam_route)
    assert (res / "protein_free" / "genome.fa.fai").exists()  # its own genome, indexed
    log = (work / "logs/mirror/preprocess" / f"closed_pvalues_{bad}.log").read_text()
    assert f"macs3 callpeak on resources/mirror/bams/{bad}.bam" in log, log
    assert "failed with exit status" in log and "struct.error" in log, log  # MACS3's stderr
    assert (work / "results/mirror/data/closed_pvalues" / f"{good}.tsv").exists()
    assert not (work / "results/mirror/data/closed_pvalues.tsv").exists()
