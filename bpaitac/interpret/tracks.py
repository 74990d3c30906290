"""Genome-browser tracks: bigWigs per lineage (and per cell type) of observed and predicted Tn5
insertions and of DeepSHAP contributions, with an IGV session and a UCSC trackDb; rule
``interpret_tracks`` (config ``interpret.tracks``).

**Regions.** By default the test OCRs, each OCR's model window ``[summit - 500, summit + 500)``.
With ``interpret.tracks.regions`` a BED file: each region is tiled with model windows inside it,
one every ``profile_width`` bp from its start and a last one ending at its end
(:func:`cover_regions`), so that the windows' central profiles cover
``[start + 375, end - 375)`` without a gap. A BED region narrower than the model window
(``preprocess.window``), on a contig the genome lacks or past a contig's end is an error naming
the file and line; so is a BED without regions.

**Values, per base** (the ``kind`` of :class:`bpaitac.workflow.tracks_paths.TrackSpec`):

- ``observed``: Tn5 insertions times the quantile-normalisation factor. Over the test OCRs the
  factor is per OCR and cell type, ``counts.npy / raw total`` (the raw total being the sum of
  ``profile.npy`` over the 250 bp), so a track's profile sums to the OCR's normalised count. Over
  a BED (insertions counted from the BAMs) it is the cell type's size factor, the sum of
  ``counts.npy`` over the sum of raw totals of the test OCRs. The track's label says which.
- ``predicted``: the profile model's predicted insertions, ``max(expm1(log_counts), 0)`` (the
  predicted quantile-normalised total) times the predicted profile ``softmax(logits + bias
  logits)``, the bias logits from the frozen bias model on the same sequence;
  ``predicted_nobias``: the same with the bias logits set to zero (models with a bias model only).
  With profile bins of ``b`` bp a bin's value is spread evenly over its ``b`` bases (bases outside
  the bins get no value).
- ``contributions``: DeepSHAP of the accessibility head summed over each lineage's tasks,
  projected on the observed base (hypothetical contributions times the one-hot sequence, summed
  over the 4 bases), over the whole model window: of the interpreted regions
  (``attributions/{model}.npz``) or, with ``interpret.tracks.contributions``, of the windows
  tiling a BED (:func:`cover_regions`), at most ``max_contribution_windows`` of them.

A lineage's track is the mean over its cell types (observed) or its model tasks (predicted); a
cell type's track (``interpret.tracks.per_celltype``) is that column alone.

**Overlapping windows** (the one rule, :func:`nearest_centre`): where the spans of several
windows cover a base, the base takes the value of the window whose centre is nearest to it, and
on a tie that of the window starting first. Nothing is averaged: every value of a track is one
window's value. Chromosome sizes come from the genome's ``.fai``; intervals are written sorted
by contig (in ``.fai`` order) and position.
"""

from __future__ import annotations

import contextlib
import logging
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bpaitac.data.arrays import genome_lengths, profile_offset, read_ocrs_tsv
from bpaitac.data.bed import read_bed
from bpaitac.data.sequence import encode_sequence, one_hot
from bpaitac.io import InputError, atomic_path
from bpaitac.workflow.tracks_paths import TrackSpec, track_specs

log = logging.getLogger(__name__)

NORMALISATION = {
    "ocr": "x per-OCR quantile-normalisation factor",
    "size": "x cell type's quantile-normalisation size factor (test OCRs)",
}
"""How observed insertions are scaled, as written in the track labels."""

KIND_LABELS = {
    "observed": "observed Tn5 insertions",
    "predicted": "predicted insertions, with Tn5 bias",
    "predicted_nobias": "predicted insertions, Tn5 bias set to zero",
    "contributions": "DeepSHAP contribution of the observed base",
}
SHORT_KINDS = {
    "observed": "observed",
    "predicted": "predicted",
    "predicted_nobias": "predicted, bias 0",
    "contributions": "contributions",
}
NEGATIVE_COLOUR = "128,128,128"
"""Colour of negative contributions (IGV and UCSC ``altColor``)."""

# --------------------------------------------------------------------------------------------
# Windows on the genome


