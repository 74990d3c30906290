"""Small I/O helpers shared by every step: atomic writes, logging, the cell-type table."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CELLTYPE_COLUMNS = ("celltype", "lineage", "organ")
# Optional column: comma-separated other spellings of the cell type (e.g. in sample titles).
ALIASES_COLUMN = "aliases"
TABLE_ENCODING = "utf-8-sig"
"""Encoding every table reader uses: UTF-8, with a leading byte-order mark (BOM, as spreadsheet
programs write) dropped instead of becoming part of the first column's name."""
NAME_RE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_.+-]*")
"""Cell-type and replicate names: they become parts of file names and URLs."""
NAME_RULE = (
    "use letters, digits and _ . + - only, no '..' and no leading '.' or '-' (names become "
    "file names)"
)
log = logging.getLogger(__name__)


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


def check_number_columns(
    path: str | os.PathLike,
    table: pd.DataFrame,
    columns: Iterable[str],
    *,
    allow_missing: bool = False,
    allow_infinite: bool = False,
    first_line: int = 2,
) -> None:
    """Convert ``columns`` of ``table`` (as read, strings or numbers) to float64 in place; raise,
    naming the file, line and column, at the first value that is not a finite non-negative
    number (NaN passes when ``allow_missing``, +inf when ``allow_infinite``: -log10 of a p-value
    that underflowed to 0). Row ``i`` of ``table`` is line ``first_line + i`` of the file."""
    for c in columns:
        values = pd.to_numeric(table[c], errors="coerce").astype(np.float64).to_numpy()
        ok = np.isfinite(values) & (values >= 0)
        if allow_missing:
            ok |= np.isnan(values)
        if allow_infinite:
            ok |= np.isposinf(values)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            allowed = "finite " if not allow_infinite else ""
            raise InputError(
                f"{path}, line {i + first_line}, column {c!r}: {str(table[c].iloc[i])!r} is not "
                f"a {allowed}non-negative number; fix the value or drop the line."
            )
        table[c] = values


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


def check_name(name: str, what: str, where: str) -> None:
    """Raise, naming ``where`` (a table and line, or a config key), unless ``name`` is a safe
    cell-type or replicate name (:data:`NAME_RE`, no ``..``)."""
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise InputError(f"{where}: {what} {name!r} is not a valid name; {NAME_RULE}: rename it.")


def read_celltypes(path: str | os.PathLike, per_lineage: int | None = None) -> pd.DataFrame:
    """Read and validate the cell-type table (``celltype``, ``lineage``, ``organ``; TSV).

    An optional ``aliases`` column lists other spellings of a cell type, comma-separated (empty
    allowed); the result always has it (empty strings when the table has no such column).
    ``per_lineage=k`` keeps the first ``k`` cell types of each lineage in table order. Names and
    aliases must pass :func:`check_name` (they become file names and URLs).
    """
    path = require_file(path, "cell-type table", "set `celltypes:` in the config.")
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, encoding=TABLE_ENCODING)
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
        check_name(row.celltype, "cell type", f"{path}, line {i}")
    dup = table["celltype"][table["celltype"].duplicated()]
    if len(dup):
        line = int(dup.index[0]) + 2
        raise InputError(
            f"{path}, line {line}: cell type {dup.iloc[0]!r} appears twice; keep one line."
        )
    if ALIASES_COLUMN not in table.columns:
        table[ALIASES_COLUMN] = ""
    table[ALIASES_COLUMN] = [",".join(_split_aliases(a)) for a in table[ALIASES_COLUMN]]
    for i, cell in enumerate(table[ALIASES_COLUMN], start=2):
        for alias in _split_aliases(cell):
            check_name(alias, "alias", f"{path}, line {i}")
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
    return CellTypeNames.from_table(celltypes, "").lookup()


def lineage_order(celltypes: pd.DataFrame) -> list[str]:
    """Lineages in first-appearance order of the cell-type table."""
    return list(dict.fromkeys(celltypes["lineage"]))


