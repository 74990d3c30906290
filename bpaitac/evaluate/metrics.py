"""Evaluation of accessibility and profile predictions on the test split (Figures 1, 2, S1-S4).

Inputs are ``predictions_test.npz`` files (docs/contracts.md): ``acc_pred`` and ``acc_obs`` hold
``log(1 + accessibility)`` per OCR (rows) and target (columns; cell types or lineages).

Conventions used throughout:

- **per OCR** (``per_ocr``): Pearson / Spearman R of one OCR's predicted vs observed values across
  the targets (the paper's "R of OCRs across cell types", Figure 1b).
- **per target** (``per_target``): R of one target (cell type) across the test OCRs (Figure 1c).
- **lineage level** (``per_lineage_ocr``, ``per_lineage``): the same two metrics on lineage
  means. The lineage mean of a cell-type model is averaged in linear space,
  ``log1p(mean(expm1(x)))`` over the lineage's cell types, for predictions and observations
  alike; lineage and single-lineage models predict lineage targets directly.
- **coefficient of variation** of an OCR: ``std / mean`` (population std) of ``expm1(acc_obs)``
  across the targets; quartiles ``Q1`` (lowest CV) to ``Q4`` over the test OCRs (Figure 1d).
- **Pearson R** (:func:`bpaitac.numeric.rowwise_pearson`, the formula the training uses too) on
  the **linear** scale, ``expm1`` of the predicted log counts vs the quantile-normalised counts:
  the paper's metric (the authors' ``utils/load_model.py`` correlates the model's linear output
  with the total counts), column ``pearson``; the same R of the ``log(1 + x)`` values is kept as
  ``pearson_log``. **Spearman R**, the Pearson R of average ranks (ties averaged), as
  ``scipy.stats.spearmanr``, is the same on both scales (``expm1`` is monotone), so it has one
  column.
- **JSD** (:func:`bpaitac.numeric.profile_jsd`) is the Jensen-Shannon divergence in bits (base
  2, in [0, 1]), the square of ``scipy.spatial.distance.jensenshannon``.
- Rows with fewer than two values or a constant side have an undefined R (NaN); tables keep them
  and every aggregate ignores NaN.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bpaitac.io import InputError, atomic_path, require_columns, require_file
from bpaitac.lazy import LazyModule
from bpaitac.numeric import on_scale, profile_jsd, rowwise_pearson
from bpaitac.workflow.evaluate_paths import SINGLE_LINEAGE

# scipy.stats is imported when a metric is computed, not when the workflow reads the paths below.
stats = LazyModule("scipy.stats")

LEVEL_KEYS: dict[str, str] = {
    "ocr": "peak_id",
    "target": "target",
    "lineage_ocr": "peak_id",
    "lineage": "lineage",
}
"""Evaluation level -> the column naming the unit (OCR, target or lineage) of each row."""

LEVEL_COLUMNS: dict[str, tuple[str, ...]] = {
    "ocr": (
        "model",
        "seed",
        "peak_id",
        "pearson",
        "pearson_log",
        "spearman",
        "cv",
        "cv_quartile",
        "profile_jsd",
        "profile_r",
    ),
    "target": (
        "model",
        "seed",
        "target",
        "lineage",
        "pearson",
        "pearson_log",
        "spearman",
        "profile_jsd",
        "profile_r",
    ),
    "lineage_ocr": ("model", "seed", "peak_id", "pearson", "pearson_log", "spearman"),
    "lineage": ("model", "seed", "lineage", "pearson", "pearson_log", "spearman"),
}
"""The columns of each evaluation table, in order."""

BIAS_COLUMNS: tuple[str, ...] = (
    "bias_model",
    "eval_set",
    "window",
    "n_insertions",
    "pearson",
    "jsd",
)
"""Columns of a bias model's per-window table."""

