"""Bad inputs end in an error naming the file (or config key), the problem and the fix, before any
model is trained on them, and leave nothing half-written (issue 22; docs/reliability.md lists
the cases). The checkpoint cases are in tests/test_train.py, the cell-type aliases in
tests/test_runs.py."""

from __future__ import annotations

import gzip
import http.server
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pysam
import pytest
from test_dataset import CELLTYPES, CFG, OCRS, _random_dna, write_bam, write_ocr_table

from bpaitac.data import arrays, bias_sets
from bpaitac.data.download import copy_or_fetch, fetch
from bpaitac.data.insertions import count_insertions, ensure_bam_index
from bpaitac.data.ocr_table import read_ocr_table
from bpaitac.data.runs import REPORT_COLUMNS, parse_file_report
from bpaitac.io import ConfigError, InputError, read_celltypes
from bpaitac.workflow.config import validate_config
from bpaitac.workflow.splits import SPLITS

ROOT = Path(__file__).resolve().parent.parent
LENGTHS = {"chr1": 20_000, "chr11": 6000, "chr12": 6000}


def leftovers(directory: Path) -> list[str]:
    """Temporary files (atomic writes are dot-files next to their target) left in a tree."""
    return sorted(p.name for p in directory.rglob(".*") if p.is_file())


