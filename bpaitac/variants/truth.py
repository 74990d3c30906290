"""Predicted vs planted effects of the simulator's variants (rule ``variants_truth``).

The simulator writes SNVs that break or create planted sites and matched background SNVs, with
the per-lineage log2 fold change its grammar gives them (``truth/variants.tsv``,
``truth/variant_effects.tsv``; :mod:`bpaitac.simulate.variants`). For each scoring model:

- ``r_breaking``: Pearson R between the predicted (seed-mean) and planted per-lineage log2FC,
  pooled over the site-breaking SNVs x lineages; ``r_creating`` the same for site-creating ones;
- ``auc_breaking``: the area under the ROC curve separating site-breaking from background SNVs
  by the predicted max |log2FC| over lineages (the Mann-Whitney U over n1 x n0; ties count
  half); ``auc_creating`` the same for site-creating SNVs.

Each is given on the held-out chromosomes (the test split: sequences no model was trained or
stopped on; ``subset`` ``held_out``) and on all variants (``all``, which includes OCRs the models
were trained on).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bpaitac.interpret.tables import read_tsv, save_tsv
from bpaitac.variants.score import SUMMARY_COLUMNS, TIDY_COLUMNS

log = logging.getLogger(__name__)

TRUTH_COLUMNS = ("chrom", "pos", "ref", "alt", "id", "class")
EFFECT_COLUMNS = ("id", "level", "target", "planted_log2fc")
RECOVERY_COLUMNS = (
    "model",
    "label",
    "role",
    "subset",
    "n_breaking",
    "n_creating",
    "n_background",
    "r_breaking",
    "r_creating",
    "auc_breaking",
    "auc_creating",
)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of scores ``positive`` vs ``negative``: Mann-Whitney U / (n1 n0); NaN if one is
    empty."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    if not len(positive) or not len(negative):
        return float("nan")
    u = stats.mannwhitneyu(positive, negative, alternative="two-sided").statistic
    return float(u / (len(positive) * len(negative)))


def pooled_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson R of finite pairs; NaN below 3 pairs or for a constant side."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(stats.pearsonr(a[ok], b[ok]).statistic)


def variant_recovery(
    table: pd.DataFrame,
    summary: pd.DataFrame,
    truth: pd.DataFrame,
    planted: pd.DataFrame,
) -> dict[str, float]:
    """R and AUC of one model's scores (tidy ``table``, ``summary``) against the truth
    (``truth``: variants with ``class``; ``planted``: lineage-level planted log2FC by ``id``).

    Variants are matched on chrom, pos, ref and alt.
    """
    key = ["chrom", "pos", "ref", "alt"]
    truth = truth.astype({"chrom": str, "ref": str, "alt": str})
    pred = table[table["level"] == "lineage"].merge(truth[[*key, "id", "class"]], on=key)
    pred = pred.merge(
        planted[planted["level"] == "lineage"][["id", "target", "planted_log2fc"]],
        on=["id", "target"],
    )
    scores = summary[summary["status"] == "ok"].merge(truth[[*key, "class"]], on=key)
    by_class = {
        c: scores.loc[scores["class"] == c, "max_abs_log2fc"] for c in truth["class"].unique()
    }
    background = by_class.get("background", pd.Series(dtype=float))
    out: dict[str, float] = {}
    for cls, short in (("site_breaking", "breaking"), ("site_creating", "creating")):
        rows = pred[pred["class"] == cls]
        out[f"n_{short}"] = int(rows["id"].nunique())
        out[f"r_{short}"] = pooled_pearson(rows["log2fc_mean"], rows["planted_log2fc"])
        out[f"auc_{short}"] = roc_auc(by_class.get(cls, pd.Series(dtype=float)), background)
    out["n_background"] = int(len(background))
    return out


def run_variant_truth(
    *,
    tables: Mapping[str, str | os.PathLike],
    summaries: Mapping[str, str | os.PathLike],
    labels: Mapping[str, str],
    roles: Mapping[str, str],
    truth_variants: str | os.PathLike,
    truth_effects: str | os.PathLike,
    held_out: Sequence[str],
    out_tsv: str | os.PathLike,
) -> pd.DataFrame:
    """One row per scoring model x subset (``held_out``: variants on the test chromosomes;
    ``all``): :data:`RECOVERY_COLUMNS`."""
    truth = read_tsv(truth_variants, TRUTH_COLUMNS)
    planted = read_tsv(truth_effects, EFFECT_COLUMNS)
    rows = []
    for model, path in tables.items():
        table = read_tsv(path, TIDY_COLUMNS)
        summary = read_tsv(summaries[model], SUMMARY_COLUMNS)
        for subset, chroms in (("held_out", set(held_out)), ("all", None)):
            sub = truth if chroms is None else truth[truth["chrom"].astype(str).isin(chroms)]
            values = variant_recovery(table, summary, sub, planted)
            rows.append(
                {
                    "model": model,
                    "label": labels.get(model, model),
                    "role": roles.get(model, ""),
                    "subset": subset,
                    **values,
                }
            )
            log.info(
                "%s, %s: R %.3f over %d site-breaking SNVs, AUC vs background %.3f",
                model,
                subset,
                values["r_breaking"],
                values["n_breaking"],
                values["auc_breaking"],
            )
    out = pd.DataFrame(rows, columns=list(RECOVERY_COLUMNS))
    save_tsv(out_tsv, out)
    return out
