"""A simulated ENA mirror: a simulated dataset as what the real FASTQ route downloads.

The real route (``source: download``, ``download.reads: fastq``) fetches ENA's read_run file
report, every run's gzipped FASTQ pair from ENA's tree (``vol1/fastq/SRR579/001/SRR5799381/
SRR5799381_1.fastq.gz``), mm10 (gzip) and the ImmGen OCR table. :func:`build_mirror` writes all of
these from a simulated dataset (``resources/{dataset}/``, :mod:`bpaitac.simulate.run`), so that a
loopback HTTP server over the output directory stands in for ENA, UCSC and ImmGen:

- ``vol1/fastq/...``: per cell type 1, 2 or 3 replicate runs (``replicates`` cycles over the cell
  types), their reads made by :func:`bpaitac.simulate.fastq.celltype_fastqs` from the cell type's
  simulated BAM; run accessions count up from SRR5799381 (the first ImmGen run) in cell-type and
  replicate order;
- ``filereport.tsv``: the file report in ENA's format (:data:`bpaitac.data.runs.REPORT_COLUMNS`,
  ``fastq_ftp`` without scheme, ``;``-separated, real md5s and sizes), titles ``CellType#rep``,
  plus one foreign run (:data:`FOREIGN_TITLE`, with '/' and non-ASCII as SRR8186433-6) that the
  workflow must skip;
- ``genome.fa.gz``, ``ocrs.csv``, ``chrM.fa`` (the simulated chrM for ``align.extra_fasta``), and
  when the dataset has them ``closed_pvalues.tsv`` and ``protein_free/`` (BAMs on the dataset's
  genome, ``regions.bed``), so that a whole run can be served;
- ``runs_truth.tsv`` (not part of ENA): per run its cell type and what was written (pairs,
  duplicates, chrM pairs, nuclear fragments).

Command line: ``python -m bpaitac.simulate.mirror --resources resources/<dataset> --out <dir>
[--replicates 1,2,3] [--seed 0] [--base-url http://127.0.0.1:8000]``; it prints the ``download:``
and ``align:`` config sections that point the workflow at the mirror served at ``--base-url``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bpaitac.data.runs import REPORT_COLUMNS
from bpaitac.io import InputError, atomic_path
from bpaitac.simulate.fastq import FastqSpec, celltype_fastqs, write_chrm_fasta

log = logging.getLogger(__name__)

ENA_HOST = "ftp.sra.ebi.ac.uk"
FIRST_RUN = 5799381
"""Number of the first ImmGen run (SRR5799381); simulated runs count up from it."""
FOREIGN_RUN = "SRR8186433"
FOREIGN_TITLE = "Treg.Rorc(γt)+/Helios-.Co#1"
"""A sample of PRJNA392905 outside the 90 cell types: '/' and non-ASCII, as SRR8186433-6."""
TRUTH_COLUMNS = ("run", "celltype", "replicate", "fragments", "pairs", "duplicates", "chrm_pairs")


@dataclass(frozen=True)
class MirrorRun:
    """One simulated sequencing run: accession, cell type, replicate number, sample title."""

    run: str
    celltype: str
    replicate: int

    @property
    def title(self) -> str:
        """ENA's ``sample_title``: ``CellType#replicate``."""
        return f"{self.celltype}#{self.replicate}"


def ena_fastq_path(run: str, mate: int) -> str:
    """ENA's path of a run's FASTQ below the host: ``vol1/fastq/<first 6>/[<sub>/]<run>/
    <run>_<mate>.fastq.gz``; ``<sub>`` holds the digits beyond six, zero-padded to 3 (none for
    six-digit accessions): SRR5799381 -> ``vol1/fastq/SRR579/001/SRR5799381/...``."""
    digits = len(run) - 3
    sub = f"{run[-(digits - 6) :].zfill(3)}/" if digits > 6 else ""
    return f"vol1/fastq/{run[:6]}/{sub}{run}/{run}_{mate}.fastq.gz"


