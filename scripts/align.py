"""Snakemake entry of the alignment rules (workflow/rules/align.smk): FASTQ pairs -> BAMs.

One script for the rule family; it dispatches on the rule's name to bpaitac.data.align. The tools'
stderr and any error (naming the run and the command) go to the rule's log.
"""

import logging

from bpaitac.data import align
from bpaitac.io import log_exception, setup_logging

setup_logging(snakemake.log[0])
log = logging.getLogger("bpaitac.data.align")
inp, out, params, rule = snakemake.input, snakemake.output, snakemake.params, snakemake.rule
threads = snakemake.threads

try:
    if rule == "bowtie2_index":
        align.build_bowtie2_index([inp.fasta, *inp.extra], params.prefix, threads=threads)
    elif rule == "trim_fastq":
        run = snakemake.wildcards.run
        cfg = align.AlignConfig.from_config(params.align)
        align.trim_pair(run, inp.r1, inp.r2, out.r1, out.r2, cfg, threads, out.report)
    elif rule == "align_run":
        run = snakemake.wildcards.run
        cfg = align.AlignConfig.from_config(params.align)
        align.process_run(
            run, inp.r1, inp.r2, params.index, out.bam, out.qc, cfg,
            ocrs=inp.ocrs, threads=threads, trim_report=inp.report, trimmed=True,
        )  # fmt: skip
    elif rule == "merge_celltype_bam":
        align.merge_bams(list(inp.bams), out.bam, threads, name=snakemake.wildcards.celltype)
    elif rule == "alignment_qc":
        from bpaitac.data.runs import read_run_table

        table = align.qc_table(list(inp.qc), read_run_table(inp.runs))
        align.write_qc_table(table, out.table)
        align.plot_qc(table, out.figure)
    else:
        raise ValueError(f"scripts/align.py: unknown rule {rule!r}")
except Exception:
    log_exception(log, "rule %s failed", rule)
    raise
