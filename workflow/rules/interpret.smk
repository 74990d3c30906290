"""Interpretation (Figures 3a-d, S5-S7): regions -> DeepSHAP -> seqlets -> clusters -> TomTom
-> motif insertion and deep footprints, plus the truth table on simulated data; genome-browser
tracks (bigWigs, IGV session, trackDb); TF-MoDISco (modisco-lite) as a second motif caller.

Which models are compared, and every threshold, come from the config's `interpret:` block,
validated with its defaults filled (workflow/schemas/interpret.schema.yaml, the only place
defaults live). Input functions live in bpaitac/workflow/interpret_paths.py; each rule's step
in its own module of bpaitac/interpret/ (regions, attribution, seqlets, clusters, tomtom,
insertion, truth) and the figures in bpaitac/interpret/figures.py (registry FIGURES).
"""

from bpaitac.workflow.interpret_paths import FIGURES as INTERPRET_FIGURES
from bpaitac.workflow.interpret_paths import InterpretPaths
from bpaitac.workflow.tracks_paths import TrackPaths

INTERPRET = config["interpret"]
INTERPRET_PATHS = InterpretPaths(config, CATALOGUE)
TARGET_FUNCTIONS["interpret"] = lambda: INTERPRET_PATHS.targets(DATASET, FIGURES, LINEAGES)
TRACK_PATHS = TrackPaths(config, CATALOGUE, LINEAGES, SELECTED_CELLTYPES)
MODISCO_GROUPS = INTERPRET_PATHS.modisco_groups(LINEAGES)


rule interpret_regions:
    input:
        unpack(INTERPRET_PATHS.regions_inputs),
    output:
        regions="results/{dataset}/interpret/regions.tsv",
    log:
        "logs/{dataset}/interpret/regions.log",
    conda:
        "../../envs/interpret.yaml"
    params:
        criteria=INTERPRET["regions"],
        lineage_of=LINEAGE_OF,
    script:
        "../../scripts/interpret_regions.py"


rule interpret_attributions:
    input:
        unpack(INTERPRET_PATHS.attribution_inputs),
    output:
        attributions="results/{dataset}/interpret/attributions/{model}.npz",
    log:
        "logs/{dataset}/interpret/attributions_{model}.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/attributions_{model}.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    resources:
        **job_resources("interpret"),
        gpu=gpu_request(),
    params:
        deepshap=INTERPRET["deepshap"],
        seed=config["seed"],
        device=config["device"],
        lineages=LINEAGES,
    script:
        "../../scripts/interpret_attributions.py"


rule interpret_seqlets:
    input:
        unpack(INTERPRET_PATHS.role_attributions(("reference", "profile"))),
    output:
        seqlets="results/{dataset}/interpret/seqlets.tsv",
    log:
        "logs/{dataset}/interpret/seqlets.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/seqlets.tsv"
    conda:
        "../../envs/interpret.yaml"
    params:
        models=lambda wc: INTERPRET_PATHS.roles(),
        seqlets=INTERPRET["seqlets"],
    script:
        "../../scripts/interpret_seqlets.py"


rule interpret_clusters:
    input:
        unpack(INTERPRET_PATHS.role_attributions(("reference", "profile"))),
        seqlets="results/{dataset}/interpret/seqlets.tsv",
    output:
        seqlets="results/{dataset}/interpret/seqlet_clusters.tsv",
        clusters="results/{dataset}/interpret/clusters.tsv",
        meme="results/{dataset}/interpret/clusters.meme",
        cwms="results/{dataset}/interpret/cluster_cwms.npz",
    log:
        "logs/{dataset}/interpret/clusters.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/clusters.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    resources:
        **job_resources("interpret"),
    params:
        models=lambda wc: INTERPRET_PATHS.roles(),
        clustering=INTERPRET["clustering"],
        max_motifs=INTERPRET["insertion"]["max_motifs"],
    script:
        "../../scripts/interpret_clusters.py"


rule interpret_tomtom:
    input:
        meme="results/{dataset}/interpret/clusters.meme",
    output:
        tomtom="results/{dataset}/interpret/tomtom_jaspar.tsv",
    log:
        "logs/{dataset}/interpret/tomtom_jaspar.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/tomtom_jaspar.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    params:
        tomtom=INTERPRET["tomtom"],
    script:
        "../../scripts/interpret_tomtom.py"


