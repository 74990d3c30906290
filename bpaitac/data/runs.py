"""The sequencing runs of a dataset: ENA's read_run file report -> a normalised runs table.

ENA's file report (``result=read_run``, ``format=tsv``) has one line per run with the columns of
:data:`REPORT_COLUMNS`. ``fastq_ftp`` lists the FASTQ files without a scheme, ``;``-separated
(R1;R2 for a paired run; some paired runs also list an unpaired ``SRRxxx.fastq.gz`` first),
``fastq_md5`` and ``fastq_bytes`` in the same order. ``sample_title`` is ``CellType#replicate``.

The runs table (``resources/{dataset}/runs.tsv``, :data:`RUN_COLUMNS`) is what the download and
alignment rules read, through :func:`read_run_table` and :func:`runs_of`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from bpaitac.data.download import check_scheme, check_source
from bpaitac.io import (
    TABLE_ENCODING,
    CellTypeNames,
    InputError,
    atomic_path,
    check_unique_columns,
    log_spellings,
    require_columns,
    require_file,
)

log = logging.getLogger(__name__)

REPORT_COLUMNS = (
    "run_accession",
    "sample_title",
    "library_layout",
    "read_count",
    "base_count",
    "fastq_ftp",
    "fastq_md5",
    "fastq_bytes",
)
RUN_COLUMNS = (
    "run",
    "celltype",
    "replicate",
    "r1_url",
    "r2_url",
    "r1_md5",
    "r2_md5",
    "read_pairs",
    "bytes",
)
MD5_RE = re.compile(r"[0-9a-f]{32}")
RUN_RE = re.compile(r"[A-Z]{3}\d+")  # SRR / ERR / DRR accessions
SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?!\d)")  # "data:", "file:"; not "host:8080"


def split_title(title: str) -> tuple[str, str]:
    """``"B.Fo.Sp#3"`` -> ``("B.Fo.Sp", "3")``; a title without ``#`` -> ``(title, "")``."""
    name, _, replicate = title.strip().rpartition("#")
    return (name, replicate.strip()) if name else (title.strip(), "")


def https_url(path: str, field: str = "fastq_ftp") -> str:
    """ENA's scheme-less ``fastq_ftp`` entry as an https URL (ENA serves it over https too).

    An entry that already has a scheme keeps it when it is https, http or ftp and raises
    :class:`InputError` naming ``field`` otherwise: a remote file report may not point the
    download at local files (``file:``) or elsewhere (``data:``).
    """
    path = path.strip()
    if SCHEME_RE.match(path):
        check_source(path, field, allow_file=False)
        return path
    return f"https://{path}"


def apply_mirror(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of ``url`` by the base URL ``mirror`` (which may carry a
    path prefix): ``https://ftp.sra.ebi.ac.uk/vol1/x.fastq.gz`` with mirror
    ``http://127.0.0.1:8000/ena`` -> ``http://127.0.0.1:8000/ena/vol1/x.fastq.gz``."""
    if not mirror:
        return url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return mirror.rstrip("/") + "/" + rest.lstrip("/")


def read_file_report(path: str | os.PathLike) -> pd.DataFrame:
    """Read ENA's read_run file report (TSV, UTF-8) as strings; checks the header."""
    path = require_file(path, "ENA file report", "check `download.run_table_url`.")
    with open(path, encoding=TABLE_ENCODING) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    check_unique_columns(path, header)
    missing = [c for c in REPORT_COLUMNS if c not in header]
    if missing:
        raise InputError(
            f"{path}, line 1: missing column(s) {missing}; request ENA's file report with "
            f"fields={','.join(REPORT_COLUMNS)} (result=read_run, format=tsv)."
        )
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=TABLE_ENCODING)