@pytest.fixture()
def genome(tmp_path) -> Path:
    """A fresh indexed genome per test (tests edit it)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "genome" / "genome.fa"
    path.parent.mkdir()
    path.write_text("".join(f">{c}\n{_random_dna(rng, n)}\n" for c, n in LENGTHS.items()))
    pysam.faidx(str(path))
    return path


def split_outputs(root: Path) -> dict:
    return {s: (root / s / "seq.npy", root / s / "ocrs.tsv") for s in SPLITS}


def prepare(table: Path, genome: Path, out: Path, cfg=CFG) -> None:
    arrays.prepare_ocrs(table, genome, CELLTYPES, cfg, out / "ocrs_all.tsv", split_outputs(out))


def assert_no_outputs(out: Path) -> None:
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def reads_at_ocrs(n: int = 20) -> list[tuple[str, int, bool]]:
    return [(c, s - 1 + k, k % 2 == 0) for _, c, s in OCRS if s > 600 for k in range(n)]


# ----------------------------------------------------------------------- BAMs and insertions


@pytest.mark.parametrize("case", ["no_reads", "all_filtered"])
def test_a_bam_without_insertions_is_refused(tmp_path, genome, case):
    data = tmp_path / "data"
    prepare(write_ocr_table(tmp_path / "ocrs.csv"), genome, data)
    reads = [] if case == "no_reads" else reads_at_ocrs()
    bam = write_bam(tmp_path / "B.Fr.E.BM.bam", LENGTHS, reads)
    cfg = {**CFG, "min_mapq": 61} if case == "all_filtered" else CFG  # the reads have MAPQ 60
    out = data / "insertions" / "B.Fr.E.BM.npy"
    with pytest.raises(
        InputError, match=r"B\.Fr\.E\.BM\.bam: no Tn5 insertion in any of the 7 OCR"
    ):
        arrays.count_ocr_insertions(bam, data / "ocrs_all.tsv", genome, cfg, out)
    assert not out.exists() and leftovers(data) == []


def test_a_bam_index_older_than_or_not_of_its_bam_is_refused(tmp_path):
    bam = write_bam(tmp_path / "x.bam", LENGTHS, reads_at_ocrs())
    old_index = Path(f"{bam}.bai").read_bytes()
    write_bam(tmp_path / "x.bam", {"chr1": 20_000}, reads_at_ocrs(2)[:3])  # replaced, reindexed
    Path(f"{bam}.bai").write_bytes(old_index)  # ... and the old index put back
    os.utime(bam, (1e9 + 10, 1e9 + 10))
    os.utime(f"{bam}.bai", (1e9, 1e9))
    with pytest.raises(InputError, match=r"x\.bam\.bai: the index is older than .*samtools index"):
        ensure_bam_index(bam)
    os.utime(f"{bam}.bai", (1e9 + 20, 1e9 + 20))  # copied later: the dates do not tell
    with pytest.raises(InputError, match=r"x\.bam\.bai: indexes 3 reference\(s\) but .* has 1"):
        count_insertions(bam, ["chr1"], [0], 100, arrays.ReadFilter.from_config(CFG))


@pytest.mark.parametrize("case", ["empty", "truncated"])
def test_raw_pysam_errors_name_the_bam(tmp_path, case):
    bam = write_bam(tmp_path / "x.bam", LENGTHS, reads_at_ocrs(200))
    data = bam.read_bytes()
    bam.write_bytes(b"" if case == "empty" else data[: len(data) // 2])
    os.utime(f"{bam}.bai")  # the index stays newer
    pattern = "file does not contain alignment" if case == "empty" else "no BGZF EOF marker"
    with pytest.raises(
        InputError, match=rf"x\.bam: not a readable BAM file \({pattern}.*quickcheck"
    ):
        count_insertions(bam, ["chr1"], [0], 100, arrays.ReadFilter.from_config(CFG))


# ----------------------------------------------------------------------------- the genome


def test_a_stale_fasta_index_is_refused(tmp_path, genome):
    table, out = write_ocr_table(tmp_path / "ocrs.csv"), tmp_path / "data"
    text = genome.read_text().splitlines()
    text[1] = text[1][:-7]  # chr1 loses 7 bases: every later sequence moves
    genome.write_text("\n".join(text) + "\n")
    fai = Path(f"{genome}.fai")
    os.utime(fai, (1e9, 1e9))
    with pytest.raises(InputError, match=r"genome\.fa\.fai: the index is older than .*faidx"):
        prepare(table, genome, out)
    os.utime(fai)  # a touched index: the dates do not tell, its offsets do
    with pytest.raises(InputError, match=r"fai, line 2: sequence 'chr11' is not where the index"):
        prepare(table, genome, out)
    assert_no_outputs(out)


# ----------------------------------------------------------------------------- the OCR table


def test_a_summit_past_its_chromosome_end_is_refused(tmp_path, genome):
    table = write_ocr_table(tmp_path / "ocrs.csv", ocrs=[*OCRS, ("P10", "chr12", 6001)])
    with pytest.raises(
        InputError, match=r"ocrs\.csv, line 11: Summit 6001 lies past the end of chr12"
    ):
        prepare(table, genome, tmp_path / "data")
    assert_no_outputs(tmp_path / "data")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "-1"])
def test_a_non_finite_or_negative_signal_is_refused(tmp_path, genome, value):
    table = write_ocr_table(tmp_path / "ocrs.csv")
    lines = table.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + f",{value}"  # last cell type of line 4
    table.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError, match=rf"ocrs\.csv, line 4, column 'DC.4\+.Sp': '{value}(\.0)?' is not a finite"
    ):
        prepare(table, genome, tmp_path / "data")
    assert_no_outputs(tmp_path / "data")
    if value in ("nan", "inf"):
        return  # a closed -log10 p may be missing (not closed) or inf (p = 0)
    pvalues = tmp_path / "p.tsv"
    pvalues.write_text(f"peak_id\tA\nP1\t0.5\nP2\t{value}\n")
    with pytest.raises(InputError, match=rf"p\.tsv, line 3, column 'A': '{value}(\.0)?' is not a"):
        bias_sets.read_closed_pvalues(pvalues, ["P1", "P2"], ["A"])


def test_duplicate_loci_are_merged_and_counted(tmp_path, genome, caplog):
    table = write_ocr_table(tmp_path / "ocrs.csv", ocrs=[*OCRS, ("P10", "chr1", 2001)])
    with caplog.at_level(logging.WARNING):
        prepare(table, genome, tmp_path / "data")
    assert (
        "1 OCR(s) share their locus with an earlier line and are merged into it (dropped), e.g. "
        "line 2 (P1) and line 11 (P10) both at chr1:2001" in caplog.text
    )
    kept = arrays.read_ocrs_tsv(tmp_path / "data" / "ocrs_all.tsv")
    assert "P10" not in set(kept["peak_id"]) and "P1" in set(kept["peak_id"])


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    table = write_ocr_table(tmp_path / "ocrs.csv")
    plain = read_ocr_table(table, CELLTYPES)
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())  # as spreadsheet programs save
    assert read_ocr_table(table, CELLTYPES).equals(plain)
    cells = tmp_path / "celltypes.tsv"
    cells.write_bytes(b"\xef\xbb\xbfcelltype\tlineage\torgan\nB.Sp\tB\tspleen\n")
    assert list(read_celltypes(cells)["celltype"]) == ["B.Sp"]


# ----------------------------------------------------------------------------- splits


def test_a_split_chromosome_matching_nothing_is_refused(tmp_path, genome):
    table, out = write_ocr_table(tmp_path / "ocrs.csv"), tmp_path / "data"
    cfg = {**CFG, "splits": {"test": ["chrX"], "val": ["chr12"]}}
    with pytest.raises(
        InputError,
        match=r"config key `preprocess.splits.test`: chrX matches no chromosome of the 7 OCRs "
        r"of .*ocrs\.csv kept after filtering \(they are on chr1, chr11, chr12\)",
    ):
        prepare(table, genome, out, cfg)
    cfg = {**CFG, "splits": {"test": ["chr11"], "val": []}}
    with pytest.raises(InputError, match=r"the val split\(s\) of .* would be empty"):
        prepare(table, genome, out, cfg)
    assert_no_outputs(out)


def test_overlapping_splits_are_refused_when_the_config_is_read():
    config = {"dataset": "t", "source": "simulate", "celltypes": "config/celltypes.tsv"}
    config["preprocess"] = {"splits": {"test": ["chr11", "chr16"], "val": ["chr16"]}}
    with pytest.raises(
        ConfigError, match="config key `preprocess.splits`: chr16 listed as both test and val"
    ):
        validate_config(config)


def test_snakemake_reports_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        f"dataset: t\nsource: simulate\ncelltypes: {ROOT / 'config/celltypes.tsv'}\ndevice: tpu\n"
    )
    proc = subprocess.run(
        [Path(sys.executable).parent / "snakemake", "-n", "--configfile", bad, "-d", tmp_path],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "config key `device`: 'tpu' is not allowed; allowed values: cpu, cuda, auto." in output
    assert len(output.splitlines()) < 15  # snakemake's validate printed the whole schema


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name", ["../../../../tmp/evil_ct", "B/Sp", ".B.Sp", "-B.Sp", "B..Sp", "B Sp", "B.Sp;rm"]
)
def test_unsafe_celltype_names_are_refused(tmp_path, name):
    table = tmp_path / "celltypes.tsv"
    table.write_text(f"celltype\tlineage\torgan\nB.Fo.Sp\tB\tspleen\n{name}\tB\tspleen\n")
    with pytest.raises(
        InputError, match=r"celltypes\.tsv, line 3: cell type .* is not a valid name; use letters"
    ):
        read_celltypes(table)
    table.write_text(f"celltype\tlineage\torgan\taliases\nB.Fo.Sp\tB\tspleen\tB.Fo,{name}\n")
    with pytest.raises(InputError, match=r"celltypes\.tsv, line 2: alias .* is not a valid name"):
        read_celltypes(table)


def test_the_shipped_celltype_names_are_all_safe():
    assert len(read_celltypes(ROOT / "config" / "celltypes.tsv")) == 90


def test_unsafe_replicate_names_are_refused():
    config = {"dataset": "t", "source": "download", "celltypes": "config/celltypes.tsv"}
    config["download"] = {"protein_free_replicates": ["rep1", "../rep2"]}
    with pytest.raises(
        ConfigError, match=r"`download.protein_free_replicates\[1\]`: replicate '../rep2' is not"
    ):
        validate_config(config)


# ----------------------------------------------------------------------------- downloads


class UnframedHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.0 responses without Content-Length (the end of the body is the connection's
    close); a path in ``server.cut`` sends only the part of its body up to ``server.cut[path]``
    bytes, rounded down to a line end for text: a cut that leaves a valid, shorter table."""

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.server.root) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        if self.path in self.server.cut:
            body = body[: self.server.cut[self.path]]
            if path.suffix in (".csv", ".tsv"):
                body = body[: body.rfind(b"\n") + 1]
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def unframed(tmp_path):
    """Serve tmp_path/unframed without Content-Length; yields (root, base URL, cut dict)."""
    root = tmp_path / "unframed"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), UnframedHandler)
    server.root, server.cut = str(root), {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}", server.cut
    server.shutdown()


