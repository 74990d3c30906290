"""The Tn5-bias training sets (paper Methods, "Tn5 bias model"), as ``seq.npy`` (N, window),
``profile.npy`` (N, 1, profile_width) uint16 and ``windows.tsv`` per split.

- :func:`closed_ocr_set`: every OCR closed in at least one cell type (peak-calling p above
  ``closed_p`` there, :func:`read_closed_pvalues`), its profile the insertions summed over those
  cell types; an OCR keeps its split.
- :func:`protein_free_set`: ``window``-bp tiles every ``protein_free_stride`` bp over the
  protein-free DNA regions (:func:`read_regions_bed`, :func:`tile_regions`), its profile the
  replicates' pooled insertions; whole regions go to train or val
  (:func:`bpaitac.data.splits.split_regions`), so no DNA is shared across splits.

``cfg`` is the validated ``preprocess:`` config section (the schema holds the defaults).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.data.arrays import (
    NpyRowReader,
    NpyRowWriter,
    check_window_config,
    chunk_rows,
    genome_lengths,
    open_fasta,
    profile_offset,
    read_ocrs_tsv,
    window_status,
)
from bpaitac.data.bed import read_bed
from bpaitac.data.fragments import count_fragment_insertions
from bpaitac.data.insertions import (
    ReadFilter,
    check_bam_contigs,
    check_insertions,
    clip_uint16,
    count_insertions,
    ensure_bam_index,
)
from bpaitac.data.ocr_table import PEAK_ID
from bpaitac.data.sequence import encode_sequence
from bpaitac.data.splits import split_regions
from bpaitac.io import (
    TABLE_ENCODING,
    CellTypeNames,
    InputError,
    atomic_path,
    check_number_columns,
    check_unique_columns,
)

log = logging.getLogger(__name__)

PVALUE_ID_COLUMNS = ("peak_id", PEAK_ID)
"""Accepted names of the peak-ID column of closed_pvalues.tsv (ours, or the ImmGen table's)."""


def read_closed_pvalues(
    path: str | os.PathLike,
    peak_ids: Sequence[str],
    celltypes: CellTypeNames | Sequence[str],
) -> np.ndarray:
    """-log10 peak-calling p-values (N, C) aligned to ``peak_ids`` and ``celltypes``.

    The table is tab- or comma-separated (told by its header line); its peak-ID column is
    ``peak_id`` or, as in ImmGen's OCR table, ``ImmGenATAC1219.peakID``; a cell type's column
    may be spelled by one of its aliases (:meth:`~bpaitac.io.CellTypeNames.resolve`); other
    columns (``chrom``, ``Summit``, ...) are ignored. Values must be non-negative (``inf``: p
    underflowed to 0); an empty one is missing (not closed).
    """
    names = CellTypeNames.coerce(celltypes)
    path = Path(path)
    with open(path, newline="", encoding=TABLE_ENCODING) as fh:
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
    spelled = names.resolve(header, f"{path}, line 1", what="p-value column")
    columns = [spelled[c] for c in names.names]
    table = pd.read_csv(
        path,
        sep=sep,
        usecols=[id_column, *columns],
        dtype={id_column: str},
        encoding=TABLE_ENCODING,
    )
    check_number_columns(path, table, columns, allow_missing=True, allow_infinite=True)
    table = table.drop_duplicates(id_column).set_index(id_column)
    absent = pd.Index(peak_ids).difference(table.index)
    if len(absent):
        raise InputError(
            f"{path}: {len(absent)} OCR(s) have no p-values (e.g. {absent[0]!r}); the table "
            "must cover every OCR of the OCR table."
        )
    values = table.loc[list(peak_ids), columns].to_numpy(np.float64)
    n_nan = int(np.isnan(values).sum())
    if n_nan:
        log.warning("%s: %d missing p-values, treated as not closed", path, n_nan)
    return values


def closed_ocr_set(
    ocrs_all: str | os.PathLike,
    pvalues: str | os.PathLike,
    insertions: Sequence[str | os.PathLike],
    celltypes: CellTypeNames | Sequence[str],
    genome: str | os.PathLike,
    cfg: Mapping,
    out_splits: Mapping[str, str | os.PathLike],
    chunk_bytes: int = 32 << 20,
) -> dict[str, int]:
    """Closed-OCR bias set: per OCR, insertions summed over the cell types where it is closed
    (peak-calling p > ``closed_p``). Splits by the OCR's split (``out_splits[split]`` is a
    directory that receives seq.npy, profile.npy (n, 1, W) and windows.tsv)."""
    closed_p = float(cfg["closed_p"])
    window, _ = check_window_config(cfg)
    min_counts = int(cfg["bias_min_counts"])
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
        step = chunk_rows(len(readers) * width * 2, chunk_bytes)
        split = ocrs["split"].to_numpy(object)
        columns = ("name", "chrom", "start", "end", "n_closed", "total")
        peak, chrom = ocrs["peak_id"].to_numpy(object), ocrs["chrom"].to_numpy(object)
        start = ocrs["summit"].to_numpy(np.int64) - window // 2
        with (
            _bias_set_writers(out_splits, window, width, columns) as sets,
            open_fasta(genome) as fa,
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
    genome (``lengths``, read from ``genome``) by :func:`bpaitac.data.bed.read_bed`."""
    regions = read_bed(
        path,
        lengths,
        genome,
        what="protein-free BED file",
        contig_fix="the protein-free genome must be the assembly of the regions (hg38 for "
        "PRINT's BAC clones): set `download.protein_free_genome_url`.",
    )
    return regions.drop(columns="line")


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
    stride = int(cfg["protein_free_stride"])
    max_n = float(cfg["max_n_fraction"])
    min_counts = int(cfg["bias_min_counts"])
    lengths = genome_lengths(genome)
    regions = read_regions_bed(regions_bed, lengths, genome)
    regions["split"] = split_regions(len(regions), float(cfg["protein_free_val_fraction"]), seed)
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
        ensure_bam_index(bam, bool(cfg["index_missing"]))
        check_bam_contigs(bam, lengths, sorted(set(tiles.chrom)), genome)
        counts = count_insertions(
            bam,
            tiles["chrom"].to_numpy(object),
            pstart,
            width,
            rf,
            engine=str(cfg["engine"]),
            threads=threads,
        )
        check_insertions(counts, bam, f"{len(tiles)} protein-free tiles")
        profile += counts
    n_dropped = {"n_rich": 0, "low_counts": 0}
    columns = ("name", "chrom", "start", "end", "total")
    with (
        _bias_set_writers(out_splits, window, width, columns) as sets,
        open_fasta(genome) as fa,
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
