"""ATAC-seq reads to filtered BAMs: the ENCODE / nf-core processing, run through the tools.

Per run (one FASTQ pair):

1. :func:`trim_pair`: cutadapt removes Nextera read-through (``-a CTGTCTCTTATA -A
   CTGTCTCTTATA``; minimum overlap 1 bp and error rate 0.1 as Trim Galore, which nf-core uses)
   and drops pairs with a read shorter than ``min_length``.
2. :func:`align_pair`: ``bowtie2 -X 2000 --no-mixed --no-discordant`` | keep ``-f 2 -F 1804
   -q 30`` | ``samtools fixmate -m`` (name-grouped, as bowtie2 writes it) | drop the pairs the
   MAPQ filter broke | ``samtools sort`` | ``samtools markdup -r`` | index, then keep only the
   configured contigs (mm10: chr1-19, X, Y; chrM and unplaced contigs go).
   Filtering before duplicate marking means the copy kept of a duplicate set is one that
   passes the filters.
3. :func:`run_qc`: read pairs, aligned % (bowtie2's concordant pairs), duplicate % (markdup),
   chrM % (of the filtered, deduplicated pairs), the pairs kept and the fraction of Tn5
   insertions inside OCRs (FRiP, insertions as :mod:`bpaitac.data.insertions` computes them).

Per cell type, :func:`merge_bams` merges its runs' filtered BAMs (one run: copied) into one
indexed BAM, which the preprocessing reads. Every tool runs through :func:`run_commands`: its
stderr goes to the log, and a failure raises :class:`ToolError` naming the run, the command and
the tool's last stderr lines. Outputs are written atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from bpaitac.data.insertions import ReadFilter, merge_windows
from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS
from bpaitac.io import InputError, atomic_path, require_file
from bpaitac.workflow.align_paths import BOWTIE2_INDEX_SUFFIXES

log = logging.getLogger(__name__)

QC_COLUMNS = (
    "run",
    "read_pairs",
    "trimmed_pairs",
    "aligned_pct",
    "duplicate_pct",
    "chrm_pct",
    "kept_pairs",
    "frip",
)
INSTALL_HINT = (
    "install it with `make system-deps` (Debian/Ubuntu: bowtie2, samtools), `pip install "
    "cutadapt` or the conda env envs/align.yaml"
)
STDERR_TAIL = 15
SORT_MEMORY = "512M"
"""samtools sort memory per thread; with bowtie2's mm10 index (~3.5 GB) beside it, 8 threads
fit in `align.resources.align.mem_mb` (10 GB)."""


class ToolError(RuntimeError):
    """A tool failed: the message names the run, the command and the tool's last stderr lines."""


@dataclass(frozen=True)
class AlignConfig:
    """Trimming, alignment and filtering settings (the ``align:`` config section).

    No field has a default: the validated config gives them (its schema holds the defaults,
    Nextera adapters and the mm10 contigs among them), through :meth:`from_config`.
    """

    adapter_r1: str
    adapter_r2: str
    min_length: int
    min_overlap: int
    adapter_error_rate: float
    max_fragment_length: int
    min_mapq: int
    keep_contigs: tuple[str, ...]
    chrm: str
    bowtie2_extra: tuple[str, ...]
    ocr_halfwidth: int

    @classmethod
    def from_config(cls, cfg: Mapping) -> AlignConfig:
        """Build from the validated ``align:`` config section (defaults filled in)."""
        return cls(
            adapter_r1=str(cfg["adapter_r1"]),
            adapter_r2=str(cfg["adapter_r2"]),
            min_length=int(cfg["min_length"]),
            min_overlap=int(cfg["min_overlap"]),
            adapter_error_rate=float(cfg["adapter_error_rate"]),
            max_fragment_length=int(cfg["max_fragment_length"]),
            min_mapq=int(cfg["min_mapq"]),
            keep_contigs=tuple(cfg["keep_contigs"]),
            chrm=str(cfg["chrm"]),
            bowtie2_extra=tuple(str(a) for a in cfg["bowtie2_extra"]),
            ocr_halfwidth=int(cfg["ocr_halfwidth"]),
        )

    def qc_filter(self) -> ReadFilter:
        """The reads whose insertions the QC's FRiP counts: this section's ``min_mapq``, every
        flag filter on and the Tn5 shifts of :mod:`bpaitac.data.tn5`, as the preprocessing
        counts them by default."""
        return ReadFilter(
            min_mapq=self.min_mapq,
            drop_duplicates=True,
            require_proper_pair=True,
            shift_plus=TN5_SHIFT_PLUS,
            shift_minus=TN5_SHIFT_MINUS,
        )


