"""Interpretation of what bpAI-TAC learns beyond AI-TAC (paper Figures 3, S5-S7).

The steps, each one rule of ``workflow/rules/interpret.smk`` and one ``run_*`` function here:

1. :func:`run_regions`: region selection (:mod:`bpaitac.interpret.attribution`), ``regions.tsv``.
2. :func:`run_attributions`: DeepSHAP per lineage for one model, ``attributions/{model}.npz``.
3. :func:`run_seqlets`: seqlets of both models in all lineages, ``seqlets.tsv``.
4. :func:`run_clusters`: clusters, CWMs/PFMs, Fisher enrichment, ``clusters.tsv`` + MEME.
5. :func:`run_tomtom`: cluster motifs vs JASPAR (memelite, pyjaspar), ``tomtom_jaspar.tsv``.
6. :func:`run_insertion`: motif insertion into dinucleotide-shuffled test sequences: predicted
   accessibility change per lineage for both models with a Wilcoxon rank-sum test between
   models, and deep footprints (profile predictions without bias: median and IQR with vs
   without the motif).
7. :func:`run_truth` (simulated data only): planted motifs recovered by the discovered clusters,
   and the correlation of insertion effects with the planted TF activities.
8. ``figure_*``: Figures 3a-d, S5, S6, S7.

Model roles: ``reference`` (AI-TAC, lambda 0), ``profile`` (bpAI-TAC) and, for Figure S7,
``nobias`` (bpAI-TAC trained without the Tn5 bias model), named in config ``interpret:``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from scipy import stats  # noqa: E402
from scipy.cluster.hierarchy import dendrogram, linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from bpaitac.evaluate.metrics import lineage_means, load_predictions  # noqa: E402
from bpaitac.interpret import attribution as attr  # noqa: E402
from bpaitac.interpret import motifs as mot  # noqa: E402
from bpaitac.io import InputError, atomic_path  # noqa: E402
from bpaitac.workflow.interpret_paths import (  # noqa: E402, F401 (re-exported)
    FIGURES,
    attribution_seed,
    interpret_models,
    model_labels,
)

log = logging.getLogger(__name__)

ROLES = ("reference", "profile")
ROLE_COLOURS = {"reference": "#4c72b0", "profile": "#dd8452", "nobias": "#55a868"}
S6_COLOURS = {"reference": "0.6", "profile": "#8172b3"}

# --------------------------------------------------------------------------------------------
# Small I/O helpers


def _save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write arrays atomically; object (string) arrays are stored as fixed-width str."""
    fixed = {
        k: v.astype(str) if isinstance(v, np.ndarray) and v.dtype == object else v
        for k, v in arrays.items()
    }
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **fixed)


def _save_tsv(path: str | os.PathLike, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def read_tsv(path: str | os.PathLike, required: Sequence[str] = ()) -> pd.DataFrame:
    """Read a TSV written by this module; raise naming the missing columns."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: not found; run the rule that writes it.")
    table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["", "NaN", "nan"])
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; rerun the rule that writes it.")
    return table


def load_test_split(seq_path: str | os.PathLike, ocrs_path: str | os.PathLike):
    """Test sequences (N, L) uint8 and their peak IDs (the order of ``ocrs.tsv``)."""
    seqs = np.load(seq_path, mmap_mode="r")
    ocrs = pd.read_csv(ocrs_path, sep="\t", dtype={"peak_id": str})
    if "peak_id" not in ocrs.columns or len(ocrs) != len(seqs):
        raise InputError(
            f"{ocrs_path}: needs a peak_id column with one row per sequence of {seq_path} "
            f"({len(seqs)}); rerun the preprocessing."
        )
    return seqs, ocrs["peak_id"].astype(str).to_numpy()


def load_attributions(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """An attribution ``.npz`` of :func:`run_attributions` as a dict of arrays."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: attributions not found; run interpret_attributions.")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def onehot_np(seqs: np.ndarray) -> np.ndarray:
    """Base indices (N, L) -> float32 one-hot (N, 4, L); N is all zeros."""
    table = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])
    return np.ascontiguousarray(table[np.asarray(seqs, dtype=np.int64)].transpose(0, 2, 1))


# --------------------------------------------------------------------------------------------
# 1. Regions


