"""Snakemake entry (rule interpret_tracks): bigWigs per lineage, IGV session and trackDb."""

import logging

import torch

from bpaitac.interpret.tracks import run_tracks
from bpaitac.io import setup_logging
from bpaitac.workflow.config import selected_celltypes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
tracks = params.tracks
try:
    run_tracks(
        model_path=inp.model,
        bias_model_path=inp.get("bias_model"),
        genome=inp.genome,
        seq_path=inp.seq,
        ocrs_path=inp.ocrs,
        profile_path=inp.profile,
        counts_path=inp.counts,
        celltypes_path=inp.celltypes,
        celltypes=selected_celltypes(snakemake.config),
        lineages=list(params.lineages),
        bigwigs=list(out.bigwigs),
        session=out.session,
        trackdb=out.trackdb,
        per_celltype=bool(tracks["per_celltype"]),
        preprocess=dict(params.preprocess),
        deepshap=dict(params.deepshap),
        seed=int(params.seed),
        device=params.device,
        batch_size=int(tracks["batch_size"]),
        max_contribution_windows=int(tracks["max_contribution_windows"]),
        attributions=inp.get("attributions"),
        contributions_bed=inp.get("contributions_bed"),
        regions_bed=inp.get("regions_bed"),
        bams=list(inp.get("bams", [])),
        threads=snakemake.threads,
    )
except Exception:
    logging.getLogger("interpret").exception("genome-browser tracks failed")
    raise
