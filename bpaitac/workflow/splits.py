"""The data splits' names (docs/contracts.md: ``results/{dataset}/data/{split}/``).

The config lists held-out chromosomes under ``preprocess.splits.val`` and ``.test``, the only keys
its schema allows (a test checks :data:`HELD_OUT` against the schema), and every other chromosome
is train; so the names are the schema's keys plus ``train``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bpaitac.io import ConfigError

TRAIN = "train"
HELD_OUT: tuple[str, ...] = ("val", "test")
"""The splits the config names chromosomes for (keys of ``preprocess.splits``)."""

SPLITS: tuple[str, ...] = (TRAIN, *HELD_OUT)
"""Every split of the OCR arrays, in order."""

FIT_SPLITS: tuple[str, ...] = (TRAIN, "val")
"""The splits a network is fitted on (train) and early-stopped on (val)."""

BIAS_SET_SPLITS: dict[str, tuple[str, ...]] = {
    "protein_free": (TRAIN, "val"),
    "closed_ocrs": SPLITS,
}
"""Splits of each Tn5-bias training set: protein-free regions are drawn into train and val
(:func:`bpaitac.data.splits.split_regions`); closed OCRs keep their OCR's split."""

SPLITS_KEY = "preprocess.splits"
"""The config key listing the held-out chromosomes."""


def check_split_config(splits: Mapping[str, Sequence[str]]) -> None:
    """Raise, naming the config key, when ``preprocess.splits`` names an unknown split or lists
    a chromosome under both test and val (checked when the config is read and when the OCRs
    are split, :func:`bpaitac.data.splits.split_of_chroms`)."""
    unknown = set(splits) - set(HELD_OUT)
    if unknown:
        raise ConfigError(
            f"config key `{SPLITS_KEY}`: unknown split(s) {sorted(unknown)}; "
            "list chromosomes under `test` and `val` (the rest is train)."
        )
    both = sorted(set(splits.get("test", ())) & set(splits.get("val", ())))
    if both:
        raise ConfigError(
            f"config key `{SPLITS_KEY}`: {', '.join(both)} listed as both test and val; "
            "a chromosome belongs to one split."
        )
