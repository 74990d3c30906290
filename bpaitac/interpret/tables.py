"""The interpretation steps' files: TSV tables and ``.npz`` arrays, written atomically and read
back with the columns or arrays each reader needs (docs/contracts.md, "Interpretation").

Each ``.npz`` has its own loader, named after what it holds: :func:`load_attributions`
(``attributions/{model}.npz``), :func:`load_footprints` (``footprints.npz``) and
:func:`load_cwms` (``cluster_cwms.npz``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from bpaitac.io import InputError, atomic_path, require_columns, require_file

ATTRIBUTION_ARRAYS = (
    "peak_id",
    "lineages",
    "seq",
    "hypothetical",
    "pred_lineage",
    "obs_lineage",
)
"""Arrays of an attribution ``.npz`` that its readers use."""

FOOTPRINT_ARRAYS = ("profiles", "models", "motifs", "consensus")
"""Arrays of ``footprints.npz`` that Figure 3d reads."""


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write arrays atomically; object (string) arrays are stored as fixed-width str."""
    fixed = {
        k: v.astype(str) if isinstance(v, np.ndarray) and v.dtype == object else v
        for k, v in arrays.items()
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **fixed)


def save_tsv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a table as TSV without index, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_tsv(path: str | os.PathLike, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read a TSV written by these steps; raise naming the missing columns."""
    path = require_file(path, "table", "run the rule that writes it.")
    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["", "NaN", "nan"])
    require_columns(path, table.columns, required, "rerun the rule that writes it.")
    return table


def load_test_split(
    seq_path: str | os.PathLike, ocrs_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Test sequences (N, L) uint8 and their peak IDs (the order of ``ocrs.tsv``)."""
    seqs = np.load(seq_path, mmap_mode="r")
    ocrs = pd.read_csv(ocrs_path, sep="\t", dtype={"peak_id": str})
    if "peak_id" not in ocrs.columns or len(ocrs) != len(seqs):
        raise InputError(
            f"{ocrs_path}: needs a peak_id column with one row per sequence of {seq_path} "
            f"({len(seqs)}); rerun the preprocessing."
        )
    return seqs, ocrs["peak_id"].astype(str).to_numpy()


def _load_npz(
    path: str | os.PathLike, rule: str, required: Sequence[str] | None
) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` written by ``rule``; raise naming missing ``required`` ones."""
    path = require_file(path, "arrays", f"run {rule}.")
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    missing = [k for k in required or () if k not in arrays]
    if missing:
        raise InputError(f"{path}: missing array(s) {missing}; rerun {rule}.")
    return arrays


def load_attributions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An attribution ``.npz`` (:func:`bpaitac.interpret.attribution.run_attributions`)."""
    return _load_npz(path, "interpret_attributions", ATTRIBUTION_ARRAYS)


def load_footprints(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Deep footprints (:func:`bpaitac.interpret.insertion.run_insertion`): ``profiles``
    (roles, motifs, without/with, quantiles, K + 1, P) and the names of each axis."""
    return _load_npz(path, "interpret_insertion", FOOTPRINT_ARRAYS)


def load_cwms(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Cluster motif name -> CWM (4, w) (:func:`bpaitac.interpret.clusters.run_clusters`)."""
    return _load_npz(path, "interpret_clusters", None)
