"""ENA's run table and the FASTQ downloads (bpaitac.data.runs, bpaitac.data.download.fetch_run), the
cell-type aliases, and the two rules, against a loopback HTTP server with Range support."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from bpaitac.data.download import fetch, fetch_run, fetch_verified, partial_path
from bpaitac.data.runs import (
    REPORT_COLUMNS,
    RUN_COLUMNS,
    apply_mirror,
    build_run_table,
    parse_file_report,
    read_run_table,
    runs_of,
    split_title,
)
from bpaitac.io import CellTypeNames, InputError, alias_map, read_celltypes

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENA = "ftp.sra.ebi.ac.uk/vol1/fastq"
# The skipped run: a title with '/' and non-ASCII (like SRR8186433-6's "Rorc(γt)").
FOREIGN_TITLE = "ILC3.Rorc(γt)+/CCR6+.SI#1"
# (run, sample title as ENA spells it) -> replicates 1, 2, 3 and 4, three of them via aliases
SAMPLES = [
    ("SRR5799381", "LTHSC.34-.BM#1"),
    ("SRR5799385", "MMP3.48+.BM#1"),
    ("SRR5799386", "MMP3.48+.BM#2"),
    ("SRR5799401", "B.Fo.Sp#1"),
    ("SRR5799402", "B.Fo.Sp#2"),
    ("SRR5799403", "B.Fo.Sp#3"),
    ("SRR5799501", "MF.ICAM+480hi.PC#2"),
    ("SRR5799500", "MF.ICAM+480hi.PC#1"),
    ("SRR5799502", "MF.ICAM+480hi.PC#3"),
    ("SRR5799503", "MF.ICAM+480hi.PC#4"),
    ("SRR5799510", "MF.SI.LP#1"),
    ("SRR5799511", "T8.IEL.LCMV.d7.Gut#1"),
    ("SRR8186433", FOREIGN_TITLE),
]
CELLTYPES = [
    "LTHSC.34-.BM",
    "MPP3.48+.BM",
    "B.Fo.Sp",
    "MF.ICAM+480hi.PC",
    "MF.LP.SI",
    "T8.IEL.LCMV.d7.SI",
]


def fastq_gz(seed: int, reads: int = 400, length: int = 50) -> bytes:
    """A small gzipped FASTQ of random reads."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(reads):
        seq = "".join(rng.choice(list("ACGT"), length))
        lines.append(f"@r{seed}.{i}\n{seq}\n+\n{'I' * length}\n")
    return gzip.compress("".join(lines).encode(), mtime=0)


def fastq_path(run: str, mate: int) -> str:
    """ENA's path of a run's FASTQ (without host): vol1/fastq/SRR579/001/SRR5799381/..._1."""
    return f"{run[:6]}/{int(run[-3:]) % 10:03d}/{run}/{run}_{mate}.fastq.gz"


def report_line(run: str, title: str, files: list[bytes], layout: str = "PAIRED") -> str:
    """One line of ENA's read_run file report for a run whose FASTQs are ``files``."""
    paths = ";".join(f"{ENA}/{fastq_path(run, m)}" for m in range(1, len(files) + 1))
    md5s = ";".join(hashlib.md5(f).hexdigest() for f in files)
    sizes = ";".join(str(len(f)) for f in files)
    return f"{run}\t{title}\t{layout}\t400\t40000\t{paths}\t{md5s}\t{sizes}\n"


def write_report(path: Path, samples=SAMPLES, **override_lines) -> dict[str, list[bytes]]:
    """Write a file report for ``samples``; returns run -> [R1 bytes, R2 bytes]."""
    fastqs = {run: [fastq_gz(2 * i), fastq_gz(2 * i + 1)] for i, (run, _) in enumerate(samples)}
    lines = ["\t".join(REPORT_COLUMNS) + "\n"]
    for run, title in samples:
        lines.append(override_lines.get(run) or report_line(run, title, fastqs[run]))
    path.write_text("".join(lines), encoding="utf-8")
    return fastqs


@pytest.fixture()
def celltypes(tmp_path) -> pd.DataFrame:
    """The six cell types of SAMPLES from config/celltypes.tsv (with its aliases)."""
    table = read_celltypes(ROOT / "config" / "celltypes.tsv")
    return table[table["celltype"].isin(CELLTYPES)].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# The cell-type table's aliases
