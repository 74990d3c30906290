"""Tn5 insertion counts per base from coordinate-sorted BAM files, restricted to windows.

Which reads count
    Every mapped read that passes the filters of :class:`ReadFilter` contributes its own Tn5
    insertion, so a properly paired fragment contributes both of its ends (read 1 and read 2)
    and a single-end read contributes one. Reads that are unmapped, secondary, supplementary or
    fail QC never count; duplicates are dropped unless ``drop_duplicates`` is off; reads below
    ``min_mapq`` are dropped (MAPQ 255, "unavailable", passes, as in ``samtools view -q``).
    With ``require_proper_pair`` a *paired* read counts only when flagged proper pair (so a read
    whose mate is unmapped does not count); single-end reads are not affected. A read whose mate
    is missing from the BAM but that is flagged proper pair still counts its own end.

Where a read inserts
    The insertion is the read's 5' end shifted as stated in :mod:`bpaitac.data.tn5` (+4 on the plus
    strand, -5 on the minus strand; configurable through :class:`ReadFilter`). The 5' end is the
    first/last *aligned* reference base: soft-clipped bases are ignored
    (``reference_start`` for the plus strand, ``reference_end - 1`` for the minus strand), and
    deletions / skipped regions in the CIGAR extend ``reference_end``. Reads without any
    reference-consuming CIGAR operation are skipped. Insertions that fall outside the
    chromosome (possible near its ends after the shift) are dropped.

How the BAM is read
    Each call makes one forward pass over the BAM, jumping with the BAM index from window to
    window (overlapping windows are merged first, so no read is decoded twice). Two engines give
    identical counts:

    - ``numba`` (:mod:`bpaitac.data.bam_reader`): reads the BAI linear index and the BGZF
      blocks itself, inflates them on ``threads`` threads with libdeflate (:mod:`zlib` when
      libdeflate is not installed) and decodes the records with a compiled loop. This is the
      fast path (see ``benchmarks/preprocess.py``).
    - ``pysam``: ``AlignmentFile.fetch`` per merged window, a short reference implementation.
    ``auto`` takes ``numba`` when numba is importable and the BAM has a ``.bai`` index.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from bpaitac.data.bam_reader import HAVE_NUMBA, NumbaScanner, read_bai
from bpaitac.io import InputError, require_file

log = logging.getLogger(__name__)

FLAG_PAIRED = 0x1
FLAG_PROPER_PAIR = 0x2
FLAG_UNMAPPED = 0x4
FLAG_REVERSE = 0x10
FLAG_SECONDARY = 0x100
FLAG_QCFAIL = 0x200
FLAG_DUPLICATE = 0x400
FLAG_SUPPLEMENTARY = 0x800

UINT16_MAX = np.iinfo(np.uint16).max
ENGINES = ("auto", "numba", "pysam")


@dataclass(frozen=True)
class ReadFilter:
    """Which reads count and how a read's 5' end is shifted to its Tn5 insertion.

    No field has a default: the ``preprocess:`` section of the config (its schema holds the
    defaults) gives them, through :meth:`from_config`.
    """

    min_mapq: int
    drop_duplicates: bool
    require_proper_pair: bool
    shift_plus: int
    shift_minus: int

    @classmethod
    def from_config(cls, cfg: Mapping) -> ReadFilter:
        """Build from the validated ``preprocess:`` config section (defaults filled in)."""
        return cls(
            min_mapq=int(cfg["min_mapq"]),
            drop_duplicates=bool(cfg["drop_duplicates"]),
            require_proper_pair=bool(cfg["require_proper_pair"]),
            shift_plus=int(cfg["tn5_shift_plus"]),
            shift_minus=int(cfg["tn5_shift_minus"]),
        )

    @property
    def exclude_flags(self) -> int:
        """SAM flags of which any one excludes a read."""
        flags = FLAG_UNMAPPED | FLAG_SECONDARY | FLAG_QCFAIL | FLAG_SUPPLEMENTARY
        return flags | (FLAG_DUPLICATE if self.drop_duplicates else 0)

    @property
    def margin(self) -> int:
        """Bases to widen a window by so that every read inserting inside it overlaps it."""
        return max(abs(self.shift_plus), abs(self.shift_minus)) + 1

    def keeps(self, flag: int, mapq: int) -> bool:
        """Whether a read with this flag and MAPQ counts (before its alignment is checked)."""
        if flag & self.exclude_flags or mapq < self.min_mapq:
            return False
        paired_not_proper = (flag & FLAG_PAIRED) and not (flag & FLAG_PROPER_PAIR)
        return not (self.require_proper_pair and paired_not_proper)

    def insertion(self, reference_start: int, reference_end: int, is_reverse: bool) -> int:
        """The 0-based insertion position of an aligned read (5' end plus the strand's shift)."""
        if is_reverse:
            return reference_end - 1 + self.shift_minus
        return reference_start + self.shift_plus


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def find_bam_index(bam_path: str | os.PathLike) -> Path | None:
    """The index of a BAM (``X.bam.bai``, ``X.bai`` or ``X.bam.csi``), or None."""
    bam = Path(bam_path)
    for cand in (Path(f"{bam}.bai"), bam.with_suffix(".bai"), Path(f"{bam}.csi")):
        if cand.exists():
            return cand
    return None


def ensure_bam_index(bam_path: str | os.PathLike, index_missing: bool = False) -> Path:
    """Return the BAM's index path, checked (:func:`check_bam_index`); build it with pysam when
    absent and ``index_missing``.

    Raises :class:`InputError` naming the BAM and the ``samtools index`` command otherwise.
    """
    bam = require_file(bam_path, "BAM file", "check the path or the download step.")
    index = find_bam_index(bam)
    if index is not None:
        check_bam_index(bam, index)
        return index
    if not index_missing:
        raise InputError(
            f"{bam}: the BAM has no index (.bai). Index it with `samtools index {bam}`, "
            "or set `preprocess.index_missing: true` in the config to let the workflow index it."
        )
    log.info("%s: no index found, indexing it with pysam (preprocess.index_missing).", bam)
    try:
        pysam.index(str(bam))
    except pysam.SamtoolsError as exc:
        raise InputError(
            f"{bam}: could not index the BAM ({exc}). It must be coordinate-sorted: "
            f"`samtools sort -o sorted.bam {bam}`."
        ) from exc
    return Path(f"{bam}.bai")


def check_bam_index(bam_path: str | os.PathLike, index: str | os.PathLike) -> None:
    """Raise when the index is older than its BAM or does not fit it: a BAM replaced while its
    old index stayed reads as corrupt blocks or missing reads. A ``.bai`` must list as many
    references as the BAM header and point nowhere past the end of the BAM."""
    bam, index = Path(bam_path), Path(index)
    fix = f"re-index it: `samtools index {bam}` (or delete {index} and rerun)"
    if index.stat().st_mtime < bam.stat().st_mtime:
        raise InputError(
            f"{index}: the index is older than {bam}, which changed after it was indexed; {fix}."
        )
    if index.suffix != ".bai":
        return
    refs = read_bai(index)
    n_ref = len(bam_contigs(bam))
    if len(refs) != n_ref:
        raise InputError(
            f"{index}: indexes {len(refs)} reference(s) but {bam} has {n_ref}; the index is of "
            f"another BAM: {fix}."
        )
    size = bam.stat().st_size
    furthest = max((int(r.linear.max()) >> 16 for r in refs if len(r.linear)), default=0)
    if furthest >= size:
        raise InputError(
            f"{index}: points to byte {furthest} of {bam}, which has {size}; the index is of "
            f"another BAM: {fix}."
        )


@contextlib.contextmanager
def open_bam(bam_path: str | os.PathLike, threads: int = 1) -> Iterator[pysam.AlignmentFile]:
    """``pysam.AlignmentFile`` of a BAM; pysam's errors on opening or closing it (a truncated,
    empty or replaced file) become :class:`InputError` naming the file and the fix."""
    fix = (
        f"re-create or re-download it (`samtools quickcheck -v {bam_path}` tells whether a BAM "
        "is whole)"
    )
    try:
        bam = pysam.AlignmentFile(str(bam_path), "rb", threads=max(1, threads))
    except (OSError, ValueError) as exc:
        raise InputError(f"{bam_path}: not a readable BAM file ({exc}); {fix}.") from exc
    try:
        yield bam
    finally:
        try:
            bam.close()
        except OSError as exc:
            raise InputError(f"{bam_path}: reading the BAM failed ({exc}); {fix}.") from exc


def bam_contigs(bam_path: str | os.PathLike) -> dict[str, int]:
    """Contig name -> length from the BAM header."""
    with open_bam(bam_path) as bam:
        return dict(zip(bam.references, bam.lengths))


def check_insertions(counts: np.ndarray, source: str | os.PathLike, what: str) -> None:
    """Raise when the insertions counted from one file (a cell type's BAM, a protein-free
    replicate, a fragments file) in all the windows of its use (``what``) are zero: an empty
    file, or one whose reads the filters all drop, would otherwise become a cell type that is
    one constant everywhere. The one check of its kind; the callers count whole inputs."""
    if counts.size and not np.any(counts):
        raise InputError(
            f"{source}: no Tn5 insertion in any of the {what} (the log line above gives the reads "
            "decoded and passing the filters); the file is empty, its reads are all filtered out "
            "(`preprocess.min_mapq`, `drop_duplicates`, `require_proper_pair`) or it holds other "
            "regions: check the file and the filters."
        )


def check_bam_contigs(
    bam_path: str | os.PathLike,
    genome_lengths: Mapping[str, int],
    needed: Sequence[str] = (),
    genome_path: str | os.PathLike = "the genome",
) -> None:
    """Check that the BAM was aligned to the genome: shared contigs agree in length and every
    contig in ``needed`` (the chromosomes of the windows) is in the BAM header."""
    contigs = bam_contigs(bam_path)
    shared = [c for c in contigs if c in genome_lengths]
    if not shared:
        raise InputError(
            f"{bam_path}: none of its contigs ({', '.join(list(contigs)[:5])}, ...) is in "
            f"{genome_path} ({', '.join(list(genome_lengths)[:5])}, ...). Align the reads to "
            "the same genome (e.g. 'chr1' vs '1' naming) or point the config at the right FASTA."
        )
    for c in shared:
        if contigs[c] != genome_lengths[c]:
            raise InputError(
                f"{bam_path}: contig {c} has length {contigs[c]} in the BAM header but "
                f"{genome_lengths[c]} in {genome_path}; the BAM was aligned to another assembly. "
                "Re-align to this genome or use the matching FASTA."
            )
    missing = sorted(set(needed) - set(contigs))
    if missing:
        raise InputError(
            f"{bam_path}: contig(s) {', '.join(missing)} of the OCR windows are not in the BAM "
            "header; the BAM was aligned to another assembly or is incomplete."
        )


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def merge_windows(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge overlapping or touching intervals (any order) into sorted disjoint blocks."""
    if len(starts) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(starts, kind="stable")
    s = np.asarray(starts, np.int64)[order]
    e = np.asarray(ends, np.int64)[order]
    reach = np.maximum.accumulate(e)
    new_block = np.ones(len(s), bool)
    new_block[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new_block)
    last = np.append(first[1:], len(s)) - 1
    return s[first], reach[last]


