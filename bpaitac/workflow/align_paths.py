"""Files of the alignment route (workflow/rules/align.smk): bowtie2 index files and the runs of
each cell type from the runs table."""

from __future__ import annotations

import os
from collections.abc import Sequence

from bpaitac.io import InputError

BOWTIE2_INDEX_SUFFIXES = (".1.bt2", ".2.bt2", ".3.bt2", ".4.bt2", ".rev.1.bt2", ".rev.2.bt2")


def run_files(runs_tsv: str | os.PathLike, celltypes: Sequence[str], pattern: str) -> list[str]:
    """``pattern.format(run=...)`` for the runs of ``celltypes`` in the runs table (cell-type
    order, then replicate order); a cell type without runs is an :class:`InputError`."""
    from bpaitac.data.runs import read_run_table, runs_of

    table = read_run_table(runs_tsv)
    out = []
    for celltype in celltypes:
        runs = runs_of(table, celltype)
        if not runs:
            raise InputError(
                f"{runs_tsv}: cell type {celltype} has no run; check `download.run_table_url` "
                "and the cell-type table's aliases."
            )
        out.extend(pattern.format(run=r) for r in runs)
    return out
