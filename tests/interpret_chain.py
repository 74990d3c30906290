"""Shared by the interpretation tests: the cell-type table, the `interpret:` config defaults
(from the schema, the only place they live) and the chain of pipeline functions
(attributions -> seqlets -> clusters -> motif insertion) run on saved models and predictions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bpaitac.interpret.attribution import run_attributions
from bpaitac.interpret.clusters import run_clusters
from bpaitac.interpret.figures import FigureContext
from bpaitac.interpret.insertion import run_insertion
from bpaitac.interpret.regions import RegionCriteria
from bpaitac.interpret.seqlets import run_seqlets
from bpaitac.workflow.config import validate_config

CT = pd.DataFrame(
    {
        "celltype": ["a1", "a2", "b1", "b2", "c1", "c2"],
        "lineage": ["A", "A", "B", "B", "C", "C"],
        "organ": "x",
    }
)
LINEAGES = ["A", "B", "C"]
BATCH_SIZE = 64
"""Batch size of DeepSHAP and insertion in these tests (the functions' default before the
schema held the only defaults)."""


def interpret_block(block: dict) -> dict:
    """The `interpret:` block as the workflow sees it (validated, defaults filled)."""
    base = {"dataset": "x", "source": "simulate", "celltypes": "c.tsv", "interpret": block}
    return validate_config(base)["interpret"]


DEFAULTS = interpret_block({})
"""The schema's `interpret:` defaults."""


def tomtom_options(**overrides) -> dict:
    """Keyword arguments of run_tomtom / run_truth from the schema's `interpret.tomtom`."""
    cfg = {**DEFAULTS["tomtom"], **overrides}
    release = cfg.pop("jaspar_release")
    return {"release": release, **cfg}


def criteria(**overrides) -> RegionCriteria:
    """Region criteria: the schema's `interpret.regions` defaults with ``overrides``."""
    return RegionCriteria.from_config({**DEFAULTS["regions"], **overrides})


def figure_context(names: Mapping[str, str], **overrides) -> FigureContext:
    """Figure context: the schema's `interpret.figures` defaults with ``overrides``."""
    return FigureContext.from_config({**DEFAULTS["figures"], **overrides}, names, LINEAGES)


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
    max_motifs: int,
    **cluster_options,
) -> dict:
    """DeepSHAP for every role in ``names`` (model ``tmp/{role}.pt``, first predictions file),
    then seqlets, clusters and motif insertion (reference vs profile) under ``tmp``, with the
    schema's defaults; ``cluster_options`` override those of `interpret.clustering`.

    Expects ``tmp/seq.npy``, ``tmp/ocrs.tsv`` and ``tmp/regions.tsv``; returns the attribution
    paths, convergence deltas, seqlet, cluster and insertion tables.
    """
    deltas = {}
    for role in names:
        out = run_attributions(
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
            batch_size=BATCH_SIZE,
            device="cpu",
            warning_threshold=DEFAULTS["deepshap"]["warning_threshold"],
        )
        deltas[role] = out["max_abs_delta"]
    attrs = {role: tmp / f"attr_{role}.npz" for role in names}
    seqlets = run_seqlets(attrs, names, tmp / "seqlets.tsv", **DEFAULTS["seqlets"])
    clusters = run_clusters(
        seqlets_tsv=tmp / "seqlets.tsv",
        attributions=attrs,
        model_names=names,
        out_seqlets=tmp / "seqlet_clusters.tsv",
        out_clusters=tmp / "clusters.tsv",
        out_meme=tmp / "clusters.meme",
        out_cwms=tmp / "cwms.npz",
        max_motifs=max_motifs,
        **{**DEFAULTS["clustering"], **cluster_options},
    )
    compared = ("reference", "profile")
    stats_table = run_insertion(
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
        batch_size=BATCH_SIZE,
        device="cpu",
    )
    return {
        "attrs": attrs,
        "deltas": deltas,
        "seqlets": seqlets,
        "clusters": clusters,
        "stats": stats_table,
    }
