"""Snakemake entry (checkpoint download_run_table): fetch ENA's read_run file report and write
the normalised runs table of the cell types in use (bpaitac.data.runs)."""

import logging

from bpaitac.data.download import copy_or_fetch
from bpaitac.data.runs import build_run_table
from bpaitac.io import log_exception, setup_logging
from bpaitac.workflow.config import celltype_names

setup_logging(snakemake.log[0])
log = logging.getLogger("download_runs")
params, out = snakemake.params, snakemake.output
try:
    copy_or_fetch(params.url, out.report, field="download.run_table_url")
    build_run_table(out.report, celltype_names(snakemake.config), out.runs, params.mirror)
except Exception:
    log_exception(log, "runs table from %s failed", params.url)
    raise
