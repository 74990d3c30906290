"""Which test OCRs are interpreted (paper Methods, "Sequence attribution and motif analysis";
Figure 3a): step 1 of the interpretation, rule ``interpret_regions``.

Test OCRs that both models' seeds agree bpAI-TAC predicts well and better than AI-TAC: strong
signal (max accessibility over cell types), high coefficient of variation, mean per-OCR R of
the profile model above a threshold and every profile-model seed better than every
reference-model seed. Thresholds come from config ``interpret.regions``; when nothing passes,
the top-k OCRs by ``R_profile - R_reference`` are taken with a logged warning and marked in the
table.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bpaitac.evaluate.metrics import (
    Predictions,
    coefficient_of_variation,
    correlations,
    load_predictions,
)
from bpaitac.interpret.tables import save_tsv
from bpaitac.io import InputError
from bpaitac.numeric import on_scale

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegionCriteria:
    """Thresholds of the region selection (config ``interpret.regions``; defaults there)."""

    min_max_accessibility: float
    min_cv: float
    min_mean_r: float
    all_seeds_better: bool
    max_regions: int | None
    fallback_regions: int
    stratify_by_lineage: bool

    @classmethod
    def from_config(cls, cfg: Mapping) -> RegionCriteria:
        """Build from the validated ``interpret.regions`` block (unknown keys are an error)."""
        return cls(**dict(cfg))


def align_predictions(preds: Sequence[Predictions], peak_ids: Sequence[str]) -> list[Predictions]:
    """Reorder every prediction set to ``peak_ids``; raise when an OCR is missing."""
    out = []
    index = pd.Index(np.asarray(peak_ids, dtype=str))
    for p in preds:
        pos = pd.Index(p.peak_id).get_indexer(index)
        if (pos < 0).any():
            missing = index[pos < 0][:3].tolist()
            raise InputError(
                f"predictions lack test OCR(s) {missing}; rerun the prediction rules so that "
                "every model covers the same test split."
            )
        out.append(
            Predictions(
                peak_id=p.peak_id[pos],
                targets=p.targets,
                acc_pred=p.acc_pred[pos],
                acc_obs=p.acc_obs[pos],
            )
        )
    return out


def region_table(
    reference: Sequence[Predictions],
    profile: Sequence[Predictions],
    criteria: RegionCriteria,
    lineage_of: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per test OCR: signal, CV, per-seed R of both models, the criteria and the selection.

    ``reference`` / ``profile`` hold one :class:`Predictions` per seed, rows in the same order.
    Accessibility is ``expm1(acc_obs)`` (quantile-normalised, linear) of the profile model's
    targets; R is the Pearson R of one OCR across targets on the linear scale (the paper's
    metric, :func:`bpaitac.evaluate.metrics.correlations`). Selected OCRs have ``selected`` True
    and ``selected_by`` ``criteria`` or, when none pass, ``fallback_top_delta``. With
    ``lineage_of`` (target -> lineage) each OCR gets its ``top_lineage`` (highest mean
    accessibility); ``criteria.stratify_by_lineage`` then takes passing OCRs in turn from each
    lineage (largest R gain first within a lineage) instead of by R gain alone.
    """
    if not reference or not profile:
        raise InputError("region selection needs predictions of at least one seed per model.")
    first = profile[0]
    r_ref = np.column_stack([correlations(p.acc_pred, p.acc_obs)["pearson"] for p in reference])
    r_prof = np.column_stack([correlations(p.acc_pred, p.acc_obs)["pearson"] for p in profile])
    linear = on_scale(first.acc_obs, "linear")
    table = pd.DataFrame(
        {
            "peak_id": first.peak_id,
            "max_accessibility": linear.max(axis=1),
            "cv": coefficient_of_variation(first.acc_obs),
            "r_reference_mean": _nanmean_rows(r_ref),
            "r_profile_mean": _nanmean_rows(r_prof),
            "r_reference_max": _nanmax_rows(r_ref),
            "r_profile_min": _nanmin_rows(r_prof),
        }
    )
    table["delta_r"] = table["r_profile_mean"] - table["r_reference_mean"]
    if lineage_of is not None:
        table["top_lineage"] = top_lineage(linear, first.targets, lineage_of)
    elif criteria.stratify_by_lineage:
        raise InputError(
            "interpret.regions.stratify_by_lineage needs the lineage of every target; "
            "the region rule passes it from the cell-type table."
        )
    table["pass_signal"] = table["max_accessibility"] > criteria.min_max_accessibility
    table["pass_cv"] = table["cv"] > criteria.min_cv
    table["pass_r"] = table["r_profile_mean"] > criteria.min_mean_r
    if criteria.all_seeds_better:
        table["pass_better"] = table["r_profile_min"] > table["r_reference_max"]
    else:
        table["pass_better"] = table["r_profile_mean"] > table["r_reference_mean"]
    passing = table[["pass_signal", "pass_cv", "pass_r", "pass_better"]].all(axis=1)
    table["selected"] = False
    table["selected_by"] = ""
    order = table["delta_r"].fillna(-np.inf)
    if passing.any():
        chosen = order[passing].sort_values(ascending=False, kind="stable").index
        if criteria.stratify_by_lineage:
            chosen = _round_robin(chosen, table.loc[chosen, "top_lineage"])
        if criteria.max_regions is not None:
            chosen = chosen[: criteria.max_regions]
        table.loc[chosen, "selected_by"] = "criteria"
        log.info(
            "%d of %d test OCRs pass all criteria; %d kept", passing.sum(), len(table), len(chosen)
        )
    else:
        finite = table["delta_r"].notna()
        k = criteria.fallback_regions
        if criteria.max_regions is not None:
            k = min(k, criteria.max_regions)
        chosen = order[finite].sort_values(ascending=False, kind="stable").index[:k]
        if len(chosen) == 0:
            raise InputError(
                "region selection: no test OCR has a finite R for both models (constant "
                "predictions or observations?); check the trained models' predictions."
            )
        log.warning(
            "no test OCR passes the region criteria (signal > %g: %d, CV > %g: %d, mean R > %g: "
            "%d, better: %d); falling back to the top %d OCRs by R_profile - R_reference. "
            "Relax interpret.regions in the config to use the paper's rule.",
            criteria.min_max_accessibility,
            int(table["pass_signal"].sum()),
            criteria.min_cv,
            int(table["pass_cv"].sum()),
            criteria.min_mean_r,
            int(table["pass_r"].sum()),
            int(table["pass_better"].sum()),
            len(chosen),
        )
        table.loc[chosen, "selected_by"] = "fallback_top_delta"
    table.loc[chosen, "selected"] = True
    rank = pd.Series(np.arange(len(chosen)), index=chosen)
    table["rank"] = rank.reindex(table.index).astype("Int64")
    return table


