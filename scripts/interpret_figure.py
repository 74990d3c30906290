"""Snakemake entry: draw one interpretation figure (Figures 3a-d, S5-S7) as PDF and PNG."""

import logging

from bpaitac.interpret.steps import run_figure
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
figure, params = snakemake.params.figure, snakemake.params
options = dict(params.options)
try:
    run_figure(
        figure,
        {k: v for k, v in snakemake.input.items()},
        dict(params.models),
        list(params.lineages),
        snakemake.output.pdf,
        snakemake.output.png,
        example_region=options.get("example_region"),
        logo_width=int(options.get("logo_width", 100)),
        s7_regions=int(options.get("s7_regions", 3)),
        s6_max_clusters=int(options.get("s6_max_clusters", 40)),
    )
except Exception:
    logging.getLogger("interpret").exception("figure %s failed", figure)
    raise
