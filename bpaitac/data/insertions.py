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

    - ``numba``: reads the BAI linear index and the BGZF blocks itself, inflates them on
      ``threads`` threads with libdeflate (through ctypes, as htslib does; :mod:`zlib` when
      libdeflate is not installed) and decodes the records with a compiled loop. This is the
      fast path (see ``benchmarks/preprocess.py``).
    - ``pysam``: ``AlignmentFile.fetch`` per merged window, a short reference implementation.
    ``auto`` takes ``numba`` when numba is importable and the BAM has a ``.bai`` index.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import struct
import sys
import threading
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS
from bpaitac.io import InputError

try:  # numba ships with memelite; without it the pysam engine is used.
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

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

# Kernel return codes
_DONE, _NEED_MORE, _SEEK, _ERR_FORMAT, _ERR_LONG_CIGAR = 0, 1, 2, 3, 4
_LINEAR_SHIFT = 14  # BAI linear index: 16 kb windows
_BAI_PSEUDO_BIN = 37450
_BGZF_MAX_BLOCK = 65536


@dataclass(frozen=True)
class ReadFilter:
    """Which reads count and how a read's 5' end is shifted to its Tn5 insertion."""

    min_mapq: int = 30
    drop_duplicates: bool = True
    require_proper_pair: bool = True
    shift_plus: int = TN5_SHIFT_PLUS
    shift_minus: int = TN5_SHIFT_MINUS

    @classmethod
    def from_config(cls, cfg: Mapping) -> ReadFilter:
        """Build from the ``preprocess:`` config section (missing keys take the defaults)."""
        default = cls()
        return cls(
            min_mapq=int(cfg.get("min_mapq", default.min_mapq)),
            drop_duplicates=bool(cfg.get("drop_duplicates", default.drop_duplicates)),
            require_proper_pair=bool(cfg.get("require_proper_pair", default.require_proper_pair)),
            shift_plus=int(cfg.get("tn5_shift_plus", default.shift_plus)),
            shift_minus=int(cfg.get("tn5_shift_minus", default.shift_minus)),
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
    """Return the BAM's index path; build it with pysam when absent and ``index_missing``.

    Raises :class:`InputError` naming the BAM and the ``samtools index`` command otherwise.
    """
    bam = Path(bam_path)
    if not bam.exists():
        raise InputError(f"{bam}: BAM file not found; check the path or the download step.")
    index = find_bam_index(bam)
    if index is not None:
        if index.stat().st_mtime < bam.stat().st_mtime:
            log.warning(
                "%s: index %s is older than the BAM; re-index if the BAM changed.", bam, index
            )
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


def bam_contigs(bam_path: str | os.PathLike) -> dict[str, int]:
    """Contig name -> length from the BAM header."""
    with pysam.AlignmentFile(str(bam_path), "rb") as bam:
        return dict(zip(bam.references, bam.lengths))


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
class _Blocks:
    """Disjoint sorted blocks of one chromosome and the flat count array they index into."""

    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray  # position of each block in ``counts``
    counts: np.ndarray  # uint16 (saturating at 65535), one entry per base of all blocks

    @classmethod
    def from_windows(cls, starts: np.ndarray, width: int) -> _Blocks:
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
    read_filter: ReadFilter | None = None,
    engine: str = "auto",
    threads: int = 1,
) -> np.ndarray:
    """Tn5 insertions per base in windows ``[start, start + width)``, one pass over the BAM.

    Returns a uint16 array (n_windows, width) in the order of the windows; a base with more
    than 65535 insertions saturates at 65535 (logged as a warning). Window positions outside
    the chromosome get 0. The BAM must be coordinate-sorted and indexed.
    """
    read_filter = read_filter or ReadFilter()
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
        scanner = _NumbaScanner(bam_path, index, read_filter, threads)
    else:
        scanner = _PysamScanner(bam_path, read_filter, threads)
    with scanner:
        for k in by_ref:
            chrom = str(names[k])
            rows = np.flatnonzero(chrom_code == k)
            blocks = _Blocks.from_windows(starts[rows], width)
            scanner.scan(ref_ids[chrom], chrom, contigs[chrom], blocks, stats)
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
        return "numba" if numba is not None and is_bai else "pysam"
    if engine == "numba" and numba is None:
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
        self.bam = pysam.AlignmentFile(str(bam_path), "rb", threads=max(1, threads))
        self.f = read_filter

    def __enter__(self) -> _PysamScanner:
        return self

    def __exit__(self, *exc) -> None:
        self.bam.close()

    def scan(self, ref_id: int, chrom: str, length: int, blocks: _Blocks, stats) -> None:
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


