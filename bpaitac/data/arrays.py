"""From the OCR table, the genome and per-cell-type insertion counts to the training arrays.

The steps (one Snakemake rule each, see ``workflow/rules/preprocess.smk``):

1. :func:`prepare_ocrs`: validate the OCR table, drop OCRs whose 1000 bp window runs off a
   chromosome or holds too many N (counts logged), assign splits by chromosome and write the
   sequences of each split (``seq.npy``, uint8 base indices A,C,G,T,N = 0..4) with ``ocrs.tsv``.
2. :func:`count_ocr_insertions`: one pass over one cell type's BAM (:mod:`bpaitac.data.insertions`),
   Tn5 insertions per base in the central ``profile_width`` bp of every kept OCR.
3. :func:`assemble_dataset`: stream the per-cell-type counts OCR chunk by OCR chunk into
   ``profile.npy`` (N, C, 250) per split and quantile-normalise the per-OCR totals across
   cell types over *all* OCRs before splitting them into ``counts.npy``.

The Tn5-bias training sets are built by :mod:`bpaitac.data.bias_sets`, with the readers and
writers here. Arrays are written row by row with :class:`NpyRowWriter`, so memory stays bounded
by one chunk of OCRs (plus the (N, C) table of totals needed for quantile normalisation).
``cfg`` is the validated ``preprocess:`` config section (the schema holds the defaults).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
from scipy.stats import rankdata

from bpaitac.data.insertions import (
    ReadFilter,
    check_bam_contigs,
    check_insertions,
    count_insertions,
    ensure_bam_index,
)
from bpaitac.data.ocr_table import read_ocr_table
from bpaitac.data.sequence import encode_sequence
from bpaitac.data.splits import split_of_chroms
from bpaitac.io import CellTypeNames, InputError, atomic_path
from bpaitac.workflow.splits import SPLITS

log = logging.getLogger(__name__)

PAPER_SPLIT_OCRS = {"train": 267_237, "val": 28_329, "test": 32_361}
"""The paper's split sizes on ImmGen (Methods, "Data processing": 327,927 of the table's 518,845
OCRs, by a filter the paper does not state), logged beside each run's for comparison."""

OCR_TSV_COLUMNS = ("peak_id", "chrom", "summit")


# --------------------------------------------------------------------------------------------
# Genome windows
# --------------------------------------------------------------------------------------------


def check_fasta_index(fasta: str | os.PathLike) -> Path:
    """The ``.fai`` of an uncompressed FASTA, checked against the file: present, not older than
    it, and every sequence where the index puts it (its header line right before its first base,
    its last base inside the file). A stale index reads wrong sequences without any error.

    A bgzip-compressed FASTA (``.fai`` offsets into the uncompressed bytes) is checked for age
    only.
    """
    fasta = require_fasta(fasta)
    fai = Path(f"{fasta}.fai")
    fix = f"rebuild it: `samtools faidx {fasta}` (or delete {fai} and rerun)"
    if not fai.exists():
        raise InputError(f"{fasta}: the FASTA has no index {fai}; run `samtools faidx {fasta}`.")
    if fai.stat().st_mtime < fasta.stat().st_mtime:
        raise InputError(f"{fai}: the index is older than {fasta}, which changed since; {fix}.")
    size = fasta.stat().st_size
    with open(fasta, "rb") as fh:
        if fh.read(2) == b"\x1f\x8b":
            return fai
        for line, row in enumerate(fai.read_text().splitlines(), start=1):
            fields = row.split("\t")
            try:
                name, length, offset, bases, width = fields[0], *map(int, fields[1:5])
            except ValueError:
                raise InputError(f"{fai}, line {line}: not a .fai line; {fix}.") from None
            last = length - 1  # 0-based position of the last base: its byte must exist
            end = offset + (last // bases * width + last % bases + 1 if bases and length else 0)
            fh.seek(max(0, offset - 1 - 4096))
            before = fh.read(min(offset, 4097))
            header = before[before.rfind(b"\n>", 0, len(before) - 1) + 1 :] if before else b""
            if (
                end > size
                or not before.endswith(b"\n")
                or not header.startswith(b">")
                or header[1:].split()[:1] != [name.encode()]
            ):
                raise InputError(
                    f"{fai}, line {line}: sequence {name!r} is not where the index puts it "
                    f"in {fasta} (byte {offset}, {length} bp); the FASTA changed after it was "
                    f"indexed: {fix}."
                )
    return fai


def require_fasta(fasta: str | os.PathLike) -> Path:
    """``fasta`` as a Path; raises naming it when it does not exist."""
    fasta = Path(fasta)
    if not fasta.exists():
        raise InputError(f"{fasta}: genome FASTA not found; run the simulate or download step.")
    return fasta


@contextlib.contextmanager
def open_fasta(fasta: str | os.PathLike) -> Iterator[pysam.FastaFile]:
    """``pysam.FastaFile`` of a FASTA whose index was checked (:func:`check_fasta_index`); the
    one way the package opens a genome."""
    check_fasta_index(fasta)
    try:
        fa = pysam.FastaFile(str(fasta))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"{fasta}: not a readable indexed FASTA ({exc}); rebuild its index with "
            f"`samtools faidx {fasta}` or fetch it again."
        ) from exc
    with fa:
        yield fa


