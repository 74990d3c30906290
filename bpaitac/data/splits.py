"""Which split an OCR or a protein-free region goes to (the split names:
:mod:`bpaitac.workflow.splits`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bpaitac.io import InputError
from bpaitac.workflow.splits import HELD_OUT, TRAIN


def split_of_chroms(chroms: Sequence[str], splits: Mapping[str, Sequence[str]]) -> np.ndarray:
    """Split name per chromosome: ``splits['test']`` -> test, ``splits['val']`` -> val, else
    train. Raises when a chromosome is listed in both or an unknown split is named."""
    unknown = set(splits) - set(HELD_OUT)
    if unknown:
        raise InputError(
            f"config key `preprocess.splits`: unknown split(s) {sorted(unknown)}; "
            "list chromosomes under `test` and `val` (the rest is train)."
        )
    test, val = set(splits["test"]), set(splits["val"])
    both = sorted(test & val)
    if both:
        raise InputError(
            f"config key `preprocess.splits`: {', '.join(both)} listed as both test and val."
        )
    chroms = np.asarray(chroms, dtype=object)
    out = np.full(len(chroms), TRAIN, dtype=object)
    out[np.isin(chroms, list(val))] = "val"
    out[np.isin(chroms, list(test))] = "test"
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
