"""BED files of genome regions, checked against the genome line by line.

The one BED reader of the package: the protein-free regions of the bias set
(:func:`bpaitac.data.bias_sets.read_regions_bed`) and the region sets of the genome-browser
tracks (:mod:`bpaitac.interpret.tracks`) read BED files here. Every error names the file, the
line and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from bpaitac.io import TABLE_ENCODING, InputError, require_file

BED_COLUMNS = ("chrom", "start", "end", "name", "line")
"""Columns of :func:`read_bed`'s table (``line``: 1-based line of the region in the file)."""


def read_bed(
    path: str | os.PathLike,
    lengths: Mapping[str, int],
    genome: str | os.PathLike = "the genome",
    *,
    what: str = "BED file",
    contig_fix: str = "use the genome the regions were defined on, or drop the line.",
    min_width: int = 1,
    width_fix: str = "widen the region or drop the line.",
) -> pd.DataFrame:
    """Regions (``chrom``, ``start``, ``end``, ``name``, ``line``) of a BED file (0-based,
    half-open; first three columns required, the fourth is the name).

    Blank lines and ``#``, ``track`` and ``browser`` lines are skipped. Raises
    :class:`InputError` naming the file and the line for a line that is not BED, a contig not in
    ``lengths`` (read from ``genome``; fix: ``contig_fix``), a region past the contig's end or
    with start >= end, a region narrower than ``min_width`` bp (fix: ``width_fix``), and for a
    file without regions. A region without a name is named ``chrom:start-end``.
    """
    path = require_file(path, what, "fix the path in the config.")
    rows = []
    with open(path, encoding=TABLE_ENCODING) as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\r\n").split("\t")
            try:
                chrom, start, end = f[0], int(f[1]), int(f[2])
            except (IndexError, ValueError) as exc:
                raise InputError(
                    f"{path}, line {i}: expected chrom<TAB>start<TAB>end (BED), got {line!r}."
                ) from exc
            if chrom not in lengths:
                raise InputError(
                    f"{path}, line {i}: chromosome {chrom!r} is not in {genome}; {contig_fix}"
                )
            if not 0 <= start < end <= lengths[chrom]:
                raise InputError(
                    f"{path}, line {i}: {chrom}:{start}-{end} is not inside the genome "
                    f"({chrom} has {lengths[chrom]} bp; BED is 0-based, start < end); fix the "
                    "region or use the matching genome."
                )
            if end - start < min_width:
                raise InputError(
                    f"{path}, line {i}: {chrom}:{start}-{end} is {end - start} bp, narrower than "
                    f"{min_width} bp; {width_fix}"
                )
            name = f[3] if len(f) > 3 and f[3] else f"{chrom}:{start}-{end}"
            rows.append((chrom, start, end, name, i))
    if not rows:
        raise InputError(f"{Path(path)}: no regions; the {what} is empty. Add regions to it.")
    return pd.DataFrame(rows, columns=list(BED_COLUMNS))
