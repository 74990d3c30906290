"""Snakemake entry (rule interpret_tomtom): name cluster motifs with TomTom vs JASPAR."""

import logging

from bpaitac.interpret.tomtom import run_tomtom
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
tomtom = snakemake.params.tomtom
try:
    run_tomtom(
        snakemake.input.meme,
        snakemake.output.tomtom,
        release=tomtom["jaspar_release"],
        q_threshold=float(tomtom["q_threshold"]),
        min_ic=float(tomtom["min_ic"]),
        min_width=int(tomtom["min_width"]),
        n_jobs=snakemake.threads,
    )
except Exception:
    logging.getLogger("interpret").exception("TomTom against JASPAR failed")
    raise
