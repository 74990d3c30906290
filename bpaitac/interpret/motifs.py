"""Seqlet clustering, cluster motifs, enrichment and TomTom naming (paper Methods, Figure S6).

- **Similarity** of two seqlets is the p-value of the strongest Pearson correlation over all
  their alignments (every offset with at least ``min_overlap`` overlapping columns, both
  strands), as in the paper: the p-value of a correlation accounts for the number of aligned
  values, so motif pairs of different lengths are comparable. The correlated values are the
  hypothetical attributions (4 x width) of each seqlet window, which describe what the model
  would score for every base and thus compare seqlets from different sequences (as
  TF-MoDISco does). p is the one-sided p-value of a positive correlation (t-test with
  ``4 * overlap - 2`` degrees of freedom). We implement this rather than memelite's
  ``symmetric_tomtom``, whose score is designed for probability matrices and whose null is
  built from the given motifs' columns (unreliable for sparse attribution matrices).
- **Clusters**: agglomerative clustering with complete linkage on that p-value, cut at
  ``p_threshold`` (paper: 0.05), so every pair in a cluster aligns with p below it.
- **Cluster motifs**: members are aligned to the cluster medoid (the member with the smallest
  summed p-value to the others); the contribution weight matrix (CWM) is the mean projected
  attribution, the position frequency matrix (PFM) the base frequencies of the aligned member
  sequences, both trimmed to the columns whose |CWM| reaches ``trim`` of the maximum.
- **Enrichment**: one-sided Fisher's exact test of each cluster's share of profile-model vs
  reference-model seqlets, Benjamini-Hochberg over clusters.
- **TomTom** (memelite) of cluster PFMs against JASPAR CORE vertebrates (pyjaspar, latest
  version of each matrix, i.e. the non-redundant set) with per-query BH q-values, after
  trimming query flanks below ``min_ic`` bits (see :func:`tomtom_table` for why).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.special import stdtr

from bpaitac.data.sequence import decode_sequence
from bpaitac.io import InputError, atomic_path, require_file

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Aligned correlations


def reverse_complement(mat: np.ndarray) -> np.ndarray:
    """Reverse complement of a (4, w) matrix in A, C, G, T order."""
    return np.ascontiguousarray(mat[::-1, ::-1])


def _pad(mats: Sequence[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    arr = np.zeros((len(mats), 4, width))
    mask = np.zeros((len(mats), width))
    for i, m in enumerate(mats):
        arr[i, :, : m.shape[1]] = m
        mask[i, : m.shape[1]] = 1.0
    return arr, mask


def _shift(arr: np.ndarray, mask: np.ndarray, offset: int, width: int):
    """Place column c of every (padded) target at column c + offset of a frame of ``width``."""
    out = np.zeros((arr.shape[0], 4, width))
    out_mask = np.zeros((arr.shape[0], width))
    lo, hi = max(offset, 0), min(width, arr.shape[2] + offset)
    if hi > lo:
        out[:, :, lo:hi] = arr[:, :, lo - offset : hi - offset]
        out_mask[:, lo:hi] = mask[:, lo - offset : hi - offset]
    return out, out_mask


def aligned_correlations(
    queries: Sequence[np.ndarray],
    targets: Sequence[np.ndarray],
    *,
    min_overlap: int = 4,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best alignment of every query (4, w) with every target by correlation p-value.

    Returns ``log10 p`` (nq, nt), ``offset``, ``strand`` and Pearson ``r`` of the best
    alignment: target column ``c`` (of the reverse complement when ``strand`` is 1) lies on
    query column ``c + offset``. Pairs without any alignment of ``min_overlap`` columns get
    log10 p = 0 and r = 0. log10 p is floored at -300.
    """
    if min_overlap < 2:
        raise ValueError("aligned_correlations: min_overlap must be >= 2.")
    nq, nt = len(queries), len(targets)
    best = np.zeros((nq, nt))
    best_off = np.zeros((nq, nt), dtype=np.int32)
    best_strand = np.zeros((nq, nt), dtype=np.int8)
    best_r = np.zeros((nq, nt))
    if nq == 0 or nt == 0:
        return best, best_off, best_strand, best_r
    wq = max(m.shape[1] for m in queries)
    wt = max(m.shape[1] for m in targets)
    strands = [_pad(targets, wt), _pad([reverse_complement(m) for m in targets], wt)]
    for q0 in range(0, nq, chunk):
        q_arr, q_mask = _pad(queries[q0 : q0 + chunk], wq)
        q_flat = q_arr.reshape(len(q_arr), -1)
        q_sum, q_sq = q_arr.sum(axis=1), (q_arr**2).sum(axis=1)
        sl = slice(q0, q0 + len(q_arr))
        for strand, (t_arr, t_mask) in enumerate(strands):
            for offset in range(-(wt - min_overlap), wq - min_overlap + 1):
                ts, tm = _shift(t_arr, t_mask, offset, wq)
                cols = q_mask @ tm.T
                if not (cols >= min_overlap).any():
                    continue
                n = 4.0 * cols
                sx, sxx = q_sum @ tm.T, q_sq @ tm.T
                sy, syy = q_mask @ ts.sum(axis=1).T, q_mask @ (ts**2).sum(axis=1).T
                sxy = q_flat @ ts.reshape(len(ts), -1).T
                with np.errstate(invalid="ignore", divide="ignore"):
                    den = np.sqrt((n * sxx - sx**2) * (n * syy - sy**2))
                    r = (n * sxy - sx * sy) / den
                    ok = (cols >= min_overlap) & (den > 0) & np.isfinite(r)
                    r = np.clip(np.where(ok, r, 0.0), -1.0, 1.0 - 1e-12)
                    df = np.maximum(n - 2, 1)
                    t = r * np.sqrt(df / (1 - r**2))
                    # One-sided p = P(T_df > t); stdtr(df, -t) is that tail, floored at 1e-300.
                    logp = np.where(ok, np.log10(np.maximum(stdtr(df, -t), 1e-300)), 0.0)
                better = logp < best[sl]
                best[sl] = np.where(better, logp, best[sl])
                best_off[sl] = np.where(better, offset, best_off[sl])
                best_strand[sl] = np.where(better, strand, best_strand[sl])
                best_r[sl] = np.where(better, r, best_r[sl])
    return best, best_off, best_strand, best_r


