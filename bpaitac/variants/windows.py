"""The ref and alt windows of each variant, as tangermeme's variant-effect functions take them.

Both windows are ``2 x flank`` bp (1 kb, the network's input) and start ``flank`` bp before the
variant's first changed base (after the bases REF and ALT share are trimmed,
:func:`trim_alleles`): that base sits at the window centre, and the
two windows share the same left flank base for base. Everything right of the variant shifts
with the length change: for a deletion of ``d`` bases the alt window reads ``d`` more genome
bases on the right, for an insertion of ``i`` bases it drops the last ``i`` (padded or trimmed
with the genome's own sequence, never with N). An SNV or an MNV (REF and ALT of equal length)
changes bases in place. The reverse strand of a window is its reverse complement.

The kinds and which function builds their alt window:

- ``substitution`` (REF and ALT of equal length): ``tangermeme.variant_effect.
  substitution_effect`` on the ref window;
- ``deletion`` (ALT empty after trimming): ``deletion_effect`` on the ref window extended by
  the group's longest deletion on the right (``left=False``: it keeps the first 1 kb of each
  sequence, so the alt window reads on into the genome), and ``left=True`` on the reverse
  strand, whose right end is the forward left end;
- ``insertion`` (REF empty after trimming): ``insertion_effect`` before the centre base
  (``left=False``, the right end trimmed; ``left=True`` on the reverse strand);
- ``complex`` (both non-empty, lengths differ, e.g. ``ATG -> CC``): our own
  :func:`alt_window`, because a tangermeme call applies one kind of edit and returns its
  "before" on the edited sequence's frame, so a substitution followed by a deletion would not
  give the ref window's prediction; the two windows are built directly and predicted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bpaitac.data.sequence import encode_sequence

KINDS = ("substitution", "deletion", "insertion", "complex")

FetchCodes = Callable[[str, int, int], np.ndarray]
"""``fetch(chrom, start, end)`` -> base indices (end - start,) uint8 of the genome, N (4) where
the range leaves the contig."""


def trim_alleles(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Drop the bases REF and ALT share at the start, then at the end (the VCF anchor base):
    returns (0-based start of the changed bases, ref part, alt part); one part may be empty."""
    start = pos - 1
    while ref and alt and ref[0] == alt[0]:
        ref, alt, start = ref[1:], alt[1:], start + 1
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    return start, ref, alt


def window_extent(start: int, ref_len: int, alt_len: int, flank: int) -> tuple[int, int]:
    """Genome span [lo, hi) (0-based) that the ref and alt windows of a variant read."""
    return start - flank, start + flank + max(ref_len - alt_len, 0)


def variant_kind(ref: str, alt: str) -> str:
    """One of :data:`KINDS` for trimmed alleles; an ALT with N is ``complex`` (its window is
    built directly: tangermeme's edits set one of A, C, G, T)."""
    if "N" in alt:
        return "complex"
    if len(ref) == len(alt):
        return "substitution"
    if not alt:
        return "deletion"
    if not ref:
        return "insertion"
    return "complex"


@dataclass(frozen=True)
class VariantSet:
    """The variants to score, trimmed (:func:`trim_alleles`): contig,
    0-based start of the changed bases, and the changed REF and ALT bases (N,)."""

    chrom: np.ndarray
    start: np.ndarray
    ref: np.ndarray
    alt: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @property
    def kind(self) -> np.ndarray:
        return np.array([variant_kind(r, a) for r, a in zip(self.ref, self.alt)], dtype=object)


def variant_set(table: pd.DataFrame) -> VariantSet:
    """The ``ok`` rows of a variant table (:data:`bpaitac.variants.inputs.TABLE_COLUMNS`)."""
    ok = table[table["status"] == "ok"]
    trimmed = [trim_alleles(p, r, a) for p, r, a in zip(ok["pos"], ok["ref"], ok["alt"])]
    return VariantSet(
        chrom=ok["chrom"].to_numpy(dtype=object),
        start=np.array([t[0] for t in trimmed], dtype=np.int64),
        ref=np.array([t[1] for t in trimmed], dtype=object),
        alt=np.array([t[2] for t in trimmed], dtype=object),
    )


