"""Snakemake entry (rule interpret_clusters): cluster seqlets, cluster motifs, enrichment."""

import logging

from bpaitac.interpret.clusters import run_clusters
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
try:
    run_clusters(
        seqlets_tsv=inp.seqlets,
        attributions={"reference": inp.reference, "profile": inp.profile},
        model_names=dict(snakemake.params.models),
        out_seqlets=out.seqlets,
        out_clusters=out.clusters,
        out_meme=out.meme,
        out_cwms=out.cwms,
        max_motifs=int(snakemake.params.max_motifs),
        **dict(snakemake.params.clustering),
    )
except Exception:
    logging.getLogger("interpret").exception("seqlet clustering failed")
    raise
