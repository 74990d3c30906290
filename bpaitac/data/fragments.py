"""Tn5 insertions from a fragments file (``chrom, start, end, barcode[, count]``, plain or gzip).

A fragments file (10x Genomics / ArchR / PRINT layout) holds one line per unique fragment,
0-based half-open, tab-separated, with optional ``#`` header lines. Its two Tn5 insertions are
read under the same convention as a BAM's reads (:mod:`bpaitac.data.tn5`), so that a fragments file
and the BAM it was made from give the same counts:

- ``shift: applied`` (10x and PRINT files: the +4/-5 shift is already in the coordinates): the
  insertions are ``start`` and ``end - 1``;
- ``shift: raw`` (the coordinates are the reads' outer 5' ends): the insertions are
  ``start + shift_plus`` and ``end - 1 + shift_minus`` (``preprocess.tn5_shift_plus/minus``).

Each line counts once, like a BAM with duplicates dropped; with ``drop_duplicates: false`` a
line counts as many times as its ``count`` column says (1 when there is none). A fragments file
carries no MAPQ or pair flags, so the BAM read filters do not apply to it.

Barcodes select and name replicates: ``barcodes`` maps a barcode to its replicate, a barcode
not in the map is taken as the replicate's own name (PRINT's file uses rep1..rep5), and only the
fragments of the ``replicates`` listed count.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.data.insertions import check_insertions, merge_windows
from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS
from bpaitac.io import InputError, require_file

log = logging.getLogger(__name__)

SHIFTS = ("applied", "raw")
CHUNK_LINES = 2_000_000
"""Fragments parsed at a time (bounded memory)."""


def is_gzip(path: str | os.PathLike) -> bool:
    """True when the file starts with the gzip magic bytes (also BGZF), whatever its name."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def insertion_offsets(shift: str, shift_plus: int, shift_minus: int) -> tuple[int, int]:
    """(offset added to ``start``, offset added to ``end - 1``) for a declared ``shift``."""
    if shift == "applied":
        return 0, 0
    if shift == "raw":
        return shift_plus, shift_minus
    raise InputError(
        f"fragments shift {shift!r}: use `applied` (the +4/-5 Tn5 shift is already in the "
        "coordinates) or `raw` (outer read ends; the preprocess shifts are applied)."
    )


def _chunks(path: Path):
    """Yield (number of the chunk's first fragment, 1-based; DataFrame with chrom, start, end,
    barcode and, when the file has it, count)."""
    compression = "gzip" if is_gzip(path) else None
    opener = gzip.open if compression else open
    with opener(path, "rt") as fh:
        line = next((x for x in fh if not x.startswith("#")), "")
    if not line.strip():
        raise InputError(f"{path}: no fragment in the file.")
    n_fields = len(line.rstrip("\n").split("\t"))
    if n_fields < 4:
        raise InputError(
            f"{path}: {n_fields} tab-separated field(s) on the first fragment line; a fragments "
            "file has chrom, start, end, barcode[, count]."
        )
    names = ["chrom", "start", "end", "barcode", "count"][: min(n_fields, 5)]
    reader = pd.read_csv(
        path,
        sep="\t",
        header=None,
        comment="#",
        compression=compression,
        usecols=range(len(names)),
        names=names,
        dtype={"chrom": str, "start": np.int64, "end": np.int64, "barcode": str},
        chunksize=CHUNK_LINES,
    )
    first = 1
    try:
        for chunk in reader:
            yield first, chunk
            first += len(chunk)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InputError(
            f"{path}, near fragment {first}: not a fragments file ({exc}); expected "
            "chrom<TAB>start<TAB>end<TAB>barcode[<TAB>count]."
        ) from exc


