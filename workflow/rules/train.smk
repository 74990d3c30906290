"""Model training: one job per catalogue model and seed (bpaitac.workflow.config.model_catalogue).

`checkpoint.pt` in the seed directory is deliberately not an output: it must survive a killed
job so that the rerun resumes (bpaitac/train/checkpoint.py); it is removed when the outputs are
written. Only the `training:` settings that decide the weights are params (result_settings); the
runtime ones (progress bar, evaluation batch size, ...) reach the script through the config, so
changing them retrains nothing.
"""

from bpaitac.workflow.train_paths import model_inputs, model_outputs, result_settings, run_entry

# `figures:` limits the run: only models a selected figure needs (or no figure uses) are trained.
TARGET_FUNCTIONS["train"] = lambda: model_outputs(
    DATASET, [(m, s) for m, s in MODEL_RUNS if m in MODELS_TO_TRAIN]
)


rule train_model:
    input:
        unpack(lambda wc: model_inputs(wc.dataset, CATALOGUE[wc.model])),
    output:
        model="results/{dataset}/models/{model}/seed{seed}/model.pt",
        history="results/{dataset}/models/{model}/seed{seed}/history.tsv",
        predictions="results/{dataset}/models/{model}/seed{seed}/predictions_test.npz",
    log:
        "logs/{dataset}/train/{model}/seed{seed}.log",
    benchmark:
        "results/{dataset}/benchmarks/train/{model}/seed{seed}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        **job_resources("train"),
        gpu=gpu_request(),
    params:
        entry=lambda wc: run_entry(CATALOGUE[wc.model]),
        arch=lambda wc: config["architectures"][CATALOGUE[wc.model]["arch"]],
        training=result_settings(config["training"]),
        lineages=LINEAGE_OF,
        device=config["device"],
    script:
        "../../scripts/train.py"