def _paired_files(row: pd.Series, where: str) -> list[tuple[str, str, int]]:
    """(url, md5, bytes) of R1 and R2 of one report line; raises naming the run and line."""
    run = row["run_accession"]
    urls = [u for u in row["fastq_ftp"].split(";") if u.strip()]
    md5s = [m.strip().lower() for m in row["fastq_md5"].split(";")]
    sizes = [s.strip() for s in row["fastq_bytes"].split(";")]
    if not urls:
        raise InputError(f"{where}: run {run} lists no FASTQ file in `fastq_ftp`; drop the line.")
    if len(md5s) != len(urls) or not all(MD5_RE.fullmatch(m) for m in md5s):
        raise InputError(
            f"{where}: run {run} has md5s {row['fastq_md5']!r} for {len(urls)} FASTQ file(s); "
            "every FASTQ needs its md5 (`fastq_md5`, same order as `fastq_ftp`) so that the "
            "download can be verified: fetch the file report again or drop the run."
        )
    if len(sizes) != len(urls) or not all(s.isdigit() for s in sizes):
        sizes = ["0"] * len(urls)  # sizes only inform; md5s verify
    files = list(zip(urls, md5s, map(int, sizes), strict=True))
    if len(files) == 3:  # paired run listing an unpaired file too: keep _1 and _2
        files = [f for f in files if re.search(r"_[12]\.f(ast)?q(\.gz)?$", f[0])]
    if len(files) != 2:
        raise InputError(
            f"{where}: run {run} lists {len(urls)} FASTQ file(s) in `fastq_ftp`, expected R1;R2 "
            "of a paired-end run; drop the run or fix the line."
        )
    return sorted(files, key=lambda f: f[0])


def parse_file_report(
    path: str | os.PathLike,
    celltypes: CellTypeNames | pd.DataFrame,
    mirror: str | None = None,
) -> pd.DataFrame:
    """The runs table (:data:`RUN_COLUMNS`) of the runs whose sample title names a cell type
    (or an alias of one) of ``celltypes`` (:class:`~bpaitac.io.CellTypeNames`, or a table from
    :func:`bpaitac.io.read_celltypes`). The spellings used are logged.

    Runs of other samples are skipped with one log line each. A run of a listed cell type that
    is not paired-end, lacks md5s, has no integer replicate or repeats a cell type's replicate
    raises :class:`InputError` naming the run, the file and the line. ``mirror`` replaces the
    scheme and host of every FASTQ URL (:func:`apply_mirror`).
    """
    if mirror:
        check_scheme(mirror, "config key `download.fastq_mirror`")
    report = read_file_report(path)
    table = as_names(celltypes)
    names = table.lookup()
    rows, seen, spelled = [], {}, {}
    for line, row in enumerate(report.to_dict("records"), start=2):
        run, title = row["run_accession"].strip(), row["sample_title"]
        where = f"{path}, line {line}"
        name, replicate = split_title(title)
        if name not in names:
            log.info(
                "run %s skipped: sample title %r names no cell type in use of %s (%s)",
                run,
                title,
                table.table,
                where,
            )
            continue
        if not RUN_RE.fullmatch(run):
            raise InputError(f"{where}: {run!r} is not a run accession (e.g. SRR5799381).")
        layout = row["library_layout"].strip()
        if layout.upper() != "PAIRED":
            raise InputError(
                f"{where}: run {run} ({title}) has library_layout {layout!r}, not PAIRED: the "
                "ATAC-seq processing needs paired-end reads; drop the run's line."
            )
        if not replicate.isdigit():
            raise InputError(
                f"{where}: run {run}: sample title {title!r} has no replicate number; "
                "titles must read CellType#replicate (e.g. B.Fo.Sp#3)."
            )
        celltype = names[name]
        spelled.setdefault(celltype, name)
        key = (celltype, int(replicate))
        if key in seen:
            raise InputError(
                f"{where}: run {run} is {celltype} replicate {replicate}, as is run {seen[key]}; "
                "each replicate needs its own number: fix the title or drop one run."
            )
        seen[key] = run
        (u1, m1, b1), (u2, m2, b2) = _paired_files(row, where)
        count = row["read_count"].strip()
        field = f"{where}, column `fastq_ftp`"
        rows.append(
            {
                "run": run,
                "celltype": celltype,
                "replicate": int(replicate),
                "r1_url": apply_mirror(https_url(u1, field), mirror),
                "r2_url": apply_mirror(https_url(u2, field), mirror),
                "r1_md5": m1,
                "r2_md5": m2,
                "read_pairs": int(count) if count.isdigit() else 0,
                "bytes": b1 + b2,
            }
        )
    log_spellings(spelled, f"{path} (sample titles)", table.table)
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def as_names(celltypes: CellTypeNames | pd.DataFrame) -> CellTypeNames:
    """``celltypes`` as :class:`~bpaitac.io.CellTypeNames` (a bare table: source unnamed)."""
    if isinstance(celltypes, CellTypeNames):
        return celltypes
    return CellTypeNames.from_table(celltypes, "the cell-type table")


