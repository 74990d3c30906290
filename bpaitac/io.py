"""Small I/O helpers shared by every step: atomic writes, logging, the cell-type table."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

CELLTYPE_COLUMNS = ("celltype", "lineage", "organ")
# Optional column: comma-separated other spellings of the cell type (e.g. in sample titles).
ALIASES_COLUMN = "aliases"


class InputError(ValueError):
    """Bad input: the message names the file, the place and the fix."""


class ConfigError(InputError):
    """A config value is invalid: the message names the key and the allowed values."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The temporary name keeps the suffix of ``path`` so that libraries choosing a format by
    extension (numpy, matplotlib, pysam) behave as for the final file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions of an ordinary new file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; it replaces ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def require_file(path: str | os.PathLike, what: str, fix: str) -> Path:
    """``path`` as a :class:`Path`; raises "``{path}: {what} not found; {fix}``" when absent."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found; {fix}")
    return path


def require_columns(
    path: str | os.PathLike, columns: Iterable[str], required: Iterable[str], fix: str
) -> None:
    """Raise, naming the file and its header line, when ``required`` are not all in ``columns``."""
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(f"{path}, line 1: missing column(s) {missing}; {fix}")


def check_unique_columns(path: str | os.PathLike, header: list[str]) -> None:
    """Raise when a table header repeats a column name (pandas would silently rename it)."""
    dup = sorted({c for c in header if header.count(c) > 1})
    if dup:
        raise InputError(f"{path}, line 1: duplicated column(s) {dup}; keep one column per name.")


def setup_logging(log_path: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Log to stderr and, when given, to ``log_path`` (the rule's ``log:`` file).

    Also routes Python warnings and any uncaught exception (with its traceback) through the
    same handlers, so that a failing rule's log file holds its error: on a cluster the log is
    all a user sees (Snakemake runs ``script:`` files as their own Python process, whose
    uncaught exceptions reach :data:`sys.excepthook`).
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    sys.excepthook = log_uncaught


def log_exception(logger: logging.Logger, msg: str, *args: Any) -> None:
    """Log the exception being handled, with its traceback, and mark it so that
    :func:`log_uncaught` does not log it a second time when it is re-raised."""
    logger.exception(msg, *args)
    exc = sys.exc_info()[1]
    if exc is not None:
        exc._bpaitac_logged = True  # type: ignore[attr-defined]


def log_uncaught(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
    """:data:`sys.excepthook` that logs the exception and its traceback (stderr and log file)."""
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if getattr(exc, "_bpaitac_logged", False):
        return
    logging.getLogger("bpaitac").critical(
        "failed with %s: %s", exc_type.__name__, exc, exc_info=(exc_type, exc, tb)
    )


def read_celltypes(path: str | os.PathLike, per_lineage: int | None = None) -> pd.DataFrame:
    """Read and validate the cell-type table (``celltype``, ``lineage``, ``organ``; TSV).

    An optional ``aliases`` column lists other spellings of a cell type, comma-separated (empty
    allowed); the result always has it (empty strings when the table has no such column).
    ``per_lineage=k`` keeps the first ``k`` cell types of each lineage in table order.
    """
    path = require_file(path, "cell-type table", "set `celltypes:` in the config.")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    require_columns(
        path,
        table.columns,
        CELLTYPE_COLUMNS,
        f"the header must be {'<TAB>'.join(CELLTYPE_COLUMNS)}.",
    )
    for i, row in enumerate(table.itertuples(index=False), start=2):
        for col in ("celltype", "lineage"):
            if not getattr(row, col).strip():
                raise InputError(f"{path}, line {i}: empty `{col}`; fill it in or drop the line.")
    dup = table["celltype"][table["celltype"].duplicated()]
    if len(dup):
        line = int(dup.index[0]) + 2
        raise InputError(
            f"{path}, line {line}: cell type {dup.iloc[0]!r} appears twice; keep one line."
        )
    if ALIASES_COLUMN not in table.columns:
        table[ALIASES_COLUMN] = ""
    table[ALIASES_COLUMN] = [",".join(_split_aliases(a)) for a in table[ALIASES_COLUMN]]
    check_aliases(table, path)
    if per_lineage is not None:
        if per_lineage < 1:
            raise InputError(f"celltypes_per_lineage must be >= 1 or null, got {per_lineage}.")
        table = table.groupby("lineage", sort=False, group_keys=False).head(per_lineage)
    return table.loc[:, [*CELLTYPE_COLUMNS, ALIASES_COLUMN]].reset_index(drop=True)


def _split_aliases(cell: str) -> list[str]:
    """The aliases of one table cell: comma-separated, blanks dropped."""
    return [a.strip() for a in cell.split(",") if a.strip()]


def check_aliases(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Raise when an alias equals a cell type or another alias (lines as in the TSV file)."""
    seen = {name: (line, "cell type") for line, name in enumerate(table["celltype"], start=2)}
    for line, (name, cell) in enumerate(zip(table["celltype"], table[ALIASES_COLUMN]), start=2):
        for alias in _split_aliases(cell):
            if alias in seen:
                other, what = seen[alias]
                where = f"the {what} on line {other}"
                raise InputError(
                    f"{path}, line {line}: alias {alias!r} of {name!r} equals {where}; "
                    "each spelling may name one cell type only: remove or rename the alias."
                )
            seen[alias] = (line, "alias")


def alias_map(celltypes: pd.DataFrame) -> dict[str, str]:
    """Every spelling (cell type and its aliases) -> the cell type, for a table from
    :func:`read_celltypes`."""
    out = {name: name for name in celltypes["celltype"]}
    for name, cell in zip(celltypes["celltype"], celltypes.get(ALIASES_COLUMN, [""] * len(out))):
        out.update({alias: name for alias in _split_aliases(cell)})
    return out


def lineage_order(celltypes: pd.DataFrame) -> list[str]:
    """Lineages in first-appearance order of the cell-type table."""
    return list(dict.fromkeys(celltypes["lineage"]))
