"""Snakemake entry (rule download_fastq): fetch the FASTQ pair of one run, resuming partial
downloads and verifying the md5s of the runs table (bpaitac.data.download.fetch_run)."""

import logging

from bpaitac.data.download import fetch_run
from bpaitac.data.runs import read_run_table, run_row
from bpaitac.io import log_exception, setup_logging

setup_logging(snakemake.log[0])
log = logging.getLogger("download_fastq")
run, out = snakemake.wildcards.run, snakemake.output
try:
    row = run_row(read_run_table(snakemake.input.runs), run, snakemake.input.runs)
    files = [(row[f"{m}_url"], out[m], row[f"{m}_md5"]) for m in ("r1", "r2")]
    fetch_run(files, run=run, retries=snakemake.config["download"]["fastq_retries"])
except Exception:
    log_exception(log, "FASTQ download of run %s failed", run)
    raise
