"""Snakemake entry: draw one figure of Figures 1b-d, 2a-f, S1-S4 (``params.figure``).

Reads the tidy evaluation tables named by the rule's inputs (one input per table level, each a
list of files), validates their columns, draws the figure
(:func:`bpaitac.evaluate.figures.build_figure`)
and writes it as PDF and PNG.
"""

import logging

from bpaitac.evaluate.figures import build_figure, load_figure_tables, save_figure
from bpaitac.io import log_exception, setup_logging

setup_logging(snakemake.log[0])
log = logging.getLogger("figure")
figure = snakemake.params.figure
try:
    tables = load_figure_tables(figure, {k: list(v) for k, v in snakemake.input.items()})
    fig = build_figure(
        figure, tables, dict(snakemake.params.comparisons), list(snakemake.params.lineages)
    )
    save_figure(fig, snakemake.output.pdf, snakemake.output.png)
    log.info("%s written: %s, %s", figure, snakemake.output.pdf, snakemake.output.png)
except Exception:
    log_exception(log, "figure %s failed", figure)
    raise
