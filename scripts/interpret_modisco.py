"""Snakemake entry of the TF-MoDISco rules (workflow/rules/interpret.smk): modisco-lite's
inputs, `modisco motifs`, the JASPAR MEME file, `modisco report`, the TomTom of its patterns
and the comparison of both motif callers with the planted truth.

One script for the rule family; it dispatches on the rule's name to one function of
bpaitac.interpret.modisco each.
"""

import logging

from bpaitac.interpret import modisco
from bpaitac.io import setup_logging

setup_logging(snakemake.log[0])
inp, out, params, rule = snakemake.input, snakemake.output, snakemake.params, snakemake.rule
try:
    if rule == "interpret_modisco_inputs":
        modisco.export_modisco_inputs(
            {role: inp[role] for role in params.roles},
            inp.ocrs,
            list(params.lineages),
            out.ohe,
            out.hyp,
            out.bed,
        )
    elif rule == "interpret_modisco":
        modisco.run_modisco_motifs(
            inp.ohe,
            inp.hyp,
            out.h5,
            max_seqlets=int(params.max_seqlets),
            n_leiden=int(params.n_leiden),
            window=int(params.window),
            threads=snakemake.threads,
        )
    elif rule == "interpret_jaspar_meme":
        modisco.write_jaspar_meme(params.release, out.meme)
    elif rule == "interpret_modisco_report":
        modisco.run_modisco_report(
            inp.h5,
            inp.meme,
            out.report,
            n_examples=int(params.report_examples),
            threads=snakemake.threads,
        )
    elif rule == "interpret_modisco_tomtom":
        tomtom = params.tomtom
        modisco.run_modisco_tomtom(
            dict(zip(params.groups, inp.h5s, strict=True)),
            out.meme,
            out.patterns,
            out.tomtom,
            trim=float(params.trim),
            release=tomtom["jaspar_release"],
            q_threshold=float(tomtom["q_threshold"]),
            min_ic=float(tomtom["min_ic"]),
            min_width=int(tomtom["min_width"]),
            n_jobs=snakemake.threads,
        )
    elif rule == "interpret_motif_callers":
        tomtom = params.tomtom
        modisco.run_motif_callers(
            truth_meme=inp.truth_meme,
            callers={
                "clustering": {
                    "meme": inp.clusters_meme,
                    "tomtom": inp.clusters_tomtom,
                    "benchmarks": list(inp.clustering_benchmarks),
                },
                "modisco": {
                    "meme": inp.modisco_meme,
                    "tomtom": inp.modisco_tomtom,
                    "benchmarks": list(inp.modisco_benchmarks),
                },
            },
            out_table=out.table,
            out_summary=out.summary,
            release=tomtom["jaspar_release"],
            q_threshold=float(tomtom["q_threshold"]),
            min_ic=float(tomtom["min_ic"]),
            min_width=int(tomtom["min_width"]),
            n_jobs=snakemake.threads,
        )
    else:
        raise ValueError(f"scripts/interpret_modisco.py does not serve rule {rule!r}")
except Exception:
    logging.getLogger("interpret").exception("%s failed", rule)
    raise