@dataclass(frozen=True)
class Group:
    """Variants of one kind, ready for one tangermeme call per strand.

    ``index`` (n,) rows of the :class:`VariantSet`; ``x`` (n, Lx) uint8 the sequences the call
    edits (the ref windows, extended on the right for deletions); ``events`` the call's rows:
    (example, position, base) for substitutions and insertions, (example, position) for
    deletions; for ``complex``, ``events`` is empty and ``x_alt`` (n, L) holds the alt windows.
    """

    kind: str
    index: np.ndarray
    x: np.ndarray
    events: np.ndarray
    x_alt: np.ndarray | None = None


def build_groups(
    variants: VariantSet, index: np.ndarray, fetch: FetchCodes, flank: int
) -> list[Group]:
    """One :class:`Group` per kind present among ``variants[index]`` (forward strand)."""
    kinds = variants.kind[index]
    groups = []
    for kind in KINDS:
        rows = index[kinds == kind]
        if len(rows):
            groups.append(_group(kind, variants, rows, fetch, flank))
    return groups


def _group(kind: str, v: VariantSet, rows: np.ndarray, fetch: FetchCodes, flank: int) -> Group:
    extra = max(len(v.ref[i]) for i in rows) if kind == "deletion" else 0
    x = np.stack([fetch(v.chrom[i], v.start[i] - flank, v.start[i] + flank + extra) for i in rows])
    events: list[tuple[int, ...]] = []
    x_alt = None
    for k, i in enumerate(rows):
        ref, alt = v.ref[i], encode_sequence(v.alt[i])
        if kind == "substitution":
            ref_codes = encode_sequence(ref)
            events += [(k, flank + j, int(alt[j])) for j in np.flatnonzero(alt != ref_codes)]
        elif kind == "deletion":
            events += [(k, flank + j) for j in range(len(ref))]
        elif kind == "insertion":
            # tangermeme inserts rows at one position in reverse order: last row first.
            events += [(k, flank, int(b)) for b in alt[::-1]]
    if kind == "complex":
        x_alt = np.stack(
            [alt_window(fetch, v.chrom[i], v.start[i], v.ref[i], v.alt[i], flank) for i in rows]
        )
    width = 2 if kind == "deletion" else 3
    return Group(kind, rows, x, np.array(events, dtype=np.int64).reshape(-1, width), x_alt)


def alt_window(
    fetch: FetchCodes, chrom: str, start: int, ref: str, alt: str, flank: int
) -> np.ndarray:
    """The alt window (2 x flank,) uint8: ``flank`` genome bases before ``start``, the ALT bases,
    then the genome after REF up to the window length (module docstring)."""
    right = 2 * flank - flank - len(alt)
    end = start + len(ref)
    return np.concatenate(
        [fetch(chrom, start - flank, start), encode_sequence(alt), fetch(chrom, end, end + right)]
    )[: 2 * flank]


def reverse_events(group: Group) -> np.ndarray:
    """The group's events on the reverse-complemented sequences (length ``Lx``)."""
    ev = group.events.copy()
    length = group.x.shape[1]
    if group.kind == "substitution":
        ev[:, 1] = length - 1 - ev[:, 1]
        ev[:, 2] = 3 - ev[:, 2]
    elif group.kind == "deletion":
        ev[:, 1] = length - 1 - ev[:, 1]
    elif group.kind == "insertion":
        # Inserting S before forward position p = inserting revcomp(S) before reverse position
        # L - p; the rows of each example are in reverse order of the bases inserted.
        ev[:, 1] = length - ev[:, 1]
        ev[:, 2] = 3 - ev[:, 2]
        for k in np.unique(ev[:, 0]):
            rows = np.flatnonzero(ev[:, 0] == k)
            ev[rows] = ev[rows[::-1]]
    return ev


def genome_fetcher(fasta: object, sizes: Sequence[tuple[str, int]] | dict[str, int]) -> FetchCodes:
    """A :data:`FetchCodes` over an open ``pysam.FastaFile``; N past either contig end."""
    sizes = dict(sizes)

    def fetch(chrom: str, start: int, end: int) -> np.ndarray:
        size = sizes[chrom]
        lo, hi = max(int(start), 0), min(int(end), size)
        codes = encode_sequence(fasta.fetch(chrom, lo, hi)) if hi > lo else np.zeros(0, np.uint8)
        pad_l, pad_r = lo - int(start), int(end) - max(hi, lo)
        if pad_l or pad_r:
            codes = np.concatenate(
                [np.full(pad_l, 4, np.uint8), codes, np.full(max(pad_r, 0), 4, np.uint8)]
            )
        return codes

    return fetch
