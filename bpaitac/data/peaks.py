"""Closed-OCR p-values from the cell types' BAMs with MACS3 (`preprocess.closed_pvalues: macs3`).

The paper calls an OCR closed in a cell type when its MACS2 peak-calling p-value there is above
0.25. No public table holds those p-values per OCR and cell type, so they are recomputed here,
one cell type at a time:

1. ``macs3 callpeak -t {bam} --bdg ...`` writes the treatment pile-up and the local-lambda
   bedGraphs (the options come from ``preprocess.macs3``);
2. ``macs3 bdgcmp -m ppois`` turns them into -log10 Poisson p-values per base;
3. the value at each OCR summit is read from that bedGraph (0, i.e. p = 1, where the bedGraph
   has no interval: no read there).

MACS3 runs as a subprocess: its output goes line by line to the log (the rule's log file), and a
failure raises :class:`Macs3Error` naming the BAM, the command and the end of its output. Its
scratch files live in a temporary directory next to the output and are always removed.
"""

from __future__ import annotations

import collections
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.io import InputError, atomic_path, require_file

log = logging.getLogger(__name__)

BEDGRAPH_CHUNK = 2_000_000
"""bedGraph lines read at a time when looking up the summits (bounded memory)."""


class Macs3Error(RuntimeError):
    """MACS3 failed; the message names the BAM, the command and the end of MACS3's output."""


def macs3_executable() -> str:
    """The ``macs3`` command: next to this Python (a venv's bin/) or on PATH."""
    beside = Path(sys.executable).parent / "macs3"
    if beside.exists():
        return str(beside)
    found = shutil.which("macs3")
    if found is None:
        raise InputError(
            "macs3 is not installed: `pip install macs3==3.0.4` (the pin of pyproject.toml, also "
            "in envs/preprocess.yaml), or set `preprocess.closed_pvalues: table` and provide "
            "closed_pvalues.tsv."
        )
    return found


def genome_size_argument(value: str | int | float, fai: str | os.PathLike | None) -> str:
    """MACS3's ``-g``: ``auto`` = the total length of the genome (its .fai), else the value as
    given (a number or one of MACS3's shortcuts hs, mm, ce, dm)."""
    if str(value) != "auto":
        return str(value)
    if fai is None:
        raise InputError("`preprocess.macs3.genome_size: auto` needs the genome's .fai index.")
    lengths = pd.read_csv(fai, sep="\t", header=None, usecols=[1]).iloc[:, 0]
    return str(int(lengths.sum()))


def callpeak_command(
    bam: str | os.PathLike, name: str, outdir: str | os.PathLike, cfg: Mapping, genome_size: str
) -> list[str]:
    """``macs3 callpeak`` with the bedGraphs on, from the validated ``preprocess.macs3`` config."""
    fmt = str(cfg["format"])
    cmd = [
        macs3_executable(),
        "callpeak",
        "-t",
        str(bam),
        "-f",
        fmt,
        "-g",
        genome_size,
        "-n",
        name,
        "--outdir",
        str(outdir),
        "--tempdir",
        str(outdir),
        "--bdg",
        "--keep-dup",
        str(cfg["keep_dup"]),
    ]
    if fmt != "BAMPE":  # BAMPE piles up whole fragments: no shift or extension
        cmd += [
            "--nomodel",
            "--shift",
            str(int(cfg["shift"])),
            "--extsize",
            str(int(cfg["extsize"])),
        ]
    return cmd + shlex.split(str(cfg["extra"]))


