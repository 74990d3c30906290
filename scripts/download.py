"""Snakemake entry: fetch one input file, then index it when it is a FASTA or a BAM.

``params.urls`` (a cell type's BAM: one URL per spelling of its name) fetches the first that
exists; ``params.url`` one URL. ``params.field`` is the config key the URL comes from.
"""

import pysam

from bpaitac.data.download import fetch, fetch_first, is_gzip_url
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821
params, out = snakemake.params, snakemake.output  # noqa: F821
urls = list(params.urls) if hasattr(params, "urls") else [params.url]
gunzip = getattr(params, "gunzip", None)
url = fetch_first(
    urls,
    out.file,
    field=params.field,
    gunzip=is_gzip_url(urls[0]) if gunzip is None else gunzip,
)
if "index" in out.keys():
    if str(out.file).endswith(".bam"):
        fetch(url + ".bai", out.index, field=params.field)
    else:
        pysam.faidx(str(out.file))
