"""Shared by the interpretation tests: the cell-type table and the chain of pipeline functions
(attributions -> seqlets -> clusters -> motif insertion) run on saved models and predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.interpret import steps as interp

CT = pd.DataFrame(
    {
        "celltype": ["a1", "a2", "b1", "b2", "c1", "c2"],
        "lineage": ["A", "A", "B", "B", "C", "C"],
        "organ": "x",
    }
)
LINEAGES = ["A", "B", "C"]


def write_predictions(path: Path, peaks: Sequence[str], obs: np.ndarray, pred: np.ndarray) -> Path:
    """A ``predictions_test.npz`` over the cell types of :data:`CT`."""
    np.savez(
        path,
        peak_id=np.array(peaks, dtype=str),
        targets=np.array(CT["celltype"], dtype=str),
        acc_pred=np.asarray(pred, dtype=np.float32),
        acc_obs=np.asarray(obs, dtype=np.float32),
    )
    return path


def run_chain(
    tmp: Path,
    files: Mapping[str, Sequence[Path]],
    names: Mapping[str, str],
    *,
    n_sequences: int,
    **cluster_options,
) -> dict:
    """DeepSHAP for every role in ``names`` (model ``tmp/{role}.pt``, first predictions file),
    then seqlets, clusters and motif insertion (reference vs profile) under ``tmp``.

    Expects ``tmp/seq.npy``, ``tmp/ocrs.tsv`` and ``tmp/regions.tsv``; returns the attribution
    paths, convergence deltas, seqlet, cluster and insertion tables.
    """
    deltas = {}
    for role in names:
        out = interp.run_attributions(
            model_path=tmp / f"{role}.pt",
            predictions_path=files[role][0],
            regions_tsv=tmp / "regions.tsv",
            seq_path=tmp / "seq.npy",
            ocrs_path=tmp / "ocrs.tsv",
            celltypes=CT,
            lineages=LINEAGES,
            out_npz=tmp / f"attr_{role}.npz",
            n_shuffles=3,
            seed=0,
        )
        deltas[role] = out["max_abs_delta"]
    attrs = {role: tmp / f"attr_{role}.npz" for role in names}
    seqlets = interp.run_seqlets(attrs, names, tmp / "seqlets.tsv")
    clusters = interp.run_clusters(
        seqlets_tsv=tmp / "seqlets.tsv",
        attributions=attrs,
        model_names=names,
        out_seqlets=tmp / "seqlet_clusters.tsv",
        out_clusters=tmp / "clusters.tsv",
        out_meme=tmp / "clusters.meme",
        out_cwms=tmp / "cwms.npz",
        **cluster_options,
    )
    compared = ("reference", "profile")
    stats_table = interp.run_insertion(
        clusters_tsv=tmp / "clusters.tsv",
        models={r: tmp / f"{r}.pt" for r in compared},
        predictions={r: files[r][0] for r in compared},
        model_names=names,
        seq_path=tmp / "seq.npy",
        celltypes=CT,
        lineages=LINEAGES,
        out_effects=tmp / "effects.tsv",
        out_stats=tmp / "stats.tsv",
        out_footprints=tmp / "footprints.npz",
        n_sequences=n_sequences,
        seed=0,
    )
    return {
        "attrs": attrs,
        "deltas": deltas,
        "seqlets": seqlets,
        "clusters": clusters,
        "stats": stats_table,
    }
