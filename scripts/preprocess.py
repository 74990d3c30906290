"""Snakemake entry of the preprocess rules (workflow/rules/preprocess.smk): BAMs -> arrays.

One script for the rule family; it dispatches on the rule's name to bpaitac.data.arrays (the OCR
arrays), bpaitac.data.bias_sets (the Tn5-bias training sets) and bpaitac.data.peaks (the MACS3
closed-OCR p-values). ``params.preprocess`` is the validated ``preprocess:`` config section.
"""

from pathlib import Path

from bpaitac.data import arrays, bias_sets, peaks
from bpaitac.io import setup_logging
from bpaitac.workflow.config import celltype_names

setup_logging(snakemake.log[0])
inp, out, params, rule = snakemake.input, snakemake.output, snakemake.params, snakemake.rule


def split_dirs(paths) -> dict:
    """Output files (one per split, in `params.splits` order) -> {split: their directory}."""
    return {s: Path(p).parent for s, p in zip(params.splits, paths, strict=True)}


if rule == "prepare_ocrs":
    arrays.prepare_ocrs(
        table=inp.table,
        genome=inp.genome,
        celltypes=celltype_names(snakemake.config, list(params.celltypes)),
        cfg=dict(params.preprocess),
        out_all=out.ocrs,
        out_splits={
            s: (q, t) for s, q, t in zip(params.splits, out.seq, out.ocrs_split, strict=True)
        },
    )
elif rule == "count_insertions":
    arrays.count_ocr_insertions(
        bam=inp.bam,
        ocrs_tsv=inp.ocrs,
        genome=inp.genome,
        cfg=dict(params.preprocess),
        out=out.insertions,
        threads=snakemake.threads,
        celltype=snakemake.wildcards.celltype,
        celltype_table=snakemake.config["celltypes"],
    )
elif rule == "assemble_dataset":
    arrays.assemble_dataset(
        ocrs_all=inp.ocrs,
        insertions=list(inp.insertions),
        celltypes=params.celltypes,
        out_splits={
            s: (p, c, t)
            for s, p, c, t in zip(
                params.splits, out.profile, out.counts, out.celltypes, strict=True
            )
        },
    )
elif rule == "bias_set_closed_ocrs":
    bias_sets.closed_ocr_set(
        ocrs_all=inp.ocrs,
        pvalues=inp.pvalues,
        insertions=list(inp.insertions),
        celltypes=celltype_names(snakemake.config, list(params.celltypes)),
        genome=inp.genome,
        cfg=dict(params.preprocess),
        out_splits=split_dirs(out.seq),
    )
elif rule == "bias_set_protein_free":
    bias_sets.protein_free_set(
        regions_bed=inp.regions,
        bams=list(inp.bams),
        genome=inp.genome,
        cfg=dict(params.preprocess),
        seed=int(params.seed),
        out_splits=split_dirs(out.seq),
        threads=snakemake.threads,
        fragments=inp.fragments[0] if inp.fragments else None,
        replicates=list(params.replicates),
        barcodes=dict(params.barcodes),
        fragments_shift=params.fragments_shift,
    )
elif rule == "closed_pvalues_macs3":
    peaks.celltype_pvalues(
        bam=inp.bam,
        ocrs=arrays.read_ocrs_tsv(inp.ocrs),
        celltype=snakemake.wildcards.celltype,
        cfg=dict(params.macs3),
        out=out.pvalues,
        genome_fai=inp.fai,
        closed_p=float(params.closed_p),
    )
elif rule == "closed_pvalues_table":
    peaks.merge_pvalues(list(inp.pvalues), list(params.celltypes), out.table)
else:
    raise ValueError(f"scripts/preprocess.py does not handle rule {rule!r}")