def parse_replicates(text: str) -> tuple[int, ...]:
    """``"1,2,3"`` -> (1, 2, 3): replicate runs per cell type, cycled over the cell types."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise InputError(
            f"--replicates {text!r}: give positive integers separated by commas, e.g. 1,2,3 "
            "(cycled over the cell types)."
        )
    return values


def run_plan(celltypes: Sequence[str], replicates: Sequence[int]) -> list[MirrorRun]:
    """The runs of ``celltypes``: ``replicates[i % len(replicates)]`` for the i-th cell type,
    accessions from SRR5799381 on in cell-type and replicate order."""
    plan, number = [], FIRST_RUN
    for i, celltype in enumerate(celltypes):
        for rep in range(1, replicates[i % len(replicates)] + 1):
            plan.append(MirrorRun(f"SRR{number}", celltype, rep))
            number += 1
    return plan


def dataset_celltypes(resources: Path) -> list[str]:
    """The cell types of a simulated dataset: ``truth/depth.tsv``'s order, else the BAMs'."""
    depth = resources / "truth" / "depth.tsv"
    if depth.exists():
        names = list(pd.read_csv(depth, sep="\t", usecols=["celltype"])["celltype"])
    else:
        names = sorted(p.name[: -len(".bam")] for p in (resources / "bams").glob("*.bam"))
    missing = [c for c in names if not (resources / "bams" / f"{c}.bam").exists()]
    if not names or missing:
        raise InputError(
            f"{resources}/bams: no BAM for cell type(s) {missing or 'any'}; point --resources at "
            "a simulated dataset (resources/<dataset>, written by the simulate rule)."
        )
    return names


def file_md5(path: Path) -> str:
    """Hex md5 of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def report_line(run: str, title: str, files: Sequence[Path], pairs: int, read_length: int) -> str:
    """One line of ENA's read_run file report for a paired run whose FASTQs (R1, R2) are
    ``files`` below the mirror root, at ENA's paths."""
    paths = [f"{ENA_HOST}/{ena_fastq_path(run, m)}" for m in (1, 2)]
    fields = [
        run,
        title,
        "PAIRED",
        str(pairs),
        str(2 * pairs * read_length),
        ";".join(paths),
        ";".join(file_md5(f) for f in files),
        ";".join(str(f.stat().st_size) for f in files),
    ]
    return "\t".join(fields) + "\n"


def write_file_report(lines: Sequence[str], path: Path) -> Path:
    """The file report: ENA's header (:data:`bpaitac.data.runs.REPORT_COLUMNS`) and ``lines``,
    UTF-8."""
    with atomic_path(path) as tmp:
        tmp.write_text("\t".join(REPORT_COLUMNS) + "\n" + "".join(lines), encoding="utf-8")
    return path


def gzip_file(src: Path, dest: Path) -> Path:
    """Gzip ``src`` to ``dest`` without name or time stamp (same input, same bytes)."""
    with atomic_path(dest) as tmp, open(src, "rb") as fin, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
            shutil.copyfileobj(fin, out)
    return dest


def copy_inputs(resources: Path, out: Path) -> list[Path]:
    """Copy the OCR table and, when present, closed_pvalues.tsv and protein_free/ (BAMs,
    indexes, regions.bed) to the mirror; gzip the genome as UCSC serves it."""
    if not (resources / "genome.fa").exists() or not (resources / "ocrs.csv").exists():
        raise InputError(
            f"{resources}: genome.fa or ocrs.csv missing; point --resources at a simulated "
            "dataset (resources/<dataset>)."
        )
    written = [gzip_file(resources / "genome.fa", out / "genome.fa.gz")]
    extra = [resources / "ocrs.csv", resources / "closed_pvalues.tsv"]
    extra += sorted((resources / "protein_free").glob("*"))
    for src in extra:
        if src.is_file():
            dest = out / src.relative_to(resources)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            written.append(dest)
    return written


