"""Snakemake entry (rule interpret_seqlets): seqlets of both models in all lineages."""

import logging

from bpaitac.interpret.seqlets import run_seqlets
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
inp = snakemake.input
try:
    run_seqlets(
        {"reference": inp.reference, "profile": inp.profile},
        dict(snakemake.params.models),
        snakemake.output.seqlets,
        **dict(snakemake.params.seqlets),
    )
except Exception:
    logging.getLogger("interpret").exception("seqlet calling failed")
    raise
