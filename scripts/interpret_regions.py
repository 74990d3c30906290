"""Snakemake entry (rule interpret_regions): select the test OCRs to interpret (Figure 3a)."""

import logging

from bpaitac.interpret.regions import RegionCriteria, run_regions
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
try:
    run_regions(
        list(snakemake.input.reference),
        list(snakemake.input.profile),
        RegionCriteria.from_config(snakemake.params.criteria),
        snakemake.output.regions,
        lineage_of=dict(snakemake.params.lineage_of),
    )
except Exception:
    logging.getLogger("interpret").exception("region selection failed")
    raise