# --------------------------------------------------------------------------------------------


# Spellings of the other real tables (issue 21): GEO sample titles (also ENA's), the ImmGen OCR
# table of Yoshida et al. as AI-TAC's published code records it, and the authors' sample sheet.
GEO_SPELLINGS = {
    "MMP3.48+.BM": "MPP3.48+.BM",
    "MMP4.135+.BM": "MPP4.135+.BM",
    "MF.SI.LP": "MF.LP.SI",
    "T8.IEL.LCMV.d7.Gut": "T8.IEL.LCMV.d7.SI",
    "FRC.CD140a+.Madcam-.CD35-.SLN": "FRC.CD140a+.Madcam-.CD35-.SLN",
}
OCR_TABLE_SPELLINGS = {
    "MPP3.48+.BM": "MPP3.48+.BM",
    "MPP4.135+.BM": "MPP4.135+.BM",
    "MF.LP.SI": "MF.LP.SI",
    "T8.IEL.LCMV.d7.SI": "T8.IEL.LCMV.d7.SI",
    "FRC.SLN": "FRC.CD140a+.Madcam-.CD35-.SLN",
}


def test_config_celltypes_spell_the_five_aliases():
    names = alias_map(read_celltypes(ROOT / "config" / "celltypes.tsv"))
    for spellings in (GEO_SPELLINGS, OCR_TABLE_SPELLINGS):
        assert {s: names[s] for s in spellings} == spellings
    assert len(names) == 90 + 5


def test_config_celltypes_match_the_authors_sample_sheet():
    """90 cell types in 10 lineages; the sheet's 181 samples: 80 cell types of 2 replicates,
    5 of 1, 4 of 3 and 1 of 4 (tests/data/immgen_lineages_samples.tsv, counted from the
    authors' example_data/immgen_lineages.csv)."""
    table = read_celltypes(ROOT / "config" / "celltypes.tsv")
    sheet = pd.read_csv(ROOT / "tests" / "data" / "immgen_lineages_samples.tsv", sep="\t",
                        comment="#")  # fmt: skip
    names = alias_map(table)
    sheet["celltype"] = sheet["celltype"].map(names)
    assert sheet["celltype"].notna().all() and sheet["celltype"].is_unique
    assert len(table) == len(sheet) == 90
    assert set(table["celltype"]) == set(sheet["celltype"])
    lineage = dict(zip(table["celltype"], table["lineage"]))
    assert [lineage[c] for c in sheet["celltype"]] == list(sheet["lineage"])
    assert table["lineage"].nunique() == 10
    assert sheet["samples"].sum() == 181
    assert sheet["samples"].value_counts().to_dict() == {2: 80, 1: 5, 3: 4, 4: 1}


def test_aliases_optional_and_clashes_name_the_line(tmp_path):
    table = tmp_path / "ct.tsv"
    table.write_text("celltype\tlineage\torgan\nB.Sp\tB\tspleen\n")
    assert list(read_celltypes(table)["aliases"]) == [""]
    table.write_text("celltype\tlineage\torgan\taliases\nB.Sp\tB\tspleen\tB.Spl, B.S \nT\tT\t\t\n")
    assert alias_map(read_celltypes(table)) == {
        "B.Sp": "B.Sp",
        "B.Spl": "B.Sp",
        "B.S": "B.Sp",
        "T": "T",
    }
    table.write_text("celltype\tlineage\torgan\taliases\nB.Sp\tB\tspleen\tT\nT\tT\t\t\n")
    with pytest.raises(
        InputError, match=r"ct\.tsv, line 2: alias 'T' of 'B.Sp' equals the cell type on line 3"
    ):
        read_celltypes(table)
    table.write_text("celltype\tlineage\torgan\taliases\nB.Sp\tB\tspleen\tX\nT\tT\t\tY,X\n")
    with pytest.raises(
        InputError, match=r"ct\.tsv, line 3: alias 'X' of 'T' equals the alias on line 2"
    ):
        read_celltypes(table)


# --------------------------------------------------------------------------------------------
# ENA's file report -> the runs table
# --------------------------------------------------------------------------------------------


