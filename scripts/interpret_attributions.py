"""Snakemake entry (rule interpret_attributions): DeepSHAP per lineage for one model."""

import logging

import torch

from bpaitac.interpret.attribution import run_attributions
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params = snakemake.input, snakemake.params
shap = params.deepshap
try:
    run_attributions(
        model_path=inp.model,
        predictions_path=inp.predictions,
        regions_tsv=inp.regions,
        seq_path=inp.seq,
        ocrs_path=inp.ocrs,
        celltypes=selected_celltypes(snakemake.config),
        lineages=list(params.lineages),
        out_npz=snakemake.output.attributions,
        n_shuffles=int(shap["n_shuffles"]),
        seed=int(params.seed),
        batch_size=int(shap["batch_size"]),
        device=params.device,
        warning_threshold=float(shap["warning_threshold"]),
    )
except Exception:
    logging.getLogger("interpret").exception("attributions of %s failed", snakemake.wildcards.model)
    raise