@dataclass(frozen=True)
class CellTypeNames:
    """The cell types in use, the other spellings of each (the ``aliases`` column) and the
    cell-type table they come from, which every message about a cell-type name names.

    Other tables (the OCR table, closed p-values, ENA sample titles, BAM URLs) may spell a cell
    type by an alias; :meth:`resolve` finds each cell type's spelling among a table's names.
    """

    names: tuple[str, ...]
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    table: str = "the cell-type table"

    @classmethod
    def from_table(cls, celltypes: pd.DataFrame, table: str | os.PathLike) -> CellTypeNames:
        """From a table of :func:`read_celltypes` read from ``table``."""
        cells = celltypes.get(ALIASES_COLUMN, pd.Series([""] * len(celltypes)))
        aliases = {n: tuple(_split_aliases(a)) for n, a in zip(celltypes["celltype"], cells)}
        return cls(tuple(celltypes["celltype"]), aliases, str(table))

    @classmethod
    def coerce(cls, celltypes: CellTypeNames | Sequence[str]) -> CellTypeNames:
        """``celltypes`` itself, or a plain list of names (no aliases) as :class:`CellTypeNames`."""
        return celltypes if isinstance(celltypes, CellTypeNames) else cls(tuple(celltypes))

    def spellings(self, name: str) -> tuple[str, ...]:
        """The cell type's own name, then its aliases in table order."""
        return (name, *self.aliases.get(name, ()))

    def lookup(self) -> dict[str, str]:
        """Every spelling -> its cell type."""
        return {s: n for n in self.names for s in self.spellings(n)}

    def resolve(self, available: Iterable[str], where: str, what: str = "column") -> dict[str, str]:
        """Cell type -> the spelling of it among ``available`` (a table's column names), for
        every cell type in use.

        Raises :class:`InputError` naming ``where`` and the cell-type table when a cell type is
        spelled by none of its names or by two of them; logs which spellings were aliases.
        """
        present = set(available)
        found, absent = {}, []
        for name in self.names:
            hits = [s for s in self.spellings(name) if s in present]
            if len(hits) > 1:
                raise InputError(
                    f"{where}: {what}s {hits} all spell cell type {name!r} (its name and "
                    f"aliases in {self.table}); keep one of them."
                )
            if hits:
                found[name] = hits[0]
            else:
                absent.append(name)
        if absent:
            tried = [f"{s!r} of {n!r}" for n in absent[:5] for s in self.spellings(n)[1:]]
            raise InputError(
                f"{where}: no {what} for cell type(s) {absent[:5]}"
                f"{' ...' if len(absent) > 5 else ''}"
                f"{' (nor for the aliases ' + ', '.join(tried) + ')' if tried else ''}; {what}s "
                f"must be named as in {self.table} (its `celltype` or `aliases` column): add "
                "the spelling used here as an alias there, or drop the cell type "
                "(`celltypes_per_lineage`)."
            )
        log_spellings(found, where, self.table)
        return found


def log_spellings(found: Mapping[str, str], where: str, table: str) -> None:
    """Log how many cell types ``where`` spells by their name and which by an alias."""
    by_alias = {n: s for n, s in found.items() if s != n}
    log.info(
        "%s: %d cell type(s) spelled as in %s, %d by an alias%s",
        where,
        len(found) - len(by_alias),
        table,
        len(by_alias),
        "".join(f"; {s!r} read as {n!r}" for n, s in by_alias.items()),
    )


DIGEST_WHOLE_BYTES = 16 << 20
DIGEST_BLOCKS = 64
DIGEST_BLOCK_BYTES = 1 << 16


def sampled_digest(path: str | os.PathLike) -> str:
    """A cheap content fingerprint of a file: sha256 (16 hex digits) of its size and bytes, all
    of them up to 16 MiB, else 64 evenly spaced 64 KiB blocks (the first and the last included).

    Meant to tell one version of a large array file from another (a changed split changes its
    size and its bytes throughout), not to guard against deliberate collisions.
    """
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= DIGEST_WHOLE_BYTES:
            digest.update(fh.read())
        else:
            last = size - DIGEST_BLOCK_BYTES
            for k in range(DIGEST_BLOCKS):
                fh.seek(last * k // (DIGEST_BLOCKS - 1))
                digest.update(fh.read(DIGEST_BLOCK_BYTES))
    return digest.hexdigest()[:16]
