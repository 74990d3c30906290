"""Snakemake entry (rule interpret_insertion): motif insertion effects and deep footprints."""

import logging

import torch

from bpaitac.interpret.insertion import run_insertion
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
insertion = params.insertion
try:
    run_insertion(
        clusters_tsv=inp.clusters,
        models={"reference": inp.model_reference, "profile": inp.model_profile},
        predictions={"reference": inp.predictions_reference, "profile": inp.predictions_profile},
        model_names=dict(params.models),
        seq_path=inp.seq,
        celltypes=selected_celltypes(snakemake.config),
        lineages=list(params.lineages),
        out_effects=out.effects,
        out_stats=out.stats,
        out_footprints=out.footprints,
        n_sequences=int(insertion["n_sequences"]),
        seed=int(params.seed),
        batch_size=int(insertion["batch_size"]),
        device=params.device,
    )
except Exception:
    logging.getLogger("interpret").exception("motif insertion failed")
    raise
