"""The ImmGen OCR table (``ocrs.csv``): its layout and the one reader every step uses.

The table (ImmGen ATAC-seq, Yoshida et al. 2019) is a CSV with one row per OCR: the peak ID,
``chrom``, the 1-based ``Summit``, metadata columns, then one quantile-normalised signal column per
cell type, named as in the cell-type table in use (``config/celltypes.tsv`` by default) or by one
of the aliases listed there (:class:`bpaitac.io.CellTypeNames`). The simulator writes the same
layout. Every check of the table's content lives here (:func:`read_ocr_table`).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.io import (
    TABLE_ENCODING,
    CellTypeNames,
    InputError,
    check_number_columns,
    check_unique_columns,
    require_columns,
    require_file,
)

log = logging.getLogger(__name__)

PEAK_ID = "ImmGenATAC1219.peakID"
CHROM = "chrom"
SUMMIT = "Summit"
INCLUDED = "Included.in.systematic.analysis"
INCLUDED_TRUE = frozenset({"1", "true", "t", "yes", "y"})
INCLUDED_FALSE = frozenset({"0", "false", "f", "no", "n", ""})
METADATA_COLUMNS = (
    "mm10.60way.phastCons_scores",
    "_-log10_bestPvalue",
    INCLUDED,
    "TSS",
    "genes.within.100Kb",
)
REQUIRED_COLUMNS = (PEAK_ID, CHROM, SUMMIT)
LEADING_COLUMNS = (*REQUIRED_COLUMNS, *METADATA_COLUMNS)


def read_ocr_table(
    path: str | os.PathLike,
    celltypes: CellTypeNames | Sequence[str],
    included_only: bool = False,
    chrom_lengths: Mapping[str, int] | None = None,
    genome: str | os.PathLike = "the genome",
) -> pd.DataFrame:
    """Read and validate an OCR table; return ``peak_id``, ``chrom``, ``summit`` + cell types.

    ``summit`` is 0-based (ImmGen's ``Summit`` is 1-based). Signal columns come back as float64 in
    the order of ``celltypes``, named by the cell type whatever alias the table spells it by
    (:meth:`~bpaitac.io.CellTypeNames.resolve`; a plain list of names allows no alias).
    ``included_only`` keeps the rows flagged in ``Included.in.systematic.analysis`` (1/0,
    true/false or yes/no, any case; empty = no). With ``chrom_lengths`` (of ``genome``) every
    chromosome must be in the genome and every summit inside its chromosome. Two peak IDs at one
    locus (chromosome and summit) are merged into the first one, with a warning that counts them.
    A UTF-8 byte-order mark is ignored. Errors name the file, the column or line, and the fix.
    """
    names = CellTypeNames.coerce(celltypes)
    path = require_file(path, "OCR table", "run the simulate or download step first.")
    header = _raw_header(path)
    check_unique_columns(path, header)
    starts = ", ".join(REQUIRED_COLUMNS)
    require_columns(path, header, REQUIRED_COLUMNS, f"an ImmGen OCR table starts with {starts}.")
    spelled = names.resolve(header, str(path), what="signal column")
    columns = [spelled[c] for c in names.names]
    if included_only and INCLUDED not in header:
        raise InputError(
            f"{path}: no {INCLUDED} column, which `preprocess.included_only: true` filters on; "
            "set it to false or use ImmGen's full OCR table."
        )
    extra = [INCLUDED] if included_only else []
    table = pd.read_csv(
        path,
        usecols=[*REQUIRED_COLUMNS, *extra, *columns],
        dtype={PEAK_ID: str, CHROM: str, **{c: str for c in extra}},
        keep_default_na=False,
        na_values={c: ["", "NA", "NaN"] for c in [SUMMIT, *columns]},
        encoding=TABLE_ENCODING,
    )
    table["line"] = np.arange(len(table)) + 2
    _check_values(path, table, columns, chrom_lengths, genome)
    if included_only:
        table = table[included_flags(path, table[INCLUDED])].reset_index(drop=True)
        if table.empty:
            raise InputError(
                f"{path}: no OCR is flagged in {INCLUDED}; set `preprocess.included_only: false`."
            )
    table = _merge_duplicate_loci(path, table)
    out = pd.DataFrame(
        {
            "peak_id": table[PEAK_ID].to_numpy(),
            "chrom": table[CHROM].to_numpy(),
            "summit": table[SUMMIT].to_numpy(dtype=np.int64) - 1,
        }
    )
    signal = table.loc[:, columns].astype(np.float64)
    signal.columns = list(names.names)
    return pd.concat([out, signal.reset_index(drop=True)], axis=1)


def included_flags(path: str | os.PathLike, values: pd.Series) -> np.ndarray:
    """Parse the ``Included.in.systematic.analysis`` column to booleans; an unknown value is an
    error naming the line."""
    v = values.fillna("").astype(str).str.strip().str.lower()
    known = v.isin(INCLUDED_TRUE | INCLUDED_FALSE)
    if not known.all():
        i = int(np.flatnonzero(~known.to_numpy())[0])
        raise InputError(
            f"{path}, line {i + 2}, column {INCLUDED!r}: {values.iloc[i]!r} is not a flag; use "
            "1/0, true/false or yes/no."
        )
    return v.isin(INCLUDED_TRUE).to_numpy()


def _raw_header(path: Path) -> list[str]:
    """The column names of the first line, as written."""
    with open(path, newline="", encoding=TABLE_ENCODING) as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise InputError(f"{path}: empty file; expected a CSV OCR table.") from None


def _check_values(
    path: Path,
    table: pd.DataFrame,
    columns: Sequence[str],
    chrom_lengths: Mapping[str, int] | None,
    genome: str | os.PathLike,
) -> None:
    """Per-row checks; errors give the 1-based line number in the file (header = line 1)."""
    ids = table[PEAK_ID]
    bad = ids.eq("") | ids.duplicated()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        what = "empty" if ids.iloc[i] == "" else f"duplicated ({ids.iloc[i]!r})"
        raise InputError(f"{path}, line {i + 2}: {what} {PEAK_ID}; peak IDs must be unique.")
    if table[CHROM].eq("").any():
        i = int(np.flatnonzero(table[CHROM].eq("").to_numpy())[0])
        raise InputError(f"{path}, line {i + 2}: empty {CHROM}; give the chromosome name.")
    if chrom_lengths is not None:
        unknown = ~table[CHROM].isin(list(chrom_lengths)).to_numpy()
        if unknown.any():
            i = int(np.flatnonzero(unknown)[0])
            others = sorted(set(table[CHROM][unknown]) - {table[CHROM].iloc[i]})
            nor = f" (nor are {', '.join(others[:5])}{' ...' if len(others) > 5 else ''})"
            raise InputError(
                f"{path}, line {i + 2}: chromosome {table[CHROM].iloc[i]!r} is not in {genome}"
                f"{nor if others else ''}; use the genome the OCRs were called on (mm10 for "
                "ImmGen's table)."
            )
    summit = pd.to_numeric(table[SUMMIT], errors="coerce")
    bad = summit.isna() | (summit < 1) | (summit != summit.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}, line {i + 2}: {SUMMIT} {table[SUMMIT].iloc[i]!r} is not a positive integer "
            "(1-based summit position)."
        )
    table[SUMMIT] = summit.astype(np.int64)
    if chrom_lengths is not None:
        length = table[CHROM].map(dict(chrom_lengths)).to_numpy(np.int64)
        past = table[SUMMIT].to_numpy() > length
        if past.any():
            i = int(np.flatnonzero(past)[0])
            raise InputError(
                f"{path}, line {i + 2}: {SUMMIT} {table[SUMMIT].iloc[i]} lies past the end of "
                f"{table[CHROM].iloc[i]} ({length[i]} bp in {genome}); the table and the genome "
                "are of different assemblies, or the line is corrupt: fix it or use the matching "
                "genome."
            )
    check_number_columns(path, table, columns)


def _merge_duplicate_loci(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Keep the first of several peak IDs at one locus (chromosome and summit), which would
    otherwise be the same training example twice; warn with their number and the first pair."""
    dup = table.duplicated([CHROM, SUMMIT]).to_numpy()
    if not dup.any():
        return table
    i = int(np.flatnonzero(dup)[0])
    chrom, summit = table[CHROM].iloc[i], table[SUMMIT].iloc[i]
    first = int(np.flatnonzero(((table[CHROM] == chrom) & (table[SUMMIT] == summit)).to_numpy())[0])
    log.warning(
        "%s: %d OCR(s) share their locus with an earlier line and are merged into it (dropped), "
        "e.g. line %d (%s) and line %d (%s) both at %s:%d",
        path,
        int(dup.sum()),
        table["line"].iloc[first],
        table[PEAK_ID].iloc[first],
        table["line"].iloc[i],
        table[PEAK_ID].iloc[i],
        chrom,
        summit,
    )
    return table[~dup].reset_index(drop=True)
