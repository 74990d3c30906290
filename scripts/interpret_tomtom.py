"""Snakemake entry (rule interpret_tomtom): name cluster motifs with TomTom vs JASPAR."""

import logging

from bpaitac.interpret.steps import run_tomtom
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
params = dict(snakemake.params.tomtom)
try:
    run_tomtom(
        snakemake.input.meme,
        snakemake.output.tomtom,
        release=params.get("jaspar_release", "JASPAR2024"),
        q_threshold=float(params.get("q_threshold", 0.05)),
        min_ic=float(params.get("min_ic", 1.0)),
        min_width=int(params.get("min_width", 4)),
        n_jobs=snakemake.threads,
    )
except Exception:
    logging.getLogger("interpret").exception("TomTom against JASPAR failed")
    raise