PAIR_COLUMNS: tuple[str, ...] = ("model_a", "model_b", "eval_set", "window", "pearson", "jsd")
"""Columns of the table comparing the predictions of two bias models."""

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    **LEVEL_COLUMNS,
    "bias": BIAS_COLUMNS,
    "bias_pairs": PAIR_COLUMNS,
}
"""Required columns of every table a figure reads, by level."""

QUARTILES: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")

ARRAY_KEYS: tuple[str, ...] = ("acc_pred", "acc_obs", "profile_jsd", "profile_r")
"""The (N, T) arrays of a predictions file."""


# --------------------------------------------------------------------------------------------
# Predictions


@dataclass(frozen=True)
class Predictions:
    """Test-set predictions of one model (or one assembled ensemble) for one seed."""

    peak_id: np.ndarray
    targets: tuple[str, ...]
    acc_pred: np.ndarray
    acc_obs: np.ndarray
    profile_jsd: np.ndarray | None = None
    profile_r: np.ndarray | None = None

    @property
    def has_profile(self) -> bool:
        """Whether profile metrics were recorded (models with a trained profile head)."""
        return self.profile_jsd is not None and self.profile_r is not None


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read and validate a ``predictions_test.npz`` (keys and shapes of docs/contracts.md)."""
    path = require_file(path, "predictions", "run the training rule for this model.")
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc}); rerun its training.") from exc
    with data:
        missing = [k for k in ("peak_id", "targets", "acc_pred", "acc_obs") if k not in data.files]
        if missing:
            raise InputError(
                f"{path}: missing array(s) {missing}; a predictions file needs peak_id, targets, "
                "acc_pred, acc_obs (docs/contracts.md). Rerun the training rule."
            )
        arrays = {k: data[k] for k in data.files}
    peak_id = arrays["peak_id"].astype(str)
    targets = tuple(arrays["targets"].astype(str).tolist())
    shape = (len(peak_id), len(targets))
    out: dict[str, Any] = {}
    for key in ARRAY_KEYS:
        if key not in arrays:
            continue
        arr = np.asarray(arrays[key], dtype=np.float64)
        if arr.shape != shape:
            raise InputError(
                f"{path}: array `{key}` has shape {arr.shape}, expected {shape} "
                "(len(peak_id), len(targets)); rerun the training rule."
            )
        out[key] = arr
    if ("profile_jsd" in out) != ("profile_r" in out):
        raise InputError(f"{path}: has only one of profile_jsd / profile_r; both or neither.")
    if len(set(peak_id)) != len(peak_id):
        raise InputError(f"{path}: `peak_id` has duplicates; each test OCR must appear once.")
    return Predictions(peak_id=peak_id, targets=targets, **out)


def assemble_ensemble(members: Sequence[tuple[str, str, Predictions]]) -> Predictions:
    """Stack single-target member predictions into one multi-target prediction.

    ``members`` holds ``(member model name, target name, predictions)`` per single-lineage
    model; every member must cover the same test OCRs (rows are aligned on ``peak_id``).
    """
    if not members:
        raise InputError("a single-lineage ensemble needs at least one member model.")
    first_name, _, first = members[0]
    columns: dict[str, list[np.ndarray | None]] = {k: [] for k in ARRAY_KEYS}
    for name, _, pred in members:
        if pred.acc_pred.shape[1] != 1:
            raise InputError(
                f"{name}: a single-lineage ensemble member must predict one target, "
                f"got {len(pred.targets)} ({', '.join(pred.targets)})."
            )
        if set(pred.peak_id) != set(first.peak_id):
            raise InputError(
                f"{name}: its test OCRs differ from those of {first_name}; all members of an "
                "ensemble must be evaluated on the same test split."
            )
        idx = pd.Index(pred.peak_id).get_indexer(first.peak_id)
        for key in ARRAY_KEYS:
            arr = getattr(pred, key)
            columns[key].append(None if arr is None else arr[idx, 0])
    stacked = {
        key: None if any(c is None for c in cols) else np.column_stack(cols)
        for key, cols in columns.items()
    }
    return Predictions(
        peak_id=first.peak_id,
        targets=tuple(target for _, target, _ in members),
        acc_pred=stacked["acc_pred"],
        acc_obs=stacked["acc_obs"],
        profile_jsd=stacked["profile_jsd"],
        profile_r=stacked["profile_r"],
    )


# --------------------------------------------------------------------------------------------
# Correlations


def rowwise_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman R of each row pair: Pearson R of average ranks (as ``scipy.stats.spearmanr``)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"rowwise_spearman: need two equal 2-D arrays, got {x.shape}, {y.shape}.")
    return rowwise_pearson(stats.rankdata(x, axis=1), stats.rankdata(y, axis=1))


def correlations(pred: np.ndarray, obs: np.ndarray) -> dict[str, np.ndarray]:
    """Row-wise ``pearson`` (linear scale, the paper's), ``pearson_log`` and ``spearman`` of
    predicted and observed ``log(1 + accessibility)`` arrays (N, T): one value per row."""
    return {
        "pearson": rowwise_pearson(on_scale(pred, "linear"), on_scale(obs, "linear")),
        "pearson_log": rowwise_pearson(pred, obs),
        "spearman": rowwise_spearman(pred, obs),
    }


# --------------------------------------------------------------------------------------------
# Lineages and variability


def lineage_means(
    values: np.ndarray, targets: Sequence[str], lineage_of: Mapping[str, str], order: Sequence[str]
) -> tuple[np.ndarray, list[str]]:
    """Average log1p values (N, T) into lineages: ``log1p(mean(expm1(x)))`` per lineage.

    Returns the (N, L) lineage matrix and the lineage names (``order`` restricted to lineages
    with at least one target).
    """
    missing = [t for t in targets if t not in lineage_of]
    if missing:
        raise InputError(
            f"target(s) {missing[:5]} are not in the cell-type table; check `celltypes:` and the "
            "predictions' `targets`."
        )
    lin = np.array([lineage_of[t] for t in targets])
    linear = np.expm1(np.asarray(values, dtype=np.float64))
    names = [name for name in order if (lin == name).any()]
    extra = sorted(set(lin) - set(names))
    names += extra
    out = np.column_stack([np.log1p(linear[:, lin == name].mean(axis=1)) for name in names])
    return out, names


def coefficient_of_variation(acc_obs: np.ndarray) -> np.ndarray:
    """CV of each OCR across targets: ``std / mean`` of ``expm1(acc_obs)`` (NaN at mean 0)."""
    linear = np.expm1(np.asarray(acc_obs, dtype=np.float64))
    mean = linear.mean(axis=1)
    std = linear.std(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, std / mean, np.nan)


def cv_quartiles(cv: np.ndarray) -> np.ndarray:
    """Quartile label (``Q1``..``Q4``, low to high CV) of each OCR; NaN CV gives an empty label."""
    cv = pd.Series(np.asarray(cv, dtype=np.float64))
    labels = pd.Series("", index=cv.index, dtype=object)
    ok = cv.notna()
    if ok.sum() >= len(QUARTILES):
        # Ranks break ties so that qcut always finds four non-empty bins.
        ranks = cv[ok].rank(method="first")
        labels[ok] = pd.qcut(ranks, len(QUARTILES), labels=list(QUARTILES)).astype(str)
    return labels.to_numpy(dtype=object)


# --------------------------------------------------------------------------------------------
# Tables


def _profile_means(pred: Predictions, axis: int) -> tuple[np.ndarray, np.ndarray]:
    n = pred.acc_pred.shape[1 - axis]
    if not pred.has_profile:
        return np.full(n, np.nan), np.full(n, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN
        return np.nanmean(pred.profile_jsd, axis=axis), np.nanmean(pred.profile_r, axis=axis)


def evaluate_predictions(
    pred: Predictions,
    model: str,
    seed: int,
    lineage_of: Mapping[str, str],
    lineage_order: Sequence[str],
) -> dict[str, pd.DataFrame]:
    """All evaluation tables (keys of :data:`bpaitac.workflow.evaluate_paths.LEVELS`) of one
    model and seed.

    ``lineage_of`` maps each target to its lineage (a lineage target maps to itself); the
    lineage-level metrics average cell-type targets into lineages (:func:`lineage_means`).
    """
    x, y = pred.acc_pred, pred.acc_obs
    cv = coefficient_of_variation(y)
    jsd_ocr, r_ocr = _profile_means(pred, axis=1)
    per_ocr = pd.DataFrame(
        {
            "model": model,
            "seed": int(seed),
            "peak_id": pred.peak_id,
            **correlations(x, y),
            "cv": cv,
            "cv_quartile": cv_quartiles(cv),
            "profile_jsd": jsd_ocr,
            "profile_r": r_ocr,
        }
    )
    jsd_t, r_t = _profile_means(pred, axis=0)
    per_target = pd.DataFrame(
        {
            "model": model,
            "seed": int(seed),
            "target": list(pred.targets),
            "lineage": [lineage_of.get(t, "") for t in pred.targets],
            **correlations(x.T, y.T),
            "profile_jsd": jsd_t,
            "profile_r": r_t,
        }
    )
    lx, names = lineage_means(x, pred.targets, lineage_of, lineage_order)
    ly, _ = lineage_means(y, pred.targets, lineage_of, lineage_order)
    per_lineage_ocr = pd.DataFrame(
        {"model": model, "seed": int(seed), "peak_id": pred.peak_id, **correlations(lx, ly)}
    )
    per_lineage = pd.DataFrame(
        {"model": model, "seed": int(seed), "lineage": names, **correlations(lx.T, ly.T)}
    )
    return {
        "ocr": per_ocr,
        "target": per_target,
        "lineage_ocr": per_lineage_ocr,
        "lineage": per_lineage,
    }


def read_metrics_table(path: str | os.PathLike, required: Iterable[str]) -> pd.DataFrame:
    """Read a tidy TSV and check it has the ``required`` columns (error names file and column)."""
    path = require_file(path, "metrics table", "run the evaluation rule that makes it.")
    try:
        table = pd.read_csv(path, sep="\t", keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable TSV ({exc}); rerun the evaluation rule.") from exc
    require_columns(
        path,
        table.columns,
        required,
        f"it has {', '.join(table.columns)}. Delete the file and rerun the evaluation rule "
        "(snakemake --forcerun) to rebuild it.",
    )
    return table


def read_level_tables(paths: Iterable[str | os.PathLike], level: str) -> pd.DataFrame:
    """Concatenate the tables of one level (:data:`TABLE_COLUMNS`), each validated on read."""
    required = TABLE_COLUMNS[level]
    frames = [read_metrics_table(p, required) for p in paths]
    if not frames:
        return pd.DataFrame(columns=list(required))
    return pd.concat(frames, ignore_index=True)


def seed_means(table: pd.DataFrame, key: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Average ``metrics`` over seeds per model and unit ``key``; adds ``n_seeds``."""
    grouped = table.groupby(["model", key], sort=False)
    out = grouped[list(metrics)].mean()
    out["n_seeds"] = grouped["seed"].nunique()
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# Tests between models


@dataclass(frozen=True)
class PairedTest:
    """Paired Wilcoxon signed-rank test of ``b`` vs ``a`` on their common units."""

    n: int
    mean_a: float
    mean_b: float
    statistic: float
    pvalue: float

    @property
    def mean_diff(self) -> float:
        """Mean of ``b - a``."""
        return self.mean_b - self.mean_a


def paired_wilcoxon(a: pd.Series, b: pd.Series) -> PairedTest:
    """Two-sided ``scipy.stats.wilcoxon`` on the units (index) both series share, NaN dropped.

    With no pairs, or all differences zero, the p-value is NaN (or 1 for identical values).
    """
    pairs = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
    n = len(pairs)
    if n == 0:
        return PairedTest(0, np.nan, np.nan, np.nan, np.nan)
    mean_a, mean_b = float(pairs["a"].mean()), float(pairs["b"].mean())
    diff = pairs["b"] - pairs["a"]
    if (diff == 0).all():
        return PairedTest(n, mean_a, mean_b, 0.0, 1.0)
    res = stats.wilcoxon(pairs["b"], pairs["a"])
    return PairedTest(n, mean_a, mean_b, float(res.statistic), float(res.pvalue))


COMPARISON_COLUMNS: tuple[str, ...] = (
    "comparison",
    "reference",
    "model",
    "metric",
    "n_ocrs",
    "reference_seed_means",
    "model_seed_means",
    "reference_mean",
    "model_mean",
    "mean_diff",
    "ocr_wilcoxon_p",
    "ocr_fraction_better",
    "seed_pairs_better",
    "seed_welch_p",
    "decision",
)
"""Columns of ``eval/comparisons.tsv`` (one row per compared model and its reference)."""


def compare_models(
    ocr: pd.DataFrame, reference: str, model: str, metric: str = "pearson", alpha: float = 0.05
) -> dict[str, Any]:
    """Decide ``model`` vs ``reference`` on per-OCR R with paired statistics over OCRs and seeds.

    - over OCRs: two-sided paired Wilcoxon of the seed-averaged per-OCR ``metric`` (the units
      are the test OCRs both models were evaluated on);
    - over seeds: the per-seed means of both models, the fraction of all (reference seed,
      model seed) pairs in which the model's mean is higher, and Welch's t-test of the per-seed
      means (NaN with fewer than two seeds on a side).

    ``decision`` is ``better`` (or ``worse``) only when the OCR test is significant at ``alpha``
    in that direction *and* every seed pair agrees; otherwise ``undecided``.
    """
    a, b = ocr[ocr["model"] == reference], ocr[ocr["model"] == model]
    if a.empty or b.empty:
        missing = reference if a.empty else model
        raise InputError(f"compare_models: no per-OCR rows for model {missing!r}.")
    seeds_a = a.groupby("seed")[metric].mean()
    seeds_b = b.groupby("seed")[metric].mean()
    ocr_a, ocr_b = a.groupby("peak_id")[metric].mean(), b.groupby("peak_id")[metric].mean()
    test = paired_wilcoxon(ocr_a, ocr_b)
    per_ocr = pd.concat([ocr_a, ocr_b], axis=1, join="inner").dropna()
    pairs_better = float(np.mean([mb > ma for ma in seeds_a for mb in seeds_b]))
    welch = (
        float(stats.ttest_ind(seeds_b, seeds_a, equal_var=False).pvalue)
        if len(seeds_a) > 1 and len(seeds_b) > 1
        else np.nan
    )
    decision = "undecided"
    if test.pvalue < alpha and test.mean_diff > 0 and pairs_better == 1.0:
        decision = "better"
    elif test.pvalue < alpha and test.mean_diff < 0 and pairs_better == 0.0:
        decision = "worse"

    def fmt(s: pd.Series) -> str:
        return ",".join(f"{int(k)}:{v:.4f}" for k, v in s.items())

    return {
        "reference": reference,
        "model": model,
        "metric": metric,
        "n_ocrs": test.n,
        "reference_seed_means": fmt(seeds_a),
        "model_seed_means": fmt(seeds_b),
        "reference_mean": test.mean_a,
        "model_mean": test.mean_b,
        "mean_diff": test.mean_diff,
        "ocr_wilcoxon_p": test.pvalue,
        "ocr_fraction_better": float((per_ocr.iloc[:, 1] > per_ocr.iloc[:, 0]).mean()),
        "seed_pairs_better": pairs_better,
        "seed_welch_p": welch,
        "decision": decision,
    }


def comparison_table(
    ocr: pd.DataFrame, comparisons: Mapping[str, Mapping[str, str]]
) -> pd.DataFrame:
    """Every model of every comparison (``label: model``, reference first) against its reference,
    with :func:`compare_models`; comparisons with a model not in ``ocr`` are skipped."""
    present = set(pd.unique(ocr["model"]))
    rows = []
    for name, mapping in comparisons.items():
        models = list(mapping.values())
        if len(models) < 2 or not set(models) <= present:
            continue
        for model in models[1:]:
            rows.append({"comparison": name, **compare_models(ocr, models[0], model)})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


# --------------------------------------------------------------------------------------------
# Summary


SUMMARY_COLUMNS: tuple[str, ...] = (
    "model",
    "label",
    "n_seeds",
    "seeds",
    "n_ocrs",
    "n_targets",
    "per_ocr_pearson_mean",
    "per_ocr_pearson_mean_sd",
    "per_ocr_pearson_median",
    "paper_per_ocr_pearson_mean",
    "per_ocr_pearson_log_mean",
    "per_ocr_spearman_mean",
    "per_ocr_spearman_median",
    "per_target_pearson_mean",
    "per_target_pearson_median",
    "per_target_pearson_log_mean",
    "per_target_spearman_mean",
    "per_target_spearman_median",
    "per_lineage_ocr_pearson_mean",
    "per_lineage_ocr_pearson_log_mean",
    "per_lineage_pearson_mean",
    "per_lineage_pearson_log_mean",
    "profile_jsd_mean",
    "profile_r_mean",
)
"""Columns of ``eval/summary.tsv``: per-seed means and medians, averaged over seeds. Pearson
columns without a suffix are on the linear scale, as the paper's (``paper_per_ocr_pearson_mean``,
beside its like); ``*_log`` columns are the Pearson R of ``log(1 + x)``; Spearman is the same on
both scales."""


def summarise(
    tables: Mapping[str, pd.DataFrame],
    paper: Mapping[str, float],
    labels: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """One row per model: metrics computed per seed, then averaged over seeds.

    ``tables`` maps each level of :data:`~bpaitac.workflow.evaluate_paths.LEVELS` to its
    concatenated table; ``paper`` maps a model name to the paper's mean per-OCR Pearson R across
    cell types (ImmGen test OCRs);
    ``labels`` maps a model name to its display label (default: the name).
    ``per_ocr_pearson_mean_sd`` is the standard deviation of that mean across seeds.
    """
    ocr, target = tables["ocr"], tables["target"]
    rows = []
    for model in pd.unique(ocr["model"]):
        o = ocr[ocr["model"] == model]
        t = target[target["model"] == model]
        lo = tables["lineage_ocr"][tables["lineage_ocr"]["model"] == model]
        ln = tables["lineage"][tables["lineage"]["model"] == model]

        def per_seed(df: pd.DataFrame, col: str, how: str) -> pd.Series:
            return df.groupby("seed")[col].agg(how)

        seeds = sorted(int(s) for s in pd.unique(o["seed"]))
        ocr_means = per_seed(o, "pearson", "mean")
        rows.append(
            {
                "model": model,
                "label": (labels or {}).get(model, model),
                "n_seeds": len(seeds),
                "seeds": ",".join(map(str, seeds)),
                "n_ocrs": int(o["peak_id"].nunique()),
                "n_targets": int(t["target"].nunique()),
                "per_ocr_pearson_mean": ocr_means.mean(),
                "per_ocr_pearson_mean_sd": ocr_means.std(ddof=1) if len(seeds) > 1 else np.nan,
                "per_ocr_pearson_median": per_seed(o, "pearson", "median").mean(),
                "paper_per_ocr_pearson_mean": paper.get(model, np.nan),
                "per_ocr_pearson_log_mean": per_seed(o, "pearson_log", "mean").mean(),
                "per_ocr_spearman_mean": per_seed(o, "spearman", "mean").mean(),
                "per_ocr_spearman_median": per_seed(o, "spearman", "median").mean(),
                "per_target_pearson_mean": per_seed(t, "pearson", "mean").mean(),
                "per_target_pearson_median": per_seed(t, "pearson", "median").mean(),
                "per_target_pearson_log_mean": per_seed(t, "pearson_log", "mean").mean(),
                "per_target_spearman_mean": per_seed(t, "spearman", "mean").mean(),
                "per_target_spearman_median": per_seed(t, "spearman", "median").mean(),
                "per_lineage_ocr_pearson_mean": per_seed(lo, "pearson", "mean").mean(),
                "per_lineage_ocr_pearson_log_mean": per_seed(lo, "pearson_log", "mean").mean(),
                "per_lineage_pearson_mean": per_seed(ln, "pearson", "mean").mean(),
                "per_lineage_pearson_log_mean": per_seed(ln, "pearson_log", "mean").mean(),
                "profile_jsd_mean": per_seed(o, "profile_jsd", "mean").mean(),
                "profile_r_mean": per_seed(o, "profile_r", "mean").mean(),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


# --------------------------------------------------------------------------------------------
# Bias models


def bias_window_table(
    bias_model: str, eval_set: str, observed: np.ndarray, predicted: np.ndarray
) -> pd.DataFrame:
    """Per-window profile Pearson R and JSD of a bias model's predicted vs observed profiles.

    ``observed`` holds insertion counts (N, L) and ``predicted`` probabilities (N, L).
    """
    return pd.DataFrame(
        {
            "bias_model": bias_model,
            "eval_set": eval_set,
            "window": np.arange(len(observed)),
            "n_insertions": np.asarray(observed).sum(axis=1).astype(np.int64),
            "pearson": rowwise_pearson(observed, predicted),
            "jsd": profile_jsd(observed, predicted),
        },
        columns=list(BIAS_COLUMNS),
    )


def bias_pair_table(
    name_a: str, name_b: str, eval_set: str, pred_a: np.ndarray, pred_b: np.ndarray
) -> pd.DataFrame:
    """Per-window Pearson R and JSD between the predicted profiles of two bias models."""
    return pd.DataFrame(
        {
            "model_a": name_a,
            "model_b": name_b,
            "eval_set": eval_set,
            "window": np.arange(len(pred_a)),
            "pearson": rowwise_pearson(pred_a, pred_b),
            "jsd": profile_jsd(pred_a, pred_b),
        },
        columns=list(PAIR_COLUMNS),
    )


# --------------------------------------------------------------------------------------------
# File-level entry points (called by scripts/evaluate.py and scripts/evaluate_bias.py)


def evaluate_files(
    predictions: Sequence[str | os.PathLike],
    members: Mapping[str, str | None],
    kind: str,
    celltypes: pd.DataFrame,
    lineage_order: Sequence[str],
    model: str,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Evaluate one model (or single-lineage ensemble) and seed from its prediction files.

    ``predictions`` and ``members`` (member model -> lineage, see :func:`evaluated_models`) are
    in the same order; ``kind`` is ``celltypes``, ``lineages`` or ``single_lineage``.
    """
    if len(predictions) != len(members):
        raise ValueError(
            f"{model}: {len(predictions)} prediction files for {len(members)} members."
        )
    loaded = [load_predictions(path) for path in predictions]
    if kind == SINGLE_LINEAGE:
        # The ensemble's targets are its members' lineages.
        stack = [(name, str(lin), p) for (name, lin), p in zip(members.items(), loaded)]
        pred = assemble_ensemble(stack)
        lineage_of = {t: t for t in pred.targets}
    elif kind == "lineages":
        pred = loaded[0]
        lineage_of = {t: t for t in pred.targets}
    else:
        pred = loaded[0]
        lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
        unknown = [t for t in pred.targets if t not in lineage_of]
        if unknown:
            raise InputError(
                f"{predictions[0]}: target(s) {unknown[:5]} are not cell types of the cell-type "
                "table; the model must be trained on the cell types of `celltypes:`."
            )
    return evaluate_predictions(pred, model, seed, lineage_of, lineage_order)


def write_table(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a tidy TSV atomically (floats with 6 significant digits)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
