"""The numba engine of :func:`bpaitac.data.insertions.count_insertions`: a BAM read through its
BAI index, BGZF blocks inflated here, records decoded by a compiled loop.

- :func:`read_bai`: per reference, the BAI linear index (virtual offsets of 16 kb windows) and
  the virtual offset of its first record.
- :class:`BgzfReader` / :class:`_Buffer`: runs of BGZF blocks read from a compressed offset and
  inflated on ``threads`` threads with libdeflate (through ctypes, as htslib does; :mod:`zlib`
  when libdeflate is not installed), each block's size and CRC32 checked.
- :class:`NumbaScanner`: one forward pass per chromosome, jumping with the linear index from
  window block to window block; :func:`_scan_kernel` decodes the records, applies the
  :class:`~bpaitac.data.insertions.ReadFilter` and counts each read's insertion into the
  blocks' count array, exactly as the pysam engine of :mod:`bpaitac.data.insertions` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import struct
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bpaitac.io import InputError

if TYPE_CHECKING:
    from bpaitac.data.insertions import Blocks, ReadFilter

try:  # numba ships with memelite; without it count_insertions uses the pysam engine.
    import numba
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

HAVE_NUMBA = numba is not None
"""Whether this engine can run (numba importable)."""

# Kernel return codes
_DONE, _NEED_MORE, _SEEK, _ERR_FORMAT, _ERR_LONG_CIGAR = 0, 1, 2, 3, 4
_LINEAR_SHIFT = 14  # BAI linear index: 16 kb windows
_BAI_PSEUDO_BIN = 37450
_BGZF_MAX_BLOCK = 65536


@dataclass
class RefIndex:
    """What the scan needs of one reference's BAI entry."""

    linear: np.ndarray  # uint64 virtual offsets of the 16 kb windows
    first: int  # smallest virtual offset of a record of this reference (0 if none)


def read_bai(path: str | os.PathLike) -> list[RefIndex]:
    """Parse a BAI file: per reference its linear index and first record's virtual offset.

    Raises :class:`InputError` for a file that is not a whole BAI (bad magic, cut short, or
    bytes after the optional count of unplaced reads): a download cut short or another file.
    """
    data = Path(path).read_bytes()
    if data[:4] != b"BAI\x01":
        raise InputError(f"{path}: not a BAI index (bad magic); re-run `samtools index`.")
    try:
        refs, end = _parse_bai(data)
    except (struct.error, ValueError) as exc:
        raise InputError(
            f"{path}: truncated or corrupt BAI index ({exc}); re-run `samtools index` or fetch "
            "it again."
        ) from exc
    if len(data) - end not in (0, 8):  # n_no_coor (uint64) is optional
        raise InputError(
            f"{path}: {len(data) - end} unexpected byte(s) after the BAI index; re-run "
            "`samtools index` or fetch it again."
        )
    return refs


def _parse_bai(data: bytes) -> tuple[list[RefIndex], int]:
    """The references of a BAI file's bytes and the offset where their index ends."""
    (n_ref,) = struct.unpack_from("<i", data, 4)
    pos = 8
    refs: list[RefIndex] = []
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
        refs.append(RefIndex(linear, first or 0))
    return refs, pos


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


class BgzfReader:
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
        fix = (
            "the BAM is corrupt, or its index is of an earlier version of it: re-run "
            f"`samtools index {self.path}`, or re-create or re-download the BAM"
        )
        self.fh.seek(coff)
        raw = self.fh.read(max(n_bytes, _BGZF_MAX_BLOCK))
        spans, offs, sizes, pos = [], [], [], 0
        while pos + 18 <= len(raw):
            if raw[pos : pos + 4] != b"\x1f\x8b\x08\x04":
                raise InputError(f"{self.path}: corrupt BGZF block at byte {coff + pos}; {fix}.")
            (xlen,) = struct.unpack_from("<H", raw, pos + 10)
            bsize = _bgzf_bsize(raw, pos, xlen)
            if bsize is None:
                where = f"{self.path}: BGZF block at byte {coff + pos}"
                raise InputError(f"{where} lacks BSIZE; {fix}.")
            end = pos + bsize + 1
            if end > len(raw):
                break
            spans.append((pos + 12 + xlen, end))
            offs.append(coff + pos)
            sizes.append(struct.unpack_from("<I", raw, end - 4)[0])
            pos = end
        if not spans and coff + pos < self.size:
            raise InputError(f"{self.path}: truncated BGZF block at byte {coff + pos}; {fix}.")
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

    def __init__(self, reader: BgzfReader) -> None:
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


class NumbaScanner:
    """Forward scan of a BAM driven by the BAI linear index; records decoded by `_scan_kernel`.

    The counting engine ``numba`` of :func:`bpaitac.data.insertions.count_insertions`, which
    calls :meth:`scan` once per chromosome inside a ``with`` block.
    """

    SEEK_BYTES = 2 * _BGZF_MAX_BLOCK
    MAX_BYTES = 8 << 20

    def __init__(self, bam_path, index: Path, read_filter: ReadFilter, threads: int) -> None:
        self.path = bam_path
        self.index = read_bai(index)
        self.reader = BgzfReader(bam_path, threads)
        self.f = read_filter

    def __enter__(self) -> NumbaScanner:
        return self

    def __exit__(self, *exc) -> None:
        self.reader.close()

    def scan(self, ref_id: int, chrom: str, length: int, blocks: Blocks, stats) -> None:
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