def test_file_report_to_run_table(tmp_path, celltypes, caplog):
    report = tmp_path / "report.tsv"
    write_report(report)
    out = tmp_path / "resources" / "runs.tsv"
    with caplog.at_level(logging.INFO, logger="bpaitac.data.runs"):
        build_run_table(report, celltypes, out)
    skipped = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 1 and "SRR8186433" in skipped[0].getMessage()
    assert "Rorc(γt)+/CCR6+" in skipped[0].getMessage() and "line 14" in skipped[0].getMessage()

    table = read_run_table(out)
    assert list(table.columns) == list(RUN_COLUMNS)
    assert out.read_text().splitlines()[0] == "\t".join(RUN_COLUMNS)
    counts = table.groupby("celltype", sort=False).size().to_dict()
    assert counts == {
        "LTHSC.34-.BM": 1,
        "MPP3.48+.BM": 2,
        "B.Fo.Sp": 3,
        "MF.ICAM+480hi.PC": 4,
        "MF.LP.SI": 1,
        "T8.IEL.LCMV.d7.SI": 1,
    }  # cell-type table order; aliases mapped to the canonical names
    assert runs_of(table, "MF.ICAM+480hi.PC") == [
        "SRR5799500", "SRR5799501", "SRR5799502", "SRR5799503",
    ]  # fmt: skip
    assert runs_of(table, "B.Sp") == []
    row = table.set_index("run").loc["SRR5799381"]
    assert row["r1_url"] == f"https://{ENA}/SRR579/001/SRR5799381/SRR5799381_1.fastq.gz"
    assert row["r2_url"].endswith("SRR5799381_2.fastq.gz") and row["replicate"] == 1
    assert row["read_pairs"] == 400 and len(row["r1_md5"]) == 32 and row["bytes"] > 0


def test_mirror_replaces_scheme_and_host(tmp_path, celltypes):
    url = f"https://{ENA}/SRR579/001/SRR5799381/SRR5799381_1.fastq.gz"
    assert apply_mirror(url, None) == url
    assert apply_mirror(url, "http://127.0.0.1:8000/ena/") == (
        "http://127.0.0.1:8000/ena/vol1/fastq/SRR579/001/SRR5799381/SRR5799381_1.fastq.gz"
    )
    write_report(tmp_path / "report.tsv")
    table = parse_file_report(tmp_path / "report.tsv", celltypes, "http://127.0.0.1:9")
    assert table["r1_url"].str.startswith("http://127.0.0.1:9/vol1/fastq/SRR579/").all()
    assert split_title("B.Fo.Sp#3") == ("B.Fo.Sp", "3")


def test_paired_run_with_an_unpaired_file_keeps_r1_r2(tmp_path, celltypes):
    run, files = "SRR5799381", [b"u", b"a", b"b"]
    line = report_line(run, "LTHSC.34-.BM#1", files)
    # ENA lists the unpaired SRRxxx.fastq.gz first
    line = line.replace(f"{run}_1.fastq.gz;", f"{run}.fastq.gz;", 1)
    line = line.replace(f"{run}_2.fastq.gz;", f"{run}_1.fastq.gz;", 1)
    line = line.replace(f"{run}_3.fastq.gz", f"{run}_2.fastq.gz", 1)
    write_report(tmp_path / "r.tsv", SAMPLES[:1], SRR5799381=line)
    row = parse_file_report(tmp_path / "r.tsv", celltypes).iloc[0]
    assert row["r1_url"].endswith("_1.fastq.gz") and row["r2_url"].endswith("_2.fastq.gz")
    assert row["r1_md5"] == hashlib.md5(b"a").hexdigest() and row["bytes"] == 2


