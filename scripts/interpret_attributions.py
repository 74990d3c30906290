"""Snakemake entry (rule interpret_attributions): DeepSHAP per lineage for one model."""

import logging

import torch

from bpaitac.interpret.steps import run_attributions
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, params = snakemake.input, snakemake.params
shap = dict(params.deepshap)
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
        n_shuffles=int(shap.get("n_shuffles", 20)),
        seed=int(params.seed),
        batch_size=int(shap.get("batch_size", 128)),
        device=params.device,
        warning_threshold=float(shap.get("warning_threshold", 1e-3)),
    )
except Exception:
    logging.getLogger("interpret").exception("attributions of %s failed", snakemake.wildcards.model)
    raise