# --------------------------------------------------------------------------------------------
# numba engine: BAI + BGZF + compiled record decoder
# --------------------------------------------------------------------------------------------


@dataclass
class _RefIndex:
    linear: np.ndarray  # uint64 virtual offsets of the 16 kb windows
    first: int  # smallest virtual offset of a record of this reference (0 if none)


def read_bai(path: str | os.PathLike) -> list[_RefIndex]:
    """Parse a BAI file: per reference its linear index and first record's virtual offset."""
    data = Path(path).read_bytes()
    if data[:4] != b"BAI\x01":
        raise InputError(f"{path}: not a BAI index (bad magic); re-run `samtools index`.")
    (n_ref,) = struct.unpack_from("<i", data, 4)
    pos = 8
    refs: list[_RefIndex] = []
    for _ in range(n_ref):
        (n_bin,) = struct.unpack_from("<i", data, pos)
        pos += 4
        first = None
        for _ in range(n_bin):
            bin_id, n_chunk = struct.unpack_from("<Ii", data, pos)
            pos += 8
            chunks = np.frombuffer(data, "<u8", 2 * n_chunk, pos)
            pos += 16 * n_chunk
            if bin_id == _BAI_PSEUDO_BIN:
                first = int(chunks[0])  # ref_beg of the pseudo-bin metadata
            elif n_chunk:
                cand = int(chunks[0::2].min())
                first = cand if first is None else min(first, cand)
        (n_intv,) = struct.unpack_from("<i", data, pos)
        pos += 4
        linear = np.frombuffer(data, "<u8", n_intv, pos).copy()
        pos += 8 * n_intv
        refs.append(_RefIndex(linear, first or 0))
    return refs


class _Inflater:
    """Raw-DEFLATE decompression of BGZF blocks straight into a numpy buffer.

    Uses libdeflate (the library htslib itself uses; found with ctypes, also thread-safe with
    one decompressor per thread) when installed, else :mod:`zlib`. Both check each block's
    size and CRC32 like htslib.
    """

    def __init__(self) -> None:
        self.lib = _load_libdeflate()
        self.local = threading.local()
        self.name = "libdeflate" if self.lib is not None else "zlib"

    def _decompressor(self) -> int:
        d = getattr(self.local, "d", None)
        if d is None:
            d = self.local.d = self.lib.libdeflate_alloc_decompressor()
            if not d:
                raise MemoryError("libdeflate_alloc_decompressor failed")
        return d

    def inflate(self, raw: np.ndarray, span: tuple[int, int], dst: np.ndarray, at: int) -> bool:
        """Inflate the block whose deflate data is ``raw[a:b-8]`` into ``dst[at:]``; return
        whether its size and CRC32 match the block's footer."""
        a, b = span
        crc, isize = struct.unpack_from("<II", raw, b - 8)
        if self.lib is not None:
            got = ctypes.c_size_t(0)
            rc = self.lib.libdeflate_deflate_decompress(
                self._decompressor(),
                raw.ctypes.data + a,
                b - 8 - a,
                dst.ctypes.data + at,
                isize,
                ctypes.byref(got),
            )
            if rc != 0 or got.value != isize:
                return False
            return self.lib.libdeflate_crc32(0, dst.ctypes.data + at, isize) == crc
        try:
            out = zlib.decompress(raw[a : b - 8], -15, max(isize, 1))
        except zlib.error:
            return False
        if len(out) != isize:
            return False
        dst[at : at + isize] = np.frombuffer(out, np.uint8)
        return zlib.crc32(out) == crc


def _load_libdeflate():
    """The libdeflate shared library with typed entry points, or None."""
    candidates = [Path(sys.prefix) / "lib" / "libdeflate.so.0", ctypes.util.find_library("deflate")]
    name = next((str(c) for c in candidates if c and (not isinstance(c, Path) or c.exists())), None)
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
        lib.libdeflate_alloc_decompressor.argtypes = []
        lib.libdeflate_deflate_decompress.restype = ctypes.c_int
        lib.libdeflate_deflate_decompress.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.libdeflate_crc32.restype = ctypes.c_uint32
        lib.libdeflate_crc32.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):  # pragma: no cover - unusual builds
        return None
    return lib


