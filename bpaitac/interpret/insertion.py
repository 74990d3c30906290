"""Motif insertion and deep footprints (paper Methods, Figures 3c, 3d): step 6 of the
interpretation, rule ``interpret_insertion``.

Each chosen cluster motif's consensus is inserted at the centre of dinucleotide-shuffled test
sequences (tangermeme ``marginalize``): the predicted accessibility change per lineage for both
models, with a Wilcoxon rank-sum test between models, and deep footprints (profile
predictions without bias: median and IQR with vs without the motif).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import stats

from bpaitac.data.sequence import one_hot
from bpaitac.evaluate.metrics import load_predictions
from bpaitac.interpret.attribution import lineage_task_matrix
from bpaitac.interpret.tables import read_tsv, save_npz, save_tsv
from bpaitac.io import InputError
from bpaitac.workflow.interpret_paths import ROLES

log = logging.getLogger(__name__)

QUANTILES = (0.25, 0.5, 0.75)
"""Quantiles of the deep footprints over the shuffled sequences (IQR and median)."""


def shuffled_backgrounds(seqs: np.ndarray, n: int, seed: int) -> torch.Tensor:
    """``n`` dinucleotide-shuffled test sequences, one-hot (n, 4, L), seeded.

    Sequences without N are preferred; they are drawn with replacement when fewer than ``n``
    exist, each copy shuffled with its own seed.
    """
    from tangermeme.ersatz import dinucleotide_shuffle

    seqs = np.asarray(seqs)
    clean = np.flatnonzero((seqs < 4).all(axis=1))
    pool = clean if len(clean) else np.arange(len(seqs))
    if len(pool) == 0:
        raise InputError("no test sequences to shuffle for motif insertion.")
    rng = np.random.default_rng(seed)
    idx = rng.choice(pool, size=n, replace=len(pool) < n)
    x = torch.from_numpy(one_hot(seqs[np.sort(idx)]))
    seeds = [int(seed) + i for i in range(n)]
    return dinucleotide_shuffle(x, n=1, random_state=seeds, allow_N=not len(clean))[:, 0]


def insertion_effects(
    model: torch.nn.Module,
    background: torch.Tensor,
    motif: str,
    task_matrix: np.ndarray,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> dict[str, np.ndarray]:
    """Insert ``motif`` at the centre of every background sequence (tangermeme marginalize).

    Returns ``delta`` (n, K): change of the predicted log-accessibility averaged over each
    lineage's tasks; ``before`` / ``after`` (n, K + 1, P): profile predictions with the bias
    set to zero (softmax of the logits without bias), averaged over the tasks of each lineage
    and (last) over all tasks.
    """
    from tangermeme.marginalize import marginalize

    from bpaitac.model.network import resolve_device

    device = str(resolve_device(device))  # cpu, cuda or auto -> what tangermeme moves to
    y_before, y_after = marginalize(
        model.eval(), background, motif, batch_size=batch_size, device=device
    )
    w = torch.as_tensor(task_matrix, dtype=torch.float32)
    w_mean = w / w.sum(0, keepdim=True)
    delta = (y_after[1].float() - y_before[1].float()) @ w_mean

    def lineage_profiles(logits: torch.Tensor) -> np.ndarray:
        probs = torch.softmax(logits.float(), dim=-1)  # (n, T, P)
        per_lin = torch.einsum("ntp,tk->nkp", probs, w_mean)
        return torch.cat([per_lin, probs.mean(1, keepdim=True)], dim=1).numpy()

    return {
        "delta": delta.numpy(),
        "before": lineage_profiles(y_before[0]),
        "after": lineage_profiles(y_after[0]),
    }


def profile_quantiles(profiles: np.ndarray) -> np.ndarray:
    """25/50/75% quantiles over sequences of (n, K + 1, P) profiles -> (3, K + 1, P)."""
    return np.quantile(profiles, QUANTILES, axis=0).astype(np.float32)


def effect_tests(effects: pd.DataFrame) -> pd.DataFrame:
    """Per motif and lineage: effect medians of both models and the Wilcoxon rank-sum test.

    ``effects`` has ``motif``, ``role``, ``lineage``, ``delta``; q-values are
    Benjamini-Hochberg over all motif x lineage tests.
    """
    rows = []
    for (motif, lin), grp in effects.groupby(["motif", "lineage"], sort=False):
        a = grp.loc[grp["role"] == "profile", "delta"].to_numpy()
        b = grp.loc[grp["role"] == "reference", "delta"].to_numpy()
        res = stats.ranksums(a, b)
        rows.append(
            {
                "motif": motif,
                "lineage": lin,
                "median_profile": float(np.median(a)),
                "median_reference": float(np.median(b)),
                "mean_profile": float(np.mean(a)),
                "mean_reference": float(np.mean(b)),
                "statistic": float(res.statistic),
                "p_value": float(res.pvalue),
            }
        )
    cols = [
        "motif",
        "lineage",
        "median_profile",
        "median_reference",
        "mean_profile",
        "mean_reference",
        "statistic",
        "p_value",
    ]
    out = pd.DataFrame(rows, columns=cols)
    out["q_value"] = (
        stats.false_discovery_control(out["p_value"].fillna(1.0), method="bh") if len(out) else []
    )
    return out


def _task_matrix_for(
    predictions_path: str | os.PathLike, celltypes: pd.DataFrame, lineages: Sequence[str]
) -> np.ndarray:
    pred = load_predictions(predictions_path)
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    return lineage_task_matrix(pred.targets, lineage_of, lineages)


def insert_motifs(
    motifs: Mapping[str, str],
    models: Mapping[str, str | os.PathLike],
    predictions: Mapping[str, str | os.PathLike],
    background: torch.Tensor,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    *,
    batch_size: int,
    device: str,
) -> tuple[pd.DataFrame, dict[str, dict[str, dict[str, np.ndarray]]]]:
    """Insert every motif (name -> sequence) with every model (role -> model.pt).

    Returns the long effect table (``motif``, ``role``, ``lineage``, ``sequence``, ``delta``) and
    ``profiles[role][motif]`` = {"before", "after"} quantiles (3, K + 1, P).
    """
    from bpaitac.model.network import load_model

    tables, profiles = [], {}
    n = background.shape[0]
    for role, path in models.items():
        model, _ = load_model(path, device)
        tasks = _task_matrix_for(predictions[role], celltypes, lineages)
        profiles[role] = {}
        for name, motif in motifs.items():
            res = insertion_effects(
                model, background, motif, tasks, batch_size=batch_size, device=device
            )
            long = pd.DataFrame(res["delta"], columns=list(lineages))
            long["sequence"] = np.arange(n)
            long = long.melt(id_vars="sequence", var_name="lineage", value_name="delta")
            long.insert(0, "role", role)
            long.insert(0, "motif", name)
            tables.append(long)
            profiles[role][name] = {
                "before": profile_quantiles(res["before"]),
                "after": profile_quantiles(res["after"]),
            }
            log.info("%s in %s: mean effect %.3g", name, role, float(res["delta"].mean()))
    cols = ["motif", "role", "lineage", "sequence", "delta"]
    effects = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=cols)
    return effects[cols], profiles


def run_insertion(
    *,
    clusters_tsv: str | os.PathLike,
    models: Mapping[str, str | os.PathLike],
    predictions: Mapping[str, str | os.PathLike],
    model_names: Mapping[str, str],
    seq_path: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    out_effects: str | os.PathLike,
    out_stats: str | os.PathLike,
    out_footprints: str | os.PathLike,
    n_sequences: int,
    seed: int,
    batch_size: int,
    device: str,
) -> pd.DataFrame:
    """Insert the chosen cluster motifs into shuffled test sequences (Figures 3c, 3d)."""
    clusters = read_tsv(clusters_tsv, ["cluster", "motif", "consensus", "insert"])
    chosen = clusters[clusters["insert"].astype(str).str.lower() == "true"]
    motifs = dict(zip(chosen["motif"], chosen["consensus"]))
    background = shuffled_backgrounds(np.load(seq_path, mmap_mode="r"), n_sequences, seed)
    roles = {r: models[r] for r in ROLES}
    effects, profiles = insert_motifs(
        motifs,
        roles,
        predictions,
        background,
        celltypes,
        lineages,
        batch_size=batch_size,
        device=device,
    )
    effects.insert(2, "model", effects["role"].map(model_names))
    tests = effect_tests(effects)
    names = list(motifs)
    if names:
        stack = np.stack(
            [
                np.stack(
                    [np.stack([profiles[r][m]["before"], profiles[r][m]["after"]]) for m in names]
                )
                for r in ROLES
            ]
        )
    else:
        stack = np.zeros((len(ROLES), 0, 2, len(QUANTILES), len(lineages) + 1, 0), np.float32)
    save_tsv(out_effects, effects)
    save_tsv(out_stats, tests)
    save_npz(
        out_footprints,
        profiles=stack,
        roles=np.asarray(ROLES, dtype=str),
        models=np.asarray([model_names[r] for r in ROLES], dtype=str),
        motifs=np.asarray(names, dtype=str),
        consensus=np.asarray([motifs[m] for m in names], dtype=str),
        conditions=np.asarray(["without", "with"], dtype=str),
        quantiles=np.asarray(QUANTILES),
        lineages=np.asarray([*lineages, "all"], dtype=str),
    )
    return tests