# --------------------------------------------------------------------------------------------
# Running tools
# --------------------------------------------------------------------------------------------


def tool(name: str) -> str:
    """Path of an executable: on PATH, else next to this Python (a venv's bin/)."""
    found = shutil.which(name)
    if found:
        return found
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    raise InputError(f"`{name}` not found on PATH; {INSTALL_HINT}.")


def run_commands(
    commands: Sequence[Sequence[str]],
    run: str,
    stdout: str | os.PathLike | None = None,
) -> list[str]:
    """Run ``commands`` as a pipeline (each one's stdout into the next), the last one's stdout
    into ``stdout`` (or discarded). Each tool's stderr is logged; returns the stderr texts.

    Raises :class:`ToolError` naming ``run``, the first failing command and its last stderr lines.
    """
    cmds = [[str(c) for c in cmd] for cmd in commands]
    with tempfile.TemporaryDirectory(prefix="bpaitac-align-") as tmp:
        errs = [open(Path(tmp) / f"{i}.err", "w+b") for i in range(len(cmds))]  # noqa: SIM115
        out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
        procs: list[subprocess.Popen] = []
        try:
            for i, cmd in enumerate(cmds):
                log.info("%s: %s", run, shlex.join(cmd))
                last = i == len(cmds) - 1
                try:
                    p = subprocess.Popen(
                        cmd,
                        stdin=procs[-1].stdout if procs else subprocess.DEVNULL,
                        stdout=out if last else subprocess.PIPE,
                        stderr=errs[i],
                    )
                except FileNotFoundError as exc:
                    raise ToolError(
                        f"run {run}: cannot start `{shlex.join(cmd)}`: {exc}; {INSTALL_HINT}."
                    ) from exc
                if procs:
                    procs[-1].stdout.close()  # the next process owns the pipe now
                procs.append(p)
            codes = [p.wait() for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            if stdout:
                out.close()
        texts = []
        for f in errs:
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
    for cmd, text in zip(cmds, texts):
        if text.strip():
            log.info("%s: stderr of %s:\n%s", run, Path(cmd[0]).name, text.rstrip())
    failed = [i for i, c in enumerate(codes) if c != 0]
    if failed:
        # the first tool that failed by itself; the others usually died of a broken pipe
        i = next((i for i in failed if codes[i] > 0), failed[0])
        tail = "\n".join(texts[i].strip().splitlines()[-STDERR_TAIL:]) or "(no stderr)"
        raise ToolError(
            f"run {run}: `{shlex.join(cmds[i])}` failed with exit code {codes[i]}; its last "
            f"stderr lines:\n{tail}"
        )
    return texts


def _check_inputs(run: str, *paths: str | os.PathLike) -> None:
    for p in paths:
        if not Path(p).exists():
            raise InputError(f"run {run}: {p} not found; run the download step for this run.")
        if Path(p).stat().st_size == 0:
            raise InputError(f"run {run}: {p} is empty; delete it and download it again.")


# --------------------------------------------------------------------------------------------
# Steps
# --------------------------------------------------------------------------------------------


def build_bowtie2_index(
    fastas: Sequence[str | os.PathLike], prefix: str | os.PathLike, threads: int = 1, seed: int = 0
) -> list[Path]:
    """``bowtie2-build`` of one or more FASTAs (plain or gzip) into ``prefix``.*.bt2, atomically
    (built in a temporary directory, moved into place when complete)."""
    prefix = Path(prefix)
    _check_inputs(f"bowtie2 index {prefix}", *fastas)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{prefix.name}.", dir=prefix.parent) as tmp:
        tmp_prefix = Path(tmp) / prefix.name
        cmd = [
            tool("bowtie2-build"), "--threads", threads, "--seed", seed,
            ",".join(str(f) for f in fastas), tmp_prefix,
        ]  # fmt: skip
        run_commands([cmd], f"bowtie2 index {prefix}")
        built = sorted(Path(tmp).glob(f"{prefix.name}*.bt2*"))
        if not built:
            raise ToolError(f"bowtie2 index {prefix}: bowtie2-build wrote no index files.")
        out = []
        for f in built:
            dest = prefix.parent / f.name
            os.replace(f, dest)
            out.append(dest)
    return out


def check_bowtie2_index(prefix: str | os.PathLike) -> None:
    """Raise :class:`InputError` unless ``prefix`` names a complete bowtie2 index."""
    missing = [
        s
        for s in BOWTIE2_INDEX_SUFFIXES
        if not Path(f"{prefix}{s}").exists() and not Path(f"{prefix}{s}l").exists()
    ]
    if missing:
        raise InputError(
            f"bowtie2 index {prefix}: missing {', '.join(f'{prefix}{s}' for s in missing)}; "
            "set `align.bowtie2_index` to the prefix of a complete index (without .1.bt2) or "
            "leave it empty to build one from the genome."
        )


def trim_pair(
    run: str,
    r1: str | os.PathLike,
    r2: str | os.PathLike,
    out1: str | os.PathLike,
    out2: str | os.PathLike,
    cfg: AlignConfig,
    threads: int = 1,
    report: str | os.PathLike | None = None,
) -> dict:
    """cutadapt Nextera trimming of a FASTQ pair (outputs written atomically). Returns
    cutadapt's JSON report (``read_counts``: input pairs, pairs written, ...)."""
    _check_inputs(run, r1, r2)
    with (
        atomic_path(out1) as t1,
        atomic_path(out2) as t2,
        tempfile.NamedTemporaryFile(suffix=".json") as js,
    ):
        cmd = [
            tool("cutadapt"), "-j", threads,
            "-a", cfg.adapter_r1, "-A", cfg.adapter_r2,
            "-O", cfg.min_overlap, "-e", cfg.adapter_error_rate,
            "-m", cfg.min_length, "--json", js.name,
            "-o", t1, "-p", t2, r1, r2,
        ]  # fmt: skip
        run_commands([cmd], run)
        stats = json.loads(Path(js.name).read_text())
    if report:
        with atomic_path(report) as tmp:
            Path(tmp).write_text(json.dumps(stats, indent=1))
    return stats


def align_pair(
    run: str,
    r1: str | os.PathLike,
    r2: str | os.PathLike,
    index: str | os.PathLike,
    out_bam: str | os.PathLike,
    cfg: AlignConfig,
    threads: int = 1,
) -> dict:
    """Align a trimmed pair and write the filtered, deduplicated BAM of the kept contigs
    (atomically, coordinate-sorted, no index). Returns QC counts: ``read_pairs`` (bowtie2's
    input), ``aligned_pairs`` (concordant), ``examined_reads`` and ``duplicate_reads``
    (markdup), ``reads_by_contig`` (after deduplication) and the kept ``contigs``."""
    _check_inputs(run, r1, r2)
    check_bowtie2_index(index)
    st = tool("samtools")
    out_bam = Path(out_bam)
    t = str(max(1, threads))
    with tempfile.TemporaryDirectory(prefix=f".{out_bam.name}.", dir=out_bam.parent) as tmp:
        tmp = Path(tmp)
        sorted_bam, dedup = tmp / "sorted.bam", tmp / "dedup.bam"
        bowtie2 = [
            tool("bowtie2"), "-p", t, "-X", cfg.max_fragment_length,
            "--no-mixed", "--no-discordant", *cfg.bowtie2_extra,
            "-x", index, "-1", r1, "-2", r2,
        ]  # fmt: skip
        keep = ["-f", "2", "-F", "1804"]
        errs = run_commands(
            [
                bowtie2,
                [st, "view", "-u", *keep, "-q", cfg.min_mapq, "-"],
                [st, "fixmate", "-m", "-u", "-", "-"],
                [st, "view", "-u", *keep, "-"],  # pairs whose mate failed MAPQ are now orphans
                [st, "sort", "-@", t, "-m", SORT_MEMORY, "-T", tmp / "sort", "-o", sorted_bam, "-"],
            ],
            run,
        )
        pairs, aligned = parse_bowtie2_summary(errs[0], run)
        stats_file = tmp / "markdup.txt"
        run_commands([[st, "markdup", "-r", "-@", t, "-f", stats_file, sorted_bam, dedup]], run)
        dup = parse_markdup_stats(stats_file.read_text())
        pysam.index(str(dedup))
        by_contig = contig_counts(dedup)
        contigs = [c for c in cfg.keep_contigs if c in by_contig]
        if not contigs:
            raise InputError(
                f"run {run}: none of `align.keep_contigs` ({', '.join(cfg.keep_contigs[:4])}, "
                f"...) is a contig of the index ({', '.join(list(by_contig)[:4])}, ...); set "
                "`align.keep_contigs` to the genome's chromosome names."
            )
        dropped = {c: n for c, n in by_contig.items() if c not in contigs and n}
        if dropped:
            log.info("%s: reads dropped on contigs not kept: %s", run, dropped)
        with atomic_path(out_bam) as out:
            run_commands([[st, "view", "-b", "-@", t, "-o", out, dedup, *contigs]], run)
    return {
        "read_pairs": pairs,
        "aligned_pairs": aligned,
        **dup,
        "reads_by_contig": by_contig,
        "contigs": contigs,
    }


def parse_bowtie2_summary(text: str, run: str = "") -> tuple[int, int]:
    """(read pairs, concordantly aligned pairs) from bowtie2's stderr summary."""
    total = re.search(r"^\s*(\d+) reads; of these:", text, re.M)
    conc = re.findall(
        r"^\s*(\d+) \([\d.]+%\) aligned concordantly (?:exactly 1|>1) times?", text, re.M
    )
    if not total or len(conc) != 2:
        raise ToolError(f"run {run}: bowtie2 printed no alignment summary:\n{text[-2000:]}")
    return int(total.group(1)), sum(int(c) for c in conc)


def parse_markdup_stats(text: str) -> dict[str, int]:
    """``examined_reads`` and ``duplicate_reads`` from ``samtools markdup -f`` statistics."""
    values = dict(re.findall(r"^([A-Z ]+): (\d+)$", text, re.M))
    try:
        return {
            "examined_reads": int(values["EXAMINED"]),
            "duplicate_reads": int(values["DUPLICATE TOTAL"]),
        }
    except KeyError as exc:
        raise ToolError(f"samtools markdup statistics without {exc}:\n{text[:2000]}") from exc


def contig_counts(bam: str | os.PathLike) -> dict[str, int]:
    """Mapped reads per contig of an indexed BAM (``samtools idxstats``)."""
    with pysam.AlignmentFile(str(bam), "rb") as fh:
        return {s.contig: int(s.mapped) for s in fh.get_index_statistics()}


def ocr_intervals(path: str | os.PathLike, halfwidth: int = 250) -> pd.DataFrame:
    """OCRs as ``chrom``, ``start``, ``end`` (0-based, half-open): an ImmGen OCR table (CSV,
    intervals of ``halfwidth`` around the summit) or a BED file (first three columns)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        from bpaitac.data.ocr_table import read_ocr_table

        table = read_ocr_table(path, [])
        summit = table["summit"].to_numpy(np.int64)
        return pd.DataFrame(
            {"chrom": table["chrom"], "start": np.maximum(summit - halfwidth, 0),
             "end": summit + halfwidth}
        )  # fmt: skip
    require_file(path, "OCR BED file", "run the rule that writes it or fix the path.")
    bed = pd.read_csv(path, sep="\t", header=None, comment="#", usecols=[0, 1, 2], dtype={0: str})
    bed.columns = ["chrom", "start", "end"]
    return bed


def insertion_positions(bam: str | os.PathLike, read_filter: ReadFilter) -> dict[str, np.ndarray]:
    """Tn5 insertion positions (sorted) per contig of the reads of a BAM that pass
    ``read_filter`` (the preprocessing's filter and shifts; :mod:`bpaitac.data.insertions`)."""
    f = read_filter
    out: dict[str, list[int]] = {}
    with pysam.AlignmentFile(str(bam), "rb") as fh:
        for a in fh.fetch(until_eof=True):
            if a.reference_end is None or not f.keeps(a.flag, a.mapping_quality):
                continue
            p = f.insertion(a.reference_start, a.reference_end, a.is_reverse)
            out.setdefault(a.reference_name, []).append(p)
    return {c: np.sort(np.asarray(v, np.int64)) for c, v in out.items()}


def fraction_in_ocrs(positions: Mapping[str, np.ndarray], ocrs: pd.DataFrame) -> float:
    """Share of insertions inside any OCR interval (overlapping intervals count once)."""
    total = sum(len(v) for v in positions.values())
    if total == 0:
        return float("nan")
    inside = 0
    for chrom, group in ocrs.groupby("chrom", sort=False):
        pos = positions.get(str(chrom))
        if pos is None or not len(pos):
            continue
        s, e = merge_windows(group["start"].to_numpy(np.int64), group["end"].to_numpy(np.int64))
        inside += int((np.searchsorted(pos, e) - np.searchsorted(pos, s)).sum())
    return inside / total


def qc_row(
    run: str, trim_stats: Mapping, align_stats: Mapping, frip: float, cfg: AlignConfig
) -> dict:
    """One run's QC row (:data:`QC_COLUMNS`; percentages 0-100, FRiP a fraction)."""
    by_contig = align_stats["reads_by_contig"]
    total = sum(by_contig.values())
    kept = sum(by_contig[c] for c in align_stats["contigs"])
    pairs = align_stats["read_pairs"]
    examined = align_stats["examined_reads"]
    counts = trim_stats.get("read_counts", {})
    return {
        "run": run,
        "read_pairs": int(counts.get("input", pairs)),
        "trimmed_pairs": int(counts.get("output", pairs)),
        "aligned_pct": round(100 * align_stats["aligned_pairs"] / pairs, 3) if pairs else 0.0,
        "duplicate_pct": round(100 * align_stats["duplicate_reads"] / examined, 3)
        if examined
        else 0.0,
        "chrm_pct": round(100 * by_contig.get(cfg.chrm, 0) / total, 3) if total else 0.0,
        "kept_pairs": kept // 2,
        "frip": round(frip, 5),
    }


def process_run(
    run: str,
    r1: str | os.PathLike,
    r2: str | os.PathLike,
    index: str | os.PathLike,
    out_bam: str | os.PathLike,
    qc_path: str | os.PathLike,
    cfg: AlignConfig,
    ocrs: str | os.PathLike | pd.DataFrame | None = None,
    threads: int = 1,
    trim_report: str | os.PathLike | None = None,
    trimmed: bool = False,
) -> dict:
    """Trim (unless ``trimmed``), align and filter one run; write its BAM and QC row (TSV).

    ``trim_report`` is cutadapt's JSON report (read when ``trimmed``, for the read counts)."""
    out_bam = Path(out_bam)
    with tempfile.TemporaryDirectory(prefix=f".{run}.", dir=out_bam.parent) as tmp:
        if trimmed:
            t1, t2 = r1, r2
            stats = json.loads(Path(trim_report).read_text()) if trim_report else {}
        else:
            t1, t2 = Path(tmp) / f"{run}_R1.fastq.gz", Path(tmp) / f"{run}_R2.fastq.gz"
            stats = trim_pair(run, r1, r2, t1, t2, cfg, threads, trim_report)
        counts = align_pair(run, t1, t2, index, out_bam, cfg, threads)
    frip = float("nan")
    if ocrs is not None:
        table = ocrs if isinstance(ocrs, pd.DataFrame) else ocr_intervals(ocrs, cfg.ocr_halfwidth)
        frip = fraction_in_ocrs(insertion_positions(out_bam, cfg.qc_filter()), table)
    row = qc_row(run, stats, counts, frip, cfg)
    with atomic_path(qc_path) as tmp_qc:
        pd.DataFrame([row], columns=list(QC_COLUMNS)).to_csv(tmp_qc, sep="\t", index=False)
    log.info("%s: %s", run, row)
    return row


def merge_bams(
    bams: Sequence[str | os.PathLike], out: str | os.PathLike, threads: int = 1, name: str = ""
) -> Path:
    """Merge coordinate-sorted BAMs into ``out`` and index it (``out.bai``), atomically; a single
    BAM is copied."""
    out = Path(out)
    name = name or out.stem
    if not bams:
        raise InputError(f"{name}: no run BAMs to merge; check the run table for this cell type.")
    _check_inputs(name, *bams)
    st = tool("samtools")
    with atomic_path(out) as tmp, atomic_path(f"{out}.bai") as tmp_bai:
        if len(bams) == 1:
            shutil.copyfile(bams[0], tmp)
        else:
            run_commands([[st, "merge", "-f", "-@", max(1, threads), "-o", tmp, *bams]], name)
        run_commands([[st, "index", "-@", max(1, threads), "-o", tmp_bai, tmp]], name)
    return out


def qc_table(paths: Sequence[str | os.PathLike], runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The per-run QC rows as one table; with ``runs`` (run table) its ``celltype`` and
    ``replicate`` come first after ``run``."""
    table = pd.concat([pd.read_csv(p, sep="\t") for p in paths], ignore_index=True)
    if runs is not None:
        extra = [c for c in ("celltype", "replicate") if c in runs.columns]
        table = runs[["run", *extra]].merge(table, on="run", how="right")
    return table


def write_qc_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write the QC table (TSV) atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def plot_qc(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Bars per run of aligned %, duplicate %, chrM % and FRiP (one panel each), saved
    atomically (format from the suffix)."""
    import matplotlib.pyplot as plt

    panels = [
        ("aligned_pct", "aligned (%)"),
        ("duplicate_pct", "duplicates (%)"),
        ("chrm_pct", "chrM (%)"),
        ("frip", "insertions in OCRs (FRiP)"),
    ]
    n = len(table)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(4.0, 0.18 * n + 1.5), 8), sharex=True, squeeze=False
    )
    x = np.arange(n)
    labels = table["run"].astype(str)
    if "celltype" in table.columns:
        labels = table["celltype"].astype(str) + " " + labels
    for ax, (col, title) in zip(axes[:, 0], panels):
        ax.bar(x, table[col].to_numpy(float), color="#4477aa")
        ax.set_ylabel(title, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    ax = axes[-1, 0]
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=90, fontsize=6 if n > 20 else 8)
    fig.suptitle(f"Alignment QC, {n} runs", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=150)
    plt.close(fig)