@pytest.mark.parametrize(
    "run, edit, message",
    [
        (
            "SRR5799385",
            lambda line: line.replace("PAIRED", "SINGLE"),
            r"r\.tsv, line 2: run SRR5799385 \(MMP3\.48\+\.BM#1\) has library_layout 'SINGLE'",
        ),
        (
            "SRR5799385",
            lambda line: line.rsplit("\t", 2)[0] + "\t\t1;2\n",
            r"r\.tsv, line 2: run SRR5799385 has md5s '' for 2 FASTQ file\(s\); every FASTQ needs",
        ),
        (
            "SRR5799385",
            lambda line: line.replace("MMP3.48+.BM#1", "MMP3.48+.BM"),
            r"r\.tsv, line 2: run SRR5799385: sample title 'MMP3\.48\+\.BM' has no replicate",
        ),
        (
            "SRR5799386",
            lambda line: line.replace("MMP3.48+.BM#2", "MPP3.48+.BM#1"),
            r"r\.tsv, line 3: run SRR5799386 is MPP3\.48\+\.BM replicate 1, as is run SRR5799385",
        ),
    ],
)
def test_bad_runs_name_run_file_and_line(tmp_path, celltypes, run, edit, message):
    samples = SAMPLES[1:3]
    fastqs = write_report(tmp_path / "r.tsv", samples)
    line = edit(report_line(run, dict(samples)[run], fastqs[run]))
    write_report(tmp_path / "r.tsv", samples, **{run: line})
    with pytest.raises(InputError, match=message):
        parse_file_report(tmp_path / "r.tsv", celltypes)


def test_skipped_runs_are_not_checked(tmp_path, celltypes):
    bad = f"SRR8186433\t{FOREIGN_TITLE}\tSINGLE\t\t\t\t\t\n"
    write_report(tmp_path / "r.tsv", SAMPLES, SRR8186433=bad)
    assert len(parse_file_report(tmp_path / "r.tsv", celltypes)) == 12


def test_cell_types_without_runs_are_named(tmp_path, celltypes):
    write_report(tmp_path / "r.tsv", SAMPLES[:3])
    with pytest.raises(InputError, match=r"r\.tsv: no run for cell type\(s\) \['B\.Fo\.Sp'"):
        build_run_table(tmp_path / "r.tsv", celltypes, tmp_path / "runs.tsv")
    assert not (tmp_path / "runs.tsv").exists()


def test_report_header_is_checked(tmp_path, celltypes):
    (tmp_path / "r.tsv").write_text("run_accession\tfastq_ftp\nSRR1\tx\n")
    with pytest.raises(InputError, match=r"r\.tsv, line 1: missing column.*fields=run_accession"):
        parse_file_report(tmp_path / "r.tsv", celltypes)


# --------------------------------------------------------------------------------------------
# FASTQ downloads: md5, 404, resume with HTTP Range, nothing half-written at the output
# --------------------------------------------------------------------------------------------


def serve(range_mirror, run: str, mate: int, data: bytes) -> str:
    """Put ``data`` on the mirror at ENA's path; returns its URL."""
    path = range_mirror.root / "vol1" / "fastq" / fastq_path(run, mate)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"{range_mirror.url}/vol1/fastq/{fastq_path(run, mate)}"


def test_fastq_download_md5_ok(range_mirror, tmp_path):
    data = fastq_gz(1)
    url = serve(range_mirror, "SRR5799381", 1, data)
    dest = tmp_path / "fastq" / "SRR5799381_R1.fastq.gz"
    fetch_verified(url, dest, hashlib.md5(data).hexdigest(), run="SRR5799381")
    assert dest.read_bytes() == data
    assert gzip.decompress(dest.read_bytes()).startswith(b"@r1.0\n")
    assert not partial_path(dest).exists()
    assert [r for _, r in range_mirror.requests] == [None]


def test_wrong_md5_names_the_run_and_leaves_nothing(range_mirror, tmp_path):
    data = fastq_gz(1)
    url = serve(range_mirror, "SRR5799381", 1, data)
    dest = tmp_path / "fastq" / "SRR5799381_R1.fastq.gz"
    wrong = "0" * 32
    with pytest.raises(InputError) as err:
        fetch_verified(url, dest, wrong, run="SRR5799381")
    msg = str(err.value)
    assert "run SRR5799381" in msg and url in msg
    assert wrong in msg and hashlib.md5(data).hexdigest() in msg
    assert list(dest.parent.iterdir()) == []  # neither the output nor the partial file