def check_coverage(
    table: pd.DataFrame,
    celltypes: CellTypeNames | list[str],
    source: str | os.PathLike,
) -> None:
    """Raise when a cell type in use has no run in ``table``, naming them all and the
    cell-type table."""
    names = CellTypeNames.coerce(celltypes)
    absent = [c for c in names.names if c not in set(table["celltype"])]
    if absent:
        raise InputError(
            f"{source}: no run for cell type(s) {absent}; their samples' titles must read "
            "CellType#replicate with the cell type (or an alias in the `aliases` column of "
            f"{names.table}) as spelled in the report, or drop them from {names.table}."
        )


def write_run_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the runs table (:data:`RUN_COLUMNS`, TSV) atomically."""
    with atomic_path(path) as tmp:
        table.loc[:, list(RUN_COLUMNS)].to_csv(tmp, sep="\t", index=False)
    return Path(path)


def build_run_table(
    report: str | os.PathLike,
    celltypes: CellTypeNames | pd.DataFrame,
    out: str | os.PathLike,
    mirror: str | None = None,
) -> pd.DataFrame:
    """Parse the file report, check that every cell type in ``celltypes`` has a run, write
    ``out`` in cell-type table order and replicate order; returns the table."""
    names = as_names(celltypes)
    table = parse_file_report(report, names, mirror)
    check_coverage(table, names, report)
    order = {c: i for i, c in enumerate(names.names)}
    table = table.sort_values(
        ["celltype", "replicate"], key=lambda s: s.map(order) if s.name == "celltype" else s
    ).reset_index(drop=True)
    write_run_table(table, out)
    counts = table.groupby("celltype", sort=False).size()
    log.info(
        "%d runs of %d cell types (%.1f GB of FASTQ) -> %s; replicates per cell type: %s",
        len(table),
        len(counts),
        table["bytes"].sum() / 1e9,
        out,
        dict(sorted(counts.value_counts().items())),
    )
    return table


def read_run_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``resources/{dataset}/runs.tsv`` (:data:`RUN_COLUMNS`); ``replicate``,
    ``read_pairs`` and ``bytes`` as integers."""
    path = require_file(path, "runs table", "it is written by rule download_run_table.")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=TABLE_ENCODING)
    require_columns(
        path,
        table.columns,
        RUN_COLUMNS,
        f"the header must be {'<TAB>'.join(RUN_COLUMNS)} (delete the file to have it rebuilt).",
    )
    for col in ("replicate", "read_pairs", "bytes"):
        bad = table.index[~table[col].str.fullmatch(r"\d+")]
        if len(bad):
            raise InputError(f"{path}, line {bad[0] + 2}: `{col}` must be an integer.")
        table[col] = table[col].astype(int)
    dup = table.index[table["run"].duplicated()]
    if len(dup):
        raise InputError(f"{path}, line {dup[0] + 2}: run {table['run'][dup[0]]} appears twice.")
    return table.loc[:, list(RUN_COLUMNS)]


def runs_of(table: pd.DataFrame, celltype: str) -> list[str]:
    """The runs of one cell type, in replicate order (empty when it has none)."""
    rows = table[table["celltype"] == celltype].sort_values("replicate")
    return list(rows["run"])


def run_row(table: pd.DataFrame, run: str, source: str | os.PathLike) -> dict:
    """The runs-table row of ``run`` as a dict; raises naming the table when it is absent."""
    rows = table[table["run"] == run]
    if rows.empty:
        raise InputError(
            f"{source}: run {run} is not in the runs table; request a run listed there "
            "(the table is rebuilt from `download.run_table_url`)."
        )
    return rows.iloc[0].to_dict()