@dataclass
class _RawBlocks:
    """Compressed BGZF blocks read from the file, not yet inflated."""

    raw: np.ndarray  # the bytes read, as uint8
    spans: list[tuple[int, int]]  # (start of deflate data, end of block) within ``raw``
    coffs: list[int]  # compressed file offset of each block
    sizes: list[int]  # inflated size of each block (ISIZE)
    next_coff: int  # file offset after the last block


class _BgzfReader:
    """Reads runs of BGZF blocks from a compressed offset and inflates them into a buffer."""

    def __init__(self, path, threads: int) -> None:
        self.path = path
        self.fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self.size = os.fstat(self.fh.fileno()).st_size
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.inflater = _Inflater()

    def close(self) -> None:
        self.fh.close()
        if self.pool is not None:
            self.pool.shutdown()

    def read(self, coff: int, n_bytes: int) -> _RawBlocks:
        """The whole blocks within ``n_bytes`` (at least one block unless at the end) from
        ``coff``."""
        self.fh.seek(coff)
        raw = self.fh.read(max(n_bytes, _BGZF_MAX_BLOCK))
        spans, offs, sizes, pos = [], [], [], 0
        while pos + 18 <= len(raw):
            if raw[pos : pos + 4] != b"\x1f\x8b\x08\x04":
                raise InputError(f"{self.path}: corrupt BGZF block at byte {coff + pos}.")
            (xlen,) = struct.unpack_from("<H", raw, pos + 10)
            bsize = _bgzf_bsize(raw, pos, xlen)
            if bsize is None:
                raise InputError(f"{self.path}: BGZF block at byte {coff + pos} lacks BSIZE.")
            end = pos + bsize + 1
            if end > len(raw):
                break
            spans.append((pos + 12 + xlen, end))
            offs.append(coff + pos)
            sizes.append(struct.unpack_from("<I", raw, end - 4)[0])
            pos = end
        if not spans and coff + pos < self.size:
            raise InputError(f"{self.path}: truncated BGZF block at byte {coff + pos}.")
        return _RawBlocks(np.frombuffer(raw, np.uint8), spans, offs, sizes, coff + pos)

    def inflate_into(self, blocks: _RawBlocks, dst: np.ndarray, at: int) -> None:
        """Inflate every block of ``blocks`` into ``dst`` from position ``at`` on."""
        starts = np.cumsum([at, *blocks.sizes[:-1]]).tolist() if blocks.sizes else []
        jobs = list(zip(blocks.spans, starts))

        def run(part: list[tuple[tuple[int, int], int]]) -> list[int]:
            return [o for span, o in part if not self.inflater.inflate(blocks.raw, span, dst, o)]

        if self.pool is not None and len(jobs) >= 2 * self.threads:
            size = -(-len(jobs) // self.threads)
            parts = [jobs[i : i + size] for i in range(0, len(jobs), size)]
            bad = [o for res in self.pool.map(run, parts) for o in res]
        else:
            bad = run(jobs)
        if bad:
            raise InputError(
                f"{self.path}: a BGZF block starting near compressed byte {blocks.coffs[0]} fails "
                "its size or CRC check; the file is corrupt, re-create or re-download it."
            )


def _bgzf_bsize(raw: bytes, pos: int, xlen: int) -> int | None:
    """BSIZE (total block size - 1) from the BC subfield of a BGZF header's extra field."""
    x = pos + 12
    while x + 4 <= pos + 12 + xlen:
        si1, si2, slen = raw[x], raw[x + 1], struct.unpack_from("<H", raw, x + 2)[0]
        if si1 == 66 and si2 == 67 and slen == 2:
            return struct.unpack_from("<H", raw, x + 4)[0]
        x += 4 + slen
    return None


class _Buffer:
    """Inflated BGZF blocks, contiguous in one reused array, with their compressed offsets (to
    translate buffer positions to virtual offsets)."""

    def __init__(self, reader: _BgzfReader) -> None:
        self.reader = reader
        self.store = np.zeros(0, np.uint8)
        self.coffs: list[int] = []
        self.starts = np.zeros(1, np.int64)
        self.data = self.store
        self.coff_array = np.zeros(0, np.int64)
        self.next_coff = 0

    def reset(self, coff: int, n_bytes: int) -> None:
        """Hold only the blocks read from ``coff`` (about ``n_bytes`` compressed)."""
        self._fill(0, [], [], self.reader.read(coff, n_bytes))

    def advance(self, cursor: int, n_bytes: int) -> int:
        """Drop the blocks before the one holding ``cursor``, append the next blocks (about
        ``n_bytes`` compressed); return the cursor's new position."""
        j = int(np.searchsorted(self.starts, cursor, side="right")) - 1
        j = min(max(j, 0), len(self.coffs))
        keep_from = int(self.starts[j])
        kept = np.diff(self.starts[j:]).tolist()
        self._fill(keep_from, kept, self.coffs[j:], self.reader.read(self.next_coff, n_bytes))
        return cursor - keep_from

    def _fill(self, keep_from: int, kept_sizes: list, kept_coffs: list, new: _RawBlocks) -> None:
        kept = sum(kept_sizes)
        total = kept + sum(new.sizes)
        if total > len(self.store):  # grow; the kept tail moves along
            grown = np.empty(max(total, 2 * len(self.store)), np.uint8)
            grown[:kept] = self.store[keep_from : keep_from + kept]
            self.store = grown
        elif kept and keep_from:
            self.store[:kept] = self.store[keep_from : keep_from + kept].copy()
        self.reader.inflate_into(new, self.store, kept)
        sizes = kept_sizes + new.sizes
        self.coffs = kept_coffs + new.coffs
        self.coff_array = np.asarray(self.coffs, np.int64)
        self.starts = np.zeros(len(sizes) + 1, np.int64)
        np.cumsum(sizes, out=self.starts[1:])
        self.data = self.store[:total]
        self.next_coff = new.next_coff


class _NumbaScanner:
    """Forward scan of a BAM driven by the BAI linear index; records decoded by `_scan_kernel`."""

    SEEK_BYTES = 2 * _BGZF_MAX_BLOCK
    MAX_BYTES = 8 << 20

    def __init__(self, bam_path, index: Path, read_filter: ReadFilter, threads: int) -> None:
        self.path = bam_path
        self.index = read_bai(index)
        self.reader = _BgzfReader(bam_path, threads)
        self.f = read_filter

    def __enter__(self) -> _NumbaScanner:
        return self

    def __exit__(self, *exc) -> None:
        self.reader.close()

    def scan(self, ref_id: int, chrom: str, length: int, blocks: _Blocks, stats) -> None:
        if ref_id >= len(self.index) or len(blocks.starts) == 0:
            return
        ref = self.index[ref_id]
        m = self.f.margin
        qs = np.maximum(blocks.starts - m, 0)
        qe = np.minimum(blocks.ends + m, length)
        window = qs >> _LINEAR_SHIFT
        live = (window < len(ref.linear)) & (qs < qe)  # beyond the linear index: no reads
        if ref.first == 0 or not live.any():
            return
        qs, qe, window = qs[live], qe[live], window[live]
        voff = np.maximum(ref.linear[window], np.uint64(ref.first)).astype(np.int64)

        buf = _Buffer(self.reader)
        batch, cursor, region, last_seek = self.SEEK_BYTES, 0, 0, -1
        while True:
            eof = buf.next_coff >= self.reader.size
            status, cursor, region = _scan_kernel(
                buf.data, buf.coff_array, buf.starts, buf.next_coff, eof, cursor, region,
                qs, qe, voff, blocks.starts, blocks.ends, blocks.offsets, blocks.counts,
                ref_id, length, self.f.min_mapq, self.f.exclude_flags,
                self.f.require_proper_pair, self.f.shift_plus, self.f.shift_minus, stats,
            )  # fmt: skip
            if status == _DONE:
                return
            if status == _SEEK:
                if region == last_seek:
                    raise InputError(
                        f"{self.path}: its index points past the data on {chrom}; the index is "
                        f"stale or corrupt: re-run `samtools index {self.path}`."
                    )
                last_seek = region
                target = int(voff[region])
                batch = self.SEEK_BYTES
                buf.reset(target >> 16, batch)
                cursor = target & 0xFFFF
            elif status == _NEED_MORE:
                batch = min(2 * batch, self.MAX_BYTES)
                cursor = buf.advance(cursor, batch)
            elif status == _ERR_LONG_CIGAR:
                raise InputError(
                    f"{self.path}: a read on {chrom} stores its CIGAR in the CG tag (more than "
                    "65535 operations); set `preprocess.engine: pysam` for this BAM."
                )
            else:
                raise InputError(f"{self.path}: malformed or truncated BAM record on {chrom}.")


def _scan_kernel_py(
    buf, blk_coff, blk_start, next_coff, eof, cursor, region, qs, qe, voff,
    bstart, bend, boff, counts, ref_id, ref_len,
    min_mapq, exclude, require_proper, shift_plus, shift_minus, stats,
):  # fmt: skip
    """Decode BAM records from ``buf`` and count their insertions into ``counts``.

    Walks the regions from ``region`` on: for each, moves the cursor to the region's index
    offset when that lies ahead (asking the caller to SEEK when it is not in the buffer), then
    decodes records until one starts at or after the region's end. Returns
    (status, cursor, region); NEED_MORE when the buffer ends inside a record.
    """
    n_buf = buf.shape[0]
    n_blk = blk_coff.shape[0]
    n_reg = qs.shape[0]
    while region < n_reg:
        j = np.searchsorted(blk_start, cursor, side="right") - 1
        if j < n_blk:
            cur_v = (blk_coff[j] << 16) | (cursor - blk_start[j])
        else:
            cur_v = next_coff << 16
        target = voff[region]
        if target > cur_v:
            tc = target >> 16
            k = np.searchsorted(blk_coff, tc)
            if (
                k < n_blk
                and blk_coff[k] == tc
                and (target & 0xFFFF) <= blk_start[k + 1] - blk_start[k]
            ):
                cursor = blk_start[k] + (target & 0xFFFF)
            else:
                return _SEEK, cursor, region
        end = qe[region]
        while True:
            if cursor + 4 > n_buf:
                if eof:
                    return _DONE, cursor, n_reg
                return _NEED_MORE, cursor, region
            bs = (
                np.int64(buf[cursor])
                | (np.int64(buf[cursor + 1]) << 8)
                | (np.int64(buf[cursor + 2]) << 16)
                | (np.int64(buf[cursor + 3]) << 24)
            )
            if bs < 32:
                return _ERR_FORMAT, cursor, region
            if cursor + 4 + bs > n_buf:
                if eof:
                    return _ERR_FORMAT, cursor, region
                return _NEED_MORE, cursor, region
            r = cursor + 4
            rid = _i32(buf, r)
            pos = _i32(buf, r + 4)
            if rid != ref_id:
                return _DONE, cursor, n_reg
            if pos >= end:
                region += 1
                break
            cursor = r + bs
            stats[0] += 1
            flag = np.int64(buf[r + 14]) | (np.int64(buf[r + 15]) << 8)
            if flag & exclude:
                continue
            if require_proper and (flag & 1) and not (flag & 2):
                continue
            if np.int64(buf[r + 9]) < min_mapq:
                continue
            n_cig = np.int64(buf[r + 12]) | (np.int64(buf[r + 13]) << 8)
            c = r + 32 + np.int64(buf[r + 8])
            alen = 0
            for k in range(n_cig):
                op = _i32(buf, c + 4 * k) & 0xFFFFFFFF
                code = op & 0xF
                if code == 0 or code == 2 or code == 3 or code == 7 or code == 8:
                    alen += op >> 4
            if n_cig == 2 and (_i32(buf, c) & 0xF) == 4 and (_i32(buf, c + 4) & 0xF) == 3:
                if (_i32(buf, c) >> 4) == _i32(buf, r + 16):  # kSmN placeholder of a CG tag
                    return _ERR_LONG_CIGAR, cursor, region
            if alen <= 0:
                continue
            stats[1] += 1
            if flag & 16:
                p = pos + alen - 1 + shift_minus
            else:
                p = pos + shift_plus
            if p < 0 or p >= ref_len:
                continue
            b = np.searchsorted(bstart, p, side="right") - 1
            if b >= 0 and p < bend[b]:
                idx = boff[b] + p - bstart[b]
                if counts[idx] < 65535:
                    counts[idx] += 1
                    stats[2] += 1
                else:
                    stats[3] += 1
    return _DONE, cursor, region


def _i32_py(buf, i):
    """Little-endian signed int32 at ``buf[i:i+4]``."""
    v = (
        np.int64(buf[i])
        | (np.int64(buf[i + 1]) << 8)
        | (np.int64(buf[i + 2]) << 16)
        | (np.int64(buf[i + 3]) << 24)
    )
    return v - (np.int64(1) << 32) if v >= (np.int64(1) << 31) else v


if numba is not None:
    _i32 = numba.njit(cache=True, inline="always")(_i32_py)
    _scan_kernel = numba.njit(cache=True, nogil=True)(_scan_kernel_py)
else:  # pragma: no cover
    _i32 = _i32_py
    _scan_kernel = _scan_kernel_py
