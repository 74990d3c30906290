"""Snakemake entry: draw one interpretation figure (Figures 3a-d, S5-S7) as PDF and PNG,
through the registry :data:`bpaitac.interpret.figures.FIGURES`."""

import logging

from bpaitac.interpret.figures import FigureContext, run_figure
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
params = snakemake.params
try:
    context = FigureContext.from_config(params.options, params.models, params.lineages)
    run_figure(
        params.figure,
        dict(snakemake.input.items()),
        context,
        snakemake.output.pdf,
        snakemake.output.png,
    )
except Exception:
    logging.getLogger("interpret").exception("figure %s failed", params.figure)
    raise