rule interpret_insertion:
    input:
        unpack(INTERPRET_PATHS.insertion_inputs),
    output:
        effects="results/{dataset}/interpret/insertion_effects.tsv",
        stats="results/{dataset}/interpret/insertion_stats.tsv",
        footprints="results/{dataset}/interpret/footprints.npz",
    log:
        "logs/{dataset}/interpret/insertion.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/insertion.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    resources:
        **job_resources("interpret"),
        gpu=gpu_request(),
    params:
        models=lambda wc: INTERPRET_PATHS.roles(),
        insertion=INTERPRET["insertion"],
        seed=config["seed"],
        device=config["device"],
        lineages=LINEAGES,
    script:
        "../../scripts/interpret_insertion.py"


if config["source"] == "simulate":

    rule interpret_truth:
        input:
            unpack(INTERPRET_PATHS.truth_inputs),
        output:
            truth=report(
                "results/{dataset}/interpret/truth_recovery.tsv",
                caption="../report/truth_recovery.rst",
                category="Interpretation vs simulated truth",
            ),
        log:
            "logs/{dataset}/interpret/truth_recovery.log",
        benchmark:
            "results/{dataset}/benchmarks/interpret/truth_recovery.tsv"
        conda:
            "../../envs/interpret.yaml"
        threads: config["threads"]
        resources:
            **job_resources("interpret"),
            gpu=gpu_request(),
        params:
            models=lambda wc: INTERPRET_PATHS.roles(),
            insertion=INTERPRET["insertion"],
            tomtom=INTERPRET["tomtom"],
            seed=config["seed"],
            device=config["device"],
            lineages=LINEAGES,
        script:
            "../../scripts/interpret_truth.py"


# Genome-browser tracks of the profile model (bpaitac/interpret/tracks.py); defined when the
# config names a profile model of the catalogue (the bigWigs it writes depend on that model).
if TRACK_PATHS.available():
    TARGET_FUNCTIONS["tracks"] = lambda: TRACK_PATHS.targets(DATASET, FIGURES)

    rule interpret_tracks:
        input:
            unpack(TRACK_PATHS.inputs),
        output:
            bigwigs=TRACK_PATHS.bigwigs(),
            session="results/{dataset}/tracks/igv_session.xml",
            trackdb="results/{dataset}/tracks/trackDb.txt",
        log:
            "logs/{dataset}/interpret/tracks.log",
        benchmark:
            "results/{dataset}/benchmarks/interpret/tracks.tsv"
        conda:
            "../../envs/interpret.yaml"
        threads: config["threads"]
        resources:
            **job_resources("interpret"),
            gpu=gpu_request(),
        params:
            tracks=INTERPRET["tracks"],
            preprocess=config["preprocess"],
            deepshap=INTERPRET["deepshap"],
            seed=config["seed"],
            device=config["device"],
            lineages=LINEAGES,
        script:
            "../../scripts/interpret_tracks.py"


# TF-MoDISco (bpaitac/interpret/modisco.py): its inputs always, the runs with interpret.modisco.
rule interpret_modisco_inputs:
    input:
        unpack(INTERPRET_PATHS.modisco_export_inputs),
    output:
        ohe="results/{dataset}/interpret/modisco/{group}/ohe.npz",
        hyp="results/{dataset}/interpret/modisco/{group}/hyp.npz",
        bed="results/{dataset}/interpret/modisco/{group}/regions.bed",
    log:
        "logs/{dataset}/interpret/modisco_inputs_{group}.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/modisco_inputs_{group}.tsv"
    wildcard_constraints:
        group=_alternatives(MODISCO_GROUPS),
    conda:
        "../../envs/interpret.yaml"
    params:
        roles=INTERPRET_PATHS.modisco_roles(),
        lineages=lambda wc: MODISCO_GROUPS[wc.group],
    script:
        "../../scripts/interpret_modisco.py"


