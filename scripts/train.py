"""Snakemake entry (rule train_model): train one catalogue model for one seed.

``params.training`` holds the settings that decide the weights; the runtime ones (progress bar,
evaluation batch size, ...) come from the config, so changing them retrains nothing.
"""

from pathlib import Path

import torch

from bpaitac.io import setup_logging
from bpaitac.train.runs import train_catalogue_model
from bpaitac.workflow.splits import SPLITS
from bpaitac.workflow.train_paths import runtime_settings

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
bias = {s: inp[f"bias_{s}"] for s in SPLITS} if "bias_train" in inp.keys() else None
train_catalogue_model(
    name=snakemake.wildcards.model,
    entry=dict(params.entry),
    arch=dict(params.arch),
    training={**params.training, **runtime_settings(snakemake.config["training"])},
    lineage_of=dict(params.lineages),
    seed=int(snakemake.wildcards.seed),
    split_dirs={s: Path(inp[s][0]).parent for s in SPLITS},
    bias_paths=bias,
    out_model=out.model,
    out_history=out.history,
    out_predictions=out.predictions,
    device=params.device,
)