def test_a_download_without_content_length_is_verified_or_refused(tmp_path, unframed):
    root, url, cut = unframed
    out = tmp_path / "out"
    table = write_ocr_table(root / "ocrs.csv")
    cut["/ocrs.csv"] = table.stat().st_size // 2  # cut on a line boundary: a valid shorter table
    with pytest.raises(InputError, match=r"ocrs\.csv: the server sent neither a Content-Length"):
        fetch(f"{url}/ocrs.csv", out / "ocrs.csv", field="download.ocr_table_url", retries=1)
    (root / "genome.fa.gz").write_bytes(gzip.compress(b">chr1\n" + b"ACGT" * 5000 + b"\n"))
    got = fetch(f"{url}/genome.fa.gz", out / "genome.fa", gunzip=True)  # whole: gzip's end seen
    assert got.read_bytes().startswith(b">chr1\nACGT")
    got = fetch(f"{url}/genome.fa.gz", out / "kept.fa.gz", gunzip=False)
    assert got.read_bytes() == (root / "genome.fa.gz").read_bytes()
    cut["/genome.fa.gz"] = 40
    for gunzip, name in ((True, "genome.fa"), (False, "kept.fa.gz")):
        (out / name).unlink()
        with pytest.raises(InputError, match="could not download .*genome.fa.gz"):
            fetch(f"{url}/genome.fa.gz", out / name, gunzip=gunzip, retries=1)
    bam = write_bam(root / "x.bam", LENGTHS, reads_at_ocrs(200))
    fetch(f"{url}/x.bam", out / "x.bam")  # whole: ends with the BGZF end-of-file block
    (out / "x.bam").unlink()
    cut["/x.bam"] = bam.stat().st_size - 10
    with pytest.raises(InputError, match="without the BGZF end-of-file block"):
        fetch(f"{url}/x.bam", out / "x.bam", retries=1)
    fetch(f"{url}/x.bam.bai", out / "x.bam.bai")  # whole: a BAI parses to its end
    cut["/x.bam.bai"] = 30
    with pytest.raises(InputError, match="truncated or corrupt BAI"):
        fetch(f"{url}/x.bam.bai", out / "y.bam.bai", retries=1)
    assert sorted(p.name for p in out.iterdir()) == ["x.bam.bai"]  # nothing else written