@dataclass(frozen=True)
class Windows:
    """Model windows ``[start, start + width)`` on the genome, ``name`` an OCR or BED region."""

    chrom: np.ndarray  # (N,) str
    start: np.ndarray  # (N,) int64, 0-based
    name: np.ndarray  # (N,) str
    width: int

    def __len__(self) -> int:
        return len(self.start)

    @property
    def centre(self) -> np.ndarray:
        """Centre of each window (the summit of an OCR's window), (N,) int64."""
        return self.start + self.width // 2

    def take(self, idx: np.ndarray) -> Windows:
        """The windows at ``idx``, in that order."""
        return Windows(self.chrom[idx], self.start[idx], self.name[idx], self.width)


def ocr_windows(ocrs: pd.DataFrame, window: int) -> Windows:
    """The model window of each OCR (``peak_id``, ``chrom``, ``summit`` 0-based)."""
    summit = ocrs["summit"].to_numpy(np.int64)
    return Windows(
        ocrs["chrom"].astype(str).to_numpy(),
        summit - window // 2,
        ocrs["peak_id"].astype(str).to_numpy(),
        window,
    )


def cover_regions(regions: pd.DataFrame, window: int, stride: int) -> Windows:
    """Windows of ``window`` bp inside each region (``chrom``, ``start``, ``end``, ``name``): one
    every ``stride`` bp from the region's start and, where that leaves the region's end
    uncovered, a last one ending at the region's end. Regions must be at least ``window`` wide.

    Unlike :func:`bpaitac.data.bias_sets.tile_regions` (bias-model training tiles) the last
    window is aligned to the end, so that windows of a ``stride``-wide central span cover
    ``[start + (window - stride) / 2, end - (window - stride) / 2)`` without a gap.
    """
    chroms, starts, names = [], [], []
    for r in regions.itertuples(index=False):
        if r.end - r.start < window:
            raise ValueError(f"region {r.name} is narrower than the {window} bp window")
        s = np.arange(r.start, r.end - window + 1, stride, dtype=np.int64)
        if s[-1] + window < r.end:
            s = np.append(s, r.end - window)
        chroms.append(np.full(len(s), r.chrom, dtype=object))
        starts.append(s)
        names.append(np.full(len(s), r.name, dtype=object))
    return Windows(
        np.concatenate(chroms).astype(str),
        np.concatenate(starts),
        np.concatenate(names).astype(str),
        window,
    )


def read_region_windows(
    path: str | os.PathLike,
    lengths: Mapping[str, int],
    genome: str | os.PathLike,
    window: int,
    stride: int,
    key: str,
) -> Windows:
    """The windows covering the regions of a BED file (:func:`cover_regions`), the file checked
    line by line against the genome (:func:`bpaitac.data.bed.read_bed`); ``key`` is the config
    key naming the file, for the messages."""
    regions = read_bed(
        path,
        lengths,
        genome,
        what=f"region BED file (config `{key}`)",
        contig_fix=f"use regions on the dataset's genome ({genome}) or drop the line.",
        min_width=window,
        width_fix=f"the tracks need at least one {window} bp model window (`preprocess.window`) "
        "inside each region: widen it or drop the line.",
    )
    return cover_regions(regions, window, stride)


def genome_order(windows: Windows, lengths: Mapping[str, int]) -> np.ndarray:
    """Indices sorting windows by contig (in ``.fai`` order) and start; raises for a contig the
    genome lacks."""
    rank = {c: i for i, c in enumerate(lengths)}
    missing = sorted(set(windows.chrom) - set(rank))
    if missing:
        raise InputError(
            f"windows on contig(s) {', '.join(missing[:5])} that the genome's .fai lacks; use the "
            "genome of the dataset."
        )
    codes = np.array([rank[c] for c in windows.chrom], dtype=np.int64)
    return np.lexsort((windows.start, codes))


def overlap_chunks(windows: Windows, max_windows: int) -> list[np.ndarray]:
    """Split sorted windows into chunks of one contig, at least ``max_windows`` long where
    possible, cut only between windows that do not overlap, so that :func:`nearest_centre`
    resolves every overlap within one chunk."""
    n = len(windows)
    chunks, first, cur_end = [], 0, -1
    for i in range(n):
        start, end = int(windows.start[i]), int(windows.start[i]) + windows.width
        if i > first:
            new_contig = windows.chrom[i] != windows.chrom[i - 1]
            if new_contig or (start >= cur_end and i - first >= max_windows):
                chunks.append(np.arange(first, i))
                first, cur_end = i, end
                continue
        cur_end = max(cur_end, end)
    if n:
        chunks.append(np.arange(first, n))
    return chunks


