"""Which split an OCR or a protein-free region goes to (the split names:
:mod:`bpaitac.workflow.splits`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bpaitac.io import InputError
from bpaitac.workflow.splits import HELD_OUT, SPLITS, SPLITS_KEY, TRAIN, check_split_config


def split_of_chroms(
    chroms: Sequence[str], splits: Mapping[str, Sequence[str]], source: str = "the OCRs"
) -> np.ndarray:
    """Split name per chromosome: ``splits['test']`` -> test, ``splits['val']`` -> val, else
    train.

    Raises (:func:`check_split_config`) when a chromosome is listed in both or an unknown split
    is named, when a listed chromosome is none of ``chroms`` (a typo or another naming: the
    split would silently be empty), and when a split ends up with no element. ``source`` names
    where ``chroms`` come from, for the messages.
    """
    check_split_config(splits)
    chroms = np.asarray(chroms, dtype=object)
    present = set(chroms.tolist())
    for split in HELD_OUT:
        absent = [c for c in splits.get(split, ()) if c not in present]
        if absent:
            shown = ", ".join(sorted(present, key=str)[:8]) + (" ..." if len(present) > 8 else "")
            raise InputError(
                f"config key `{SPLITS_KEY}.{split}`: {', '.join(absent)} matches no chromosome of "
                f"{source} (they are on {shown or 'none'}); fix the chromosome names."
            )
    out = np.full(len(chroms), TRAIN, dtype=object)
    out[np.isin(chroms, list(splits.get("val", ())))] = "val"
    out[np.isin(chroms, list(splits.get("test", ())))] = "test"
    empty = [s for s in SPLITS if not (out == s).any()]
    if empty:
        raise InputError(
            f"config key `{SPLITS_KEY}`: the {' and '.join(empty)} split(s) of {source} would be "
            f"empty; list chromosomes under `test` and `val` that leave every split some OCRs."
        )
    return out


def split_regions(n: int, val_fraction: float, seed: int) -> np.ndarray:
    """Split name per region: ``round(val_fraction * n)`` regions (at least one when n >= 2 and
    the fraction is > 0) drawn with ``seed`` go to val, the rest to train."""
    out = np.full(n, TRAIN, dtype=object)
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    if n_val:
        out[np.random.default_rng(seed).choice(n, n_val, replace=False)] = "val"
    return out