@dataclass
class Blocks:
    """Disjoint sorted blocks of one chromosome and the flat count array they index into."""

    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray  # position of each block in ``counts``
    counts: np.ndarray  # uint16 (saturating at 65535), one entry per base of all blocks

    @classmethod
    def from_windows(cls, starts: np.ndarray, width: int) -> Blocks:
        bs, be = merge_windows(starts, starts + width)
        sizes = be - bs
        offsets = np.zeros(len(bs), np.int64)
        np.cumsum(sizes[:-1], out=offsets[1:])
        return cls(bs, be, offsets, np.zeros(int(sizes.sum()), np.uint16))

    def gather(self, starts: np.ndarray, width: int) -> np.ndarray:
        """(n, width) counts of the windows starting at ``starts`` (each inside one block)."""
        b = np.searchsorted(self.starts, starts, side="right") - 1
        first = self.offsets[b] + (starts - self.starts[b])
        return np.lib.stride_tricks.sliding_window_view(self.counts, width)[first]


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def count_insertions(
    bam_path: str | os.PathLike,
    chroms: Sequence[str] | np.ndarray,
    starts: Sequence[int] | np.ndarray,
    width: int,
    read_filter: ReadFilter,
    engine: str = "auto",
    threads: int = 1,
) -> np.ndarray:
    """Tn5 insertions per base in windows ``[start, start + width)``, one pass over the BAM.

    Returns a uint16 array (n_windows, width) in the order of the windows; a base with more
    than 65535 insertions saturates at 65535 (logged as a warning). Window positions outside
    the chromosome get 0. The BAM must be coordinate-sorted and indexed.
    """
    chroms = np.asarray(chroms, dtype=object)
    starts = np.asarray(starts, dtype=np.int64)
    if chroms.shape != starts.shape or chroms.ndim != 1:
        raise ValueError("chroms and starts must be 1-d and of equal length")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    index = find_bam_index(bam_path)
    if index is None:
        raise InputError(
            f"{bam_path}: the BAM has no index (.bai); run `samtools index {bam_path}`."
        )
    check_bam_index(bam_path, index)
    engine = _choose_engine(engine, index)
    contigs = bam_contigs(bam_path)
    missing = sorted(set(chroms) - set(contigs))
    if missing:
        raise InputError(f"{bam_path}: contig(s) {', '.join(missing)} are not in the BAM header.")
    out = np.zeros((len(starts), width), np.uint16)
    ref_ids = {name: i for i, name in enumerate(contigs)}
    chrom_code, names = pd.factorize(chroms)
    by_ref = sorted(range(len(names)), key=lambda k: ref_ids[names[k]])
    stats = np.zeros(4, np.int64)  # decoded, passed filters, counted, lost to saturation
    if engine == "numba":
        scanner = NumbaScanner(bam_path, index, read_filter, threads)
    else:
        scanner = _PysamScanner(bam_path, read_filter, threads)
    with scanner:
        for k in by_ref:
            chrom = str(names[k])
            rows = np.flatnonzero(chrom_code == k)
            blocks = Blocks.from_windows(starts[rows], width)
            try:
                scanner.scan(ref_ids[chrom], chrom, contigs[chrom], blocks, stats)
            except OSError as exc:  # htslib's read errors (pysam engine)
                raise InputError(
                    f"{bam_path}: reading {chrom} failed ({exc}); the BAM is truncated or "
                    "corrupt: re-create or re-download it."
                ) from exc
            out[rows] = blocks.gather(starts[rows], width)
    log.info(
        "%s (%s engine): %d reads decoded, %d passed the filters, %d insertions in %d windows",
        bam_path,
        engine,
        stats[0],
        stats[1],
        stats[2],
        len(starts),
    )
    if stats[3]:
        log.warning(
            "%s: %d insertions dropped where a base already had %d (uint16 saturation)",
            bam_path,
            stats[3],
            UINT16_MAX,
        )
    return out