def nearest_centre(
    span_start: np.ndarray, span_width: int, centre: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The overlap rule: every base covered by a span ``[span_start, span_start + span_width)``
    once, from the window whose ``centre`` is nearest (ties: the lower index, i.e. the window
    starting first when the windows are sorted).

    Returns sorted base ``positions`` and, per position, the ``window`` index and the ``offset``
    of the base in that window's span.
    """
    n = len(span_start)
    pos = (np.asarray(span_start, np.int64)[:, None] + np.arange(span_width)).ravel()
    dist = np.abs(pos - np.repeat(np.asarray(centre, np.int64), span_width))
    win = np.repeat(np.arange(n), span_width)
    order = np.lexsort((win, dist, pos))
    p = pos[order]
    keep = np.ones(len(p), dtype=bool)
    keep[1:] = p[1:] != p[:-1]
    chosen = order[keep]
    return p[keep], chosen // span_width, chosen % span_width


# --------------------------------------------------------------------------------------------
# Values


def qn_factors(profile: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per OCR and cell type, quantile-normalised total over raw total (N, C) float64; 0 where
    the raw total is 0 (the profile is then all zero).

    ``profile`` (N, C, P) uint16 insertions, ``counts`` (N, C) float32 (``counts.npy``).
    """
    raw = np.asarray(profile).sum(axis=2, dtype=np.int64).astype(np.float64)
    out = np.zeros_like(raw)
    np.divide(np.asarray(counts, np.float64), raw, out=out, where=raw > 0)
    return out


def size_factors(profile: np.ndarray, counts: np.ndarray, celltypes: Sequence[str]) -> np.ndarray:
    """Per cell type, the sum of quantile-normalised totals over the sum of raw totals (C,)."""
    raw = np.asarray(profile).sum(axis=(0, 2), dtype=np.int64).astype(np.float64)
    empty = [ct for ct, r in zip(celltypes, raw) if r == 0]
    if empty:
        raise InputError(
            f"cell type(s) {empty} have no insertion in any test OCR; their quantile-"
            "normalisation size factor is undefined. Check their BAMs."
        )
    return np.asarray(counts, np.float64).sum(axis=0) / raw


def column_groups(
    columns: Sequence[str], specs: Sequence[TrackSpec], lineage_of: Mapping[str, str]
) -> dict[tuple[str, str], np.ndarray]:
    """(level, group) -> indices of the ``columns`` (cell types, or a model's tasks) averaged
    into that group's track: a lineage's cell types (or the task named like the lineage), or
    the cell type's own column."""
    out = {}
    for level, group in dict.fromkeys((s.level, s.group) for s in specs):
        if level == "lineage":
            idx = [j for j, c in enumerate(columns) if c == group or lineage_of.get(c) == group]
        else:
            idx = [j for j, c in enumerate(columns) if c == group]
        if not idx:
            raise InputError(
                f"no column among {list(columns)[:6]}... belongs to {level} {group!r}; the "
                "model's targets or the arrays' cell types do not match the config."
            )
        out[(level, group)] = np.asarray(idx)
    return out


def group_means(values: np.ndarray, groups: Mapping[Any, np.ndarray]) -> dict[Any, np.ndarray]:
    """Group -> mean over the group's columns (axis 1) of ``values`` (n, columns, w)."""
    return {g: values[:, idx].mean(axis=1) for g, idx in groups.items()}


def predicted_insertions(
    model: Any,
    bias_model: Any | None,
    seq: np.ndarray,
    *,
    batch_size: int,
    device: Any,
) -> dict[str, np.ndarray]:
    """Predicted insertions per base (n, T, P) float64 of a profile model for sequences (n, L).

    ``predicted``: ``max(expm1(log_counts), 0) * softmax(logits + bias logits)`` with the bias
    model's logits (without a bias model: no bias); ``predicted_nobias`` (with a bias model
    only): the same with the bias logits set to zero. With bin size ``b`` a bin's probability is
    divided evenly over its ``b`` bases; bases outside the bins are NaN. Runs in eval mode.
    """
    import torch

    from bpaitac.model.predict import bias_logits

    spec = model.spec
    b, width = spec.bin_size, spec.profile_len
    n_bins = width // b
    edge = (width - n_bins * b) // 2
    kinds = ("predicted", "predicted_nobias") if bias_model is not None else ("predicted",)
    out = {k: np.full((len(seq), spec.n_tasks, width), np.nan) for k in kinds}
    model.eval().to(device)
    with torch.no_grad():
        for a in range(0, len(seq), batch_size):
            chunk = np.asarray(seq[a : a + batch_size])
            x = one_hot(torch.from_numpy(chunk).to(device))
            bias = None
            if bias_model is not None:
                bias = torch.from_numpy(
                    bias_logits(bias_model, chunk, batch_size=batch_size, device=device)
                ).to(device)
            for kind in kinds:
                logits, log_counts = model(x, bias if kind == "predicted" else None)
                probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
                total = np.maximum(np.expm1(log_counts.double().cpu().numpy()), 0.0)
                per_base = np.repeat(probs / b, b, axis=-1) * total[:, :, None]
                out[kind][a : a + len(chunk), :, edge : edge + n_bins * b] = per_base
    return out


def projected_contributions(hypothetical: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Contribution of the observed base (N, K, L) float32: hypothetical contributions
    (N, K, 4, L) times the one-hot sequence (of base indices (N, L)), summed over the bases."""
    onehot = one_hot(np.asarray(seq))
    return np.einsum("nkbl,nbl->nkl", hypothetical, onehot).astype(np.float32)


def fetch_sequences(genome: str | os.PathLike, windows: Windows) -> np.ndarray:
    """Base indices (N, width) uint8 of the windows from an indexed FASTA."""
    import pysam

    out = np.empty((len(windows), windows.width), dtype=np.uint8)
    with pysam.FastaFile(str(genome)) as fa:
        for i, (c, s) in enumerate(zip(windows.chrom, windows.start)):
            out[i] = encode_sequence(fa.fetch(str(c), int(s), int(s) + windows.width))
    return out


# --------------------------------------------------------------------------------------------
# bigWig files


def write_entries(bw: Any, chrom: str, positions: np.ndarray, values: np.ndarray) -> int:
    """Add per-base values at sorted ``positions`` (NaN skipped), one fixed-step entry per run of
    consecutive bases; returns the number of bases written."""
    ok = ~np.isnan(values)
    positions, values = positions[ok], np.asarray(values[ok], dtype=np.float64)
    if not len(positions):
        return 0
    cuts = np.flatnonzero(np.diff(positions) != 1) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(positions)]):
        bw.addEntries(chrom, int(positions[lo]), values=values[lo:hi], span=1, step=1)
    return len(positions)


def write_window_tracks(
    writers: Mapping[str, Any],
    windows: Windows,
    *,
    span_offset: int,
    span_width: int,
    values: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    max_windows: int,
) -> dict[str, int]:
    """Write the tracks of one window set: for each chunk of overlapping windows
    (:func:`overlap_chunks`; windows sorted by :func:`genome_order`), ``values(idx)`` gives
    stem -> (n, span_width) values of those windows, and each base of the spans
    ``[start + span_offset, + span_width)`` is written once by :func:`nearest_centre`.

    Returns stem -> bases written.
    """
    written = dict.fromkeys(writers, 0)
    for idx in overlap_chunks(windows, max_windows):
        part = windows.take(idx)
        pos, win, off = nearest_centre(part.start + span_offset, span_width, part.centre)
        for stem, arr in values(idx).items():
            written[stem] += write_entries(writers[stem], str(part.chrom[0]), pos, arr[win, off])
    return written


@contextlib.contextmanager
def bigwig_writers(
    paths: Mapping[str, str | os.PathLike], lengths: Mapping[str, int]
) -> Iterator[dict[str, Any]]:
    """stem -> pyBigWig writer of each path, all with one header (contig sizes from the
    ``.fai``, in its order). Each file is written to a temporary path and renamed onto its own
    after it is closed; on an error every temporary file is removed."""
    import pyBigWig

    header = [(str(c), int(n)) for c, n in lengths.items()]
    with ExitStack() as stack:
        files = {}
        for stem, path in paths.items():
            tmp = stack.enter_context(atomic_path(path))
            bw = pyBigWig.open(str(tmp), "w")
            if bw is None:
                raise OSError(f"{path}: pyBigWig cannot open a bigWig for writing there.")
            stack.callback(bw.close)  # runs before the rename: a bigWig is finished on close
            bw.addHeader(header, maxZooms=10)
            files[stem] = bw
        yield files


# --------------------------------------------------------------------------------------------
# Browser configuration: IGV session and UCSC trackDb


def rgb_text(colour: Sequence[float]) -> str:
    """matplotlib RGB(A) in 0..1 -> ``"r,g,b"`` in 0..255 (IGV and UCSC)."""
    return ",".join(str(int(round(255 * float(c)))) for c in colour[:3])


def track_labels(
    specs: Sequence[TrackSpec], groups: Mapping[tuple[str, str], int], normalisation: str
) -> dict[str, tuple[str, str]]:
    """stem -> (short name, long label) of each track; the observed label states the
    normalisation (:data:`NORMALISATION`), a lineage's label how many columns it averages."""
    out = {}
    for s in specs:
        what = KIND_LABELS[s.kind]
        if s.kind == "observed":
            what = f"{what} {NORMALISATION[normalisation]}"
        n = groups.get((s.level, s.group))
        members = (
            f" (mean of {n})" if s.level == "lineage" and n and s.kind != "contributions" else ""
        )
        short = f"{s.group} {SHORT_KINDS[s.kind]}"
        if s.kind == "observed":
            short += " (QN per OCR)" if normalisation == "ocr" else " (QN size factor)"
        out[s.stem] = (short, f"{s.level} {s.group}{members}: {what}")
    return out


def write_igv_session(
    path: str | os.PathLike,
    specs: Sequence[TrackSpec],
    bigwigs: Mapping[str, str | os.PathLike],
    labels: Mapping[str, tuple[str, str]],
    colours: Mapping[str, str],
    genome: str | os.PathLike,
    locus: str,
) -> None:
    """IGV session XML: the genome FASTA, one data track per bigWig named after its label and
    coloured by lineage (negative contributions grey); paths relative to the session file."""
    here = Path(path).parent
    session = ET.Element(
        "Session",
        genome=os.path.relpath(genome, here),
        locus=locus,
        version="8",
    )
    resources = ET.SubElement(session, "Resources")
    panel = ET.SubElement(session, "Panel", name="DataPanel")
    for s in specs:
        rel = os.path.relpath(bigwigs[s.stem], here)
        ET.SubElement(resources, "Resource", path=rel, name=labels[s.stem][0])
        attrs = {
            "id": rel,
            "name": labels[s.stem][0],
            "color": colours[s.stem],
            "autoScale": "true",
            "attributeKey": labels[s.stem][1],
        }
        if s.kind == "contributions":
            attrs["altColor"] = NEGATIVE_COLOUR
        ET.SubElement(panel, "Track", **attrs)
    ET.indent(session)
    with atomic_path(path) as tmp:
        ET.ElementTree(session).write(tmp, encoding="UTF-8", xml_declaration=True)


def write_trackdb(
    path: str | os.PathLike,
    specs: Sequence[TrackSpec],
    bigwigs: Mapping[str, str | os.PathLike],
    labels: Mapping[str, tuple[str, str]],
    colours: Mapping[str, str],
) -> None:
    """UCSC ``trackDb.txt``: one bigWig stanza per track (``bigDataUrl`` relative to the file,
    the short label cut to UCSC's 17 characters, lineage colour, negative contributions grey),
    for a track hub's ``genomes.txt`` to name."""
    here = Path(path).parent
    stanzas = []
    for s in specs:
        lines = [
            f"track {s.stem}",
            "type bigWig",
            f"bigDataUrl {os.path.relpath(bigwigs[s.stem], here)}",
            f"shortLabel {labels[s.stem][0][:17]}",
            f"longLabel {labels[s.stem][1]}",
            f"color {colours[s.stem]}",
            "visibility full",
            "autoScale on",
            "maxHeightPixels 64:32:8",
        ]
        if s.kind == "contributions":
            lines.append(f"altColor {NEGATIVE_COLOUR}")
        stanzas.append("\n".join(lines))
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n\n".join(stanzas) + "\n")


# --------------------------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class TrackSource:
    """One window set and how to get each window's values."""

    windows: Windows  # sorted by genome_order
    seq: Callable[[np.ndarray], np.ndarray]  # window indices -> (n, L) uint8
    observed: Callable[[np.ndarray], np.ndarray]  # window indices -> (n, C, P) float64
    normalisation: str  # key of NORMALISATION


def ocr_source(
    seq_path: str | os.PathLike,
    ocrs_path: str | os.PathLike,
    profile_path: str | os.PathLike,
    counts_path: str | os.PathLike,
    lengths: Mapping[str, int],
    window: int,
) -> TrackSource:
    """The test OCRs: sequences from ``seq.npy``, observed insertions from ``profile.npy`` times
    the per-OCR quantile-normalisation factors (:func:`qn_factors`)."""
    seqs = np.load(seq_path, mmap_mode="r")
    profile = np.load(profile_path, mmap_mode="r")
    counts = np.load(counts_path)
    ocrs = read_ocrs_tsv(ocrs_path)
    if not len(seqs) == len(profile) == len(counts) == len(ocrs):
        raise InputError(
            f"{seq_path}, {profile_path}, {counts_path} and {ocrs_path} hold {len(seqs)}, "
            f"{len(profile)}, {len(counts)} and {len(ocrs)} OCRs; rerun the preprocessing."
        )
    if not len(ocrs):
        raise InputError(f"{ocrs_path}: no test OCRs; the region set is empty.")
    factors = qn_factors(profile, counts)
    windows = ocr_windows(ocrs, window)
    order = genome_order(windows, lengths)
    return TrackSource(
        windows=windows.take(order),
        seq=lambda idx: np.asarray(seqs[order[idx]]),
        observed=lambda idx: profile[order[idx]] * factors[order[idx]][:, :, None],
        normalisation="ocr",
    )


def bed_source(
    bed: str | os.PathLike,
    genome: str | os.PathLike,
    lengths: Mapping[str, int],
    bams: Sequence[str | os.PathLike],
    celltypes: Sequence[str],
    factors: np.ndarray,
    preprocess: Mapping[str, Any],
    threads: int,
) -> TrackSource:
    """The regions of a BED file: windows covering them (:func:`read_region_windows`),
    sequences from the genome, insertions counted from each cell type's BAM (the preprocessing's
    read filter) times the cell type's size factor ``factors`` (C,)."""
    from bpaitac.data.insertions import ReadFilter, count_insertions, ensure_bam_index

    window, width = int(preprocess["window"]), int(preprocess["profile_width"])
    windows = read_region_windows(bed, lengths, genome, window, width, "interpret.tracks.regions")
    windows = windows.take(genome_order(windows, lengths))
    seqs = fetch_sequences(genome, windows)
    start = windows.start + profile_offset(window, width)
    counts = np.empty((len(windows), len(celltypes), width), dtype=np.uint16)
    for j, bam in enumerate(bams):
        ensure_bam_index(bam, bool(preprocess["index_missing"]))
        counts[:, j] = count_insertions(
            bam,
            windows.chrom.astype(object),
            start,
            width,
            ReadFilter.from_config(preprocess),
            engine=str(preprocess["engine"]),
            threads=threads,
        )
    log.info(
        "%s: %d windows over the regions; insertions from %d BAMs", bed, len(windows), len(bams)
    )
    return TrackSource(
        windows=windows,
        seq=lambda idx: seqs[idx],
        observed=lambda idx: counts[idx] * factors[None, :, None],
        normalisation="size",
    )


def bed_contributions(
    bed: str | os.PathLike,
    genome: str | os.PathLike,
    lengths: Mapping[str, int],
    model: Any,
    targets: Sequence[str],
    lineage_of: Mapping[str, str],
    lineages: Sequence[str],
    *,
    window: int,
    stride: int,
    max_windows: int,
    deepshap: Mapping[str, Any],
    seed: int,
    device: str,
) -> tuple[Windows, np.ndarray]:
    """DeepSHAP contributions (N, K, L) of the observed base over windows covering a BED
    (:func:`cover_regions`), at most ``max_windows`` (the first in file order; a warning says
    how many are left out)."""
    import torch

    from bpaitac.interpret.attribution import LineageAccessibility, deep_shap, lineage_task_matrix

    windows = read_region_windows(
        bed, lengths, genome, window, stride, "interpret.tracks.contributions"
    )
    if len(windows) > max_windows:
        log.warning(
            "%s: %d windows cover the regions; DeepSHAP runs on the first %d "
            "(interpret.tracks.max_contribution_windows)",
            bed,
            len(windows),
            max_windows,
        )
        windows = windows.take(np.arange(max_windows))
    seqs = fetch_sequences(genome, windows)
    wrapper = LineageAccessibility(model, lineage_task_matrix(targets, lineage_of, lineages))
    res = deep_shap(
        wrapper,
        torch.from_numpy(one_hot(seqs)),
        n_shuffles=int(deepshap["n_shuffles"]),
        seed=seed,
        batch_size=int(deepshap["batch_size"]),
        device=device,
        warning_threshold=float(deepshap["warning_threshold"]),
    )
    log.info(
        "%s: DeepSHAP over %d windows, max |convergence delta| %.3g",
        bed,
        len(windows),
        float(np.abs(res.deltas).max()),
    )
    return windows, projected_contributions(res.hypothetical, seqs)


def attribution_contributions(
    attributions: str | os.PathLike,
    ocrs_path: str | os.PathLike,
    lineages: Sequence[str],
) -> tuple[Windows, np.ndarray]:
    """Contributions (N, K, L) of the observed base of the interpreted regions, from their
    attribution ``.npz``, placed on the genome by the test split's ``ocrs.tsv``."""
    from bpaitac.interpret.tables import load_attributions

    data = load_attributions(attributions)
    stored = [str(x) for x in data["lineages"]]
    if stored != list(lineages):
        raise InputError(
            f"{attributions}: lineages {stored} differ from the config's {list(lineages)}; "
            "rerun interpret_attributions."
        )
    ocrs = read_ocrs_tsv(ocrs_path).set_index("peak_id")
    peaks = data["peak_id"].astype(str)
    missing = [p for p in peaks if p not in ocrs.index]
    if missing:
        raise InputError(
            f"{attributions}: regions {missing[:3]} are not in {ocrs_path}; rerun the "
            "interpretation."
        )
    if not len(peaks):
        raise InputError(f"{attributions}: no interpreted region; nothing to draw.")
    width = data["seq"].shape[1]
    windows = ocr_windows(ocrs.loc[peaks].reset_index(), width)
    return windows, projected_contributions(data["hypothetical"], data["seq"])


def run_tracks(
    *,
    model_path: str | os.PathLike,
    bias_model_path: str | os.PathLike | None,
    genome: str | os.PathLike,
    seq_path: str | os.PathLike,
    ocrs_path: str | os.PathLike,
    profile_path: str | os.PathLike,
    counts_path: str | os.PathLike,
    celltypes_path: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    bigwigs: Sequence[str | os.PathLike],
    session: str | os.PathLike,
    trackdb: str | os.PathLike,
    per_celltype: bool,
    preprocess: Mapping[str, Any],
    deepshap: Mapping[str, Any],
    seed: int,
    device: str,
    batch_size: int,
    max_contribution_windows: int,
    attributions: str | os.PathLike | None = None,
    contributions_bed: str | os.PathLike | None = None,
    regions_bed: str | os.PathLike | None = None,
    bams: Sequence[str | os.PathLike] = (),
    threads: int = 1,
    chunk_windows: int = 512,
) -> dict[str, int]:
    """Write every track of :func:`bpaitac.workflow.tracks_paths.track_specs` (the file of each
    is the entry of ``bigwigs`` named ``{stem}.bw``), the IGV session and the trackDb.

    The region set is the test OCRs, or ``regions_bed`` (then ``bams``, one per cell type of
    ``celltypes_path``, give the insertions); contributions come from ``attributions`` (the
    interpreted regions) or DeepSHAP over ``contributions_bed``. Returns stem -> bases written.
    """
    from bpaitac.evaluate.figures import lineage_colours
    from bpaitac.model.network import load_model, resolve_device

    dev = resolve_device(device)
    lengths = genome_lengths(genome)
    model, spec = load_model(model_path, dev)
    bias_model = load_model(bias_model_path, dev)[0] if bias_model_path else None
    targets = [str(t) for t in spec["targets"]]
    data_celltypes = Path(celltypes_path).read_text().split()
    specs = track_specs(
        lineages, data_celltypes, per_celltype=per_celltype, with_bias=bias_model is not None
    )
    paths = {Path(p).name.removesuffix(".bw"): p for p in bigwigs}
    if set(paths) != {s.stem for s in specs}:
        raise InputError(
            f"the rule's bigWig outputs {sorted(paths)[:4]}... differ from the tracks of the "
            f"model and config {[s.stem for s in specs][:4]}...; the workflow and the package "
            "disagree (bpaitac.workflow.tracks_paths)."
        )
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    window, width = int(preprocess["window"]), int(preprocess["profile_width"])
    if model.spec.seq_len != window or model.spec.profile_len != width:
        raise InputError(
            f"{model_path}: a {model.spec.seq_len} bp window with a {model.spec.profile_len} bp "
            f"profile, but `preprocess.window` is {window} and `profile_width` {width}."
        )
    if regions_bed is None:
        source = ocr_source(seq_path, ocrs_path, profile_path, counts_path, lengths, window)
    else:
        names = [Path(b).name.removesuffix(".bam") for b in bams]
        if names != data_celltypes:
            raise InputError(
                f"the BAMs {names[:4]}... are not one per cell type of {celltypes_path} in its "
                "order; rerun the preprocessing with the same cell types."
            )
        test_profile = np.load(profile_path, mmap_mode="r")
        factors = size_factors(test_profile, np.load(counts_path), data_celltypes)
        source = bed_source(
            regions_bed, genome, lengths, bams, data_celltypes, factors, preprocess, threads
        )
    obs_groups = column_groups(
        data_celltypes, [s for s in specs if s.kind == "observed"], lineage_of
    )
    pred_groups = column_groups(
        targets, [s for s in specs if s.kind.startswith("predicted")], lineage_of
    )
    profile_specs = [s for s in specs if s.kind != "contributions"]
    contrib_specs = [s for s in specs if s.kind == "contributions"]

    def profile_values(idx: np.ndarray) -> dict[str, np.ndarray]:
        obs = group_means(source.observed(idx), obs_groups)
        pred = predicted_insertions(
            model, bias_model, source.seq(idx), batch_size=batch_size, device=dev
        )
        out = {}
        for s in profile_specs:
            key = (s.level, s.group)
            if s.kind == "observed":
                out[s.stem] = obs[key].astype(np.float32)
            else:
                out[s.stem] = pred[s.kind][:, pred_groups[key]].mean(axis=1).astype(np.float32)
        return out

    if contributions_bed is None:
        if attributions is None:
            raise InputError("contributions need the attributions .npz or a contribution BED.")
        c_windows, contrib = attribution_contributions(attributions, ocrs_path, lineages)
    else:
        c_windows, contrib = bed_contributions(
            contributions_bed,
            genome,
            lengths,
            model,
            targets,
            lineage_of,
            lineages,
            window=window,
            stride=width,
            max_windows=max_contribution_windows,
            deepshap=deepshap,
            seed=seed,
            device=str(dev),
        )
    c_order = genome_order(c_windows, lengths)
    c_windows, contrib = c_windows.take(c_order), contrib[c_order]
    lin_index = {lin: k for k, lin in enumerate(lineages)}

    def contribution_values(idx: np.ndarray) -> dict[str, np.ndarray]:
        return {s.stem: contrib[idx, lin_index[s.group]] for s in contrib_specs}

    with bigwig_writers(paths, lengths) as writers:
        written = write_window_tracks(
            {s.stem: writers[s.stem] for s in profile_specs},
            source.windows,
            span_offset=profile_offset(window, width),
            span_width=width,
            values=profile_values,
            max_windows=chunk_windows,
        )
        written |= write_window_tracks(
            {s.stem: writers[s.stem] for s in contrib_specs},
            c_windows,
            span_offset=0,
            span_width=c_windows.width,
            values=contribution_values,
            max_windows=chunk_windows,
        )
    counts_by_group = {g: len(i) for g, i in obs_groups.items()}
    labels = track_labels(specs, counts_by_group, source.normalisation)
    palette = {lin: rgb_text(c) for lin, c in lineage_colours(list(lineages)).items()}
    colours = {
        s.stem: palette[s.group if s.level == "lineage" else lineage_of[s.group]] for s in specs
    }
    first = source.windows
    locus = f"{first.chrom[0]}:{int(first.start[0]) + 1}-{int(first.start[0]) + first.width}"
    write_igv_session(session, specs, paths, labels, colours, genome, locus)
    write_trackdb(trackdb, specs, paths, labels, colours)
    log.info(
        "%d tracks over %d windows (%s) and %d contribution windows; bases per track: %s",
        len(specs),
        len(source.windows),
        "test OCRs" if regions_bed is None else regions_bed,
        len(c_windows),
        ", ".join(f"{k} {v}" for k, v in list(written.items())[:4]),
    )
    return written
