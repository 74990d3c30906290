"""Seqlets (paper Methods): step 3 of the interpretation, rule ``interpret_seqlets``.

Positions whose attribution (of the base present) exceeds ``z`` standard deviations of all
attributions of a lineage, grouped into runs with gaps of at most ``max_gap`` bases and kept
when they hold at least ``min_bases`` significant bases (config ``interpret.seqlets``). The
standard deviation is that of the profile model's (bpAI-TAC's) attributions, and the one cutoff
per lineage is applied to both models (``threshold_from: profile_model``, the authors' code,
nuriachandra/bpAITAC ``analysis/EnrichedMotifs.ipynb``): a cutoff per model
(``each_model``) would cancel differences in attribution size between the models, part of what
Figure S6 compares. tangermeme's ``recursive_seqlets`` is not used: it calls seqlets from
span p-values of a binned null, not from the paper's per-base 1.96-SD rule with single-base
gaps.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bpaitac.data.sequence import decode_sequence, one_hot
from bpaitac.interpret.tables import load_attributions, save_tsv
from bpaitac.io import InputError
from bpaitac.workflow.interpret_paths import ROLES

log = logging.getLogger(__name__)


def seqlet_threshold(projected: np.ndarray, z: float) -> float:
    """``z`` standard deviations of all per-position attributions (N, L) of one map set."""
    values = np.asarray(projected, dtype=np.float64).ravel()
    return float(z * values.std())


def call_seqlets(
    projected: np.ndarray, threshold: float, *, min_bases: int, max_gap: int
) -> pd.DataFrame:
    """Seqlets of per-position attributions (N, L) of the bases present.

    A position is significant when its attribution exceeds ``threshold``. Significant
    positions separated by at most ``max_gap`` non-significant bases join one seqlet, which is
    kept when it holds at least ``min_bases`` significant positions. Returns ``example``,
    ``start``, ``end`` (half-open, first to last significant base), ``n_significant`` and
    ``attribution`` (sum over the span).
    """
    projected = np.asarray(projected, dtype=np.float64)
    if projected.ndim != 2:
        raise ValueError(f"call_seqlets: expected (N, L) attributions, got {projected.shape}.")
    rows = []
    for i, track in enumerate(projected):
        pos = np.flatnonzero(track > threshold)
        if len(pos) == 0:
            continue
        breaks = np.flatnonzero(np.diff(pos) > max_gap + 1)
        for group in np.split(pos, breaks + 1):
            if len(group) >= min_bases:
                start, end = int(group[0]), int(group[-1]) + 1
                rows.append((i, start, end, len(group), float(track[start:end].sum())))
    return pd.DataFrame(
        rows, columns=["example", "start", "end", "n_significant", "attribution"]
    ).astype({"example": int, "start": int, "end": int, "n_significant": int})


THRESHOLD_SOURCES = ("profile_model", "each_model")


def lineage_thresholds(projected: np.ndarray, z: float) -> np.ndarray:
    """One cutoff per lineage (K,): ``z`` standard deviations of a model's attributions of the
    bases present, ``projected`` (N, K, L), over all sequences and positions of the lineage."""
    return np.array([seqlet_threshold(projected[:, k], z) for k in range(projected.shape[1])])


def seqlets_for_model(
    model_name: str,
    projected: np.ndarray,
    seqs: np.ndarray,
    peak_ids: Sequence[str],
    lineages: Sequence[str],
    thresholds: Sequence[float],
    *,
    min_bases: int,
    max_gap: int,
) -> pd.DataFrame:
    """Seqlets of every lineage of one model: ``projected`` (N, K, L) summed over bases,
    ``seqs`` (N, L) uint8 base indices, ``thresholds`` (K,) the cutoff of each lineage."""
    tables = []
    for k, lin in enumerate(lineages):
        thr = float(thresholds[k])
        calls = call_seqlets(projected[:, k], thr, min_bases=min_bases, max_gap=max_gap)
        calls.insert(0, "lineage", lin)
        calls.insert(0, "model", model_name)
        calls["threshold"] = thr
        tables.append(calls)
    out = pd.concat(tables, ignore_index=True)
    out["peak_id"] = [peak_ids[i] for i in out["example"]]
    out["sequence"] = [
        decode_sequence(seqs[e, s:t]) for e, s, t in zip(out["example"], out["start"], out["end"])
    ]
    return out


def projected_per_position(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Attribution of the base present per position (N, K, L) from an attribution npz."""
    onehot = one_hot(data["seq"])
    return (data["hypothetical"] * onehot[:, None]).sum(axis=2)


def run_seqlets(
    attributions: Mapping[str, str | os.PathLike],
    model_names: Mapping[str, str],
    out_tsv: str | os.PathLike,
    *,
    z: float,
    min_bases: int,
    max_gap: int,
    threshold_from: str,
) -> pd.DataFrame:
    """Seqlets of the reference and profile models in all lineages (one table); the cutoffs
    come from the profile model's attributions (``threshold_from: profile_model``) or from
    each model's own (``each_model``)."""
    if threshold_from not in THRESHOLD_SOURCES:
        raise ValueError(
            f"interpret.seqlets.threshold_from {threshold_from!r} is not one of "
            f"{', '.join(THRESHOLD_SOURCES)}."
        )
    data = {role: load_attributions(attributions[role]) for role in ROLES}
    if not np.array_equal(data["reference"]["peak_id"], data["profile"]["peak_id"]):
        raise InputError("attributions of the two models cover different regions; rerun them.")
    projected = {role: projected_per_position(data[role]) for role in ROLES}
    shared = lineage_thresholds(projected["profile"], z)
    tables = []
    for role in ROLES:
        thresholds = shared if threshold_from == "profile_model" else None
        if thresholds is None:
            thresholds = lineage_thresholds(projected[role], z)
        table = seqlets_for_model(
            model_names[role],
            projected[role],
            data[role]["seq"],
            list(data[role]["peak_id"]),
            list(data[role]["lineages"]),
            thresholds,
            min_bases=min_bases,
            max_gap=max_gap,
        )
        table.insert(0, "role", role)
        tables.append(table)
        log.info("%s: %d seqlets", model_names[role], len(table))
    out = pd.concat(tables, ignore_index=True)
    out.insert(0, "seqlet", np.arange(len(out)))
    save_tsv(out_tsv, out)
    return out
