"""Snakemake entry (rule variants_truth): predicted vs planted effects of the simulator's
variants."""

import logging

from bpaitac.io import setup_logging
from bpaitac.variants.truth import run_variant_truth

setup_logging(snakemake.log[0])
inp, params = snakemake.input, snakemake.params
try:
    run_variant_truth(
        tables=dict(zip(params.models, inp.tables)),
        summaries=dict(zip(params.models, inp.summaries)),
        labels=dict(params.labels),
        roles=dict(params.roles),
        truth_variants=inp.truth_variants,
        truth_effects=inp.truth_effects,
        held_out=list(params.held_out),
        out_tsv=snakemake.output.truth,
    )
except Exception:
    logging.getLogger("variants").exception("variant truth comparison failed")
    raise
