"""Snakemake entry (rule score_variants): every variant scored with every seed of one model."""

import logging

import torch

from bpaitac.io import setup_logging
from bpaitac.variants.score import score_variants
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params, config = snakemake.input, snakemake.output, snakemake.params, snakemake.config
try:
    score_variants(
        variants_path=inp.variants,
        genome_path=inp.genome,
        model_paths=list(inp.models),
        model_name=snakemake.wildcards.model,
        celltypes=selected_celltypes(config),
        lineages=list(params.lineages),
        out_tsv=out.table,
        out_summary=out.summary,
        out_profiles=out.profiles,
        on_ref_mismatch=params.on_ref_mismatch,
        max_allele_length=int(params.max_allele_length),
        top_variants=int(params.top_variants),
        # A runtime setting, not a param: changing it rescores nothing.
        batch_size=int(config["training"]["eval_batch_size"]),
        device=params.device,
    )
except Exception:
    logging.getLogger("variants").exception("variant scoring failed")
    raise