def count_fragment_insertions(
    path: str | os.PathLike,
    chroms: Sequence[str] | np.ndarray,
    starts: Sequence[int] | np.ndarray,
    width: int,
    replicates: Sequence[str],
    barcodes: Mapping[str, str] | None = None,
    shift: str = "applied",
    shift_plus: int = TN5_SHIFT_PLUS,
    shift_minus: int = TN5_SHIFT_MINUS,
    drop_duplicates: bool = True,
) -> np.ndarray:
    """Tn5 insertions per base in windows ``[start, start + width)`` from a fragments file,
    the listed replicates pooled. Returns int64 (n_windows, width) in the order of the windows.
    """
    path = require_file(path, "fragments file", "run the rule that writes it or fix the path.")
    off_start, off_end = insertion_offsets(shift, shift_plus, shift_minus)
    barcodes = dict(barcodes or {})
    wanted = set(replicates)
    if not wanted:
        raise InputError(f"{path}: no replicate listed; name them in `protein_free_replicates`.")
    chroms = np.asarray(chroms, dtype=object)
    starts = np.asarray(starts, dtype=np.int64)
    # Per chromosome: disjoint blocks covering its windows and a flat int64 array of counts.
    blocks: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for chrom in pd.unique(chroms):
        bs, be = merge_windows(starts[chroms == chrom], starts[chroms == chrom] + width)
        offsets = np.concatenate([[0], np.cumsum(be - bs)[:-1]]).astype(np.int64)
        blocks[chrom] = (bs, be, offsets, np.zeros(int((be - bs).sum()), np.int64))
    per_replicate: Counter[str] = Counter()
    others: Counter[str] = Counter()
    n_lines = n_inside = 0
    for first, chunk in _chunks(path):
        n_lines += len(chunk)
        start = chunk["start"].to_numpy(np.int64)
        end = chunk["end"].to_numpy(np.int64)
        bad = (start < 0) | (end <= start)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{path}, fragment {first + i} ({chunk['chrom'].iat[i]}:{start[i]}-{end[i]}): "
                "start < 0 or end <= start; fragments are 0-based half-open."
            )
        rep = chunk["barcode"].map(lambda b: barcodes.get(b, b)).to_numpy(object)
        keep = np.isin(rep, list(wanted))
        per_replicate.update(Counter(rep[keep]))
        if not keep.all():
            others.update(Counter(chunk["barcode"].to_numpy(object)[~keep]))
        if drop_duplicates or "count" not in chunk:
            weight = np.ones(len(chunk), np.int64)
        else:
            weight = chunk["count"].to_numpy(np.int64)
        chrom_col = chunk["chrom"].to_numpy(object)
        for chrom, (bs, be, offsets, counts) in blocks.items():
            rows = np.flatnonzero(keep & (chrom_col == chrom))
            if not len(rows):
                continue
            w = weight[rows]
            for pos in (start[rows] + off_start, end[rows] - 1 + off_end):
                b = np.searchsorted(bs, pos, side="right") - 1
                inside = (b >= 0) & (pos < be[np.maximum(b, 0)])
                flat = offsets[b[inside]] + pos[inside] - bs[b[inside]]
                counts += np.bincount(flat, weights=w[inside], minlength=len(counts)).astype(
                    np.int64
                )
                n_inside += int(inside.sum())
    log.info(
        "%s: %d fragments; per replicate %s; %d insertions inside the %d windows",
        path,
        n_lines,
        dict(sorted(per_replicate.items())),
        n_inside,
        len(starts),
    )
    if others:
        log.info(
            "%s: %d fragments of other barcodes not counted (e.g. %s)",
            path,
            sum(others.values()),
            ", ".join(b for b, _ in others.most_common(5)),
        )
    if not per_replicate:
        raise InputError(
            f"{path}: no fragment belongs to the replicates {sorted(wanted)} (barcodes seen: "
            f"{', '.join(b for b, _ in others.most_common(5)) or 'none'}); map barcodes to "
            "replicates with `download.protein_free_barcodes` or fix `protein_free_replicates`."
        )
    missing = sorted(wanted - set(per_replicate))
    if missing:
        log.warning("%s: no fragment for replicate(s) %s", path, missing)
    out = np.zeros((len(starts), width), np.int64)
    for chrom, (bs, _be, offsets, counts) in blocks.items():
        rows = np.flatnonzero(chroms == chrom)
        b = np.searchsorted(bs, starts[rows], side="right") - 1
        first = offsets[b] + (starts[rows] - bs[b])
        out[rows] = np.lib.stride_tricks.sliding_window_view(counts, width)[first]
    check_insertions(out, path, f"{len(starts)} windows")
    return out