def run_regions(
    reference_predictions: Sequence[str | os.PathLike],
    profile_predictions: Sequence[str | os.PathLike],
    criteria: attr.RegionCriteria,
    out_tsv: str | os.PathLike,
    lineage_of: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Region table of all test OCRs with the selection (Figure 3a); ``lineage_of`` maps
    cell types to lineages (the ``top_lineage`` column and lineage-stratified selection)."""
    ref = [load_predictions(p) for p in reference_predictions]
    prof = [load_predictions(p) for p in profile_predictions]
    order = prof[0].peak_id
    ref = attr.align_predictions(ref, order)
    prof = attr.align_predictions(prof, order)
    table = attr.region_table(ref, prof, criteria, lineage_of)
    _save_tsv(out_tsv, table)
    return table


# --------------------------------------------------------------------------------------------
# 2. Attributions


def run_attributions(
    *,
    model_path: str | os.PathLike,
    predictions_path: str | os.PathLike,
    regions_tsv: str | os.PathLike,
    seq_path: str | os.PathLike,
    ocrs_path: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    out_npz: str | os.PathLike,
    n_shuffles: int,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
    warning_threshold: float = 1e-3,
) -> dict[str, Any]:
    """DeepSHAP of the accessibility head summed per lineage for the selected regions."""
    from bpaitac.model.network import load_model

    regions = attr.selected_regions(read_tsv(regions_tsv, ["peak_id", "selected", "rank"]))
    seqs, peak_ids = load_test_split(seq_path, ocrs_path)
    rows = pd.Index(peak_ids).get_indexer(regions["peak_id"].astype(str))
    if (rows < 0).any():
        raise InputError(f"{regions_tsv}: selected OCRs missing from {ocrs_path}; rerun regions.")
    pred = load_predictions(predictions_path)
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    tasks = attr.lineage_task_matrix(pred.targets, lineage_of, lineages)
    model, _ = load_model(model_path, device)
    if model.spec.n_tasks != len(pred.targets):
        raise InputError(
            f"{model_path} has {model.spec.n_tasks} tasks but {predictions_path} "
            f"{len(pred.targets)} targets; rerun the prediction of this model."
        )
    sel = np.asarray(seqs[rows])
    x = torch.from_numpy(onehot_np(sel))
    wrapper = attr.LineageAccessibility(model, tasks)
    res = attr.deep_shap(
        wrapper,
        x,
        n_shuffles=n_shuffles,
        seed=seed,
        batch_size=batch_size,
        device=device,
        warning_threshold=warning_threshold,
    )
    max_delta = float(np.abs(res.deltas).max()) if res.deltas.size else 0.0
    spread = float(np.abs(res.output).mean()) if res.output.size else 0.0
    log.info(
        "%s: %d regions x %d lineages, %d shuffles; max |convergence delta| %.3g "
        "(mean |output| %.3g); %d tangermeme convergence warnings",
        model_path,
        len(rows),
        len(lineages),
        n_shuffles,
        max_delta,
        spread,
        res.n_warnings,
    )
    if max_delta > warning_threshold:
        log.warning(
            "max |convergence delta| %.3g exceeds interpret.deepshap.warning_threshold %.3g",
            max_delta,
            warning_threshold,
        )
    prow = pd.Index(pred.peak_id).get_indexer(regions["peak_id"].astype(str))
    if (prow < 0).any():
        raise InputError(f"{predictions_path}: lacks selected OCRs; rerun its prediction.")
    pred_lin, names = lineage_means(pred.acc_pred[prow], pred.targets, lineage_of, lineages)
    obs_lin, _ = lineage_means(pred.acc_obs[prow], pred.targets, lineage_of, lineages)
    idx = [names.index(lin) for lin in lineages]
    _save_npz(
        out_npz,
        peak_id=regions["peak_id"].astype(str).to_numpy(),
        lineages=np.asarray(lineages, dtype=str),
        seq=sel.astype(np.uint8),
        hypothetical=res.hypothetical,
        deltas=res.deltas,
        output=res.output,
        pred_lineage=pred_lin[:, idx].astype(np.float32),
        obs_lineage=obs_lin[:, idx].astype(np.float32),
        max_abs_delta=np.float32(max_delta),
        n_warnings=np.int64(res.n_warnings),
        n_shuffles=np.int64(n_shuffles),
    )
    return {"max_abs_delta": max_delta, "n_warnings": res.n_warnings, "n_regions": len(rows)}


# --------------------------------------------------------------------------------------------
# 3. Seqlets


def projected_per_position(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """Attribution of the base present per position (N, K, L) from an attribution npz."""
    onehot = onehot_np(data["seq"])
    return (data["hypothetical"] * onehot[:, None]).sum(axis=2)


def run_seqlets(
    attributions: Mapping[str, str | os.PathLike],
    model_names: Mapping[str, str],
    out_tsv: str | os.PathLike,
    *,
    z: float = 1.96,
    min_bases: int = 4,
    max_gap: int = 1,
) -> pd.DataFrame:
    """Seqlets of the reference and profile models in all lineages (one table)."""
    tables = []
    peaks = None
    for role in ROLES:
        data = load_attributions(attributions[role])
        if peaks is not None and not np.array_equal(peaks, data["peak_id"]):
            raise InputError("attributions of the two models cover different regions; rerun them.")
        peaks = data["peak_id"]
        table = attr.seqlets_for_model(
            model_names[role],
            projected_per_position(data),
            data["seq"],
            list(data["peak_id"]),
            list(data["lineages"]),
            z=z,
            min_bases=min_bases,
            max_gap=max_gap,
        )
        table.insert(0, "role", role)
        tables.append(table)
        log.info("%s: %d seqlets", model_names[role], len(table))
    out = pd.concat(tables, ignore_index=True)
    out.insert(0, "seqlet", np.arange(len(out)))
    _save_tsv(out_tsv, out)
    return out


# --------------------------------------------------------------------------------------------
# 4. Clusters


def choose_insertions(table: pd.DataFrame, fdr: float, max_motifs: int) -> pd.DataFrame:
    """Mark clusters to insert: enriched ones (q < ``fdr``), best first, at most ``max_motifs``.

    Without any enriched cluster, the tested clusters with profile-model seqlets and the
    smallest Fisher p-values are taken, with a warning; ``insert_reason`` records which.
    """
    table = table.copy()
    table["insert"] = False
    table["insert_reason"] = ""
    enriched = table[table["tested"] & (table["q_value"] < fdr)]
    if len(enriched):
        chosen = enriched.sort_values(["q_value", "odds_ratio"], ascending=[True, False]).index
        table.loc[chosen[:max_motifs], "insert_reason"] = "enriched"
    else:
        pool = table[table["tested"] & (table["n_profile"] > 0)]
        chosen = pool.sort_values(["p_value", "n_seqlets"], ascending=[True, False]).index
        if len(chosen):
            log.warning(
                "no cluster is enriched in profile-model seqlets at q < %g; inserting the %d "
                "tested clusters with the smallest Fisher p-values instead",
                fdr,
                min(max_motifs, len(chosen)),
            )
        table.loc[chosen[:max_motifs], "insert_reason"] = "fallback_top_p"
    table["insert"] = table["insert_reason"] != ""
    return table


def run_clusters(
    *,
    seqlets_tsv: str | os.PathLike,
    attributions: Mapping[str, str | os.PathLike],
    model_names: Mapping[str, str],
    out_seqlets: str | os.PathLike,
    out_clusters: str | os.PathLike,
    out_meme: str | os.PathLike,
    out_cwms: str | os.PathLike,
    p_threshold: float = 0.05,
    min_overlap: int = 5,
    flank: int = 2,
    min_cluster_size: int = 3,
    trim: float = 0.3,
    fdr: float = 0.05,
    max_insert: int = 5,
    max_seqlets: int = 5000,
    seed: int = 0,
) -> pd.DataFrame:
    """Cluster the seqlets of both models; write memberships, cluster table, MEME and CWMs.

    Above ``max_seqlets`` seqlets a seeded sample is clustered and the rest assigned to its
    clusters (:func:`bpaitac.interpret.motifs.cluster_seqlets`); ``sampled`` in the membership table
    marks the clustered seqlets and ``cluster`` -1 the unassigned ones.
    """
    seqlets = read_tsv(
        seqlets_tsv, ["seqlet", "role", "model", "lineage", "example", "start", "end"]
    )
    data = {role: load_attributions(attributions[role]) for role in ROLES}
    lineages = list(data["profile"]["lineages"])
    lin_index = {lin: k for k, lin in enumerate(lineages)}
    hyp = {role: d["hypothetical"] for role, d in data.items()}
    onehot = onehot_np(data["profile"]["seq"])
    mats = []
    for role in ROLES:
        part = seqlets[seqlets["role"] == role]
        mats.extend(mot.seqlet_windows(hyp[role], part, flank, lin_index))
    seqlets = pd.concat([seqlets[seqlets["role"] == r] for r in ROLES], ignore_index=True)
    if len(seqlets) == 0:
        raise InputError(
            f"{seqlets_tsv}: no seqlets in either model; lower interpret.seqlets.z or select "
            "more regions."
        )
    labels, sample, log10p = mot.cluster_seqlets(
        mats,
        p_threshold=p_threshold,
        min_overlap=min_overlap,
        max_seqlets=max_seqlets,
        min_cluster_size=min_cluster_size,
        seed=seed,
    )
    seqlets["cluster"] = labels
    seqlets["sampled"] = np.isin(np.arange(len(seqlets)), sample)
    sample_pos = {int(i): k for k, i in enumerate(sample)}
    enr = mot.cluster_enrichment(seqlets["cluster"], seqlets["role"], "profile", "reference")
    sizes = seqlets["cluster"].value_counts()
    enr["n_seqlets"] = enr["cluster"].map(sizes).astype(int)
    enr["tested"] = enr["n_seqlets"] >= min_cluster_size
    tested = enr["tested"].to_numpy()
    enr["q_value"] = np.nan
    if tested.any():
        enr.loc[tested, "q_value"] = stats.false_discovery_control(
            enr.loc[tested, "p_value"].to_numpy(), method="bh"
        )
    rows, pfms, cwms = [], {}, {}
    hyp_by_role = {role: hyp[role] for role in ROLES}
    for c in enr.loc[tested, "cluster"]:
        members = seqlets[seqlets["cluster"] == c].rename(columns={"role": "model_role"})
        members = members.assign(model=members["model_role"])
        motif = mot.cluster_motif(
            members[["model", "example", "lineage", "start", "end"]],
            hyp_by_role,
            onehot,
            lin_index,
            flank=flank,
            min_overlap=min_overlap,
            trim=trim,
            medoid=_sampled_medoid(members.index, sample_pos, log10p),
        )
        name = f"cluster_{c}"
        pfms[name], cwms[name] = motif["pfm"], motif["cwm"]
        rows.append(
            {
                "cluster": c,
                "motif": name,
                "consensus": motif["consensus"],
                "width": motif["pfm"].shape[1],
                "medoid_seqlet": int(seqlets.loc[motif["medoid"], "seqlet"]),
                "lineages_profile": ",".join(
                    sorted(set(members.loc[members["model_role"] == "profile", "lineage"]))
                ),
                "lineages_reference": ",".join(
                    sorted(set(members.loc[members["model_role"] == "reference", "lineage"]))
                ),
            }
        )
    motifs_table = pd.DataFrame(
        rows,
        columns=[
            "cluster",
            "motif",
            "consensus",
            "width",
            "medoid_seqlet",
            "lineages_profile",
            "lineages_reference",
        ],
    )
    table = enr.merge(motifs_table, on="cluster", how="left")
    table["enriched"] = table["tested"] & (table["q_value"] < fdr)
    table = choose_insertions(table, fdr, max_insert)
    table["profile_model"] = model_names["profile"]
    table["reference_model"] = model_names["reference"]
    log.info(
        "%d seqlets -> %d clusters, %d with >= %d seqlets, %d enriched in %s (q < %g)",
        len(seqlets),
        len(enr),
        int(tested.sum()),
        min_cluster_size,
        int(table["enriched"].sum()),
        model_names["profile"],
        fdr,
    )
    _save_tsv(out_seqlets, seqlets)
    _save_tsv(out_clusters, table)
    mot.write_meme(out_meme, pfms)
    _save_npz(out_cwms, **cwms)
    return table


def _sampled_medoid(members: pd.Index, sample_pos: Mapping[int, int], log10p: np.ndarray) -> int:
    """Position in ``members`` of the clustered (sampled) member with the least summed
    alignment p-value to the other sampled members."""
    positions = [k for k, i in enumerate(members) if int(i) in sample_pos]
    rows = [sample_pos[int(members[k])] for k in positions]
    return positions[mot.medoid_index(log10p[np.ix_(rows, rows)])]


# --------------------------------------------------------------------------------------------
# 5. TomTom


def run_tomtom(
    meme_path: str | os.PathLike,
    out_tsv: str | os.PathLike,
    *,
    release: str,
    q_threshold: float = 0.05,
    min_ic: float = 1.0,
    min_width: int = 4,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """TomTom of the cluster motifs against JASPAR CORE vertebrates of ``release``."""
    queries = mot.read_meme(meme_path)
    targets, names = mot.jaspar_motifs(release)
    table = mot.tomtom_table(
        queries,
        targets,
        names,
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
    )
    log.info(
        "%d of %d cluster motifs match %s at q < %g",
        table["query"].nunique(),
        len(queries),
        release,
        q_threshold,
    )
    _save_tsv(out_tsv, table)
    return table


# --------------------------------------------------------------------------------------------
# 6. Motif insertion and deep footprints


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
    x = torch.from_numpy(onehot_np(seqs[np.sort(idx)]))
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


QUANTILES = (0.25, 0.5, 0.75)


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
    return attr.lineage_task_matrix(pred.targets, lineage_of, lineages)


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
    batch_size: int = 64,
    device: str = "cpu",
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
    _save_tsv(out_effects, effects)
    _save_tsv(out_stats, tests)
    _save_npz(
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


# --------------------------------------------------------------------------------------------
# 7. Truth recovery (simulated data)


def read_activity(
    path: str | os.PathLike, celltypes: pd.DataFrame, lineages: Sequence[str]
) -> pd.DataFrame:
    """Planted TF activity (TF x cell type TSV, first column the TF) -> TF x lineage means."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: planted activities not found; run the simulator.")
    table = pd.read_csv(path, sep="\t", index_col=0)
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    cols = [c for c in table.columns if c in lineage_of]
    if not cols:
        cols = [c for c in table.columns if c in lineages]
        if not cols:
            raise InputError(
                f"{path}: no column is a cell type or lineage in use; expected TF x cell type."
            )
        return table[cols].reindex(columns=list(lineages)).astype(float)
    means = table[cols].T.groupby([lineage_of[c] for c in cols]).mean().T
    return means.reindex(columns=list(lineages)).astype(float)