def genome_lengths(fasta: str | os.PathLike) -> dict[str, int]:
    """Contig lengths of an indexed FASTA (index checked, :func:`open_fasta`)."""
    with open_fasta(fasta) as fa:
        return dict(zip(fa.references, fa.lengths))


def window_status(
    fasta: pysam.FastaFile,
    lengths: Mapping[str, int],
    chrom: str,
    start: int,
    width: int,
    max_n_fraction: float,
) -> tuple[str, np.ndarray | None]:
    """('ok', encoded window) or ('off_end' | 'n_rich', None) for ``[start, start+width)``."""
    if start < 0 or start + width > lengths[chrom]:
        return "off_end", None
    seq = encode_sequence(fasta.fetch(chrom, start, start + width))
    if np.count_nonzero(seq == 4) > max_n_fraction * width:
        return "n_rich", None
    return "ok", seq


def check_window_config(cfg: Mapping) -> tuple[int, int]:
    """(window, profile_width) from the ``preprocess:`` config, checked for consistency."""
    window, width = int(cfg["window"]), int(cfg["profile_width"])
    if not 1 <= width <= window:
        raise InputError(
            f"config key `preprocess.profile_width`: {width} must be between 1 and "
            f"`preprocess.window` ({window})."
        )
    return window, width


# --------------------------------------------------------------------------------------------
# OCR table
# --------------------------------------------------------------------------------------------


