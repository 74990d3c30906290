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
4. :func:`closed_ocr_set` and :func:`protein_free_set`: the Tn5-bias training sets.

Arrays are written row by row with :class:`NpyRowWriter`, so memory stays bounded by one chunk
of OCRs (plus the (N, C) table of totals needed for quantile normalisation).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
from scipy.stats import rankdata

from bpaitac.data.fragments import count_fragment_insertions
from bpaitac.data.insertions import (
    ReadFilter,
    check_bam_contigs,
    clip_uint16,
    count_insertions,
    ensure_bam_index,
)
from bpaitac.data.ocr_table import PEAK_ID, read_ocr_table
from bpaitac.data.sequence import encode_sequence
from bpaitac.io import InputError, atomic_path, check_unique_columns

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
OCR_TSV_COLUMNS = ("peak_id", "chrom", "summit")
PVALUE_ID_COLUMNS = ("peak_id", PEAK_ID)
"""Accepted names of the peak-ID column of closed_pvalues.tsv (ours, or the ImmGen table's)."""


# --------------------------------------------------------------------------------------------
# Sequences and splits
# --------------------------------------------------------------------------------------------


def split_of_chroms(chroms: Sequence[str], splits: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Split name per chromosome: ``splits['test']`` -> test, ``splits['val']`` -> val, else
    train. Raises when a chromosome is listed in both or an unknown split is named."""
    unknown = set(splits) - {"test", "val"}
    if unknown:
        raise InputError(
            f"config key `preprocess.splits`: unknown split(s) {sorted(unknown)}; "
            "list chromosomes under `test` and `val` (the rest is train)."
        )
    test, val = set(splits.get("test", ())), set(splits.get("val", ()))
    both = sorted(test & val)
    if both:
        raise InputError(
            f"config key `preprocess.splits`: {', '.join(both)} listed as both test and val."
        )
    chroms = np.asarray(chroms, dtype=object)
    out = np.full(len(chroms), "train", dtype=object)
    out[np.isin(chroms, list(val))] = "val"
    out[np.isin(chroms, list(test))] = "test"
    return out


def genome_lengths(fasta: str | os.PathLike) -> dict[str, int]:
    """Contig lengths of an indexed FASTA."""
    with pysam.FastaFile(str(fasta)) as fa:
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
    window, width = int(cfg.get("window", 1000)), int(cfg.get("profile_width", 250))
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
    path: str | os.PathLike, celltypes: Sequence[str], included_only: bool = False
) -> pd.DataFrame:
    """The OCR table as ``peak_id``, ``chrom``, ``summit`` (0-based); with ``included_only``
    only the OCRs flagged in ``Included.in.systematic.analysis``.

    :func:`bpaitac.data.ocr_table.read_ocr_table` validates it: missing or duplicated columns, a
    cell type without its column, duplicated peak IDs and bad summits raise errors that name
    the file, the column or line, and the fix.
    """
    table = read_ocr_table(path, list(celltypes), included_only=included_only)
    return table.loc[:, list(OCR_TSV_COLUMNS)].reset_index(drop=True)


def check_celltype_bams(celltypes: Sequence[str], bams: Mapping[str, str | os.PathLike]) -> None:
    """Every cell type in use must have a BAM file."""
    for ct in celltypes:
        path = bams.get(ct)
        if path is None or not Path(path).exists():
            raise InputError(
                f"cell type {ct!r} is in the OCR table and the config but has no BAM "
                f"({path or 'none given'}); provide bams/{ct}.bam or drop the cell type from "
                "the cell-type table / `celltypes_per_lineage`."
            )


def prepare_ocrs(
    table: str | os.PathLike,
    genome: str | os.PathLike,
    celltypes: Sequence[str],
    cfg: Mapping,
    out_all: str | os.PathLike,
    out_splits: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]],
) -> pd.DataFrame:
    """Select the usable OCRs and write ``ocrs_all.tsv`` (with a split column) and, per split,
    ``seq.npy`` (N, window) uint8 and ``ocrs.tsv``. ``out_splits[split] = (seq, tsv)``."""
    window, _ = check_window_config(cfg)
    max_n = float(cfg.get("max_n_fraction", 0.01))
    included_only = bool(cfg.get("included_only", False))
    ocrs = load_ocrs(table, celltypes, included_only=included_only)
    if included_only:
        log.info("%s: %d OCRs flagged in Included.in.systematic.analysis", table, len(ocrs))
    lengths = genome_lengths(genome)
    absent = sorted(set(ocrs["chrom"]) - set(lengths))
    if absent:
        raise InputError(
            f"{table}: chromosome(s) {', '.join(absent[:5])} are not in {genome}; use the "
            "genome the OCRs were called on."
        )
    ocrs["start"] = ocrs["summit"] - window // 2
    status = np.empty(len(ocrs), dtype=object)
    with pysam.FastaFile(str(genome)) as fa:
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
    kept["split"] = split_of_chroms(kept["chrom"], cfg.get("splits", {}))
    for split in SPLITS:
        n = int((kept["split"] == split).sum())
        log.info("split %s: %d OCRs on %s", split, n, sorted(set(kept.chrom[kept.split == split])))
    with pysam.FastaFile(str(genome)) as fa:
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
) -> np.ndarray:
    """Insertions per base (uint16, clipped with a warning) in the central ``profile_width`` bp
    of every OCR of ``ocrs_tsv``, written to ``out`` as (N, profile_width)."""
    window, width = check_window_config(cfg)
    if celltype is not None:
        check_celltype_bams([celltype], {celltype: bam})
    ocrs = read_ocrs_tsv(ocrs_tsv)
    ensure_bam_index(bam, bool(cfg.get("index_missing", False)))
    check_bam_contigs(bam, genome_lengths(genome), sorted(set(ocrs["chrom"])), genome)
    profile = count_insertions(
        bam,
        ocrs["chrom"].to_numpy(object),
        profile_starts(ocrs["summit"].to_numpy(), window, width),
        width,
        ReadFilter.from_config(cfg),
        engine=str(cfg.get("engine", "auto")),
        threads=threads,
    )
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


def _chunk_rows(row_bytes: int, chunk_bytes: int) -> int:
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
        step = _chunk_rows(c * width * 2, chunk_bytes)
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


# --------------------------------------------------------------------------------------------
# Bias training sets
# --------------------------------------------------------------------------------------------


def read_closed_pvalues(
    path: str | os.PathLike, peak_ids: Sequence[str], celltypes: Sequence[str]
) -> np.ndarray:
    """-log10 peak-calling p-values (N, C) aligned to ``peak_ids`` and ``celltypes``.

    The table is tab- or comma-separated (told by its header line); its peak-ID column is
    ``peak_id`` or, as in ImmGen's OCR table, ``ImmGenATAC1219.peakID``; other columns than
    that one and the cell types in use (``chrom``, ``Summit``, ...) are ignored.
    """
    path = Path(path)
    with open(path, newline="") as fh:
        first = fh.readline()
    sep = "\t" if "\t" in first or "," not in first else ","
    header = next(csv.reader([first], delimiter=sep), [])
    check_unique_columns(path, header)
    id_column = next((c for c in PVALUE_ID_COLUMNS if c in header), None)
    if id_column is None:
        raise InputError(
            f"{path}, line 1: no peak-ID column; name it {' or '.join(PVALUE_ID_COLUMNS)} "
            "(tab- or comma-separated, then one column of -log10 p per cell type)."
        )
    missing = [ct for ct in celltypes if ct not in header]
    if missing:
        raise InputError(
            f"{path}, line 1: no column for cell type(s) {missing[:5]}; the table needs one "
            "column per cell type in use."
        )
    table = pd.read_csv(path, sep=sep, usecols=[id_column, *celltypes], dtype={id_column: str})
    table = table.drop_duplicates(id_column).set_index(id_column)
    absent = pd.Index(peak_ids).difference(table.index)
    if len(absent):
        raise InputError(
            f"{path}: {len(absent)} OCR(s) have no p-values (e.g. {absent[0]!r}); the table "
            "must cover every OCR of the OCR table."
        )
    values = table.loc[list(peak_ids), list(celltypes)].to_numpy(np.float64)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        log.warning("%s: %d missing p-values, treated as not closed", path, n_nan)
    return values


def closed_ocr_set(
    ocrs_all: str | os.PathLike,
    pvalues: str | os.PathLike,
    insertions: Sequence[str | os.PathLike],
    celltypes: Sequence[str],
    genome: str | os.PathLike,
    cfg: Mapping,
    out_splits: Mapping[str, str | os.PathLike],
    chunk_bytes: int = 32 << 20,
) -> dict[str, int]:
    """Closed-OCR bias set: per OCR, insertions summed over the cell types where it is closed
    (peak-calling p > ``closed_p``). Splits by the OCR's split (``out_splits[split]`` is a
    directory that receives seq.npy, profile.npy (n, 1, W) and windows.tsv)."""
    closed_p = float(cfg.get("closed_p", 0.25))
    window, _ = check_window_config(cfg)
    min_counts = int(cfg.get("bias_min_counts", 1))
    ocrs = read_ocrs_tsv(ocrs_all)
    neglog = read_closed_pvalues(pvalues, ocrs["peak_id"].tolist(), celltypes)
    closed = neglog < -math.log10(closed_p)  # NaN compares False: not closed
    log.info(
        "closed (p > %g): %d OCR x cell type pairs, %d OCRs closed in >= 1 cell type",
        closed_p,
        int(closed.sum()),
        int(closed.any(axis=1).sum()),
    )
    readers = [NpyRowReader(p) for p in insertions]
    n_written: dict[str, int] = {}
    try:
        width = readers[0].shape[1]
        step = _chunk_rows(len(readers) * width * 2, chunk_bytes)
        split = ocrs["split"].to_numpy(object)
        columns = ("name", "chrom", "start", "end", "n_closed", "total")
        peak, chrom = ocrs["peak_id"].to_numpy(object), ocrs["chrom"].to_numpy(object)
        start = ocrs["summit"].to_numpy(np.int64) - window // 2
        with (
            _bias_set_writers(out_splits, window, width, columns) as sets,
            pysam.FastaFile(str(genome)) as fa,
        ):
            for a in range(0, len(ocrs), step):
                b = min(len(ocrs), a + step)
                acc = np.zeros((b - a, width), np.int64)
                for j, r in enumerate(readers):
                    mask = closed[a:b, j]
                    if mask.any():
                        acc[mask] += r.read(a, b)[mask]
                total = acc.sum(axis=1)
                keep = closed[a:b].any(axis=1) & (total >= min_counts)
                for i in np.flatnonzero(keep) + a:
                    if split[i] not in sets:
                        continue
                    s0 = int(start[i])
                    seq = encode_sequence(fa.fetch(chrom[i], s0, s0 + window))
                    meta = (peak[i], chrom[i], s0, s0 + window, int(closed[i].sum()), total[i - a])
                    sets[split[i]].add(seq, acc[i - a], meta)
            n_written = {s: len(w.rows) for s, w in sets.items()}
    finally:
        for r in readers:
            r.close()
    log.info("closed-OCR bias set: %s examples per split", n_written)
    return n_written


class _BiasSetWriter:
    """Rows of one split of a bias set: seq.npy, profile.npy (n, 1, W) uint16, windows.tsv."""

    def __init__(self, directory: Path, window: int, width: int, stack: contextlib.ExitStack):
        self.directory = directory
        seq_tmp = stack.enter_context(atomic_path(directory / "seq.npy"))
        profile_tmp = stack.enter_context(atomic_path(directory / "profile.npy"))
        self.table_tmp = stack.enter_context(atomic_path(directory / "windows.tsv"))
        self.seq = stack.enter_context(NpyRowWriter(seq_tmp, np.uint8, (window,)))
        self.profile = stack.enter_context(NpyRowWriter(profile_tmp, np.uint16, (1, width)))
        self.rows: list[tuple] = []

    def add(self, seq: np.ndarray, profile: np.ndarray, meta: tuple) -> None:
        self.seq.write(seq[None])
        self.profile.write(clip_uint16(profile, f"{self.directory} profile")[None, None])
        self.rows.append(meta)


@contextlib.contextmanager
def _bias_set_writers(
    out_dirs: Mapping[str, str | os.PathLike], window: int, width: int, columns: Sequence[str]
) -> Iterator[dict[str, _BiasSetWriter]]:
    """One :class:`_BiasSetWriter` per split; its files appear only when the block succeeds."""
    with contextlib.ExitStack() as stack:
        writers = {s: _BiasSetWriter(Path(d), window, width, stack) for s, d in out_dirs.items()}
        yield writers
        for w in writers.values():
            pd.DataFrame(w.rows, columns=list(columns)).to_csv(w.table_tmp, sep="\t", index=False)


def read_regions_bed(
    path: str | os.PathLike, lengths: Mapping[str, int], genome: str | os.PathLike = "the genome"
) -> pd.DataFrame:
    """Protein-free regions (chrom, start, end, name) from a BED file, checked against the
    genome (``lengths``, read from ``genome``)."""
    path = Path(path)
    rows = []
    with open(path) as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                chrom, start, end = f[0], int(f[1]), int(f[2])
            except (IndexError, ValueError) as exc:
                raise InputError(
                    f"{path}, line {i}: expected chrom<TAB>start<TAB>end (BED), got {line!r}."
                ) from exc
            if chrom not in lengths:
                raise InputError(
                    f"{path}, line {i}: chromosome {chrom!r} is not in {genome}; the protein-free "
                    "genome must be the assembly of the regions (hg38 for PRINT's BAC clones): "
                    "set `download.protein_free_genome_url`."
                )
            if not 0 <= start < end <= lengths[chrom]:
                raise InputError(
                    f"{path}, line {i}: {chrom}:{start}-{end} is not inside the genome; fix the "
                    "region or use the matching genome."
                )
            name = f[3] if len(f) > 3 and f[3] else f"{chrom}:{start}-{end}"
            rows.append((chrom, start, end, name))
    if not rows:
        raise InputError(f"{path}: no regions; the protein-free BED file is empty.")
    return pd.DataFrame(rows, columns=["chrom", "start", "end", "name"])


def split_regions(n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Split name per region: ``round(val_fraction * n)`` regions (at least one when n >= 2 and
    the fraction is > 0) drawn with ``seed`` go to val, the rest to train."""
    out = np.full(n, "train", dtype=object)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    if n_val:
        out[np.random.default_rng(seed).choice(n, n_val, replace=False)] = "val"
    return out


