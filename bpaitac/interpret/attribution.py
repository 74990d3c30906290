"""Region selection, DeepSHAP attributions per lineage and seqlet calling (paper Methods,
"Sequence attribution and motif analysis"; Figures 3a, 3b, S5, S7).

- **Regions**: test OCRs that both models' seeds agree bpAI-TAC predicts well and better than
  AI-TAC: strong signal (max accessibility over cell types), high coefficient of variation,
  mean per-OCR R of the profile model above a threshold and every profile-model seed better than
  every reference-model seed. Thresholds come from config; when nothing passes, the top-k OCRs by
  ``R_profile - R_reference`` are taken with a logged warning and marked in the table.
- **Attributions**: tangermeme's DeepLIFT/SHAP on the accessibility head summed over the tasks
  of each lineage (:class:`LineageAccessibility`), with dinucleotide-shuffled references drawn
  once per sequence from a seed and shared by every lineage and model. The Tn5 bias is not an
  input of the accessibility head, so attributions are those of the model with the bias set to
  zero. Convergence deltas (sum of attributions minus the mean output difference to the
  references) are computed for every sequence and lineage and stored.
- **Seqlets**: positions whose attribution (of the base present) exceeds ``z`` standard
  deviations of all attributions of that model and lineage, grouped into runs with gaps of at
  most ``max_gap`` bases and kept when they hold at least ``min_bases`` significant bases.
  tangermeme's ``recursive_seqlets`` is not used: it calls seqlets from span p-values of a
  binned null, not from the paper's per-base 1.96-SD rule with single-base gaps.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from bpaitac.data.sequence import decode_sequence
from bpaitac.evaluate.metrics import Predictions, coefficient_of_variation, rowwise_pearson
from bpaitac.io import InputError

log = logging.getLogger(__name__)

BASES = "ACGT"

# --------------------------------------------------------------------------------------------
# Region selection (Figure 3a)


@dataclass(frozen=True)
class RegionCriteria:
    """Thresholds of the region selection (config ``interpret.regions``)."""

    min_max_accessibility: float = 150.0
    min_cv: float = 1.0
    min_mean_r: float = 0.5
    all_seeds_better: bool = True
    max_regions: int | None = None
    fallback_regions: int = 10
    stratify_by_lineage: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping) -> RegionCriteria:
        """Build from the ``interpret.regions`` block (unknown keys are an error)."""
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
    targets; R is the Pearson R of one OCR across targets. Selected OCRs have ``selected`` True
    and ``selected_by`` ``criteria`` or, when none pass, ``fallback_top_delta``. With
    ``lineage_of`` (target -> lineage) each OCR gets its ``top_lineage`` (highest mean
    accessibility); ``criteria.stratify_by_lineage`` then takes passing OCRs in turn from each
    lineage (largest R gain first within a lineage) instead of by R gain alone.
    """
    if not reference or not profile:
        raise InputError("region selection needs predictions of at least one seed per model.")
    first = profile[0]
    r_ref = np.column_stack([rowwise_pearson(p.acc_pred, p.acc_obs) for p in reference])
    r_prof = np.column_stack([rowwise_pearson(p.acc_pred, p.acc_obs) for p in profile])
    linear = np.expm1(np.asarray(first.acc_obs, dtype=np.float64))
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


# --------------------------------------------------------------------------------------------
# Lineage targets and the DeepSHAP wrapper


def lineage_task_matrix(
    targets: Sequence[str], lineage_of: Mapping[str, str], lineages: Sequence[str]
) -> np.ndarray:
    """0/1 matrix (T, n_lineages): which model task belongs to which lineage.

    A task named like a cell type belongs to that cell type's lineage; a task named like a
    lineage (lineage-target models) is that lineage.
    """
    mat = np.zeros((len(targets), len(lineages)), dtype=np.float32)
    col = {lin: j for j, lin in enumerate(lineages)}
    for i, t in enumerate(targets):
        lin = t if t in col else lineage_of.get(t)
        if lin not in col:
            raise InputError(
                f"model task {t!r} is neither a cell type of the table nor a lineage in use "
                f"({', '.join(lineages)}); check `celltypes:` / `celltypes_per_lineage`."
            )
        mat[i, col[lin]] = 1.0
    empty = [lineages[j] for j in np.flatnonzero(mat.sum(axis=0) == 0)]
    if empty:
        raise InputError(f"lineage(s) {empty} have no task in the model; check the targets.")
    return mat