def clip_uint16(counts: np.ndarray, what: str = "counts") -> np.ndarray:
    """Cast counts to uint16, clipping at 65535 with a logged warning when that ever happens."""
    over = int(np.count_nonzero(counts > UINT16_MAX))
    if over:
        log.warning("%s: %d value(s) above %d clipped to fit uint16", what, over, UINT16_MAX)
    return np.minimum(counts, UINT16_MAX).astype(np.uint16)


def _choose_engine(engine: str, index: Path) -> str:
    if engine not in ENGINES:
        raise InputError(f"config key `preprocess.engine`: {engine!r}; allowed: {ENGINES}.")
    is_bai = index.suffix == ".bai"
    if engine == "auto":
        return "numba" if HAVE_NUMBA and is_bai else "pysam"
    if engine == "numba" and not HAVE_NUMBA:
        raise InputError("`preprocess.engine: numba` needs the numba package; use `pysam`.")
    if engine == "numba" and not is_bai:
        raise InputError(
            f"{index}: the numba engine reads .bai indexes only; run `samtools index` without "
            "-c or set `preprocess.engine: pysam`."
        )
    return engine


# --------------------------------------------------------------------------------------------
# pysam engine (reference implementation)
# --------------------------------------------------------------------------------------------


class _PysamScanner:
    def __init__(self, bam_path, read_filter: ReadFilter, threads: int) -> None:
        self.opened = open_bam(bam_path, threads)
        self.f = read_filter

    def __enter__(self) -> _PysamScanner:
        self.bam = self.opened.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.opened.__exit__(*exc)

    def scan(self, ref_id: int, chrom: str, length: int, blocks: Blocks, stats) -> None:
        f, m = self.f, self.f.margin
        for s, e, off in zip(blocks.starts, blocks.ends, blocks.offsets):
            qs, qe = max(0, int(s) - m), min(length, int(e) + m)
            if qs >= qe:
                continue
            hits = []
            for read in self.bam.fetch(chrom, qs, qe):
                stats[0] += 1
                if not f.keeps(read.flag, read.mapping_quality):
                    continue
                start, end = read.reference_start, read.reference_end
                if end is None or end <= start:
                    continue
                stats[1] += 1
                p = f.insertion(start, end, read.is_reverse)
                if s <= p < e and 0 <= p < length:
                    hits.append(p - s)
            if hits:
                seg = blocks.counts[off : off + (e - s)]
                total = seg + np.bincount(hits, minlength=e - s)
                stats[2] += len(hits) - int(np.maximum(total - UINT16_MAX, 0).sum())
                stats[3] += int(np.maximum(total - UINT16_MAX, 0).sum())
                seg[:] = np.minimum(total, UINT16_MAX)