def top_lineage(
    accessibility: np.ndarray, targets: Sequence[str], lineage_of: Mapping[str, str]
) -> np.ndarray:
    """Per OCR, the lineage with the highest mean accessibility over its targets.

    A target named like a lineage (lineage-target models) is that lineage.
    """
    lineages = [lineage_of.get(str(t), str(t)) for t in targets]
    means = pd.DataFrame(np.asarray(accessibility, dtype=np.float64)).T.groupby(lineages).mean().T
    return means.columns.to_numpy()[means.to_numpy().argmax(axis=1)]


def _round_robin(ranked: pd.Index, group: pd.Series) -> pd.Index:
    """Reorder ``ranked`` (best first) so that groups take turns: each group's best, then
    each group's second best, ... ; ties between groups keep the overall rank."""
    turn = group.loc[ranked].groupby(group.loc[ranked], sort=False).cumcount()
    position = pd.Series(np.arange(len(ranked)), index=ranked)
    key = pd.DataFrame({"turn": turn, "position": position})
    return key.sort_values(["turn", "position"], kind="stable").index


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=1)


def _nanmax_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(a, axis=1)


def _nanmin_rows(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(a, axis=1)


def selected_regions(table: pd.DataFrame) -> pd.DataFrame:
    """The selected rows of a region table, in selection rank order."""
    out = table[table["selected"].astype(bool)].copy()
    return out.sort_values("rank").reset_index(drop=True)


def run_regions(
    reference_predictions: Sequence[str | os.PathLike],
    profile_predictions: Sequence[str | os.PathLike],
    criteria: RegionCriteria,
    out_tsv: str | os.PathLike,
    lineage_of: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Region table of all test OCRs with the selection (Figure 3a); ``lineage_of`` maps
    cell types to lineages (the ``top_lineage`` column and lineage-stratified selection)."""
    ref = [load_predictions(p) for p in reference_predictions]
    prof = [load_predictions(p) for p in profile_predictions]
    order = prof[0].peak_id
    ref = align_predictions(ref, order)
    prof = align_predictions(prof, order)
    table = region_table(ref, prof, criteria, lineage_of)
    save_tsv(out_tsv, table)
    return table
