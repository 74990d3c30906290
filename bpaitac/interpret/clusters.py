"""Seqlet clusters, their motifs and enrichment (paper Methods, Figure S6): step 4 of the
interpretation, rule ``interpret_clusters``.

The seqlets of both models are clustered together
(:func:`bpaitac.interpret.motifs.cluster_seqlets`); each cluster with at least
``min_cluster_size`` seqlets is tested for enrichment in profile-model seqlets (Fisher,
Benjamini-Hochberg) and gets a CWM, a PFM and a consensus. The clusters inserted into shuffled
sequences (Figures 3c, 3d) are chosen here (:func:`choose_insertions`), at most
``max_motifs`` (config ``interpret.insertion.max_motifs``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from bpaitac.data.sequence import one_hot
from bpaitac.interpret import motifs as mot
from bpaitac.interpret.tables import load_attributions, read_tsv, save_npz, save_tsv
from bpaitac.io import InputError
from bpaitac.workflow.interpret_paths import ROLES

log = logging.getLogger(__name__)


def tested_clusters(clusters: pd.DataFrame) -> pd.DataFrame:
    """The rows of a cluster table (``clusters.tsv``) tested for enrichment (``tested`` true)."""
    return clusters[clusters["tested"].astype(str).str.lower() == "true"]


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
    p_threshold: float,
    min_overlap: int,
    flank: int,
    min_cluster_size: int,
    trim: float,
    fdr: float,
    max_motifs: int,
    max_seqlets: int,
    seed: int,
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
    onehot = one_hot(data["profile"]["seq"])
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
    table = choose_insertions(table, fdr, max_motifs)
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
    save_tsv(out_seqlets, seqlets)
    save_tsv(out_clusters, table)
    mot.write_meme(out_meme, pfms)
    save_npz(out_cwms, **cwms)
    return table


def _sampled_medoid(members: pd.Index, sample_pos: Mapping[int, int], log10p: np.ndarray) -> int:
    """Position in ``members`` of the clustered (sampled) member with the least summed
    alignment p-value to the other sampled members."""
    positions = [k for k, i in enumerate(members) if int(i) in sample_pos]
    rows = [sample_pos[int(members[k])] for k in positions]
    return positions[mot.medoid_index(log10p[np.ix_(rows, rows)])]