def load_ocrs(
    path: str | os.PathLike,
    celltypes: CellTypeNames | Sequence[str],
    included_only: bool = False,
    genome: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """The OCR table as ``peak_id``, ``chrom``, ``summit`` (0-based); with ``included_only``
    only the OCRs flagged in ``Included.in.systematic.analysis``.

    :func:`bpaitac.data.ocr_table.read_ocr_table` validates it: missing or duplicated columns, a
    cell type without its column, duplicated peak IDs, bad summits, non-finite signals and (with
    ``genome``) chromosomes or summits outside the genome raise errors that name the file, the
    column or line, and the fix.
    """
    lengths = None if genome is None else genome_lengths(genome)
    table = read_ocr_table(
        path,
        celltypes,
        included_only=included_only,
        chrom_lengths=lengths,
        genome=genome or "the genome",
    )
    return table.loc[:, list(OCR_TSV_COLUMNS)].reset_index(drop=True)


def check_celltype_bams(
    celltypes: Sequence[str],
    bams: Mapping[str, str | os.PathLike],
    celltype_table: str = "the cell-type table",
) -> None:
    """Every cell type in use must have a BAM file."""
    for ct in celltypes:
        path = bams.get(ct)
        if path is None or not Path(path).exists():
            raise InputError(
                f"cell type {ct!r} is in the OCR table and the config but has no BAM "
                f"({path or 'none given'}); provide bams/{ct}.bam or drop the cell type from "
                f"{celltype_table} / `celltypes_per_lineage`."
            )


def prepare_ocrs(
    table: str | os.PathLike,
    genome: str | os.PathLike,
    celltypes: CellTypeNames | Sequence[str],
    cfg: Mapping,
    out_all: str | os.PathLike,
    out_splits: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]],
) -> pd.DataFrame:
    """Select the usable OCRs and write ``ocrs_all.tsv`` (with a split column) and, per split,
    ``seq.npy`` (N, window) uint8 and ``ocrs.tsv``. ``out_splits[split] = (seq, tsv)``.

    ``celltypes`` (with their aliases, :class:`~bpaitac.io.CellTypeNames`) must all have a signal
    column. Every chromosome listed in ``preprocess.splits`` must hold kept OCRs and every split
    some OCRs (:func:`bpaitac.data.splits.split_of_chroms`)."""
    window, _ = check_window_config(cfg)
    max_n = float(cfg["max_n_fraction"])
    included_only = bool(cfg["included_only"])
    ocrs = load_ocrs(table, celltypes, included_only=included_only, genome=genome)
    if included_only:
        log.info("%s: %d OCRs flagged in Included.in.systematic.analysis", table, len(ocrs))
    lengths = genome_lengths(genome)
    ocrs["start"] = ocrs["summit"] - window // 2
    status = np.empty(len(ocrs), dtype=object)
    with open_fasta(genome) as fa:
        for i, (chrom, start) in enumerate(zip(ocrs["chrom"], ocrs["start"])):
            status[i], _ = window_status(fa, lengths, chrom, int(start), window, max_n)
    n_off, n_n = int((status == "off_end").sum()), int((status == "n_rich").sum())
    log.info(
        "%s: %d OCRs; dropped %d whose %d bp window runs off a chromosome end and %d with more "
        "than %.3g of N; %d kept",
        table,
        len(ocrs),
        n_off,
        window,
        n_n,
        max_n,
        int((status == "ok").sum()),
    )
    kept = ocrs[status == "ok"].reset_index(drop=True)
    if kept.empty:
        raise InputError(f"{table}: no OCR left after filtering; check the genome and table.")
    kept["split"] = split_of_chroms(
        kept["chrom"], cfg["splits"], f"the {len(kept)} OCRs of {table} kept after filtering"
    )
    for split in SPLITS:
        n = int((kept["split"] == split).sum())
        log.info(
            "split %s: %d OCRs on %s (the paper's ImmGen %s split: %s OCRs)",
            split,
            n,
            sorted(set(kept.chrom[kept.split == split])),
            split,
            f"{PAPER_SPLIT_OCRS.get(split, 0):,}",
        )
    with open_fasta(genome) as fa:
        for split, (seq_path, tsv_path) in out_splits.items():
            part = kept[kept["split"] == split]
            with (
                atomic_path(seq_path) as tmp,
                NpyRowWriter(tmp, np.uint8, (window,), len(part)) as w,
            ):
                for chrom, start in zip(part["chrom"], part["start"]):
                    w.write(encode_sequence(fa.fetch(chrom, int(start), int(start) + window))[None])
            with atomic_path(tsv_path) as tmp:
                part.loc[:, list(OCR_TSV_COLUMNS)].to_csv(tmp, sep="\t", index=False)
    with atomic_path(out_all) as tmp:
        kept.loc[:, [*OCR_TSV_COLUMNS, "split"]].to_csv(tmp, sep="\t", index=False)
    return kept


