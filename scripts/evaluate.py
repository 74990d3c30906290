"""Snakemake entry: evaluation tables of one model and seed, or the summary of all models.

Rules (workflow/rules/evaluate.smk): ``evaluate_model`` writes the four tidy tables of
:func:`bpaitac.evaluate.metrics.evaluate_files`; ``evaluate_summary`` writes ``eval/summary.tsv``.
"""

import logging

from bpaitac.evaluate.metrics import (
    comparison_table,
    evaluate_files,
    read_level_tables,
    summarise,
    write_table,
)
from bpaitac.io import log_exception, read_celltypes, setup_logging
from bpaitac.workflow.evaluate_paths import LEVELS

setup_logging(snakemake.log[0])
log = logging.getLogger("evaluate")


def evaluate_model() -> None:
    wc, params = snakemake.wildcards, snakemake.params
    tables = evaluate_files(
        predictions=list(snakemake.input.predictions),
        members=dict(params.members),
        kind=params.kind,
        celltypes=read_celltypes(snakemake.input.celltypes),
        lineage_order=list(params.lineages),
        model=wc.model,
        seed=int(wc.seed),
    )
    for level, name in LEVELS.items():
        write_table(tables[level], snakemake.output[name])
    ocr = tables["ocr"]
    log.info(
        "%s seed %s: %d OCRs x %d targets, mean per-OCR Pearson R %.4f, mean per-target R %.4f",
        wc.model,
        wc.seed,
        len(ocr),
        len(tables["target"]),
        ocr["pearson"].mean(),
        tables["target"]["pearson"].mean(),
    )


def evaluate_summary() -> None:
    tables = {
        level: read_level_tables(snakemake.input[name], level) for level, name in LEVELS.items()
    }
    summary = summarise(tables, dict(snakemake.params.paper), dict(snakemake.params.labels))
    write_table(summary, snakemake.output.summary)
    log.info("summary of %d models written to %s", len(summary), snakemake.output.summary)
    compared = comparison_table(tables["ocr"], dict(snakemake.params.comparisons))
    write_table(compared, snakemake.output.comparisons)
    for row in compared.itertuples():
        log.info(
            "%s: %s vs %s: mean per-OCR R %.4f vs %.4f (seeds %s vs %s), paired Wilcoxon over "
            "%d OCRs p = %.3g, seed pairs better %.2f: %s",
            row.comparison,
            row.model,
            row.reference,
            row.model_mean,
            row.reference_mean,
            row.model_seed_means,
            row.reference_seed_means,
            row.n_ocrs,
            row.ocr_wilcoxon_p,
            row.seed_pairs_better,
            row.decision,
        )


try:
    {"evaluate_model": evaluate_model, "evaluate_summary": evaluate_summary}[snakemake.rule]()
except Exception:
    log_exception(log, "rule %s failed", snakemake.rule)
    raise
