"""Evaluation on the test split: per-model tables, their summary and the Tn5 bias models.

Tables (docs/contracts.md, bpaitac/evaluate/metrics.py): results/{dataset}/eval/{model}/seed{seed}/
per_ocr.tsv, per_target.tsv, per_lineage_ocr.tsv, per_lineage.tsv; eval/summary.tsv;
eval/bias_models/{bias_model}/per_window.tsv and eval/bias_models/pairs.tsv (Figure S4).
A single-lineage ensemble is evaluated as one model under its catalogue name.
The input functions are bpaitac.workflow.evaluate_paths.*_paths (tested in tests/test_metrics.py).
"""

from bpaitac.workflow.evaluate_paths import (
    LEVELS,
    bias_eval_paths,
    bias_set_paths,
    eval_table_paths,
    evaluated_models,
    prediction_paths,
)
from bpaitac.workflow.figures import BIAS_COMPARISON, check_comparisons

COMPARISONS = config["comparisons"]
EVAL_MODELS = evaluated_models(CATALOGUE)
# A comparison the config leaves out compares nothing (the schema can give it no default).
COMPARED_BIAS_MODELS = (
    list(COMPARISONS[BIAS_COMPARISON].values()) if BIAS_COMPARISON in COMPARISONS else []
)
# The summary covers the models this run trains (`figures:` may limit them).
SUMMARY_MODELS = [m for m, e in EVAL_MODELS.items() if set(e["members"]) <= MODELS_TO_TRAIN]
check_comparisons(COMPARISONS, EVAL_MODELS, config["bias_models"], FIGURES)


rule evaluate_model:
    input:
        predictions=lambda wc: prediction_paths(wc.dataset, wc.model, wc.seed, EVAL_MODELS),
        celltypes=config["celltypes"],
    output:
        per_ocr="results/{dataset}/eval/{model}/seed{seed}/per_ocr.tsv",
        per_target="results/{dataset}/eval/{model}/seed{seed}/per_target.tsv",
        per_lineage_ocr="results/{dataset}/eval/{model}/seed{seed}/per_lineage_ocr.tsv",
        per_lineage="results/{dataset}/eval/{model}/seed{seed}/per_lineage.tsv",
    log:
        "logs/{dataset}/evaluate/{model}/seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/{model}/seed{seed}.tsv"
    wildcard_constraints:
        model=_alternatives(EVAL_MODELS),
    conda:
        "../../envs/evaluate.yaml"
    resources:
        **job_resources("evaluate"),
    params:
        kind=lambda wc: EVAL_MODELS[wc.model]["kind"],
        members=lambda wc: EVAL_MODELS[wc.model]["members"],
        lineages=LINEAGES,
    script:
        "../../scripts/evaluate.py"


rule evaluate_summary:
    input:
        unpack(
            lambda wc: {
                name: eval_table_paths(wc.dataset, level, SUMMARY_MODELS, EVAL_MODELS)
                for level, name in LEVELS.items()
            }
        ),
    output:
        summary=report(
            "results/{dataset}/eval/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        comparisons=report(
            "results/{dataset}/eval/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Summary",
        ),
    log:
        "logs/{dataset}/evaluate/summary.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        paper=COMPARISONS["paper_per_ocr_pearson_mean"],
        labels={name: entry["label"] for name, entry in EVAL_MODELS.items()},
        comparisons={
            name: mapping
            for name, mapping in COMPARISONS.items()
            if name not in (BIAS_COMPARISON, "paper_per_ocr_pearson_mean")
        },
    script:
        "../../scripts/evaluate.py"


rule evaluate_bias_model:
    input:
        unpack(lambda wc: bias_set_paths(wc.dataset)),
        model="results/{dataset}/bias_models/{bias_model}/model.pt",
    output:
        per_window="results/{dataset}/eval/bias_models/{bias_model}/per_window.tsv",
        predictions="results/{dataset}/eval/bias_models/{bias_model}/predictions.npz",
    log:
        "logs/{dataset}/evaluate/bias_models/{bias_model}.log",
    benchmark:
        "results/{dataset}/benchmarks/evaluate/bias_models/{bias_model}.tsv"
    conda:
        "../../envs/evaluate.yaml"
    threads: config["threads"]
    resources:
        **job_resources("evaluate"),
        gpu=gpu_request(),
    params:
        device=config["device"],
    script:
        "../../scripts/evaluate_bias.py"


rule compare_bias_models:
    input:
        predictions=lambda wc: bias_eval_paths(wc.dataset, COMPARED_BIAS_MODELS, "predictions.npz"),
    output:
        pairs="results/{dataset}/eval/bias_models/pairs.tsv",
    log:
        "logs/{dataset}/evaluate/bias_models/pairs.log",
    conda:
        "../../envs/evaluate.yaml"
    params:
        bias_models=COMPARED_BIAS_MODELS,
    script:
        "../../scripts/evaluate_bias.py"