rule interpret_modisco:
    input:
        ohe="results/{dataset}/interpret/modisco/{group}/ohe.npz",
        hyp="results/{dataset}/interpret/modisco/{group}/hyp.npz",
    output:
        h5="results/{dataset}/interpret/modisco/{group}/modisco.h5",
    log:
        "logs/{dataset}/interpret/modisco_{group}.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/modisco_{group}.tsv"
    wildcard_constraints:
        group=_alternatives(MODISCO_GROUPS),
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    resources:
        **job_resources("interpret"),
    params:
        max_seqlets=INTERPRET["modisco_options"]["max_seqlets"],
        n_leiden=INTERPRET["modisco_options"]["n_leiden"],
        window=INTERPRET["modisco_options"]["window"],
    script:
        "../../scripts/interpret_modisco.py"


rule interpret_jaspar_meme:
    output:
        meme=INTERPRET_PATHS.jaspar_meme(),
    log:
        "logs/{dataset}/interpret/jaspar_meme.log",
    conda:
        "../../envs/interpret.yaml"
    params:
        release=INTERPRET["tomtom"]["jaspar_release"],
    script:
        "../../scripts/interpret_modisco.py"


rule interpret_modisco_report:
    input:
        h5="results/{dataset}/interpret/modisco/{group}/modisco.h5",
        meme=INTERPRET_PATHS.jaspar_meme(),
    output:
        report=directory("results/{dataset}/interpret/modisco/{group}/report"),
    log:
        "logs/{dataset}/interpret/modisco_report_{group}.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/modisco_report_{group}.tsv"
    wildcard_constraints:
        group=_alternatives(MODISCO_GROUPS),
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    params:
        report_examples=INTERPRET["modisco_options"]["report_examples"],
    script:
        "../../scripts/interpret_modisco.py"


rule interpret_modisco_tomtom:
    input:
        h5s=lambda wc: INTERPRET_PATHS.modisco_results(wc.dataset, LINEAGES, "modisco.h5"),
    output:
        meme="results/{dataset}/interpret/modisco/patterns.meme",
        patterns="results/{dataset}/interpret/modisco/patterns.tsv",
        tomtom="results/{dataset}/interpret/modisco/tomtom_jaspar.tsv",
    log:
        "logs/{dataset}/interpret/modisco_tomtom.log",
    benchmark:
        "results/{dataset}/benchmarks/interpret/modisco_tomtom.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    params:
        groups=list(MODISCO_GROUPS),
        trim=INTERPRET["clustering"]["trim"],
        tomtom=INTERPRET["tomtom"],
    script:
        "../../scripts/interpret_modisco.py"


if config["source"] == "simulate":

    rule interpret_motif_callers:
        input:
            unpack(INTERPRET_PATHS.motif_callers_inputs(LINEAGES)),
        output:
            table=report(
                "results/{dataset}/interpret/motif_callers.tsv",
                caption="../report/motif_callers.rst",
                category="Interpretation vs simulated truth",
            ),
            summary=report(
                "results/{dataset}/interpret/motif_callers_summary.tsv",
                caption="../report/motif_callers_summary.rst",
                category="Interpretation vs simulated truth",
            ),
        log:
            "logs/{dataset}/interpret/motif_callers.log",
        conda:
            "../../envs/interpret.yaml"
        threads: config["threads"]
        params:
            tomtom=INTERPRET["tomtom"],
        script:
            "../../scripts/interpret_modisco.py"


for _figure in INTERPRET_FIGURES:

    rule:
        name:
            f"figure_{_figure}"
        input:
            unpack(INTERPRET_PATHS.figure_inputs(_figure)),
        output:
            pdf=f"results/{{dataset}}/figures/{_figure}.pdf",
            png=report(
                f"results/{{dataset}}/figures/{_figure}.png",
                caption=f"../report/{_figure}.rst",
                category="Figure 3" if _figure.startswith("fig3") else "Supplementary figures",
            ),
        log:
            f"logs/{{dataset}}/figures/{_figure}.log",
        conda:
            "../../envs/interpret.yaml"
        params:
            figure=_figure,
            models=lambda wc: INTERPRET_PATHS.labels(),
            lineages=LINEAGES,
            options=INTERPRET["figures"],
        script:
            "../../scripts/interpret_figure.py"
