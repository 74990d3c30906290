"""Snakemake entry: fetch one input file, then index it when it is a FASTA or a BAM."""

import pysam

from bpaitac.data.download import fetch, is_gzip_url
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
url = snakemake.params.url  # noqa: F821
out = snakemake.output  # noqa: F821
gunzip = getattr(snakemake.params, "gunzip", None)  # noqa: F821
fetch(url, out.file, gunzip=is_gzip_url(url) if gunzip is None else gunzip)
if "index" in out.keys():
    if str(out.file).endswith(".bam"):
        fetch(url + ".bai", out.index)
    else:
        pysam.faidx(str(out.file))