class LineageAccessibility(nn.Module):
    """Wrap a bpAI-TAC network: predicted log-accessibility summed over each lineage's tasks.

    ``forward(x)`` returns (B, n_lineages). No bias is passed (bias zero); the sum is a matrix
    product, which DeepLIFT treats exactly as the linear operation it is.
    """

    def __init__(self, model: nn.Module, task_matrix: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("weights", torch.as_tensor(task_matrix, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, log_counts = self.model(x)
        return log_counts @ self.weights


@dataclass(frozen=True)
class Attributions:
    """DeepSHAP results for N sequences and K lineages."""

    hypothetical: np.ndarray  # (N, K, 4, L) float32
    deltas: np.ndarray  # (N, K) float32: sum(attr) - mean_r(f(x) - f(r))
    output: np.ndarray  # (N, K) float32: wrapper output f(x)
    n_warnings: int  # convergence warnings raised by tangermeme

    def projected(self, onehot: np.ndarray) -> np.ndarray:
        """Attributions of the bases present (N, K, 4, L) for one-hot sequences (N, 4, L)."""
        return self.hypothetical * onehot[:, None]


def references_for(x: torch.Tensor, n_shuffles: int, seed: int) -> torch.Tensor:
    """Dinucleotide-shuffled references (N, n_shuffles, 4, L), seeded per sequence."""
    from tangermeme.ersatz import dinucleotide_shuffle

    return dinucleotide_shuffle(x, n=n_shuffles, random_state=seed, allow_N=True)


def deep_shap(
    wrapper: nn.Module,
    x: torch.Tensor,
    *,
    n_shuffles: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
    warning_threshold: float = 1e-3,
    references: torch.Tensor | None = None,
) -> Attributions:
    """Hypothetical DeepLIFT/SHAP attributions of every output of ``wrapper`` for ``x``.

    ``x`` is one-hot (N, 4, L) float. ``references`` (N, S, 4, L) default to ``n_shuffles``
    seeded dinucleotide shuffles. Returns hypothetical attributions and convergence deltas.
    The wrapper runs in eval mode (batch norm is then a fixed affine map, linear for DeepLIFT).
    """
    from tangermeme.deep_lift_shap import deep_lift_shap

    from bpaitac.model.network import resolve_device

    device = str(resolve_device(device))  # cpu, cuda or auto -> what tangermeme moves to
    if references is None:
        references = references_for(x, n_shuffles, seed)
    wrapper = wrapper.eval()
    with torch.no_grad():
        y_x = _batched(wrapper, x, batch_size, device)
        flat = references.reshape(-1, *x.shape[1:])
        y_ref = _batched(wrapper, flat, batch_size, device).reshape(
            x.shape[0], references.shape[1], -1
        )
    n_out = y_x.shape[1]
    hyp = np.empty((x.shape[0], n_out, *x.shape[1:]), dtype=np.float32)
    n_warn = 0
    for k in range(n_out):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            attr = deep_lift_shap(
                wrapper,
                x,
                target=k,
                references=references,
                hypothetical=True,
                batch_size=batch_size,
                warning_threshold=warning_threshold,
                device=device,
                random_state=seed,
            )
        n_warn += sum("Convergence deltas" in str(w.message) for w in caught)
        hyp[:, k] = attr.float().numpy()
    proj_sum = (hyp * x.numpy()[:, None]).sum(axis=(2, 3))
    deltas = proj_sum - (y_x - y_ref.mean(axis=1))
    return Attributions(
        hypothetical=hyp,
        deltas=deltas.astype(np.float32),
        output=y_x.astype(np.float32),
        n_warnings=n_warn,
    )


def _batched(module: nn.Module, x: torch.Tensor, batch_size: int, device: str) -> np.ndarray:
    module = module.to(device)
    out = [
        module(x[i : i + batch_size].to(device)).float().cpu().numpy()
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


# --------------------------------------------------------------------------------------------
# Seqlets


def seqlet_threshold(projected: np.ndarray, z: float) -> float:
    """``z`` standard deviations of all per-position attributions (N, L) of one map set."""
    values = np.asarray(projected, dtype=np.float64).ravel()
    return float(z * values.std())


def call_seqlets(
    projected: np.ndarray, threshold: float, *, min_bases: int = 4, max_gap: int = 1
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


def seqlets_for_model(
    model_name: str,
    projected: np.ndarray,
    seqs: np.ndarray,
    peak_ids: Sequence[str],
    lineages: Sequence[str],
    *,
    z: float,
    min_bases: int,
    max_gap: int,
) -> pd.DataFrame:
    """Seqlets of every lineage of one model: ``projected`` (N, K, L) summed over bases.

    The threshold is ``z`` standard deviations of all attributions of that model and lineage.
    """
    tables = []
    for k, lin in enumerate(lineages):
        thr = seqlet_threshold(projected[:, k], z)
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