def cluster_by_pvalue(log10p: np.ndarray, p_threshold: float) -> np.ndarray:
    """Complete-linkage clusters (labels 0..K-1, largest first) with distance = p-value."""
    n = log10p.shape[0]
    if n == 0:
        return np.zeros(0, dtype=int)
    if n == 1:
        return np.zeros(1, dtype=int)
    p = 10.0 ** np.minimum(log10p, log10p.T)
    np.fill_diagonal(p, 0.0)
    z = linkage(squareform(p, checks=False), method="complete")
    raw = fcluster(z, t=p_threshold, criterion="distance")
    sizes = pd.Series(raw).value_counts()
    first = pd.Series(np.arange(n)).groupby(raw).min()
    order = sorted(sizes.index, key=lambda c: (-sizes[c], first[c]))
    relabel = {c: i for i, c in enumerate(order)}
    return np.array([relabel[c] for c in raw], dtype=int)


def cluster_seqlets(
    mats: Sequence[np.ndarray],
    *,
    p_threshold: float,
    min_overlap: int,
    max_seqlets: int,
    min_cluster_size: int,
    seed: int = 0,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete-linkage clusters of seqlet windows, scaling past ``max_seqlets``.

    Up to ``max_seqlets`` windows are clustered exactly (:func:`cluster_by_pvalue` on the
    all-pairs alignment p-values, O(n^2) time and memory). Beyond that a seeded random sample
    of ``max_seqlets`` windows is clustered; every other window joins, by the same complete-
    linkage rule, the cluster (of at least ``min_cluster_size`` sampled seqlets) whose sampled
    members it all aligns to with p below ``p_threshold`` (the best such cluster by its
    largest p-value), and is otherwise left unassigned (label -1). Joining through the single
    best member instead would let random windows in: the best of many alignments to many
    members often reaches p < 0.05 by chance.
    Written by hand because scipy's linkage needs the full distance matrix (~20 GB for the
    paper's ~50k seqlets) and memelite offers TomTom but no clustering.

    Returns ``(labels, sample, log10p)``: a label per window, the sampled window indices
    (sorted) and their pairwise log10 p-values.
    """
    n = len(mats)
    if n <= max_seqlets:
        sample = np.arange(n)
    else:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=max_seqlets, replace=False))
    sampled = [mats[i] for i in sample]
    log10p, _, _, _ = aligned_correlations(sampled, sampled, min_overlap=min_overlap)
    labels = np.full(n, -1, dtype=int)
    labels[sample] = cluster_by_pvalue(log10p, p_threshold)
    if n == len(sample):
        return labels, sample, log10p
    sizes = np.bincount(labels[sample])
    anchors = sample[sizes[labels[sample]] >= min_cluster_size]
    rest = np.setdiff1d(np.arange(n), sample)
    log.info(
        "%d seqlets: clustered a sample of %d; assigning %d more to %d clusters of %d members",
        n,
        len(sample),
        len(rest),
        int((sizes >= min_cluster_size).sum()),
        len(anchors),
    )
    if len(anchors) == 0:
        return labels, sample, log10p
    anchor_mats = [mats[i] for i in anchors]
    anchor_labels = labels[anchors]
    clusters = np.unique(anchor_labels)
    cut = np.log10(p_threshold)
    for lo in range(0, len(rest), chunk):
        part = rest[lo : lo + chunk]
        lp, _, _, _ = aligned_correlations(
            [mats[i] for i in part], anchor_mats, min_overlap=min_overlap
        )
        # Complete linkage: a window's distance to a cluster is its worst member p-value.
        worst = np.stack([lp[:, anchor_labels == c].max(axis=1) for c in clusters], axis=1)
        best = worst.argmin(axis=1)
        hit = worst[np.arange(len(part)), best] < cut
        labels[part[hit]] = clusters[best[hit]]
    return labels, sample, log10p


# --------------------------------------------------------------------------------------------
# Windows, cluster motifs


def window(
    track: np.ndarray, positions: np.ndarray, reverse: bool = False, fill: float = 0.0
) -> np.ndarray:
    """Columns ``positions`` of a (4, L) track; out-of-range columns are ``fill``.

    With ``reverse`` the positions are read as given (pass them descending) and the base axis
    is complemented.
    """
    positions = np.asarray(positions)
    out = np.full((track.shape[0], len(positions)), fill, dtype=np.float64)
    ok = (positions >= 0) & (positions < track.shape[1])
    out[:, ok] = track[:, positions[ok]]
    return out[::-1] if reverse else out


def seqlet_windows(
    hyp: np.ndarray, seqlets: pd.DataFrame, flank: int, lineage_index: Mapping[str, int]
) -> list[np.ndarray]:
    """Hypothetical-attribution windows (4, end - start + 2 flank) of seqlets of one model.

    ``hyp`` is (N, K, 4, L); ``seqlets`` rows give ``example``, ``lineage``, ``start``, ``end``.
    """
    return [
        window(hyp[e, lineage_index[lin]], np.arange(s - flank, t + flank))
        for e, lin, s, t in zip(
            seqlets["example"], seqlets["lineage"], seqlets["start"], seqlets["end"]
        )
    ]


def aligned_positions(start: int, end: int, flank: int, offset: int, strand: int, width: int):
    """Sequence positions of a member's window that align to medoid columns 0..width-1."""
    k = np.arange(width)
    if strand == 0:
        return start - flank + k - offset
    return end + flank - 1 - k + offset


def trim_span(cwm: np.ndarray, fraction: float) -> tuple[int, int]:
    """First and last+1 column whose |column sum| reaches ``fraction`` of the maximum."""
    score = np.abs(cwm.sum(axis=0))
    if score.max() <= 0:
        return 0, cwm.shape[1]
    keep = np.flatnonzero(score >= fraction * score.max())
    return int(keep[0]), int(keep[-1]) + 1


def medoid_index(log10p: np.ndarray) -> int:
    """Row of the seqlet with the least summed alignment p-value to the others (pairwise
    ``log10p``, symmetrised by the better direction)."""
    lp = np.minimum(log10p, log10p.T)
    return int(np.argmin((10.0**lp).sum(axis=1)))


def cluster_motif(
    members: pd.DataFrame,
    hyp: Mapping[str, np.ndarray],
    onehot: np.ndarray,
    lineage_index: Mapping[str, int],
    *,
    flank: int,
    min_overlap: int,
    trim: float,
    pseudocount: float = 1.0,
    medoid: int | None = None,
) -> dict:
    """CWM, PFM, consensus and medoid of one cluster of seqlets (both models pooled).

    ``members`` are seqlet rows with ``model``, ``example``, ``lineage``, ``start``, ``end``;
    ``hyp[model]`` is (N, K, 4, L), ``onehot`` (N, 4, L); ``medoid`` (optional) the position in
    ``members`` of the seqlet every other member is aligned to, found from the members'
    pairwise alignments when not given (:func:`medoid_index`).
    """
    mats = []
    for row in members.itertuples(index=False):
        track = hyp[row.model][row.example, lineage_index[row.lineage]]
        mats.append(window(track, np.arange(row.start - flank, row.end + flank)))
    if medoid is None:
        if len(mats) == 1:
            medoid = 0
        else:
            lp, _, _, _ = aligned_correlations(mats, mats, min_overlap=min_overlap)
            medoid = medoid_index(lp)
    _, off, strand, _ = aligned_correlations([mats[medoid]], mats, min_overlap=min_overlap)
    width = mats[medoid].shape[1]
    cwm = np.zeros((4, width))
    counts = np.zeros((4, width))
    for j, row in enumerate(members.itertuples(index=False)):
        pos = aligned_positions(row.start, row.end, flank, off[0, j], strand[0, j], width)
        rev = bool(strand[0, j])
        seq = window(onehot[row.example], pos, reverse=rev)
        track = hyp[row.model][row.example, lineage_index[row.lineage]]
        cwm += window(track, pos, reverse=rev) * seq
        counts += seq
    cwm /= len(mats)
    lo, hi = trim_span(cwm, trim)
    cwm, counts = cwm[:, lo:hi], counts[:, lo:hi]
    pfm = (counts + pseudocount / 4) / (counts.sum(axis=0, keepdims=True) + pseudocount)
    return {
        "cwm": cwm,
        "pfm": pfm,
        "consensus": decode_sequence(pfm.argmax(axis=0)),
        "medoid": int(members.index[medoid]),
    }


# --------------------------------------------------------------------------------------------
# Enrichment


def cluster_enrichment(
    labels: pd.Series, models: pd.Series, profile_model: str, reference_model: str
) -> pd.DataFrame:
    """Per cluster: seqlet counts per model and the one-sided Fisher test (profile > reference).

    Seqlets labelled -1 (unassigned) count in the totals but form no cluster.

    Returns ``cluster``, ``n_profile``, ``n_reference``, ``odds_ratio``, ``p_value``,
    ``q_value`` (Benjamini-Hochberg over the clusters given).
    """
    tot_p = int((models == profile_model).sum())
    tot_r = int((models == reference_model).sum())
    rows = []
    for c in sorted(c for c in labels.unique() if c >= 0):  # -1: unassigned seqlets
        in_c = labels == c
        n_p = int((in_c & (models == profile_model)).sum())
        n_r = int((in_c & (models == reference_model)).sum())
        res = stats.fisher_exact([[n_p, n_r], [tot_p - n_p, tot_r - n_r]], alternative="greater")
        rows.append((c, n_p, n_r, float(res.statistic), float(res.pvalue)))
    out = pd.DataFrame(
        rows, columns=["cluster", "n_profile", "n_reference", "odds_ratio", "p_value"]
    )
    out["q_value"] = (
        stats.false_discovery_control(out["p_value"].to_numpy(), method="bh") if len(out) else []
    )
    return out


# --------------------------------------------------------------------------------------------
# MEME files, JASPAR, TomTom


def write_meme(path: str | os.PathLike, motifs: Mapping[str, np.ndarray]) -> None:
    """Write (4, w) probability matrices as a MEME file, atomically (memelite's writer).

    The keys are the MOTIF lines: a motif ID, optionally followed by a name (``MA0080.7 SPI1``).
    The one MEME writer of the package: cluster motifs and the simulator's planted motifs.
    """
    from memelite.io import write_meme as _write

    with atomic_path(path) as tmp:
        _write(str(tmp), {name: np.asarray(m, dtype=float) for name, m in motifs.items()})


def read_meme(path: str | os.PathLike, *, full_names: bool = False) -> dict[str, np.ndarray]:
    """MEME file -> {motif name: (4, w) matrix} (memelite's reader).

    A motif's name is the first word of its MOTIF line (the motif ID: ``cluster_3``, a JASPAR
    matrix ID) or, with ``full_names``, the whole line with its words joined by one space (the
    simulator's ``name source``, whose second word names the planted TF).
    """
    from memelite.io import read_meme as _read

    path = require_file(path, "MEME file", "run the rule that writes it.")
    motifs = _read(str(path))
    if full_names:
        return {" ".join(name.split()): m for name, m in motifs.items()}
    return {name.split()[0]: m for name, m in motifs.items()}


def jaspar_motifs(release: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """JASPAR CORE vertebrate motifs of ``release`` (latest version of each matrix).

    Returns ({matrix_id: (4, w) probabilities}, {matrix_id: TF name}). pyjaspar ships the
    databases, so this needs no network.
    """
    from pyjaspar import jaspardb

    db = jaspardb(release=release)
    pwms, names = {}, {}
    for m in db.fetch_motifs(collection=["CORE"], tax_group=["vertebrates"]):
        counts = np.array([m.counts[b] for b in "ACGT"], dtype=float)
        pwms[m.matrix_id] = counts / counts.sum(axis=0, keepdims=True)
        names[m.matrix_id] = m.name
    if not pwms:
        raise InputError(f"pyjaspar returned no CORE vertebrate motifs for release {release!r}.")
    return pwms, names


def information_content(ppm: np.ndarray) -> np.ndarray:
    """Information content (bits) of each column of a (4, w) probability matrix."""
    p = np.clip(np.asarray(ppm, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum(axis=0, keepdims=True)
    return 2.0 + (p * np.log2(p)).sum(axis=0)


def trim_by_information(ppm: np.ndarray, min_ic: float) -> tuple[int, int]:
    """First and last+1 column with at least ``min_ic`` bits (0, 0 when there is none)."""
    keep = np.flatnonzero(information_content(ppm) >= min_ic)
    if len(keep) == 0:
        return 0, 0
    return int(keep[0]), int(keep[-1]) + 1


def tomtom_table(
    queries: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    names: Mapping[str, str] | None = None,
    *,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """memelite TomTom of every query against all targets; matches with q < ``q_threshold``.

    Query flanks below ``min_ic`` bits are trimmed first and queries narrower than
    ``min_width`` are skipped: memelite scores columns by Euclidean distance, so a flat,
    low-information query otherwise matches long degenerate JASPAR motifs (e.g. CTCF) at
    q < 0.05 even when it is random. q-values are Benjamini-Hochberg over the targets of each
    query. Returns ``query``, ``query_start``, ``query_width``, ``target``, ``target_name``,
    ``p_value``, ``q_value``, ``offset``, ``overlap``, ``strand``, best first per query.
    """
    from memelite import tomtom

    cols = [
        "query",
        "query_start",
        "query_width",
        "target",
        "target_name",
        "p_value",
        "q_value",
        "offset",
        "overlap",
        "strand",
    ]
    spans = {k: trim_by_information(m, min_ic) for k, m in queries.items()}
    q_names = [k for k, (a, b) in spans.items() if b - a >= min_width]
    skipped = sorted(set(queries) - set(q_names))
    if skipped:
        log.info(
            "TomTom skips %d motif(s) with fewer than %d columns of >= %g bits: %s",
            len(skipped),
            min_width,
            min_ic,
            ", ".join(skipped[:10]),
        )
    if not q_names:
        return pd.DataFrame(columns=cols)
    t_names = list(targets)
    qs = [
        np.asfortranarray(queries[k][:, spans[k][0] : spans[k][1]], dtype=np.float64)
        for k in q_names
    ]
    ts = [np.asarray(targets[k], dtype=np.float64) for k in t_names]
    p, _, offsets, overlaps, strands = tomtom(qs, ts, n_jobs=n_jobs)
    rows = []
    for i, q in enumerate(q_names):
        pv = np.clip(np.nan_to_num(p[i], nan=1.0), 0.0, 1.0)
        qv = stats.false_discovery_control(pv, method="bh")
        for j in np.argsort(pv, kind="stable"):
            if qv[j] >= q_threshold:
                break
            t = t_names[j]
            rows.append(
                (
                    q,
                    spans[q][0],
                    spans[q][1] - spans[q][0],
                    t,
                    (names or {}).get(t, t),
                    pv[j],
                    qv[j],
                    int(offsets[i, j]),
                    int(overlaps[i, j]),
                    int(strands[i, j]),
                )
            )
    return pd.DataFrame(rows, columns=cols)


def best_names(matches: pd.DataFrame, max_names: int = 3) -> dict[str, str]:
    """Query -> up to ``max_names`` distinct matched TF names (best first), joined by '/'."""
    out: dict[str, str] = {}
    for q, grp in matches.groupby("query", sort=False):
        names = list(dict.fromkeys(grp.sort_values("q_value")["target_name"]))
        out[str(q)] = "/".join(names[:max_names])
    return out
