"""Snakemake entry (rule simulation_figure): Tn5 bias, fragment lengths and footprints."""

import logging
from pathlib import Path

from bpaitac.io import setup_logging
from bpaitac.simulate.figure import make_simulation_figure

setup_logging(snakemake.log[0])
try:
    inp = snakemake.input
    summary = make_simulation_figure(
        genome=inp.genome,
        bams=list(inp.bams),
        celltypes=[Path(p).name.removesuffix(".bam") for p in inp.bams],
        protein_free_bams=list(inp.protein_free_bams),
        protein_free_regions=inp.protein_free_regions,
        bias=inp.bias,
        sites=inp.sites,
        occupancy=inp.occupancy,
        accessibility=inp.accessibility,
        depth=inp.depth,
        ocrs=inp.ocrs,
        pdf=snakemake.output.pdf,
        png=snakemake.output.png,
    )
    logging.getLogger("simulation_figure").info("summary: %s", summary)
except Exception:
    logging.getLogger("simulation_figure").exception("simulation figure failed")
    raise