def test_404_names_run_and_url_without_retrying(range_mirror, tmp_path):
    url = f"{range_mirror.url}/vol1/fastq/SRR579/001/SRR5799381/SRR5799381_1.fastq.gz"
    dest = tmp_path / "fastq" / "SRR5799381_R1.fastq.gz"
    with pytest.raises(InputError, match=rf"run SRR5799381: {url} not found \(HTTP 404\)"):
        fetch_verified(url, dest, "0" * 32, run="SRR5799381", retries=5, backoff=30)
    assert len(range_mirror.requests) == 1  # no retries (a retry would also sleep 30 s)
    assert list(dest.parent.iterdir()) == []


def test_cut_download_resumes_with_range(range_mirror, tmp_path):
    data = fastq_gz(3, reads=3000)  # ~60 kB
    url = serve(range_mirror, "SRR5799381", 1, data)
    range_mirror.cut.add(url.removeprefix(range_mirror.url))
    dest = tmp_path / "fastq" / "SRR5799381_R1.fastq.gz"
    fetch_verified(url, dest, hashlib.md5(data).hexdigest(), run="SRR5799381", backoff=0.01)
    assert dest.read_bytes() == data
    ranges = [r for _, r in range_mirror.requests]
    assert ranges == [None, f"bytes={len(data) // 2}-"]


