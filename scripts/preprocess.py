"""Snakemake entry of the preprocess rules (workflow/rules/preprocess.smk): BAMs -> arrays.

One script for the rule family; it dispatches on the rule's name to bpaitac.dataset.
"""

from pathlib import Path

from bpaitac import dataset
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
inp, out, params, rule = snakemake.input, snakemake.output, snakemake.params, snakemake.rule
cfg = dict(params.preprocess)
splits = list(params.splits)


def split_dirs(paths) -> dict:
    """Output files (one per split, in `params.splits` order) -> {split: their directory}."""
    return {s: Path(p).parent for s, p in zip(splits, paths, strict=True)}


if rule == "prepare_ocrs":
    dataset.prepare_ocrs(
        table=inp.table,
        genome=inp.genome,
        celltypes=params.celltypes,
        cfg=cfg,
        out_all=out.ocrs,
        out_splits={s: (q, t) for s, q, t in zip(splits, out.seq, out.ocrs_split, strict=True)},
    )
elif rule == "count_insertions":
    dataset.count_ocr_insertions(
        bam=inp.bam,
        ocrs_tsv=inp.ocrs,
        genome=inp.genome,
        cfg=cfg,
        out=out.insertions,
        threads=snakemake.threads,
        celltype=snakemake.wildcards.celltype,
    )
elif rule == "assemble_dataset":
    dataset.assemble_dataset(
        ocrs_all=inp.ocrs,
        insertions=list(inp.insertions),
        celltypes=params.celltypes,
        out_splits={
            s: (p, c, t)
            for s, p, c, t in zip(splits, out.profile, out.counts, out.celltypes, strict=True)
        },
    )
elif rule == "bias_set_closed_ocrs":
    dataset.closed_ocr_set(
        ocrs_all=inp.ocrs,
        pvalues=inp.pvalues,
        insertions=list(inp.insertions),
        celltypes=params.celltypes,
        genome=inp.genome,
        cfg=cfg,
        out_splits=split_dirs(out.seq),
    )
elif rule == "bias_set_protein_free":
    dataset.protein_free_set(
        regions_bed=inp.regions,
        bams=list(inp.bams),
        genome=inp.genome,
        cfg=cfg,
        seed=int(params.seed),
        out_splits=split_dirs(out.seq),
        threads=snakemake.threads,
    )
else:
    raise ValueError(f"scripts/preprocess.py does not handle rule {rule!r}")