def tile_regions(regions: pd.DataFrame, window: int, stride: int) -> pd.DataFrame:
    """Windows of ``window`` bp every ``stride`` bp inside each region (chrom, start, region)."""
    parts = []
    for r in regions.itertuples(index=False):
        starts = np.arange(r.start, r.end - window + 1, stride, dtype=np.int64)
        parts.append(pd.DataFrame({"chrom": r.chrom, "start": starts, "region": r.name}))
    tiles = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return tiles


def protein_free_set(
    regions_bed: str | os.PathLike,
    bams: Sequence[str | os.PathLike],
    genome: str | os.PathLike,
    cfg: Mapping,
    seed: int,
    out_splits: Mapping[str, str | os.PathLike],
    threads: int = 1,
    fragments: str | os.PathLike | None = None,
    replicates: Sequence[str] = (),
    barcodes: Mapping[str, str] | None = None,
    fragments_shift: str = "applied",
) -> dict[str, int]:
    """Protein-free bias set: ``window`` bp tiles every ``protein_free_stride`` bp over the
    regions, profile = the replicates' pooled insertions in the central ``profile_width`` bp.
    Regions (not tiles) are split into train/val so that no DNA is shared across splits.

    The insertions come from one BAM per replicate (``bams``) or from one ``fragments`` file
    whose barcodes name the ``replicates`` (see :mod:`bpaitac.data.fragments`; ``barcodes`` maps a
    barcode to its replicate, ``fragments_shift`` declares whether the Tn5 shift is applied).
    ``genome`` is the protein-free DNA's own assembly (hg38 for PRINT's BAC clones).
    """
    window, width = check_window_config(cfg)
    if bool(bams) == (fragments is not None):
        raise InputError(
            "protein-free DNA: give either one BAM per replicate (`simulate.` or "
            "`download.protein_free_replicates`) or one fragments file "
            "(`download.protein_free_format: fragments`), not "
            f"{'both' if bams else 'neither'}."
        )
    stride = int(cfg.get("protein_free_stride", 50))
    max_n = float(cfg.get("max_n_fraction", 0.01))
    min_counts = int(cfg.get("bias_min_counts", 1))
    lengths = genome_lengths(genome)
    regions = read_regions_bed(regions_bed, lengths, genome)
    regions["split"] = split_regions(
        len(regions), float(cfg.get("protein_free_val_fraction", 0.2)), seed
    )
    tiles = tile_regions(regions, window, stride)
    short = regions[(regions.end - regions.start) < window]
    if len(short):
        log.warning("%d protein-free region(s) shorter than %d bp give no tile", len(short), window)
    if tiles.empty:
        raise InputError(f"{regions_bed}: no region is at least {window} bp long.")
    tiles["split"] = tiles["region"].map(dict(zip(regions.name, regions.split)))
    pstart = tiles["start"].to_numpy() + profile_offset(window, width)
    profile = np.zeros((len(tiles), width), np.int64)
    rf = ReadFilter.from_config(cfg)
    if fragments is not None:
        profile += count_fragment_insertions(
            fragments,
            tiles["chrom"].to_numpy(object),
            pstart,
            width,
            replicates,
            barcodes,
            shift=fragments_shift,
            shift_plus=rf.shift_plus,
            shift_minus=rf.shift_minus,
            drop_duplicates=rf.drop_duplicates,
        )
    for bam in bams:
        ensure_bam_index(bam, bool(cfg.get("index_missing", False)))
        check_bam_contigs(bam, lengths, sorted(set(tiles.chrom)), genome)
        profile += count_insertions(
            bam,
            tiles["chrom"].to_numpy(object),
            pstart,
            width,
            rf,
            engine=str(cfg.get("engine", "auto")),
            threads=threads,
        )
    n_dropped = {"n_rich": 0, "low_counts": 0}
    columns = ("name", "chrom", "start", "end", "total")
    with (
        _bias_set_writers(out_splits, window, width, columns) as sets,
        pysam.FastaFile(str(genome)) as fa,
    ):
        for i, t in enumerate(tiles.itertuples(index=False)):
            if t.split not in sets:
                continue
            status, seq = window_status(fa, lengths, t.chrom, int(t.start), window, max_n)
            if status != "ok":
                n_dropped[status] = n_dropped.get(status, 0) + 1
                continue
            total = int(profile[i].sum())
            if total < min_counts:
                n_dropped["low_counts"] += 1
                continue
            meta = (t.region, t.chrom, int(t.start), int(t.start) + window, total)
            sets[t.split].add(seq, profile[i], meta)
        written = {s: len(w.rows) for s, w in sets.items()}
    log.info(
        "protein-free bias set: %d regions, %d tiles (stride %d); dropped %s; written %s",
        len(regions),
        len(tiles),
        stride,
        n_dropped,
        written,
    )
    return written