def test_interrupted_job_leaves_a_partial_file_that_the_next_job_resumes(range_mirror, tmp_path):
    data = fastq_gz(4, reads=3000)
    url = serve(range_mirror, "SRR5799381", 1, data)
    range_mirror.cut.add(url.removeprefix(range_mirror.url))
    dest = tmp_path / "fastq" / "SRR5799381_R1.fastq.gz"
    md5 = hashlib.md5(data).hexdigest()
    with pytest.raises(InputError, match=r"run SRR5799381: could not download .* after 1 tries"):
        fetch_verified(url, dest, md5, run="SRR5799381", retries=1)
    assert not dest.exists()  # nothing at the output
    assert partial_path(dest).read_bytes() == data[: len(data) // 2]
    fetch_verified(url, dest, md5, run="SRR5799381", retries=1)
    assert dest.read_bytes() == data and not partial_path(dest).exists()
    assert range_mirror.requests[-1][1] == f"bytes={len(data) // 2}-"


def test_server_without_range_restarts_from_zero(mirror, tmp_path):
    """http.server ignores Range (200 with the whole file): the partial file is rewritten."""
    root, base = mirror
    data = fastq_gz(5)
    (root / "a.fastq.gz").write_bytes(data)
    dest = tmp_path / "a.fastq.gz"
    partial_path(dest).write_bytes(data[:100])
    fetch_verified(f"{base}/a.fastq.gz", dest, hashlib.md5(data).hexdigest(), run="SRR1")
    assert dest.read_bytes() == data


def test_a_complete_partial_file_is_verified_not_fetched_again(range_mirror, tmp_path):
    data = fastq_gz(6)
    url = serve(range_mirror, "SRR5799381", 2, data)
    dest = tmp_path / "SRR5799381_R2.fastq.gz"
    partial_path(dest).write_bytes(data)
    fetch_verified(url, dest, hashlib.md5(data).hexdigest(), run="SRR5799381")
    assert dest.read_bytes() == data
    assert range_mirror.requests == [(url.removeprefix(range_mirror.url), f"bytes={len(data)}-")]


def test_fetch_run_publishes_both_mates_only_when_both_verify(range_mirror, tmp_path):
    r1 = fastq_gz(7)
    url1 = serve(range_mirror, "SRR5799381", 1, r1)
    url2 = url1.replace("_1.fastq.gz", "_2.fastq.gz")  # not on the server
    out1, out2 = tmp_path / "SRR5799381_R1.fastq.gz", tmp_path / "SRR5799381_R2.fastq.gz"
    files = [(url1, out1, hashlib.md5(r1).hexdigest()), (url2, out2, "0" * 32)]
    with pytest.raises(InputError, match=r"run SRR5799381: .*_2\.fastq\.gz not found"):
        fetch_run(files, run="SRR5799381")
    assert not out1.exists() and not out2.exists()
    assert partial_path(out1).read_bytes() == r1  # verified R1 waits for the next try


def test_fetch_detects_a_truncated_response_and_retries(range_mirror, tmp_path, monkeypatch):
    """The plain fetch (genome, OCR table, BAMs) no longer keeps a cut response as complete."""
    monkeypatch.setattr("bpaitac.data.download.time.sleep", lambda s: None)
    data = os.urandom(50_000)
    (range_mirror.root / "x.bin").write_bytes(data)
    range_mirror.cut.add("/x.bin")
    out = fetch(f"{range_mirror.url}/x.bin", tmp_path / "x.bin")
    assert out.read_bytes() == data and len(range_mirror.requests) == 2


# --------------------------------------------------------------------------------------------
# The rules: checkpoint download_run_table and download_fastq from a loopback mirror
# --------------------------------------------------------------------------------------------


def test_rules_run_table_and_fastq_from_mirror(range_mirror, tmp_path, celltypes):
    samples = [SAMPLES[0], SAMPLES[1], SAMPLES[2], SAMPLES[-1]]
    work = tmp_path / "work"
    work.mkdir()
    fastqs = write_report(range_mirror.root / "filereport.tsv", samples)
    for run, _ in samples[:3]:
        for mate, data in enumerate(fastqs[run], start=1):
            serve(range_mirror, run, mate, data)
    keep = celltypes[celltypes["celltype"].isin(["LTHSC.34-.BM", "MPP3.48+.BM"])]
    keep.to_csv(work / "celltypes.tsv", sep="\t", index=False)
    tiny = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
    config = {
        **tiny,
        "dataset": "ena",
        "source": "download",
        "celltypes": str(work / "celltypes.tsv"),
        "celltypes_per_lineage": None,
        "figures": [],
        "download": {
            "reads": "fastq",
            "run_table_url": f"{range_mirror.url}/filereport.tsv",
            "fastq_mirror": range_mirror.url,
        },
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = [f"resources/ena/fastq/{run}_R{m}.fastq.gz" for run, _ in samples[:3] for m in (1, 2)]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(
        ["snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
         "--directory", str(work), "--configfile", str(work / "config.yaml"),
         "--cores", "2", "resources/ena/runs.tsv", *targets],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for run, _ in samples[:3]:
        for mate in (1, 2):
            out = work / f"resources/ena/fastq/{run}_R{mate}.fastq.gz"
            assert out.read_bytes() == fastqs[run][mate - 1]
    table = read_run_table(work / "resources/ena/runs.tsv")
    assert list(table["run"]) == ["SRR5799381", "SRR5799385", "SRR5799386"]
    assert table["r1_url"].str.startswith(range_mirror.url).all()
    log = (work / "logs/ena/download/runs.log").read_text()
    assert "run SRR8186433 skipped" in log
    assert (work / "logs/ena/download/fastq_SRR5799385.log").read_text().count("md5 ok") == 2
    assert (work / "results/ena/benchmarks/download/fastq_SRR5799385.tsv").exists()

    # A FASTQ with the wrong bytes on the mirror: the job fails, its log names the run.
    (work / f"resources/ena/fastq/{samples[0][0]}_R1.fastq.gz").unlink()
    serve(range_mirror, samples[0][0], 1, b"not the FASTQ ENA describes")
    proc = subprocess.run(
        ["snakemake", "--snakefile", str(ROOT / "workflow" / "Snakefile"),
         "--directory", str(work), "--configfile", str(work / "config.yaml"),
         "--cores", "1", targets[0]],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    log = (work / "logs/ena/download/fastq_SRR5799381.log").read_text()
    assert "run SRR5799381" in log and "has md5" in log and "InputError" in log, log
    assert not (work / targets[0]).exists() and not (work / targets[1]).exists()


# --------------------------------------------------------------------------------------------
# Aliases wherever another table names a cell type (issue 21): OCR-table and p-value columns,
# BAM URLs; the messages name the cell-type table in use and the log the spelling found
# --------------------------------------------------------------------------------------------


def _names(tmp_path, aliases: str = "MMP3.48+.BM") -> CellTypeNames:
    """Two cell types from a cell-type table of our own (not the shipped one)."""
    table = tmp_path / "my_celltypes.tsv"
    table.write_text(
        "celltype\tlineage\torgan\taliases\n"
        f"MPP3.48+.BM\tStem&Prog\tbone marrow\t{aliases}\nB.Fo.Sp\tB\tspleen\t\n"
    )
    return CellTypeNames.from_table(read_celltypes(table), table)


def _ocr_table(path: Path, columns: list[str]) -> Path:
    rows = [["P1", "chr1", "100", *["1.5"] * len(columns)]]
    header = ["ImmGenATAC1219.peakID", "chrom", "Summit", *columns]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def test_ocr_table_columns_may_be_spelled_by_an_alias(tmp_path, caplog):
    from bpaitac.data.ocr_table import read_ocr_table

    names = _names(tmp_path)
    table = _ocr_table(tmp_path / "ocrs.csv", ["MMP3.48+.BM", "B.Fo.Sp"])
    with caplog.at_level(logging.INFO):
        got = read_ocr_table(table, names)
    assert list(got.columns) == ["peak_id", "chrom", "summit", "MPP3.48+.BM", "B.Fo.Sp"]
    assert (
        f"{table}: 1 cell type(s) spelled as in {names.table}, 1 by an alias; 'MMP3.48+.BM' "
        "read as 'MPP3.48+.BM'" in caplog.text
    )
    both = _ocr_table(tmp_path / "both.csv", ["MMP3.48+.BM", "MPP3.48+.BM", "B.Fo.Sp"])
    with pytest.raises(InputError, match=r"both\.csv: signal columns \['MPP3.48\+.BM', 'MMP3"):
        read_ocr_table(both, names)
    neither = _ocr_table(tmp_path / "neither.csv", ["MPP3.BM", "B.Fo.Sp"])
    with pytest.raises(
        InputError,
        match=r"neither\.csv: no signal column for cell type\(s\) \['MPP3.48\+.BM'\] \(nor for "
        r"the aliases 'MMP3.48\+.BM' of 'MPP3.48\+.BM'\); signal columns must be named as in "
        r".*my_celltypes\.tsv \(its `celltype` or `aliases` column\)",
    ):
        read_ocr_table(neither, names)


def test_closed_pvalue_columns_may_be_spelled_by_an_alias(tmp_path):
    from bpaitac.data.bias_sets import read_closed_pvalues

    pvalues = tmp_path / "p.tsv"
    pvalues.write_text("peak_id\tB.Fo.Sp\tMMP3.48+.BM\nP1\t0.5\t2.0\n")
    values = read_closed_pvalues(pvalues, ["P1"], _names(tmp_path))
    assert values.tolist() == [[2.0, 0.5]]  # in the order of the cell types in use


def test_a_bam_url_template_may_use_the_alias_that_exists(mirror, tmp_path, caplog):
    from bpaitac.data.download import fetch_first
    from bpaitac.workflow.config import celltype_urls

    root, url = mirror
    (root / "bams").mkdir()
    (root / "bams" / "MMP3.48+.BM.bam").write_bytes(b"BAM")  # GEO's spelling
    urls = celltype_urls(f"{url}/bams/{{celltype}}.bam", _names(tmp_path).spellings("MPP3.48+.BM"))
    assert urls == [f"{url}/bams/MPP3.48+.BM.bam", f"{url}/bams/MMP3.48+.BM.bam"]
    dest = tmp_path / "out" / "MPP3.48+.BM.bam"
    with caplog.at_level(logging.INFO):
        assert fetch_first(urls, dest, field="download.bam_url_template", retries=1) == urls[1]
    assert dest.read_bytes() == b"BAM"
    assert f"{dest}: found as {urls[1]} (spelling 2 of 2" in caplog.text
    with pytest.raises(InputError, match=r"could not download .*B.Fo.Sp.bam.*HTTP Error 404"):
        fetch_first([f"{url}/bams/B.Fo.Sp.bam"], tmp_path / "out" / "B.Fo.Sp.bam", retries=1)


def test_messages_about_ena_titles_name_the_celltype_table_in_use(tmp_path):
    from bpaitac.data.runs import check_coverage

    names = _names(tmp_path)
    with pytest.raises(InputError, match=r"report: no run for cell type\(s\) .*my_celltypes\.tsv"):
        check_coverage(pd.DataFrame({"celltype": ["B.Fo.Sp"]}), names, "report")
