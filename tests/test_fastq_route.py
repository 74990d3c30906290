"""The FASTQ route end to end: a simulated ENA mirror (bpaitac.simulate.mirror) served on a
loopback HTTP server with Range support, and `source: download` with `download.reads: fastq`
from the file report to the training arrays. The insertions of the arrays built from aligned
reads are compared with those of the simulator's own BAMs.

Three cell types of the tiny simulation with 1, 3 and 2 replicate runs (as LTHSC.34-.BM, B.Fo.Sp
and GN.BM have in ImmGen), plus the file report's foreign run, which must never be fetched.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import pytest
import yaml
from conftest import RangeHandler

from bpaitac.data.arrays import profile_starts
from bpaitac.data.insertions import ReadFilter, count_insertions
from bpaitac.data.runs import REPORT_COLUMNS, parse_file_report, read_run_table
from bpaitac.io import InputError, read_celltypes
from bpaitac.simulate import SimulateConfig, simulate_dataset
from bpaitac.simulate import mirror as sim_mirror
from bpaitac.simulate.fastq import fragments_from_bam, insertions_of_molecule, parse_read_name
from bpaitac.workflow.config import load_config

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TINY = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
CELLTYPES = ["LTHSC.34-.BM", "B.Fo.Sp", "GN.BM"]  # table order
REPLICATES = "1,3,2"
SEED = 3
DATASET = "fq"
SPLITS = ("train", "val", "test")
TOOLS = ("bowtie2", "bowtie2-build", "samtools", "cutadapt")


def _have(name: str) -> bool:
    return bool(shutil.which(name) or (BIN / name).exists())


# --------------------------------------------------------------------------------------------
# Pure functions of the mirror (fast)
# --------------------------------------------------------------------------------------------


def test_ena_paths_and_run_plan():
    assert sim_mirror.ena_fastq_path("SRR5799381", 1) == (
        "vol1/fastq/SRR579/001/SRR5799381/SRR5799381_1.fastq.gz"
    )
    assert (
        sim_mirror.ena_fastq_path("SRR123456", 2)
        == "vol1/fastq/SRR123/SRR123456/SRR123456_2.fastq.gz"
    )
    assert sim_mirror.ena_fastq_path("ERR12345678", 1).startswith("vol1/fastq/ERR123/078/")
    assert sim_mirror.ena_fastq_path("SRR123456789", 1).startswith("vol1/fastq/SRR123/789/")
    plan = sim_mirror.run_plan(["A", "B", "C", "D"], sim_mirror.parse_replicates("1,3,2"))
    assert [(r.run, r.title) for r in plan[:2]] == [("SRR5799381", "A#1"), ("SRR5799382", "B#1")]
    assert Counter(r.celltype for r in plan) == {"A": 1, "B": 3, "C": 2, "D": 1}
    assert len({r.run for r in plan}) == len(plan) == 7
    with pytest.raises(InputError, match="--replicates '0,x'.*e.g. 1,2,3"):
        sim_mirror.parse_replicates("0,x")


# --------------------------------------------------------------------------------------------
# The route (slow: simulation, bowtie2, Snakemake)
# --------------------------------------------------------------------------------------------

needs_tools = pytest.mark.skipif(
    not all(_have(t) for t in TOOLS),
    reason="needs bowtie2, samtools (make system-deps) and cutadapt (pip)",
)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    """The tiny simulation restricted to CELLTYPES (fewer protein-free fragments: unused)."""
    out = tmp_path_factory.mktemp("sim")
    cfg = SimulateConfig.from_dict({**TINY["simulate"], "protein_free_fragments": 2000})
    table = read_celltypes(ROOT / "config" / "celltypes.tsv")
    table = table[table["celltype"].isin(CELLTYPES)].reset_index(drop=True)
    simulate_dataset(cfg, table, seed=0, outdir=out, threads=1)
    return out


@pytest.fixture(scope="module")
def served(simulated, tmp_path_factory):
    """The mirror written by the command line, served with HTTP Range on 127.0.0.1."""
    root = tmp_path_factory.mktemp("ena")
    code = sim_mirror.main(
        ["--resources", str(simulated), "--out", str(root), "--replicates", REPLICATES,
         "--seed", str(SEED)]
    )  # fmt: skip
    assert code == 0
    handler = functools.partial(RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.cut = [], set()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", server.requests
    server.shutdown()


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
         "--directory", str(work), "--configfile", str(work / "config.yaml"), *args],
        env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def route(served, tmp_path_factory) -> dict:
    """`source: download`, `reads: fastq` against the mirror, up to the training arrays and the
    QC table; also the dry-run of the default target before it."""
    root, url, requests = served
    work = tmp_path_factory.mktemp("work")
    table = read_celltypes(ROOT / "config" / "celltypes.tsv")
    table[table["celltype"].isin(CELLTYPES)].to_csv(work / "celltypes.tsv", sep="\t", index=False)
    mirror_cfg = sim_mirror.download_config(url, root, [])
    config = {
        **TINY,
        "dataset": DATASET,
        "source": "download",
        "celltypes": str(work / "celltypes.tsv"),
        "celltypes_per_lineage": None,
        "figures": [],
        "variants": {**TINY["variants"], "path": None},  # the simulator's truth variants: none here
        "download": {**mirror_cfg["download"], "fastq_retries": 2},
        "align": {**mirror_cfg["align"], "threads": 1},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry = _snakemake(work, "-n", "--cores", "2")
    targets = [
        f"results/{DATASET}/data/{s}/{f}"
        for s in SPLITS
        for f in ("seq.npy", "profile.npy", "counts.npy", "ocrs.tsv", "celltypes.txt")
    ] + [f"results/{DATASET}/align/qc.tsv", f"results/{DATASET}/align/qc.pdf"]
    proc = _snakemake(work, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return {"work": work, "dry": dry, "root": root, "requests": list(requests)}


@needs_tools
@pytest.mark.slow
def test_mirror_has_enas_layout_and_report_format(simulated, served):
    root, _, _ = served
    lines = (root / "filereport.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == list(REPORT_COLUMNS)
    rows = [dict(zip(REPORT_COLUMNS, line.split("\t"), strict=True)) for line in lines[1:]]
    assert len(rows) == 6 + 1 and rows[-1]["run_accession"] == sim_mirror.FOREIGN_RUN
    assert "/" in rows[-1]["sample_title"] and not rows[-1]["sample_title"].isascii()
    for row in rows:
        paths = row["fastq_ftp"].split(";")
        assert len(paths) == 2 and all(p.startswith("ftp.sra.ebi.ac.uk/vol1/fastq/") for p in paths)
        for path, md5, size in zip(
            paths, row["fastq_md5"].split(";"), row["fastq_bytes"].split(";")
        ):
            data = (root / path.split("/", 1)[1]).read_bytes()
            assert hashlib.md5(data).hexdigest() == md5 and len(data) == int(size)
        with gzip.open(root / paths[0].split("/", 1)[1], "rt") as fh:
            n_records = sum(1 for _ in fh) // 4
        assert n_records == int(row["read_count"]) and row["library_layout"] == "PAIRED"
    celltypes = read_celltypes(ROOT / "config" / "celltypes.tsv")
    runs = parse_file_report(root / "filereport.tsv", celltypes)
    assert runs.groupby("celltype").size().to_dict() == {
        "LTHSC.34-.BM": 1,
        "B.Fo.Sp": 3,
        "GN.BM": 2,
    }
    for name in ("genome.fa.gz", "ocrs.csv", "chrM.fa", "runs_truth.tsv"):
        assert (root / name).stat().st_size > 0
    with gzip.open(root / "genome.fa.gz", "rb") as fh:
        assert fh.read() == (simulated / "genome.fa").read_bytes()


@needs_tools
@pytest.mark.slow
def test_default_target_includes_the_alignment_qc(route):
    dry = route["dry"]
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dry.stdout + dry.stderr
    assert "alignment_qc" in jobs and "download_run_table" in jobs


@needs_tools
@pytest.mark.slow
def test_foreign_run_skipped_and_never_fetched(route):
    runs = read_run_table(route["work"] / "resources" / DATASET / "runs.tsv")
    truth = pd.read_csv(route["root"] / "runs_truth.tsv", sep="\t")
    assert sorted(runs["run"]) == sorted(truth["run"])
    fetched = [path for path, _ in route["requests"]]
    assert not any(sim_mirror.FOREIGN_RUN in p for p in fetched)
    for run in truth["run"]:
        assert sum(run in p for p in fetched) == 2  # R1 and R2, once each
    log = (route["work"] / "logs" / DATASET / "download" / "runs.log").read_text(encoding="utf-8")
    assert f"run {sim_mirror.FOREIGN_RUN} skipped" in log


@needs_tools
@pytest.mark.slow
def test_qc_table_has_one_row_per_run(route):
    qc = pd.read_csv(route["work"] / "results" / DATASET / "align" / "qc.tsv", sep="\t")
    truth = pd.read_csv(route["root"] / "runs_truth.tsv", sep="\t").set_index("run")
    assert sorted(qc["run"]) == sorted(truth.index) and qc["run"].is_unique
    qc = qc.set_index("run")
    assert (qc["read_pairs"] == truth.loc[qc.index, "pairs"]).all()
    assert (qc["aligned_pct"] > 90).all() and (qc["chrm_pct"] > 0).all()
    expected_dup = 100 * truth["duplicates"] / truth["pairs"]
    assert np.allclose(qc["duplicate_pct"], expected_dup.loc[qc.index], atol=2.5)
    assert (route["work"] / "results" / DATASET / "align" / "qc.pdf").stat().st_size > 1000


@needs_tools
@pytest.mark.slow
def test_merged_bams_hold_every_replicate_without_duplicates_or_chrm(route):
    truth = pd.read_csv(route["root"] / "runs_truth.tsv", sep="\t")
    for celltype in CELLTYPES:
        bam = route["work"] / "resources" / DATASET / "bams" / f"{celltype}.bam"
        assert Path(f"{bam}.bai").exists()
        with pysam.AlignmentFile(str(bam)) as fh:
            reads = list(fh.fetch(until_eof=True))
        assert reads and not any(a.reference_name == "chrM" or a.is_duplicate for a in reads)
        # one kept pair per molecule and run (PCR duplicates and their originals collapse)
        pairs = Counter(
            (a.query_name.split(":")[0], *parse_read_name(a.query_name)[:3]) for a in reads
        )
        assert set(pairs.values()) == {2}
        assert not any(parse_read_name(a.query_name)[0] == "chrM" for a in reads)
        runs = {a.query_name.split(":")[0] for a in reads}
        assert runs == set(truth.loc[truth["celltype"] == celltype, "run"])


def _window_insertions(
    frags: pd.DataFrame, chroms: np.ndarray, starts: np.ndarray, width: int
) -> np.ndarray:
    """Per-base insertions of fragments (``chrom``, ``start``, ``end``: molecules) in windows
    ``[start, start + width)``, with the Tn5 convention of :mod:`bpaitac.simulate.fastq`."""
    out = np.zeros((len(starts), width), np.int64)
    for chrom, group in frags.groupby("chrom"):
        left, right = insertions_of_molecule(group["start"].to_numpy(), group["end"].to_numpy())
        pos = np.sort(np.concatenate([left, right]))
        for i in np.flatnonzero(chroms == chrom):
            lo, hi = np.searchsorted(pos, [starts[i], starts[i] + width])
            np.add.at(out[i], pos[lo:hi] - starts[i], 1)
    return out


def _run_molecules(root: Path, runs: list[str]) -> pd.DataFrame:
    """The nuclear molecules of ``runs`` read back from the mirror's FASTQ names, each once per
    run (what per-run duplicate removal leaves), concatenated over the runs."""
    mols = set()
    for run in runs:
        with gzip.open(root / sim_mirror.ena_fastq_path(run, 1), "rt") as fh:
            for i, line in enumerate(fh):
                if i % 4 == 0:
                    chrom, start, end, _ = parse_read_name(line[1:].strip())
                    if chrom != "chrM":
                        mols.add((run, chrom, start, end))
    return pd.DataFrame(sorted(mols), columns=["run", "chrom", "start", "end"])


def _recovery(route, simulated) -> dict[str, float]:
    """Per-base insertions of the training arrays (aligned route) against those the same
    profile windows hold in the simulator's BAMs (``bam``, as the preprocessing counts them)
    and in the molecules of each run once (``distinct``, what per-run duplicate removal can
    leave: identical fragments of one run are indistinguishable from PCR duplicates): shares
    found at the same base and extra, and the share of OCR x cell-type totals that are equal."""
    data = route["work"] / "results" / DATASET / "data"
    pre = load_config(ROOT / "config" / "tiny.yaml")["preprocess"]
    window, width = pre["window"], pre["profile_width"]
    sums = Counter()
    truth_runs = pd.read_csv(route["root"] / "runs_truth.tsv", sep="\t")
    for split in SPLITS:
        ocrs = pd.read_csv(data / split / "ocrs.tsv", sep="\t")
        celltypes = (data / split / "celltypes.txt").read_text().split()
        observed = np.load(data / split / "profile.npy").astype(np.int64)
        assert observed.shape == (len(ocrs), len(celltypes), width) and celltypes == CELLTYPES
        chroms = ocrs["chrom"].to_numpy(object)
        starts = profile_starts(ocrs["summit"].to_numpy(), window, width)
        for k, celltype in enumerate(celltypes):
            bam = simulated / "bams" / f"{celltype}.bam"
            frags = fragments_from_bam(bam)
            in_bam = count_insertions(bam, chroms, starts, width, ReadFilter.from_config(pre))
            np.testing.assert_array_equal(_window_insertions(frags, chroms, starts, width), in_bam)
            truth = {
                "bam": in_bam.astype(np.int64),
                "distinct": _window_insertions(
                    _run_molecules(
                        route["root"], list(truth_runs.loc[truth_runs.celltype == celltype, "run"])
                    ),
                    chroms,
                    starts,
                    width,
                ),
            }
            obs = observed[:, k]
            for name, expected in truth.items():
                sums[f"{name}_found"] += np.minimum(obs, expected).sum()
                sums[f"{name}_extra"] += np.maximum(obs - expected, 0).sum()
                sums[f"{name}_total"] += expected.sum()
                sums[f"{name}_equal"] += (obs.sum(1) == expected.sum(1)).sum()
            sums["windows"] += len(ocrs)
    out = {"insertions": sums["bam_total"], "distinct_insertions": sums["distinct_total"]}
    for name in ("bam", "distinct"):
        out[f"{name}_found"] = sums[f"{name}_found"] / sums[f"{name}_total"]
        out[f"{name}_extra"] = sums[f"{name}_extra"] / sums[f"{name}_total"]
        out[f"{name}_equal_totals"] = sums[f"{name}_equal"] / sums["windows"]
    return out


@needs_tools
@pytest.mark.slow
def test_training_arrays_hold_the_simulated_insertions(route, simulated):
    """The simulator's BAMs hold some identical fragments (two Tn5 pairs at the same bases),
    which no pipeline can tell from PCR duplicates: when they fall into the same run markdup
    keeps one, so against the BAMs as they are ~2 % of the insertions are missing; against
    each run's distinct molecules >= 99 % are found at the same base (the rest: mostly short
    molecules whose adapter read-through carries an error, which cutadapt then misses)."""
    r = _recovery(route, simulated)
    print(
        f"\nFASTQ route vs simulator, per base in the profile windows: distinct molecules per run "
        f"{r['distinct_found']:.3%} of {r['distinct_insertions']} insertions found, "
        f"{r['distinct_extra']:.3%} extra, {r['distinct_equal_totals']:.1%} of OCR x cell-type "
        f"totals identical; simulator BAMs as they are {r['bam_found']:.3%} of "
        f"{r['insertions']} found, {r['bam_extra']:.3%} extra, {r['bam_equal_totals']:.1%} "
        "identical totals"
    )
    assert r["distinct_found"] >= 0.99 and r["distinct_extra"] <= 0.005
    assert r["bam_found"] >= 0.95 and r["bam_extra"] <= 0.005
    data = route["work"] / "results" / DATASET / "data"
    for split in SPLITS:
        seq, counts = np.load(data / split / "seq.npy"), np.load(data / split / "counts.npy")
        assert seq.shape[1] == TINY["preprocess"]["window"] and counts.shape == (len(seq), 3)
