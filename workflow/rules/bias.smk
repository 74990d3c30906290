"""Tn5 bias models: trained on a bias set with a profile-only loss, frozen, logits per split.

`checkpoint.pt` in the model directory is deliberately not an output: it must survive a killed
job so that the rerun resumes (bpaitac/train/checkpoint.py); it is removed when model.pt is
written. As in train.smk, only the `training:` settings that decide the weights are params of
train_bias_model.
"""

from bpaitac.workflow.train_paths import bias_set_inputs, result_settings

BIAS_DATA = {name: entry["data"] for name, entry in config["bias_models"].items()}


rule train_bias_model:
    input:
        unpack(lambda wc: bias_set_inputs(wc.dataset, BIAS_DATA[wc.bias_model])),
    output:
        model="results/{dataset}/bias_models/{bias_model}/model.pt",
        history="results/{dataset}/bias_models/{bias_model}/history.tsv",
    log:
        "logs/{dataset}/bias/train_{bias_model}.log",
    benchmark:
        "results/{dataset}/benchmarks/bias/train_{bias_model}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        **job_resources("bias"),
        gpu=gpu_request(),
    params:
        entry=lambda wc: config["bias_models"][wc.bias_model],
        arch=lambda wc: config["architectures"][config["bias_models"][wc.bias_model]["arch"]],
        training=result_settings(config["training"]),
        seed=config["seed"],
        device=config["device"],
    script:
        "../../scripts/train_bias.py"


rule bias_logits:
    input:
        model=rules.train_bias_model.output.model,
        train="results/{dataset}/data/train/seq.npy",
        val="results/{dataset}/data/val/seq.npy",
        test="results/{dataset}/data/test/seq.npy",
    output:
        train="results/{dataset}/data/train/bias/{bias_model}.npy",
        val="results/{dataset}/data/val/bias/{bias_model}.npy",
        test="results/{dataset}/data/test/bias/{bias_model}.npy",
    log:
        "logs/{dataset}/bias/logits_{bias_model}.log",
    benchmark:
        "results/{dataset}/benchmarks/bias/logits_{bias_model}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: config["threads"]
    resources:
        **job_resources("bias"),
        gpu=gpu_request(),
    params:
        device=config["device"],
    script:
        "../../scripts/bias_logits.py"
