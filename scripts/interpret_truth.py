"""Snakemake entry (rule interpret_truth): score the interpretation against the planted truth."""

import logging

import torch

from bpaitac.interpret.steps import run_truth
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params = snakemake.input, snakemake.params
insertion, tomtom = dict(params.insertion), dict(params.tomtom)
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
        release=tomtom.get("jaspar_release", "JASPAR2024"),
        q_threshold=float(tomtom.get("q_threshold", 0.05)),
        min_ic=float(tomtom.get("min_ic", 1.0)),
        min_width=int(tomtom.get("min_width", 4)),
        n_sequences=int(insertion.get("n_sequences", 1000)),
        seed=int(params.seed),
        batch_size=int(insertion.get("batch_size", 128)),
        device=params.device,
        n_jobs=snakemake.threads,
    )
except Exception:
    logging.getLogger("interpret").exception("truth recovery failed")
    raise
