"""Truth recovery on simulated data: step 7 of the interpretation, rule ``interpret_truth``.

The discovered cluster motifs are compared (TomTom) with the simulator's planted PWMs, and the
insertion effects of the planted consensus sites and of the matching clusters are correlated
over lineages with the planted TF activities and with what one consensus site adds in the
simulator (docs/simulation.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bpaitac.data.sequence import decode_sequence
from bpaitac.interpret import motifs as mot
from bpaitac.interpret.clusters import tested_clusters
from bpaitac.interpret.insertion import insert_motifs, shuffled_backgrounds
from bpaitac.interpret.tables import read_tsv, save_tsv
from bpaitac.interpret.tomtom import match_jaspar
from bpaitac.io import InputError, require_file
from bpaitac.workflow.interpret_paths import ROLES

log = logging.getLogger(__name__)


def read_activity(
    path: str | os.PathLike, celltypes: pd.DataFrame, lineages: Sequence[str]
) -> pd.DataFrame:
    """Planted TF activity (TF x cell type TSV, first column the TF) -> TF x lineage means."""
    path = require_file(path, "planted activities", "run the simulator.")
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
    Each correlation with the activity is also given with its logarithm (``r_*log_activity*``),
    the scale on which the simulator's occupancy depends on it (:func:`log_activity`).
    """
    by_motif = tested_clusters(clusters).set_index("motif")
    rows = []
    for name in planted:
        hits = planted_hits(matches, by_motif.index, name)
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
        log_act = log_activity(act) if act is not None else None
        truths = {"activity": act, "log_activity": log_act}
        if site_effects is not None:
            site = site_effects.loc[name_map[name]] if name in name_map else None
            truths["site_effect"] = site
            row["r_site_effect_activity"] = pearson_over_lineages(site, act)
            row["r_site_effect_log_activity"] = pearson_over_lineages(site, log_act)
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


def log_activity(activity: pd.Series) -> pd.Series:
    """Natural log of a planted activity; lineages with activity 0 (log undefined) become NaN.

    A TF's activity is a concentration in units of a typical site's Kd, and a site's occupancy
    is ``expit(log a + s - s_ref)`` (docs/simulation.md, step 5): a one-site effect follows
    ``log a`` until it saturates, not ``a`` itself.
    """
    return np.log(activity.where(activity > 0))


def planted_hits(matches: pd.DataFrame, motifs: pd.Index, planted: str) -> pd.DataFrame:
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
    return pearson_over_lineages(sub.groupby("lineage")["delta"].mean(), activity)


def pearson_over_lineages(a: pd.Series | None, b: pd.Series | None) -> float:
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
    n_sampled: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """What one site with the consensus of each planted motif adds to accessibility in the
    simulator, averaged per lineage (activity row x lineage).

    Per cell type it is ``e_TF,c * expit(log a_TF,c + s_consensus - s_ref)`` (docs/simulation.md,
    steps 5-6): the cell type's effect of a bound site times the consensus site's occupancy.
    Occupancy saturates and ``e_TF,c`` has its own cell-type noise, so this, not the activity
    alone, is what a perfect model's insertion effect follows. With ``n_sampled`` > 0 the site
    is instead a typical one: the effect is averaged over that many sites sampled from the PWM.
    """
    from scipy.special import expit

    from bpaitac.simulate.motifs import expected_score, log_odds, sample_sites, score_sites

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
        if n_sampled:
            scores = score_sites(sample_sites(p, n_sampled, np.random.default_rng(seed)), p)
        else:
            scores = np.array([log_odds(p).max(axis=1).sum()])
        with np.errstate(divide="ignore"):
            log_a = np.log(activity.loc[tf, cols].to_numpy(dtype=float))
        occupancy = expit(log_a[None, :] + (scores - expected_score(p))[:, None]).mean(axis=0)
        per_celltype = effect.loc[tf, cols].to_numpy(dtype=float) * occupancy
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
    min_ic: float,
    min_width: int,
    seed: int,
    batch_size: int,
    device: str,
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
    planted = {f"planted:{k}": v for k, v in mot.read_meme(truth_meme, full_names=True).items()}
    matches = match_jaspar(
        queries,
        release=release,
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
        extra_targets=planted,
    )
    activity = read_activity(activity_tsv, celltypes, lineages)
    raw_names = [k.split(":", 1)[1] for k in planted]
    name_map = {f"planted:{k}": v for k, v in planted_name_map(raw_names, activity.index).items()}
    consensus = {k: decode_sequence(m.argmax(axis=0)) for k, m in planted.items()}
    background = shuffled_backgrounds(np.load(seq_path, mmap_mode="r"), n_sequences, seed)
    inserted = read_tsv(effects_tsv, ["motif", "role", "lineage", "delta"])
    # Figure 3c inserts only the clusters the paper's rule chooses; every recovered motif's best
    # cluster is inserted here too, so each has an insertion effect to compare with its activity.
    tested = pd.Index(tested_clusters(clusters)["motif"])
    best = {h["query"].iloc[0] for p in planted if len(h := planted_hits(matches, tested, p))}
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
    # Empty parts are left out: concatenating an empty table makes every column object-typed.
    parts = [p for p in (inserted, effects[effects["motif"].isin(extra)]) if not p.empty]
    cluster_effects = pd.concat(parts, ignore_index=True) if parts else inserted
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
    save_tsv(out_tsv, table)
    return table
