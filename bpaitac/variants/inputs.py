"""Read the variants to score: a VCF (plain or bgzipped) or a TSV ``chrom, pos, ref, alt[, id]``,
checked against the dataset's genome.

Positions are 1-based in both formats, as in VCF. The VCF reader is a small one of ours, not
``pysam.VariantFile``: only CHROM, POS, ID, REF and ALT are needed, and on a malformed record
htslib reports "truncated file" or a parse warning without the line, while every error here
names the file and the line. bgzip output is a series of gzip members, which Python's gzip
module reads as one stream, so a ``.vcf.gz`` needs no tabix index.

What happens to each record (the ``status`` column of the per-variant summary):

- a malformed line (fewer than 5 fields in a VCF, a position that is not a positive integer,
  alleles with letters other than A, C, G, T, N) stops the run naming the file and the line;
- a multi-allelic record is split into one variant per alternative allele;
- a symbolic or structural allele (``<DEL>``, ``<*>``, breakends with ``[`` or ``]``, the
  spanning deletion ``*``) is skipped (``symbolic``) and counted in the log, and so are records
  without an alternative allele (``.``: ``no_alt``), alleles longer than the configured maximum
  (``too_long``) and repeated variants (``duplicate``);
- a contig that is not in the genome, or a position too close to a contig end for the 1 kb
  windows, stops the run naming the file and the line;
- a ``REF`` that differs from the genome is reported as ``ref_mismatch`` and left unscored
  (``on_ref_mismatch: report``, the default; the count is logged) or stops the run
  (``on_ref_mismatch: error``).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from bpaitac.io import InputError, require_file
from bpaitac.variants.windows import trim_alleles, window_extent

log = logging.getLogger(__name__)

TSV_COLUMNS = ("chrom", "pos", "ref", "alt")
"""Required TSV header columns (``id`` optional; other columns are ignored)."""
VCF_COLUMNS = ("#CHROM", "POS", "ID", "REF", "ALT")
STATUSES = ("ok", "ref_mismatch", "symbolic", "no_alt", "too_long", "duplicate")
"""Values of the ``status`` column; only ``ok`` variants are scored."""
ON_REF_MISMATCH = ("report", "error")
TABLE_COLUMNS = ("variant_id", "name", "chrom", "pos", "ref", "alt", "line", "status")
_ALLELE = re.compile(r"^[ACGTNacgtn]+$")


@dataclass(frozen=True)
class Record:
    """One input line: 1-based ``pos``, the alternative alleles as written."""

    line: int
    chrom: str
    pos: int
    ref: str
    alts: tuple[str, ...]
    name: str


@contextmanager
def open_text(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Open a plain or gzip/bgzip-compressed text file (told apart by its magic bytes)."""
    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        with gzip.open(path, "rt", newline="") as fh:
            yield fh
    else:
        with open(path, newline="") as fh:
            yield fh


def sniff_format(path: str | os.PathLike) -> str:
    """``vcf`` when the first line starts with ``##fileformat=VCF`` or ``#CHROM``, else ``tsv``."""
    try:
        with open_text(path) as fh:
            first = fh.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{path}: cannot read the variant file ({exc}); give a VCF or TSV."
        ) from exc
    return "vcf" if first.startswith(("##fileformat=VCF", "#CHROM")) else "tsv"


def parse_vcf(path: str | os.PathLike) -> list[Record]:
    """The records of a VCF (CHROM, POS, ID, REF, ALT; the other columns are not read)."""
    records, header = [], False
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.rstrip("\r\n")
            if line.startswith("##"):
                continue
            if line.startswith("#"):
                fields = line.split("\t")
                if tuple(fields[:5]) != VCF_COLUMNS:
                    raise InputError(
                        f"{path}, line {line_no}: the header line must start with "
                        f"{'<TAB>'.join(VCF_COLUMNS)}; found {line[:60]!r}."
                    )
                header = True
                continue
            if not line.strip():
                continue
            if not header:
                raise InputError(
                    f"{path}, line {line_no}: a record before the #CHROM header line; a VCF "
                    "needs its header (or give a TSV with the columns chrom, pos, ref, alt)."
                )
            fields = line.split("\t")
            if len(fields) < 5:
                raise InputError(
                    f"{path}, line {line_no}: malformed VCF record: {len(fields)} tab-separated "
                    "field(s), need at least CHROM, POS, ID, REF, ALT; fix or remove the line."
                )
            chrom, pos, vid, ref, alt = fields[:5]
            records.append(_record(path, line_no, chrom, pos, ref, alt, "" if vid == "." else vid))
    return records


