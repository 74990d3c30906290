"""Paired-end BAM output for simulated fragments, and reading insertions back.

A fragment with insertions ``l < r`` (0-based) becomes a proper pair under the convention of
:mod:`bpaitac.data.tn5`: a plus-strand read starting at ``l - 4`` and a minus-strand read ending at
``r + 6`` (half-open), both of ``min(read_length, TLEN)`` bases, TLEN = ``r - l + 10``. Reads
carry no sequence (SEQ and QUAL are ``*``): the workflow uses positions only. Which mate is read 1
is random. Records are written sorted by coordinate as SAM text and converted to BAM by samtools
(through pysam), then indexed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pysam

from bpaitac.data.tn5 import insertion_of_read, minus_read_end, plus_read_start
from bpaitac.io import atomic_path

log = logging.getLogger(__name__)

MAPQ = 60


def sam_header(names: Sequence[str], sizes: Sequence[int], comment: str = "") -> str:
    """SAM header text: coordinate-sorted, one @SQ per chromosome, a @PG and optional @CO."""
    lines = ["@HD\tVN:1.6\tSO:coordinate"]
    lines += [f"@SQ\tSN:{n}\tLN:{s}" for n, s in zip(names, sizes)]
    lines.append("@PG\tID:bpaitac-simulate\tPN:bpaitac.simulate\tVN:0.1.0")
    if comment:
        lines.append(f"@CO\t{comment}")
    return "\n".join(lines) + "\n"


def sam_records(
    names: Sequence[str],
    chrom: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    read_length: int,
    rng: np.random.Generator,
    prefix: str = "frag",
) -> list[str]:
    """SAM lines (coordinate-sorted) for fragments with insertions ``left < right`` on ``chrom``."""
    n = len(left)
    order = np.lexsort((left, chrom))
    chrom, left, right = chrom[order], left[order], right[order]
    tlen = right - left + (minus_read_end(0) - plus_read_start(0))
    rlen = np.minimum(read_length, tlen)
    plus_pos = plus_read_start(left)  # 0-based
    minus_pos = minus_read_end(right) - rlen
    first_is_plus = rng.random(n) < 0.5
    flag_plus = np.where(first_is_plus, 99, 163)
    flag_minus = np.where(first_is_plus, 147, 83)
    fid = np.arange(n)
    # two records per fragment, then a stable sort by (chrom, position)
    c2 = np.concatenate([chrom, chrom])
    pos = np.concatenate([plus_pos, minus_pos])
    mate = np.concatenate([minus_pos, plus_pos])
    flag = np.concatenate([flag_plus, flag_minus])
    tl = np.concatenate([tlen, -tlen])
    rl = np.concatenate([rlen, rlen])
    ids = np.concatenate([fid, fid])
    rec = np.lexsort((np.concatenate([np.zeros(n), np.ones(n)]), ids, pos, c2))
    chrom_names = np.asarray(names, dtype=object)[c2[rec]]
    return [
        f"{prefix}{i}\t{f}\t{c}\t{p + 1}\t{MAPQ}\t{r}M\t=\t{m + 1}\t{t}\t*\t*\n"
        for i, f, c, p, r, m, t in zip(
            ids[rec].tolist(),
            flag[rec].tolist(),
            chrom_names.tolist(),
            pos[rec].tolist(),
            rl[rec].tolist(),
            mate[rec].tolist(),
            tl[rec].tolist(),
        )
    ]


def write_fragments_bam(
    path: str | os.PathLike,
    names: Sequence[str],
    sizes: Sequence[int],
    chrom: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    read_length: int,
    rng: np.random.Generator,
    comment: str = "",
) -> None:
    """Write fragments as a coordinate-sorted, indexed paired-end BAM (``path`` and ``.bai``)."""
    path = Path(path)
    sizes_arr = np.asarray(sizes)
    if len(left) and (
        np.any(plus_read_start(left) < 0) or np.any(minus_read_end(right) > sizes_arr[chrom])
    ):
        raise ValueError(f"{path}: a fragment runs off its chromosome; increase the margins.")
    lines = sam_records(names, chrom, left, right, read_length, rng)
    with atomic_path(path) as tmp_bam, atomic_path(f"{path}.bai") as tmp_bai:
        fd, sam = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".sam", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(sam_header(names, sizes, comment))
                fh.writelines(lines)
            pysam.view("-b", "-o", str(tmp_bam), sam, catch_stdout=False)
        finally:
            os.unlink(sam)
        pysam.index("-o", str(tmp_bai), str(tmp_bam))
    log.info("wrote %s: %d fragments", path, len(left))


def read_insertions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Tn5 insertion positions (0-based, sorted) per chromosome of a BAM, both reads of a pair."""
    out: dict[str, list[int]] = {}
    with pysam.AlignmentFile(str(path), "rb") as bam:
        for name in bam.references:
            out[name] = [
                insertion_of_read(a.reference_start, a.reference_end, a.is_reverse)
                for a in bam.fetch(name)
                if not a.is_unmapped
            ]
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in out.items()}
