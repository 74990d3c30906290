"""Snakemake entry (rule interpret_truth): score the interpretation against the planted truth."""

import logging

import torch

from bpaitac.interpret.truth import run_truth
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params = snakemake.input, snakemake.params
insertion, tomtom = params.insertion, params.tomtom
try:
    run_truth(
        clusters_tsv=inp.clusters,
        clusters_meme=inp.meme,
        effects_tsv=inp.effects,
        truth_meme=inp.truth_meme,
        activity_tsv=inp.activity,
        site_effects_tsv=inp.site_effects,
        models={"reference": inp.model_reference, "profile": inp.model_profile},
        predictions={"reference": inp.predictions_reference, "profile": inp.predictions_profile},
        seq_path=inp.seq,
        celltypes=selected_celltypes(snakemake.config),
        lineages=list(params.lineages),
        out_tsv=snakemake.output.truth,
        release=tomtom["jaspar_release"],
        q_threshold=float(tomtom["q_threshold"]),
        min_ic=float(tomtom["min_ic"]),
        min_width=int(tomtom["min_width"]),
        n_sequences=int(insertion["n_sequences"]),
        seed=int(params.seed),
        batch_size=int(insertion["batch_size"]),
        device=params.device,
        n_jobs=snakemake.threads,
    )
except Exception:
    logging.getLogger("interpret").exception("truth recovery failed")
    raise
