"""Variant effects: a VCF or TSV of variants scored with every seed of the chosen models, per
cell type and per lineage, a figure, and on the simulator's variants the comparison with their
planted effects.

Settings: config `variants:` (workflow/schemas/variants.schema.yaml, the only place defaults
live); input functions and paths in bpaitac/workflow/variant_paths.py; the steps in
bpaitac/variants/ (inputs, windows, score, figures, truth).
"""

from bpaitac.workflow.variant_paths import VariantPaths

VARIANTS = config["variants"]
VARIANT_PATHS = VariantPaths(config, CATALOGUE)
TARGET_FUNCTIONS["variants"] = lambda: VARIANT_PATHS.targets(DATASET)
if VARIANT_PATHS.enabled:
    VARIANT_PATHS.models()  # an unknown model name stops the run here, naming the config key


if VARIANT_PATHS.downloaded:

    rule download_variants:
        output:
            file=VARIANT_PATHS.download_file("{dataset}"),
        log:
            "logs/{dataset}/download/variants.log",
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=VARIANTS["path"],
            gunzip=False,
        script:
            "../../scripts/download.py"


rule score_variants:
    input:
        unpack(VARIANT_PATHS.score_inputs),
    output:
        table="results/{dataset}/variants/{model}.tsv",
        summary="results/{dataset}/variants/{model}_summary.tsv",
        profiles="results/{dataset}/variants/{model}_profiles.npz",
    log:
        "logs/{dataset}/variants/score_{model}.log",
    benchmark:
        "results/{dataset}/benchmarks/variants/score_{model}.tsv"
    conda:
        "../../envs/interpret.yaml"
    threads: config["threads"]
    resources:
        **job_resources("variants"),
        gpu=gpu_request(),
    params:
        on_ref_mismatch=VARIANTS["on_ref_mismatch"],
        max_allele_length=VARIANTS["max_allele_length"],
        top_variants=VARIANTS["top_variants"],
        device=config["device"],
        lineages=LINEAGES,
    script:
        "../../scripts/score_variants.py"


rule variants_figure:
    input:
        unpack(VARIANT_PATHS.figure_inputs),
    output:
        pdf="results/{dataset}/figures/variants_{model}.pdf",
        png=report(
            "results/{dataset}/figures/variants_{model}.png",
            caption="../report/variants.rst",
            category="Variant effects",
        ),
    log:
        "logs/{dataset}/figures/variants_{model}.log",
    conda:
        "../../envs/interpret.yaml"
    params:
        labels=lambda wc: VARIANT_PATHS.labels(),
    script:
        "../../scripts/variants_figure.py"


if config["source"] == "simulate":

    rule variants_truth:
        input:
            unpack(VARIANT_PATHS.truth_inputs),
        output:
            truth=report(
                "results/{dataset}/variants/variant_truth.tsv",
                caption="../report/variants_truth.rst",
                category="Variant effects",
            ),
        log:
            "logs/{dataset}/variants/variant_truth.log",
        conda:
            "../../envs/interpret.yaml"
        params:
            models=lambda wc: VARIANT_PATHS.models(),
            labels=lambda wc: VARIANT_PATHS.labels(),
            roles=lambda wc: VARIANT_PATHS.roles(),
            held_out=config["preprocess"]["splits"]["test"],
        script:
            "../../scripts/variants_truth.py"