def build_mirror(
    resources: str | os.PathLike,
    out: str | os.PathLike,
    replicates: Sequence[int] = (2,),
    seed: int = 0,
    spec: FastqSpec | None = None,
    celltypes: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Write the mirror of the simulated dataset ``resources`` under ``out`` (see the module
    docstring); ``celltypes`` limits it to some cell types. Returns ``runs_truth.tsv``'s table
    (:data:`TRUTH_COLUMNS`). Same inputs and seed, same bytes."""
    resources, out = Path(resources), Path(out)
    spec = spec or FastqSpec()
    names = dataset_celltypes(resources)
    if celltypes:
        unknown = [c for c in celltypes if c not in names]
        if unknown:
            raise InputError(f"--celltypes: {unknown} not in {resources} (has {names}).")
        names = [c for c in names if c in set(celltypes)]
    copy_inputs(resources, out)
    write_chrm_fasta(out / "chrM.fa", seed, spec.chrm_length)
    plan = run_plan(names, replicates)
    lines, truth = [], []
    for key, celltype in enumerate(names):
        runs = [r for r in plan if r.celltype == celltype]
        files = [(r.run, *(out / ena_fastq_path(r.run, m) for m in (1, 2))) for r in runs]
        bam = resources / "bams" / f"{celltype}.bam"
        counts = celltype_fastqs(bam, resources / "genome.fa", files, spec, seed, key)
        for r, (_, r1, r2), row in zip(runs, files, counts.to_dict("records"), strict=True):
            lines.append(report_line(r.run, r.title, [r1, r2], row["pairs"], spec.read_length))
            truth.append({"celltype": celltype, "replicate": r.replicate, **row})
        log.info("%s: %d run(s), %d read pairs", celltype, len(runs), counts["pairs"].sum())
    lines.append(_foreign_run(resources / "bams" / f"{names[0]}.bam", resources, out, spec, seed))
    write_file_report(lines, out / "filereport.tsv")
    table = pd.DataFrame(truth).loc[:, list(TRUTH_COLUMNS)]
    with atomic_path(out / "runs_truth.tsv") as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    log.info(
        "mirror of %s: %d runs of %d cell types + 1 foreign -> %s",
        resources, len(table), len(names), out,
    )  # fmt: skip
    return table


def _foreign_run(bam: Path, resources: Path, out: Path, spec: FastqSpec, seed: int) -> str:
    """The foreign run's FASTQ pair (reads of ``bam``, its own stream) and report line."""
    r1, r2 = (out / ena_fastq_path(FOREIGN_RUN, m) for m in (1, 2))
    counts = celltype_fastqs(
        bam, resources / "genome.fa", [(FOREIGN_RUN, r1, r2)], spec, seed, key=10_000
    )
    pairs = int(counts["pairs"].iloc[0])
    return report_line(FOREIGN_RUN, FOREIGN_TITLE, [r1, r2], pairs, spec.read_length)


def download_config(base_url: str, out: str | os.PathLike, replicates: Sequence[str]) -> dict:
    """The ``download:`` and ``align:`` config sections for the mirror written to ``out`` and
    served at ``base_url``; ``replicates`` are the protein-free BAMs' names (empty: none)."""
    base = base_url.rstrip("/")
    download = {
        "reads": "fastq",
        "genome_url": f"{base}/genome.fa.gz",
        "ocr_table_url": f"{base}/ocrs.csv",
        "run_table_url": f"{base}/filereport.tsv",
        "fastq_mirror": base,
        "closed_pvalues_url": f"{base}/closed_pvalues.tsv",
    }
    if replicates:
        download |= {
            "protein_free_genome_url": "dataset",
            "protein_free_format": "bams",
            "protein_free_url_template": f"{base}/protein_free/{{replicate}}.bam",
            "protein_free_regions_url": f"{base}/protein_free/regions.bed",
            "protein_free_replicates": list(replicates),
        }
    return {"download": download, "align": {"extra_fasta": [str(Path(out).resolve() / "chrM.fa")]}}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the mirror and print the config sections that point at it."""
    import yaml

    parser = argparse.ArgumentParser(
        prog="python -m bpaitac.simulate.mirror",
        description="Write a simulated dataset as an ENA mirror (file report, FASTQ pairs, "
        "genome.fa.gz, OCR table, chrM FASTA) for the workflow's FASTQ route.",
    )
    parser.add_argument("--resources", required=True, help="a simulated resources/<dataset>")
    parser.add_argument("--out", required=True, help="mirror root to write (served over HTTP)")
    parser.add_argument(
        "--replicates",
        default="2",
        help="runs per cell type, cycled over the cell types (default 2; e.g. 1,2,3)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the reads (default 0)")
    parser.add_argument("--celltypes", default="", help="comma-separated subset of cell types")
    parser.add_argument("--read-length", type=int, default=FastqSpec.read_length)
    parser.add_argument(
        "--base-url",
        default="http://127.0.0.1:8000",
        help="where the mirror will be served, for the printed config",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        build_mirror(
            args.resources, args.out, parse_replicates(args.replicates), args.seed,
            FastqSpec(read_length=args.read_length),
            [c for c in args.celltypes.split(",") if c] or None,
        )  # fmt: skip
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pf = sorted(p.stem for p in (Path(args.out) / "protein_free").glob("*.bam"))
    print(f"# serve it: python -m http.server -d {args.out} PORT; then in your config:")
    print(yaml.safe_dump(download_config(args.base_url, args.out, pf), sort_keys=False), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