def run_logged(cmd: Sequence[str], what: str, tail_lines: int = 20) -> None:
    """Run ``cmd``, sending each line of its stdout and stderr to the log as it comes.

    A non-zero exit raises :class:`Macs3Error` naming ``what`` (the BAM), the command and the
    last ``tail_lines`` lines of its output.
    """
    log.info("running: %s", shlex.join(cmd))
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)
    try:
        proc = subprocess.Popen(
            list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise Macs3Error(f"{what}: could not start `{shlex.join(cmd)}`: {exc}") from exc
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            log.info("  %s", line)
    code = proc.wait()
    if code != 0:
        output = "\n".join(tail) or "(no output)"
        raise Macs3Error(
            f"{what}: `{shlex.join(cmd)}` failed with exit status {code}. Its last output "
            f"lines:\n{output}\nCheck that the BAM is a valid, coordinate-sorted BAM and the "
            "`preprocess.macs3` options."
        )


def values_at(
    bedgraph: str | os.PathLike,
    chroms: Sequence[str] | np.ndarray,
    positions: Sequence[int] | np.ndarray,
    default: float = 0.0,
) -> np.ndarray:
    """bedGraph value at each 0-based position (``default`` where no interval covers it).

    The bedGraph is streamed in chunks; within a chromosome its intervals must be sorted and
    disjoint, as MACS3 writes them.
    """
    chroms = np.asarray(chroms, dtype=object)
    positions = np.asarray(positions, dtype=np.int64)
    out = np.full(len(positions), np.nan)
    rows_of = {c: np.flatnonzero(chroms == c) for c in pd.unique(chroms)}
    with open(bedgraph) as fh:
        first = fh.readline()
    reader = pd.read_csv(
        bedgraph,
        sep="\t",
        header=None,
        names=["chrom", "start", "end", "value"],
        dtype={"chrom": str, "start": np.int64, "end": np.int64, "value": np.float64},
        skiprows=1 if first.startswith(("track", "browser", "#")) else 0,
        chunksize=BEDGRAPH_CHUNK,
    )
    for chunk in reader:
        for chrom, part in chunk.groupby("chrom", sort=False):
            rows = rows_of.get(chrom)
            if rows is None:
                continue
            starts, ends = part["start"].to_numpy(), part["end"].to_numpy()
            pos = positions[rows]
            k = np.searchsorted(ends, pos, side="right")
            inside = k < len(ends)
            inside[inside] &= starts[k[inside]] <= pos[inside]
            out[rows[inside]] = part["value"].to_numpy()[k[inside]]
    missing = np.isnan(out)
    if missing.any():
        log.info(
            "%s: %d of %d positions not covered (set to %g)",
            bedgraph,
            int(missing.sum()),
            len(out),
            default,
        )
        out[missing] = default
    return out


def summit_log10p(
    bam: str | os.PathLike,
    chroms: Sequence[str] | np.ndarray,
    summits: Sequence[int] | np.ndarray,
    cfg: Mapping,
    genome_fai: str | os.PathLike | None = None,
    workdir: str | os.PathLike | None = None,
    name: str = "sample",
) -> np.ndarray:
    """-log10 MACS3 p-values at 0-based ``summits``: ``macs3 callpeak --bdg`` on ``bam`` then
    ``macs3 bdgcmp -m ppois``, read at each summit. ``cfg`` is ``preprocess.macs3``."""
    bam = require_file(bam, "BAM", "provide it or fix `download.bam_url_template`.")
    size = genome_size_argument(cfg["genome_size"], genome_fai)
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".macs3.", dir=workdir) as tmp:
        run_logged(callpeak_command(bam, name, tmp, cfg, size), f"macs3 callpeak on {bam}")
        treat, control = (
            Path(tmp) / f"{name}_treat_pileup.bdg",
            Path(tmp) / f"{name}_control_lambda.bdg",
        )
        bdgcmp = [
            macs3_executable(),
            "bdgcmp",
            "-t",
            str(treat),
            "-c",
            str(control),
            "-m",
            "ppois",
            "--outdir",
            tmp,
            "-o",
            f"{name}_ppois.bdg",
        ]
        run_logged(bdgcmp, f"macs3 bdgcmp on the bedGraphs of {bam}")
        values = values_at(Path(tmp) / f"{name}_ppois.bdg", chroms, summits)
    return values


def celltype_pvalues(
    bam: str | os.PathLike,
    ocrs: pd.DataFrame,
    celltype: str,
    cfg: Mapping,
    out: str | os.PathLike,
    genome_fai: str | os.PathLike | None = None,
    closed_p: float = 0.25,
) -> pd.DataFrame:
    """Write ``peak_id`` + one column named ``celltype`` (-log10 p at each OCR summit) to
    ``out`` (TSV). ``ocrs`` has ``peak_id``, ``chrom`` and 0-based ``summit``."""
    values = summit_log10p(
        bam,
        ocrs["chrom"].to_numpy(object),
        ocrs["summit"].to_numpy(np.int64),
        cfg,
        genome_fai=genome_fai,
        workdir=Path(out).parent,
        name="macs3",
    )
    table = pd.DataFrame({"peak_id": ocrs["peak_id"].to_numpy(), celltype: np.round(values, 5)})
    log.info(
        "%s: -log10 p at %d OCR summits: median %.3g, %d with p > %g",
        celltype,
        len(values),
        float(np.median(values)) if len(values) else float("nan"),
        int((values < -np.log10(closed_p)).sum()),
        closed_p,
    )
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def merge_pvalues(
    paths: Sequence[str | os.PathLike], celltypes: Sequence[str], out: str | os.PathLike
) -> pd.DataFrame:
    """Join per-cell-type tables (``peak_id`` + that cell type) into ``closed_pvalues.tsv``."""
    if len(paths) != len(celltypes):
        raise ValueError("one p-value table per cell type is needed")
    merged: pd.DataFrame | None = None
    for path, ct in zip(paths, celltypes):
        part = pd.read_csv(path, sep="\t", dtype={"peak_id": str})
        if list(part.columns) != ["peak_id", ct]:
            raise InputError(
                f"{path}: columns {list(part.columns)}, expected ['peak_id', {ct!r}]; re-run its "
                "closed_pvalues_macs3 job."
            )
        if merged is None:
            merged = part
        elif not part["peak_id"].equals(merged["peak_id"]):
            raise InputError(
                f"{path}: its OCRs differ from those of {paths[0]}; re-run the "
                "closed_pvalues_macs3 jobs."
            )
        else:
            merged[ct] = part[ct].to_numpy()
    assert merged is not None
    with atomic_path(out) as tmp:
        merged.to_csv(tmp, sep="\t", index=False)
    return merged
