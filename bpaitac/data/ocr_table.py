"""The ImmGen OCR table (``ocrs.csv``): its layout and the one reader every step uses.

The table (ImmGen ATAC-seq, Yoshida et al. 2019) is a CSV with one row per OCR: the peak ID,
``chrom``, the 1-based ``Summit``, metadata columns, then one quantile-normalised signal column per
cell type named exactly as in ``config/celltypes.tsv``. The simulator writes the same layout.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.io import InputError, check_unique_columns, require_columns, require_file

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
    path: str | os.PathLike, celltypes: Sequence[str], included_only: bool = False
) -> pd.DataFrame:
    """Read and validate an OCR table; return ``peak_id``, ``chrom``, ``summit`` + cell types.

    ``summit`` is 0-based (ImmGen's ``Summit`` is 1-based). Signal columns come back as float64 in
    the order of ``celltypes``. ``included_only`` keeps the rows flagged in
    ``Included.in.systematic.analysis`` (1/0, true/false or yes/no, any case; empty = no).
    Errors name the file, the column or line, and the fix.
    """
    path = require_file(path, "OCR table", "run the simulate or download step first.")
    header = _raw_header(path)
    check_unique_columns(path, header)
    starts = ", ".join(REQUIRED_COLUMNS)
    require_columns(path, header, REQUIRED_COLUMNS, f"an ImmGen OCR table starts with {starts}.")
    absent = [c for c in celltypes if c not in header]
    if absent:
        raise InputError(
            f"{path}: no signal column for cell type(s) {absent[:5]}"
            f"{' ...' if len(absent) > 5 else ''}; column names must match config/celltypes.tsv "
            "exactly (or restrict `celltypes_per_lineage`)."
        )
    if included_only and INCLUDED not in header:
        raise InputError(
            f"{path}: no {INCLUDED} column, which `preprocess.included_only: true` filters on; "
            "set it to false or use ImmGen's full OCR table."
        )
    extra = [INCLUDED] if included_only else []
    table = pd.read_csv(
        path,
        usecols=[*REQUIRED_COLUMNS, *extra, *celltypes],
        dtype={PEAK_ID: str, CHROM: str, **{c: str for c in extra}},
        keep_default_na=False,
        na_values={c: ["", "NA", "NaN"] for c in [SUMMIT, *celltypes]},
    )
    _check_values(path, table, celltypes)
    if included_only:
        table = table[included_flags(path, table[INCLUDED])].reset_index(drop=True)
        if table.empty:
            raise InputError(
                f"{path}: no OCR is flagged in {INCLUDED}; set `preprocess.included_only: false`."
            )
    out = pd.DataFrame(
        {
            "peak_id": table[PEAK_ID].to_numpy(),
            "chrom": table[CHROM].to_numpy(),
            "summit": table[SUMMIT].to_numpy(dtype=np.int64) - 1,
        }
    )
    signal = table.loc[:, list(celltypes)].astype(np.float64)
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
    with open(path, newline="") as fh:
        try:
            return next(csv.reader(fh))
        except StopIteration:
            raise InputError(f"{path}: empty file; expected a CSV OCR table.") from None


def _check_values(path: Path, table: pd.DataFrame, celltypes: Sequence[str]) -> None:
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
    summit = pd.to_numeric(table[SUMMIT], errors="coerce")
    bad = summit.isna() | (summit < 1) | (summit != summit.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{path}, line {i + 2}: {SUMMIT} {table[SUMMIT].iloc[i]!r} is not a positive integer "
            "(1-based summit position)."
        )
    table[SUMMIT] = summit.astype(np.int64)
    for c in celltypes:
        values = pd.to_numeric(table[c], errors="coerce")
        bad = values.isna() | (values < 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                f"{path}, line {i + 2}, column {c!r}: {table[c].iloc[i]!r} is not a "
                "non-negative number."
            )
        table[c] = values
