"""Snakemake entry (rule variants_figure): top variants x lineages heatmap and profile tracks."""

import logging

from bpaitac.io import setup_logging
from bpaitac.variants.figures import run_variant_figure

setup_logging(snakemake.log[0])
inp, out = snakemake.input, snakemake.output
try:
    run_variant_figure(
        table_tsv=inp.table,
        summary_tsv=inp.summary,
        profiles_npz=inp.profiles,
        label=dict(snakemake.params.labels)[snakemake.wildcards.model],
        out_pdf=out.pdf,
        out_png=out.png,
    )
except Exception:
    logging.getLogger("variants").exception("variant figure failed")
    raise