def parse_tsv(path: str | os.PathLike) -> list[Record]:
    """The rows of a tab-separated table with header ``chrom, pos, ref, alt[, id]``."""
    records = []
    with open_text(path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        cols = {name.strip().lower().lstrip("#"): i for i, name in enumerate(header)}
        missing = [c for c in TSV_COLUMNS if c not in cols]
        if missing:
            raise InputError(
                f"{path}, line 1: missing column(s) {missing} in the header; a variant TSV needs "
                "the tab-separated header chrom, pos, ref, alt (and optionally id), or give a VCF."
            )
        width = max(cols[c] for c in TSV_COLUMNS) + 1
        for line_no, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < width:
                raise InputError(
                    f"{path}, line {line_no}: {len(fields)} tab-separated field(s), the header "
                    f"needs {width}; fix or remove the line."
                )
            name = fields[cols["id"]].strip() if "id" in cols and cols["id"] < len(fields) else ""
            records.append(
                _record(
                    path,
                    line_no,
                    fields[cols["chrom"]].strip(),
                    fields[cols["pos"]].strip(),
                    fields[cols["ref"]].strip(),
                    fields[cols["alt"]].strip(),
                    "" if name == "." else name,
                )
            )
    return records


def _record(
    path: str | os.PathLike, line: int, chrom: str, pos: str, ref: str, alt: str, name: str
) -> Record:
    """Check one line's fields (malformed -> :class:`InputError` naming file and line)."""
    where = f"{path}, line {line}"
    if not chrom:
        raise InputError(f"{where}: empty chromosome; fix or remove the line.")
    try:
        position = int(pos)
    except ValueError:
        position = 0
    if position < 1:
        raise InputError(
            f"{where}: position {pos!r} is not a positive integer (1-based, as in VCF); fix or "
            "remove the line."
        )
    if not _ALLELE.match(ref):
        raise InputError(
            f"{where}: REF {ref!r} is not a DNA allele (A, C, G, T, N); fix or remove the line."
        )
    if not alt:
        raise InputError(f"{where}: empty ALT; use '.' for none, or remove the line.")
    return Record(line, chrom, position, ref, tuple(alt.split(",")), name)


def allele_status(allele: str, where: str) -> str:
    """``ok`` for a DNA allele, ``symbolic`` or ``no_alt`` for those skipped; raise otherwise."""
    if allele == ".":
        return "no_alt"
    if allele == "*" or allele.startswith("<") or "[" in allele or "]" in allele:
        return "symbolic"
    if not _ALLELE.match(allele):
        raise InputError(
            f"{where}: ALT allele {allele!r} is neither a DNA allele (A, C, G, T, N) nor a "
            "symbolic one (<DEL>, *, breakends); fix or remove the line."
        )
    return "ok"


def split_alleles(records: Sequence[Record], path: str | os.PathLike) -> pd.DataFrame:
    """One row per (record, alternative allele): :data:`TABLE_COLUMNS`, status ``ok`` or why
    the allele is skipped (``symbolic``, ``no_alt``). ``variant_id`` is ``chrom:pos:ref:alt``;
    ``name`` the record's ID (``id`` column), empty when none."""
    rows, split = [], 0
    for rec in records:
        split += len(rec.alts) > 1
        for alt in rec.alts:
            status = allele_status(alt, f"{path}, line {rec.line}")
            ref, alt_ = rec.ref.upper(), alt.upper() if status == "ok" else alt
            if status == "ok" and alt_ == ref:
                status = "no_alt"  # ALT equal to REF: no change to score
            vid = f"{rec.chrom}:{rec.pos}:{ref}:{alt_}"
            rows.append((vid, rec.name, rec.chrom, rec.pos, ref, alt_, rec.line, status))
    if split:
        log.info("%s: %d multi-allelic record(s) split into one variant per allele", path, split)
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def read_variant_file(path: str | os.PathLike) -> pd.DataFrame:
    """Parse a VCF or TSV (told apart by :func:`sniff_format`) into :func:`split_alleles` rows."""
    path = require_file(path, "variant file", "set `variants.path` to a VCF or TSV file or URL.")
    kind = sniff_format(path)
    records = parse_vcf(path) if kind == "vcf" else parse_tsv(path)
    if not records:
        raise InputError(f"{path}: no variant in the file; give at least one record.")
    log.info("%s: %d %s record(s)", path, len(records), kind.upper())
    return split_alleles(records, path)


def check_against_genome(
    table: pd.DataFrame,
    contigs: Mapping[str, int],
    fetch: Callable[[str, int, int], str],
    path: str | os.PathLike,
    *,
    flank: int,
    on_ref_mismatch: str,
    max_allele_length: int,
) -> pd.DataFrame:
    """Set the status of every ``ok`` row: contig, window fit, REF, allele length, duplicates.

    ``contigs`` maps contig -> length; ``fetch(chrom, start, end)`` returns the genome's bases
    (0-based, half-open). ``flank`` is the bases a window needs on each side of the variant's
    start (:func:`~bpaitac.variants.windows.window_extent`). An unknown contig or a window off
    the contig raises :class:`InputError` naming the file and the line, as does a REF mismatch
    with ``on_ref_mismatch: error``.
    """
    if on_ref_mismatch not in ON_REF_MISMATCH:
        raise InputError(
            f"config key `variants.on_ref_mismatch`: {on_ref_mismatch!r}; allowed values: "
            f"{', '.join(ON_REF_MISMATCH)}."
        )
    table = table.copy()
    seen: set[str] = set()
    mismatches: list[str] = []
    for i, row in enumerate(table.itertuples(index=False)):
        if row.status != "ok":
            continue
        where = f"{path}, line {row.line}"
        if row.chrom not in contigs:
            names = list(contigs)
            hint = ""
            other = row.chrom[3:] if row.chrom.startswith("chr") else f"chr{row.chrom}"
            if other in contigs:
                hint = f" (the genome names it {other!r}: rename the contigs of the file)"
            raise InputError(
                f"{where}: contig {row.chrom!r} is not in the genome{hint}; genome contigs: "
                f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}."
            )
        start, ref, alt = trim_alleles(row.pos, row.ref, row.alt)
        if max(len(ref), len(alt)) > max_allele_length:
            table.iat[i, table.columns.get_loc("status")] = "too_long"
            continue
        lo, hi = window_extent(start, len(ref), len(alt), flank)
        size = contigs[row.chrom]
        if lo < 0 or hi > size:
            raise InputError(
                f"{where}: {row.chrom}:{row.pos} is too close to the contig end for the "
                f"{2 * flank} bp windows (they need {row.chrom}:{lo + 1}-{hi}, the contig has "
                f"{size} bp); remove the variant from the file."
            )
        genome_ref = fetch(row.chrom, row.pos - 1, row.pos - 1 + len(row.ref)).upper()
        if genome_ref != row.ref:
            msg = (
                f"{where}: REF {row.ref} differs from the genome's {genome_ref} at "
                f"{row.chrom}:{row.pos}"
            )
            if on_ref_mismatch == "error":
                raise InputError(
                    f"{msg}; check that the file is on the dataset's genome assembly, or set "
                    "`variants.on_ref_mismatch: report` to skip such variants."
                )
            mismatches.append(msg)
            table.iat[i, table.columns.get_loc("status")] = "ref_mismatch"
            continue
        if row.variant_id in seen:
            table.iat[i, table.columns.get_loc("status")] = "duplicate"
            continue
        seen.add(row.variant_id)
    if mismatches:
        log.warning(
            "%d variant(s) left unscored: REF differs from the genome (status ref_mismatch); "
            "first: %s",
            len(mismatches),
            "; ".join(mismatches[:5]),
        )
    counts = table["status"].value_counts()
    for status in STATUSES[2:]:
        if counts.get(status, 0):
            lines = table.loc[table["status"] == status, "line"].head(5).tolist()
            log.warning(
                "%d variant(s) skipped as %s (lines %s%s)",
                counts[status],
                status,
                ", ".join(map(str, lines)),
                ", ..." if counts[status] > 5 else "",
            )
    log.info("%d of %d variant(s) to score", counts.get("ok", 0), len(table))
    return table