def read_ocrs_tsv(path: str | os.PathLike) -> pd.DataFrame:
    """Read an ``ocrs.tsv`` / ``ocrs_all.tsv`` written by :func:`prepare_ocrs`."""
    table = pd.read_csv(path, sep="\t", dtype={"peak_id": str, "chrom": str})
    missing = [c for c in OCR_TSV_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; re-run the prepare_ocrs rule.")
    return table


def profile_offset(window: int, width: int) -> int:
    """Offset of the profile (central ``width`` bp) inside a ``window``-bp sequence."""
    return (window - width) // 2


def profile_starts(summits: np.ndarray, window: int, width: int) -> np.ndarray:
    """Genome start of the profile of windows ``[summit - window // 2, ...)``."""
    return np.asarray(summits, np.int64) - window // 2 + profile_offset(window, width)


# --------------------------------------------------------------------------------------------
# Insertions per cell type
# --------------------------------------------------------------------------------------------


def count_ocr_insertions(
    bam: str | os.PathLike,
    ocrs_tsv: str | os.PathLike,
    genome: str | os.PathLike,
    cfg: Mapping,
    out: str | os.PathLike,
    threads: int = 1,
    celltype: str | None = None,
    celltype_table: str = "the cell-type table",
) -> np.ndarray:
    """Insertions per base (uint16, clipped with a warning) in the central ``profile_width`` bp
    of every OCR of ``ocrs_tsv``, written to ``out`` as (N, profile_width). A BAM that gives no
    insertion at all is an error (:func:`bpaitac.data.insertions.check_insertions`)."""
    window, width = check_window_config(cfg)
    if celltype is not None:
        check_celltype_bams([celltype], {celltype: bam}, celltype_table)
    ocrs = read_ocrs_tsv(ocrs_tsv)
    ensure_bam_index(bam, bool(cfg["index_missing"]))
    check_bam_contigs(bam, genome_lengths(genome), sorted(set(ocrs["chrom"])), genome)
    profile = count_insertions(
        bam,
        ocrs["chrom"].to_numpy(object),
        profile_starts(ocrs["summit"].to_numpy(), window, width),
        width,
        ReadFilter.from_config(cfg),
        engine=str(cfg["engine"]),
        threads=threads,
    )
    check_insertions(profile, bam, f"{len(ocrs)} OCR profiles")
    with atomic_path(out) as tmp:
        np.save(tmp, profile)
    return profile


# --------------------------------------------------------------------------------------------
# Streaming .npy files
# --------------------------------------------------------------------------------------------


class NpyRowWriter:
    """Write a C-ordered ``.npy`` array row block by row block (bounded memory).

    With ``n_rows`` the header is written first and the row count is checked on close; without
    it rows go to a side file that is appended after the header on close.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dtype: np.dtype | type,
        row_shape: tuple[int, ...],
        n_rows: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(row_shape)
        self.n_rows = n_rows
        self.written = 0
        if n_rows is None:
            self._body_path = self.path.with_name(self.path.name + ".body")
            self.fh = open(self._body_path, "wb")  # noqa: SIM115 - closed in close()
        else:
            self.fh = open(self.path, "wb")  # noqa: SIM115
            self._header(self.fh, n_rows)

    def _header(self, fh, n: int) -> None:
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (n, *self.row_shape),
        }
        np.lib.format.write_array_header_1_0(fh, header)

    def write(self, rows: np.ndarray) -> None:
        """Append rows of shape (k, *row_shape) (cast to the writer's dtype)."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path}: rows of shape {rows.shape[1:]}, need {self.row_shape}")
        self.fh.write(rows.tobytes())
        self.written += rows.shape[0]

    def close(self) -> None:
        self.fh.close()
        if self.n_rows is None:
            with open(self.path, "wb") as out, open(self._body_path, "rb") as body:
                self._header(out, self.written)
                shutil.copyfileobj(body, out, 16 << 20)
            self._body_path.unlink()
        elif self.written != self.n_rows:
            raise RuntimeError(f"{self.path}: wrote {self.written} rows, expected {self.n_rows}")

    def __enter__(self) -> NpyRowWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.fh.close()
            if self.n_rows is None:
                self._body_path.unlink(missing_ok=True)


class NpyRowReader:
    """Read row blocks of a ``.npy`` file with plain reads (no memory map, bounded RSS)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.fh = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        version = np.lib.format.read_magic(self.fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(self.fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(self.fh)
        if fortran:
            raise InputError(f"{path}: Fortran-ordered array; re-create it C-ordered.")
        self.shape, self.dtype, self.offset = shape, dtype, self.fh.tell()
        self.row_items = int(np.prod(shape[1:], dtype=np.int64))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop``."""
        n = max(0, min(stop, self.shape[0]) - start)
        self.fh.seek(self.offset + start * self.row_items * self.dtype.itemsize)
        out = np.fromfile(self.fh, self.dtype, n * self.row_items)
        return out.reshape((n, *self.shape[1:]))

    def close(self) -> None:
        self.fh.close()

    def __enter__(self) -> NpyRowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Quantile normalisation and assembly
# --------------------------------------------------------------------------------------------


def quantile_normalise(x: np.ndarray) -> np.ndarray:
    """Quantile-normalise the columns of ``x`` (rows = OCRs, columns = cell types).

    Every column's values are replaced by the reference distribution, the mean across columns
    of the sorted columns, at their ranks. Tied values share the mean of the reference over the
    ranks they occupy (ranks from :func:`scipy.stats.rankdata`), so every column keeps the same
    sum as the reference and ties stay tied. Works column by column: besides the float64 result,
    memory is O(rows).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"quantile_normalise needs a 2-d array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("quantile_normalise: the input holds NaN or infinite values")
    n, c = x.shape
    reference = np.zeros(n)
    for j in range(c):
        reference += np.sort(x[:, j])
    reference /= max(c, 1)
    cum = np.concatenate([[0.0], np.cumsum(reference)])
    out = np.empty((n, c))
    for j in range(c):
        lo = rankdata(x[:, j], method="min").astype(np.int64)  # 1-based first tied rank
        hi = rankdata(x[:, j], method="max").astype(np.int64)  # 1-based last tied rank
        out[:, j] = (cum[hi] - cum[lo - 1]) / (hi - lo + 1)
    return out


def chunk_rows(row_bytes: int, chunk_bytes: int) -> int:
    """Rows of ``row_bytes`` each that fit in ``chunk_bytes`` (at least one)."""
    return max(1, chunk_bytes // max(1, row_bytes))


def assemble_dataset(
    ocrs_all: str | os.PathLike,
    insertions: Sequence[str | os.PathLike],
    celltypes: Sequence[str],
    out_splits: Mapping[str, tuple[str | os.PathLike, str | os.PathLike, str | os.PathLike]],
    chunk_bytes: int = 32 << 20,
) -> np.ndarray:
    """Stream per-cell-type insertion arrays (N, W) into per-split ``profile.npy`` (n, C, W),
    quantile-normalise the totals over all OCRs and write per-split ``counts.npy`` (n, C)
    float32 and ``celltypes.txt``. ``out_splits[split] = (profile, counts, celltypes_txt)``.

    Returns the (N, C) raw totals.
    """
    ocrs = read_ocrs_tsv(ocrs_all)
    if len(insertions) != len(celltypes):
        raise ValueError("one insertion array per cell type is needed")
    n, c = len(ocrs), len(celltypes)
    readers = [NpyRowReader(p) for p in insertions]
    try:
        width = readers[0].shape[1]
        for ct, r in zip(celltypes, readers):
            if r.shape != (n, width) or r.dtype != np.uint16:
                raise InputError(
                    f"{r.path}: shape {r.shape} {r.dtype}, expected ({n}, {width}) uint16 for "
                    f"cell type {ct}; re-run its insertions rule."
                )
        split = ocrs["split"].to_numpy(object)
        totals = np.zeros((n, c), np.int64)
        step = chunk_rows(c * width * 2, chunk_bytes)
        with contextlib.ExitStack() as stack:
            writers = {}
            for s, paths in out_splits.items():
                tmp = stack.enter_context(atomic_path(paths[0]))
                n_s = int((split == s).sum())
                writers[s] = stack.enter_context(NpyRowWriter(tmp, np.uint16, (c, width), n_s))
            block = np.empty((min(step, n), c, width), np.uint16)
            for a in range(0, n, step):
                b = min(n, a + step)
                for j, r in enumerate(readers):
                    block[: b - a, j] = r.read(a, b)
                totals[a:b] = block[: b - a].sum(axis=2, dtype=np.int64)
                for s, w in writers.items():
                    w.write(block[: b - a][split[a:b] == s])
            normalised = quantile_normalise(totals).astype(np.float32)
            for s, (_, counts_path, ct_path) in out_splits.items():
                np.save(stack.enter_context(atomic_path(counts_path)), normalised[split == s])
                tmp = stack.enter_context(atomic_path(ct_path))
                tmp.write_text("".join(f"{ct}\n" for ct in celltypes))
    finally:
        for r in readers:
            r.close()
    log.info(
        "%d OCRs x %d cell types quantile-normalised; median raw total per cell type: %s",
        n,
        c,
        np.median(totals, axis=0).tolist(),
    )
    return totals