def planted_name_map(names: Sequence[str], activity_index: Sequence[str]) -> dict[str, str]:
    """MEME motif name -> activity row: a MOTIF-line word equal (case-insensitively) to a row."""
    rows = {str(r).upper(): str(r) for r in activity_index}
    out = {}
    for name in names:
        for word in str(name).replace("/", " ").split():
            if word.upper() in rows:
                out[name] = rows[word.upper()]
                break
    return out


def truth_recovery(
    clusters: pd.DataFrame,
    matches: pd.DataFrame,
    planted: Sequence[str],
    activity: pd.DataFrame,
    name_map: Mapping[str, str],
    planted_effects: pd.DataFrame,
    cluster_effects: pd.DataFrame | None = None,
    site_effects: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per planted motif: recovery by the clusters and insertion-activity correlation.

    ``matches`` is a TomTom table of cluster motifs (``query``) against targets that include
    the planted motifs (``target`` = planted name) at the q threshold. ``planted_effects``
    (``motif``, ``role``, ``lineage``, ``delta``) are effects of inserting each planted motif's
    consensus; ``cluster_effects`` those of the inserted cluster motifs. ``site_effects``
    (activity row x lineage, :func:`planted_site_effects`) is what one consensus site adds in
    the simulator; the insertion effects are also correlated with it (``r_*site_effect*``).
    """
    by_motif = _tested(clusters).set_index("motif")
    rows = []
    for name in planted:
        hits = _planted_hits(matches, by_motif.index, name)
        n_prof = int(by_motif.loc[hits["query"], "n_profile"].sum()) if len(hits) else 0
        n_ref = int(by_motif.loc[hits["query"], "n_reference"].sum()) if len(hits) else 0
        by = {(True, True): "both", (True, False): "profile", (False, True): "reference"}
        row = {
            "planted_motif": name,
            "activity_row": name_map.get(name, ""),
            "recovered": bool(len(hits)),
            "best_cluster": hits["query"].iloc[0] if len(hits) else "",
            "best_q_value": float(hits["q_value"].iloc[0]) if len(hits) else np.nan,
            "matching_clusters": ",".join(hits["query"]),
            "n_profile_seqlets": n_prof,
            "n_reference_seqlets": n_ref,
            "recovered_by": by.get((n_prof > 0, n_ref > 0), "none"),
        }
        act = activity.loc[name_map[name]] if name in name_map else None
        truths = {"activity": act}
        if site_effects is not None:
            site = site_effects.loc[name_map[name]] if name in name_map else None
            truths["site_effect"] = site
            row["r_site_effect_activity"] = _pearson_over_lineages(site, act)
        for truth, values in truths.items():
            for role in ROLES:
                row[f"r_{truth}_{role}"] = _effect_activity_r(planted_effects, name, role, values)
                row[f"r_cluster_{truth}_{role}"] = (
                    _effect_activity_r(cluster_effects, row["best_cluster"], role, values)
                    if cluster_effects is not None and row["best_cluster"]
                    else np.nan
                )
        rows.append(row)
    return pd.DataFrame(rows)


def _tested(clusters: pd.DataFrame) -> pd.DataFrame:
    """The clusters tested for enrichment (``tested`` true)."""
    return clusters[clusters["tested"].astype(str).str.lower() == "true"]


def _planted_hits(matches: pd.DataFrame, motifs: pd.Index, planted: str) -> pd.DataFrame:
    """TomTom matches of the cluster motifs ``motifs`` to one planted motif, best q first."""
    hits = matches[matches["target"] == planted].sort_values("q_value")
    return hits[hits["query"].isin(motifs)]


def _effect_activity_r(
    effects: pd.DataFrame, motif: str, role: str, activity: pd.Series | None
) -> float:
    """Pearson R over lineages of the mean insertion effect with a planted per-lineage value."""
    if activity is None:
        return np.nan
    sub = effects[(effects["motif"] == motif) & (effects["role"] == role)]
    if sub.empty:
        return np.nan
    return _pearson_over_lineages(sub.groupby("lineage")["delta"].mean(), activity)


def _pearson_over_lineages(a: pd.Series | None, b: pd.Series | None) -> float:
    """Pearson R of two per-lineage series over the lineages both have (NaN below 3)."""
    if a is None or b is None:
        return np.nan
    a = a.reindex(b.index)
    ok = a.notna() & b.notna()
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return np.nan
    return float(stats.pearsonr(a[ok], b[ok]).statistic)


def planted_site_effects(
    ppms: Mapping[str, np.ndarray],
    name_map: Mapping[str, str],
    activity_tsv: str | os.PathLike,
    effects_tsv: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
) -> pd.DataFrame:
    """What one site with the consensus of each planted motif adds to accessibility in the
    simulator, averaged per lineage (activity row x lineage).

    Per cell type it is ``e_TF,c * expit(log a_TF,c + s_consensus - s_ref)`` (docs/simulation.md,
    steps 5-6): the cell type's effect of a bound site times the consensus site's occupancy.
    Occupancy saturates and ``e_TF,c`` has its own cell-type noise, so this, not the activity
    alone, is what a perfect model's insertion effect follows.
    """
    from scipy.special import expit

    from bpaitac.simulate.motifs import expected_score, log_odds

    activity = read_tsv(activity_tsv)
    activity = activity.set_index(activity.columns[0])
    effect = read_tsv(effects_tsv)
    effect = effect.set_index(effect.columns[0])
    lineage_of = dict(zip(celltypes["celltype"], celltypes["lineage"]))
    cols = [c for c in activity.columns if c in lineage_of and c in effect.columns]
    if not cols:
        raise InputError(
            f"{effects_tsv}: no column is a cell type in use; expected TF x cell type."
        )
    rows = {}
    for name, ppm in ppms.items():
        tf = name_map.get(name)
        if tf is None or tf not in effect.index:
            continue
        p = (ppm.T + 1e-6) / (ppm.T + 1e-6).sum(axis=1, keepdims=True)  # (w, 4)
        s_consensus = float(log_odds(p).max(axis=1).sum())
        with np.errstate(divide="ignore"):
            log_a = np.log(activity.loc[tf, cols].to_numpy(dtype=float))
        per_celltype = effect.loc[tf, cols].to_numpy(dtype=float) * expit(
            log_a + s_consensus - expected_score(p)
        )
        by_lineage = pd.Series(per_celltype, index=cols).groupby(lineage_of).mean()
        rows[tf] = by_lineage.reindex(list(lineages))
    return pd.DataFrame(rows).T


def run_truth(
    *,
    clusters_tsv: str | os.PathLike,
    clusters_meme: str | os.PathLike,
    effects_tsv: str | os.PathLike,
    truth_meme: str | os.PathLike,
    activity_tsv: str | os.PathLike,
    site_effects_tsv: str | os.PathLike | None = None,
    models: Mapping[str, str | os.PathLike],
    predictions: Mapping[str, str | os.PathLike],
    seq_path: str | os.PathLike,
    celltypes: pd.DataFrame,
    lineages: Sequence[str],
    out_tsv: str | os.PathLike,
    release: str,
    q_threshold: float,
    n_sequences: int,
    min_ic: float = 1.0,
    min_width: int = 4,
    seed: int,
    batch_size: int = 64,
    device: str = "cpu",
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Score the interpretation against the simulator's planted motifs and activities.

    Cluster motifs are compared (TomTom) with the planted PWMs inside the JASPAR target set,
    so that the p-values have a full-size background; a planted motif is recovered when a
    cluster matches it at q < ``q_threshold``.
    """
    clusters = read_tsv(
        clusters_tsv, ["cluster", "motif", "consensus", "tested", "n_profile", "n_reference"]
    )
    queries = mot.read_meme(clusters_meme)
    planted = {f"planted:{k}": v for k, v in _read_meme_full(truth_meme).items()}
    jaspar, names = mot.jaspar_motifs(release)
    targets = {**jaspar, **planted}
    names = {**names, **{k: k.split(":", 1)[1] for k in planted}}
    matches = mot.tomtom_table(
        queries,
        targets,
        names,
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
    )
    activity = read_activity(activity_tsv, celltypes, lineages)
    raw_names = [k.split(":", 1)[1] for k in planted]
    name_map = {f"planted:{k}": v for k, v in planted_name_map(raw_names, activity.index).items()}
    consensus = {k: "".join("ACGT"[i] for i in m.argmax(axis=0)) for k, m in planted.items()}
    background = shuffled_backgrounds(np.load(seq_path, mmap_mode="r"), n_sequences, seed)
    inserted = read_tsv(effects_tsv, ["motif", "role", "lineage", "delta"])
    # Figure 3c inserts only the clusters the paper's rule chooses; every recovered motif's best
    # cluster is inserted here too, so each has an insertion effect to compare with its activity.
    tested = pd.Index(_tested(clusters)["motif"])
    best = {h["query"].iloc[0] for p in planted if len(h := _planted_hits(matches, tested, p))}
    extra = sorted(best - set(inserted["motif"]))
    cluster_consensus = dict(zip(clusters["motif"], clusters["consensus"]))
    effects, _ = insert_motifs(
        {**consensus, **{m: cluster_consensus[m] for m in extra}},
        {r: models[r] for r in ROLES},
        predictions,
        background,
        celltypes,
        lineages,
        batch_size=batch_size,
        device=device,
    )
    planted_effects = effects[effects["motif"].isin(list(consensus))]
    cluster_effects = pd.concat(
        [inserted, effects[effects["motif"].isin(extra)]], ignore_index=True
    )
    site_effects = (
        planted_site_effects(planted, name_map, activity_tsv, site_effects_tsv, celltypes, lineages)
        if site_effects_tsv is not None
        else None
    )
    table = truth_recovery(
        clusters,
        matches,
        list(planted),
        activity,
        name_map,
        planted_effects,
        cluster_effects,
        site_effects,
    )
    table["planted_motif"] = table["planted_motif"].str.replace("planted:", "", regex=False)
    table.insert(1, "consensus", [consensus[f"planted:{m}"] for m in table["planted_motif"]])
    log.info(
        "%d of %d planted motifs recovered (q < %g)",
        int(table["recovered"].sum()),
        len(table),
        q_threshold,
    )
    _save_tsv(out_tsv, table)
    return table


def _read_meme_full(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """MEME file -> {whole MOTIF line (words joined by spaces): (4, w)}."""
    from memelite.io import read_meme

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: planted motifs not found; run the simulator.")
    return dict(read_meme(str(path)))


# --------------------------------------------------------------------------------------------
# 8. Figures


def _style():
    from bpaitac.evaluate.figures import STYLE

    return plt.rc_context(STYLE)


def _names_by_motif(tomtom: pd.DataFrame | None) -> dict[str, str]:
    return {} if tomtom is None or tomtom.empty else mot.best_names(tomtom)


def figure_3a(regions: pd.DataFrame, names: Mapping[str, str]) -> Figure:
    """Per-OCR R across cell types, reference vs profile model; selected regions in yellow."""
    with _style():
        fig, ax = plt.subplots(figsize=(4.2, 4))
        sel = regions["selected"].astype(str).str.lower() == "true"
        ax.scatter(
            regions.loc[~sel, "r_reference_mean"],
            regions.loc[~sel, "r_profile_mean"],
            s=4,
            c="0.6",
            alpha=0.5,
            lw=0,
            label="test OCRs",
        )
        how = regions.loc[sel, "selected_by"].iloc[0] if sel.any() else ""
        label = f"selected (n={int(sel.sum())}{', fallback' if how.startswith('fallback') else ''})"
        ax.scatter(
            regions.loc[sel, "r_reference_mean"],
            regions.loc[sel, "r_profile_mean"],
            s=14,
            c="#f2c80f",
            edgecolors="k",
            linewidths=0.4,
            label=label,
        )
        ax.plot([-1, 1], [-1, 1], c="k", lw=0.6, ls="--")
        ax.set(
            xlim=(-1, 1),
            ylim=(-1, 1),
            xlabel=f"{names['reference']} R (mean over seeds)",
            ylabel=f"{names['profile']} R (mean over seeds)",
            title="Fig. 3a: per-OCR R across cell types",
        )
        ax.legend(loc="lower right", fontsize=7)
    return fig


def _logo_window(tracks: Sequence[np.ndarray], width: int) -> tuple[int, int]:
    """A ``width`` window centred on the largest smoothed |attribution| of (L,) tracks."""
    total = np.sum([np.abs(t) for t in tracks], axis=0)
    length = len(total)
    width = min(width, length)
    smooth = np.convolve(total, np.ones(15) / 15, mode="same")
    centre = int(np.argmax(smooth))
    start = int(np.clip(centre - width // 2, 0, length - width))
    return start, start + width


def _plot_logo(ax, proj: np.ndarray, start: int, end: int, title: str) -> None:
    from tangermeme.plot import plot_logo

    plot_logo(proj[:, start:end], ax=ax)
    ax.set_title(title, fontsize=7, loc="left")
    ax.set_xticks([])
    ax.tick_params(labelsize=6)


def _region_index(data: Mapping[str, np.ndarray], peak: str | None) -> int:
    peaks = list(data["peak_id"])
    if peak is None:
        return 0
    if peak not in peaks:
        raise InputError(
            f"config key `interpret.figures.example_region`: {peak!r} is not a selected region; "
            f"allowed values: {', '.join(peaks[:10])}{' ...' if len(peaks) > 10 else ''}."
        )
    return peaks.index(peak)


def _projected(data: Mapping[str, np.ndarray], i: int) -> np.ndarray:
    """(K, 4, L) attributions of the bases present of region ``i``."""
    return data["hypothetical"][i] * onehot_np(data["seq"][i : i + 1])[0][None]


def figure_attributions(
    data: Mapping[str, Mapping[str, np.ndarray]],
    names: Mapping[str, str],
    *,
    peak: str | None,
    lineages: Sequence[str] | None,
    width: int,
    title: str,
) -> Figure:
    """Attribution logos of one region: rows = lineages, columns = models (Figures 3b, S5).

    Titles give the lineage and ``predicted | observed`` log(1 + accessibility).
    """
    roles = [r for r in ROLES if r in data]
    first = data[roles[0]]
    i = _region_index(first, peak)
    all_lins = list(first["lineages"])
    if lineages is None:
        lineages = all_lins
    proj = {r: _projected(data[r], i) for r in roles}
    ks = [all_lins.index(lin) for lin in lineages]
    start, end = _logo_window([proj[r][k].sum(0) for r in roles for k in ks], width)
    with _style():
        fig, axes = plt.subplots(
            len(ks), len(roles), figsize=(4.5 * len(roles), 1.1 * len(ks) + 0.6), squeeze=False
        )
        for col, role in enumerate(roles):
            d = data[role]
            for row, k in enumerate(ks):
                pred, obs = d["pred_lineage"][i, k], d["obs_lineage"][i, k]
                head = f"{names[role]} | " if row == 0 else ""
                _plot_logo(
                    axes[row, col],
                    proj[role][k],
                    start,
                    end,
                    f"{head}{all_lins[k]}: {pred:.2f} | {obs:.2f}",
                )
        fig.suptitle(f"{title}: {first['peak_id'][i]}, bases {start}-{end}", fontsize=9)
        fig.tight_layout()
    return fig


def figure_3b(data, names, *, peak: str | None, width: int) -> Figure:
    """Three lineages of increasing observed accessibility (low, middle, high), both models."""
    first = data["profile"]
    i = _region_index(first, peak)
    order = np.argsort(first["obs_lineage"][i], kind="stable")
    picks = [order[0], order[len(order) // 2], order[-1]]
    lins = [str(first["lineages"][k]) for k in dict.fromkeys(picks)]
    return figure_attributions(data, names, peak=peak, lineages=lins, width=width, title="Fig. 3b")


def figure_S5(data, names, *, peak: str | None, width: int) -> Figure:
    """All lineages of one region for both models (predicted | observed in the titles)."""
    return figure_attributions(data, names, peak=peak, lineages=None, width=width, title="Fig. S5")


def figure_S7(
    data: Mapping[str, Mapping[str, np.ndarray]],
    names: Mapping[str, str],
    *,
    n_regions: int,
    width: int,
) -> Figure:
    """Accessibility attributions (summed over lineages) with vs without the Tn5 bias model."""
    roles = ["profile", "nobias"]
    n = min(n_regions, len(data["profile"]["peak_id"]))
    with _style():
        fig, axes = plt.subplots(2 * n, 1, figsize=(7, 2.2 * n + 0.4), squeeze=False)
        for j in range(n):
            proj = {r: _projected(data[r], j).sum(0) for r in roles}
            start, end = _logo_window([proj[r].sum(0) for r in roles], width)
            for k, role in enumerate(roles):
                ax = axes[2 * j + k, 0]
                _plot_logo(
                    ax,
                    proj[role],
                    start,
                    end,
                    f"{data[role]['peak_id'][j]} | {names[role]} | bases {start}-{end}",
                )
        fig.suptitle(
            "Fig. S7: attributions with (top) vs without (bottom) the bias model", fontsize=9
        )
        fig.tight_layout()
    return fig


def figure_3c(
    effects: pd.DataFrame,
    tests: pd.DataFrame,
    names: Mapping[str, str],
    motif_names: Mapping[str, str],
    lineages: Sequence[str],
) -> Figure:
    """Predicted accessibility change on insertion per lineage, both models (rank-sum q)."""
    motifs = list(dict.fromkeys(effects["motif"]))
    with _style():
        n = max(len(motifs), 1)
        fig, axes = plt.subplots(n, 1, figsize=(0.55 * len(lineages) + 2, 2.3 * n), squeeze=False)
        if not motifs:
            axes[0, 0].text(0.5, 0.5, "no motif inserted", ha="center", va="center")
            axes[0, 0].set_axis_off()
        for ax, motif in zip(axes[:, 0], motifs):
            sub = effects[effects["motif"] == motif]
            for shift, role in ((-0.18, "reference"), (0.18, "profile")):
                vals = [
                    sub.loc[(sub["role"] == role) & (sub["lineage"] == lin), "delta"].to_numpy()
                    for lin in lineages
                ]
                bp = ax.boxplot(
                    vals,
                    positions=np.arange(len(lineages)) + shift,
                    widths=0.32,
                    patch_artist=True,
                    showfliers=False,
                    manage_ticks=False,
                )
                for box in bp["boxes"]:
                    box.set(facecolor=ROLE_COLOURS[role], alpha=0.8, lw=0.5)
                for part in ("medians", "whiskers", "caps"):
                    for line in bp[part]:
                        line.set(color="k", lw=0.6)
                ax.plot([], [], c=ROLE_COLOURS[role], lw=6, label=names[role])
            t = tests[tests["motif"] == motif].set_index("lineage")
            top = ax.get_ylim()[1]
            for x, lin in enumerate(lineages):
                if lin in t.index and t.loc[lin, "q_value"] < 0.05:
                    ax.text(x, top, "*", ha="center", va="bottom", fontsize=10)
            ax.axhline(0, c="k", lw=0.5, ls=":")
            ax.set_xticks(np.arange(len(lineages)), lineages, rotation=45, ha="right")
            label = motif_names.get(motif, "")
            cons = sub["consensus"].iloc[0] if "consensus" in sub else ""
            ax.set_title(f"{motif} {cons} {f'({label})' if label else ''}", loc="left", fontsize=8)
            ax.set_ylabel("Δ log(1 + acc.)")
        if motifs:
            axes[0, 0].legend(loc="upper right", fontsize=7)
        fig.suptitle("Fig. 3c: effect of inserting motifs (* rank-sum q < 0.05)", fontsize=9)
        fig.tight_layout()
    return fig


def figure_3d(fp: Mapping[str, np.ndarray], motif_names: Mapping[str, str]) -> Figure:
    """Deep footprints: profile (bias zero) median and IQR with (red) vs without (blue) motif."""
    motifs = list(fp["motifs"])
    models = list(fp["models"])
    prof = fp["profiles"]  # (roles, motifs, 2, 3, K + 1, P)
    n_bins = prof.shape[-1]
    with _style():
        n = max(len(motifs), 1)
        fig, axes = plt.subplots(n, len(models), figsize=(3.3 * len(models), 2 * n), squeeze=False)
        if not motifs:
            for ax in axes.flat:
                ax.text(0.5, 0.5, "no motif inserted", ha="center", va="center")
                ax.set_axis_off()
        bin_size = 250 // max(n_bins, 1)
        x = (np.arange(n_bins) + 0.5) * bin_size - 125
        for m, motif in enumerate(motifs):
            width = len(str(fp["consensus"][m]))
            for r, model in enumerate(models):
                ax = axes[m, r]
                for c, colour in ((0, "#4c72b0"), (1, "#c44e52")):
                    q25, q50, q75 = prof[r, m, c, :, -1, :]
                    ax.fill_between(x, q25, q75, color=colour, alpha=0.25, lw=0)
                    ax.plot(x, q50, color=colour, lw=0.8, label=("without", "with")[c])
                ax.axvspan(-width / 2, width / 2, color="0.85", zorder=0)
                label = motif_names.get(motif, "")
                ax.set_title(
                    f"{model}: {motif} {f'({label})' if label else ''}", fontsize=8, loc="left"
                )
                ax.set_xlabel("position from centre (bp)")
                if r == 0:
                    ax.set_ylabel("P(insertion), bias 0")
        if motifs:
            axes[0, 0].legend(fontsize=7)
        fig.suptitle("Fig. 3d: deep footprints, median and IQR over shuffled sequences", fontsize=9)
        fig.tight_layout()
    return fig


def figure_S6(
    clusters: pd.DataFrame,
    cwms: Mapping[str, np.ndarray],
    motif_names: Mapping[str, str],
    names: Mapping[str, str],
    *,
    max_clusters: int,
) -> Figure:
    """Cluster motifs on an average-linkage tree (correlation distance), per-model counts."""
    from tangermeme.plot import plot_logo

    tested = _tested(clusters).copy()
    tested["enriched"] = tested["enriched"].astype(str).str.lower() == "true"
    tested = tested.sort_values(["enriched", "n_seqlets"], ascending=[False, False]).head(
        max_clusters
    )
    motifs = [m for m in tested["motif"] if m in cwms]
    tested = tested.set_index("motif").loc[motifs]
    n = len(motifs)
    with _style():
        height = 0.55 * max(n, 1) + 1.0
        fig = plt.figure(figsize=(10, height))
        if n == 0:
            fig.text(0.5, 0.5, "no cluster with enough seqlets", ha="center")
            return fig
        if n > 1:
            _, _, _, r = mot.aligned_correlations(
                [cwms[m] for m in motifs], [cwms[m] for m in motifs], min_overlap=3
            )
            dist = 1 - np.clip((r + r.T) / 2, -1, 1)
            np.fill_diagonal(dist, 0)
            tree = linkage(squareform(dist, checks=False), method="average")
        grid = fig.add_gridspec(
            n,
            4,
            width_ratios=[1.2, 2.2, 4, 2],
            hspace=0.15,
            wspace=0.05,
            top=1 - 0.55 / height,
            bottom=0.45 / height,
        )
        ax_tree = fig.add_subplot(grid[:, 0])
        if n > 1:
            leaves = dendrogram(
                tree,
                orientation="left",
                no_labels=True,
                ax=ax_tree,
                color_threshold=0,
                above_threshold_color="k",
            )["leaves"]
        else:
            leaves = [0]
        ax_tree.set_axis_off()
        order = leaves[::-1]  # dendrogram draws leaf 0 at the bottom
        xmax = float(tested[["n_profile", "n_reference"]].to_numpy().max()) * 1.1
        for row, li in enumerate(order):
            m = motifs[li]
            info = tested.loc[m]
            label = motif_names.get(m, "")
            star = " *" if info["enriched"] else ""
            ax_text = fig.add_subplot(grid[row, 1])
            ax_text.set_axis_off()
            ax_text.text(
                0.02,
                0.5,
                f"{m.replace('cluster_', '')}{star}" + (f"\n[{label}]" if label else ""),
                ha="left",
                va="center",
                fontsize=7,
            )
            ax = fig.add_subplot(grid[row, 2])
            plot_logo(cwms[m], ax=ax)
            ax.set_axis_off()
            axb = fig.add_subplot(grid[row, 3])
            axb.barh([1], [info["n_reference"]], color=S6_COLOURS["reference"], height=0.8)
            axb.barh([0], [info["n_profile"]], color=S6_COLOURS["profile"], height=0.8)
            axb.set_xlim(0, xmax)
            axb.set_yticks([])
            axb.tick_params(labelsize=6)
            if row != n - 1:
                axb.set_xticks([])
        axb.set_xlabel("seqlets")
        fig.legend(
            handles=[
                Patch(color=S6_COLOURS["reference"], label=names["reference"]),
                Patch(color=S6_COLOURS["profile"], label=names["profile"]),
            ],
            loc="upper right",
            fontsize=7,
        )
        fig.suptitle(
            "Fig. S6: seqlet clusters (* enriched, Fisher q < FDR) [TomTom JASPAR q < 0.05]",
            fontsize=9,
        )
    return fig


def _optional_tomtom(inputs: Mapping[str, Any]) -> dict[str, str]:
    path = inputs.get("tomtom")
    if not path:
        return {}
    return _names_by_motif(read_tsv(path, ["query", "target_name", "q_value"]))


def run_figure(
    figure: str,
    inputs: Mapping[str, Any],
    names: Mapping[str, str],
    lineages: Sequence[str],
    out_pdf: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    example_region: str | None = None,
    logo_width: int = 100,
    s7_regions: int = 3,
    s6_max_clusters: int = 40,
) -> None:
    """Draw one interpretation figure from its rule's named inputs and save PDF + PNG."""
    from bpaitac.evaluate.figures import save_figure

    if figure == "fig3a":
        fig = figure_3a(read_tsv(inputs["regions"], ["r_reference_mean", "r_profile_mean"]), names)
    elif figure in ("fig3b", "figS5"):
        data = {r: load_attributions(inputs[r]) for r in ROLES}
        draw = figure_3b if figure == "fig3b" else figure_S5
        fig = draw(data, names, peak=example_region, width=logo_width)
    elif figure == "figS7":
        data = {r: load_attributions(inputs[r]) for r in ("profile", "nobias")}
        fig = figure_S7(data, names, n_regions=s7_regions, width=logo_width)
    elif figure == "fig3c":
        effects = read_tsv(inputs["effects"], ["motif", "role", "lineage", "delta"])
        clusters = read_tsv(inputs["clusters"], ["motif", "consensus"])
        effects = effects.merge(clusters[["motif", "consensus"]], on="motif", how="left")
        tests = read_tsv(inputs["stats"], ["motif", "lineage", "q_value"])
        fig = figure_3c(effects, tests, names, _optional_tomtom(inputs), lineages)
    elif figure == "fig3d":
        fig = figure_3d(load_attributions(inputs["footprints"]), _optional_tomtom(inputs))
    elif figure == "figS6":
        clusters = read_tsv(inputs["clusters"], ["motif", "tested", "enriched", "n_seqlets"])
        cwms = load_attributions(inputs["cwms"])
        fig = figure_S6(
            clusters, cwms, _optional_tomtom(inputs), names, max_clusters=s6_max_clusters
        )
    else:
        raise ValueError(f"unknown interpretation figure {figure!r}; one of {', '.join(FIGURES)}.")
    save_figure(fig, out_pdf, out_png)