def test_url_schemes_are_constrained(tmp_path):
    dest = tmp_path / "out.csv"
    for url in ("data:text/plain,peak", "javascript:alert(1)", "gopher://h/x", "ocrs.csv"):
        with pytest.raises(
            InputError, match=r"download.ocr_table_url: .* is not an allowed source"
        ):
            fetch(url, dest, field="download.ocr_table_url")
    assert not dest.exists()


def test_a_missing_file_source_fails_at_once(tmp_path, caplog):
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(
            InputError, match=r"download.genome_url: file:///no/such/genome.fa does not exist"
        ),
    ):
        fetch("file:///no/such/genome.fa", tmp_path / "genome.fa", field="download.genome_url")
    assert "attempt" not in caplog.text  # not retried as if transient


def test_a_file_report_may_not_point_at_local_files(tmp_path):
    report = tmp_path / "report.tsv"
    md5 = "0" * 32
    urls = "file:///etc/hostname;ftp.sra.ebi.ac.uk/vol1/x_2.fastq.gz"
    line = ["SRR5799381", "LTHSC.34-.BM#1", "PAIRED", "10", "1000", urls, f"{md5};{md5}", "1;1"]
    report.write_text("\t".join(REPORT_COLUMNS) + "\n" + "\t".join(line) + "\n")
    with pytest.raises(
        InputError,
        match=r"report\.tsv, line 2, column `fastq_ftp`: 'file:///etc/hostname' is not an "
        r"allowed source \(scheme 'file'\); use a https, http, ftp URL \(a remote file report",
    ):
        parse_file_report(report, read_celltypes(ROOT / "config" / "celltypes.tsv"))
    with pytest.raises(InputError, match=r"`download.fastq_mirror`: 'data:,x' is not an allowed"):
        parse_file_report(report, read_celltypes(ROOT / "config" / "celltypes.tsv"), "data:,x")


def test_local_copies_name_the_config_key(tmp_path):
    with pytest.raises(InputError, match=r"no/report.tsv: download.run_table_url not found"):
        copy_or_fetch(str(tmp_path / "no" / "report.tsv"), tmp_path / "r.tsv",
                      field="download.run_table_url")  # fmt: skip
    assert not (tmp_path / "r.tsv").exists()
