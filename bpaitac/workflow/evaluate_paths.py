"""Where the evaluation's files live, and which models it evaluates (parse-time: no torch, no
scipy, no matplotlib; the input functions of workflow/rules/evaluate.smk and figures.smk)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

LEVELS: dict[str, str] = {
    "ocr": "per_ocr",
    "target": "per_target",
    "lineage_ocr": "per_lineage_ocr",
    "lineage": "per_lineage",
}
"""Evaluation level -> table name (``results/{dataset}/eval/{model}/seed{seed}/{name}.tsv``)."""


BIAS_SETS: tuple[str, ...] = ("protein_free", "closed_ocrs")
"""Held-out bias sets (``results/{dataset}/data/bias_sets/{set}/val/``)."""


SINGLE_LINEAGE = "single_lineage"


def evaluated_models(catalogue: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The units of evaluation: every catalogue model, with single-lineage members grouped.

    Returns ``name -> {"kind", "label", "seeds", "members"}`` where ``kind`` is ``celltypes``,
    ``lineages`` or ``single_lineage`` and ``members`` maps each trained model to the lineage it
    predicts (``None`` for multi-task models, whose only member is the model itself).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, entry in catalogue.items():
        ensemble = entry.get("ensemble")
        if ensemble is None:
            out[name] = {
                "kind": str(entry.get("targets", "celltypes")),
                "label": str(entry.get("label", name)),
                "seeds": [int(s) for s in entry["seeds"]],
                "members": {name: None},
            }
            continue
        target = str(entry.get("targets", ""))
        lineage = target.split(":", 1)[1] if target.startswith("lineage:") else name
        rec = out.setdefault(
            ensemble,
            {
                "kind": SINGLE_LINEAGE,
                "label": str(entry.get("label", ensemble)),
                "seeds": [int(s) for s in entry["seeds"]],
                "members": {},
            },
        )
        rec["members"][name] = lineage
    return out


PREDICTIONS = "results/{dataset}/models/{model}/seed{seed}/predictions_test.npz"
EVAL_TABLE = "results/{dataset}/eval/{model}/seed{seed}/{table}.tsv"
BIAS_SET_ARRAY = "results/{dataset}/data/bias_sets/{bias_set}/val/{array}.npy"
BIAS_EVAL = "results/{dataset}/eval/bias_models/{bias_model}/{name}"
BIAS_PAIRS = "results/{dataset}/eval/bias_models/pairs.tsv"


def prediction_paths(
    dataset: str, model: str, seed: int | str, evaluated: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """Test predictions of the trained member(s) of one evaluated model, in member order."""
    members = evaluated[model]["members"]
    return [PREDICTIONS.format(dataset=dataset, model=m, seed=seed) for m in members]


def eval_table_paths(
    dataset: str, level: str, models: Iterable[str], evaluated: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The ``level`` table of every seed of each of ``models``."""
    return [
        EVAL_TABLE.format(dataset=dataset, model=m, seed=s, table=LEVELS[level])
        for m in models
        for s in evaluated[m]["seeds"]
    ]


def bias_set_paths(dataset: str) -> dict[str, str]:
    """Held-out (val) ``seq`` and ``profile`` arrays of every bias set, keyed ``{set}_{array}``."""
    return {
        f"{bias_set}_{array}": BIAS_SET_ARRAY.format(
            dataset=dataset, bias_set=bias_set, array=array
        )
        for bias_set in BIAS_SETS
        for array in ("seq", "profile")
    }


def bias_eval_paths(dataset: str, bias_models: Iterable[str], name: str) -> list[str]:
    """``per_window.tsv`` or ``predictions.npz`` (``name``) of each bias model's evaluation."""
    return [BIAS_EVAL.format(dataset=dataset, bias_model=b, name=name) for b in bias_models]
