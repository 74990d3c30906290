"""Paths of the training rules' inputs and outputs (docs/contracts.md), and their params.

Torch-free on purpose: the Snakefile imports it at parse time (workflow/rules/bias.smk and
train.smk call these from their input functions and params).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bpaitac.workflow.splits import FIT_SPLITS, SPLITS

SPLIT_FILES = ("seq.npy", "profile.npy", "counts.npy", "celltypes.txt", "ocrs.tsv")
BIAS_SET_FILES = ("seq.npy", "profile.npy")
MODEL_OUTPUTS = ("model.pt", "history.tsv", "predictions_test.npz")
RUNTIME_SETTINGS = ("progress", "check_every", "preload", "preload_max_gb", "eval_batch_size")
"""``training:`` settings that decide how a run goes (progress bar, NaN-check interval,
preloading, evaluation batch size), never the trained weights."""


def run_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """The catalogue entry as one training run sees it: without ``seeds`` and ``label``.

    Rules pass this as a param, so that adding a seed or renaming a label does not retrain the
    runs that already exist (Snakemake reruns jobs whose params change).
    """
    return {k: v for k, v in entry.items() if k not in ("seeds", "label")}


def result_settings(training: Mapping[str, Any]) -> dict[str, Any]:
    """The ``training:`` settings that decide the trained weights: all but
    :data:`RUNTIME_SETTINGS`.

    Rules pass only these as a param, so that changing a runtime setting retrains nothing; the
    scripts take the rest from the config (:func:`runtime_settings`).
    """
    return {k: v for k, v in training.items() if k not in RUNTIME_SETTINGS}


def runtime_settings(training: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`RUNTIME_SETTINGS` of the validated ``training:`` section."""
    return {k: training[k] for k in RUNTIME_SETTINGS}


def bias_set_inputs(dataset: str, data: str) -> dict[str, list[str]]:
    """``train``/``val`` -> arrays of the bias set ``data`` (protein_free or closed_ocrs)."""
    base = f"results/{dataset}/data/bias_sets/{data}"
    return {s: [f"{base}/{s}/{name}" for name in BIAS_SET_FILES] for s in FIT_SPLITS}


def model_inputs(dataset: str, entry: dict[str, Any]) -> dict[str, str | list[str]]:
    """Split arrays per split, plus ``bias_{split}`` logits when the entry uses a bias model."""
    data = f"results/{dataset}/data"
    files: dict[str, str | list[str]] = {
        s: [f"{data}/{s}/{name}" for name in SPLIT_FILES] for s in SPLITS
    }
    bias = entry["bias"]
    if bias != "none":
        files.update({f"bias_{s}": f"{data}/{s}/bias/{bias}.npy" for s in SPLITS})
    return files


def model_outputs(dataset: str, runs: Iterable[tuple[str, int]]) -> list[str]:
    """model.pt, history.tsv and predictions_test.npz of every (model, seed) run."""
    return [
        f"results/{dataset}/models/{model}/seed{seed}/{name}"
        for model, seed in runs
        for name in MODEL_OUTPUTS
    ]
