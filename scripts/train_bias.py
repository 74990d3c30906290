"""Snakemake entry (rule train_bias_model): train one Tn5 bias model on its bias set.

``params.training`` holds the settings that decide the weights; the runtime ones (progress bar,
evaluation batch size, ...) come from the config, so changing them retrains nothing.
"""

from pathlib import Path

import torch

from bpaitac.io import setup_logging
from bpaitac.train.runs import train_bias_model
from bpaitac.workflow.splits import FIT_SPLITS
from bpaitac.workflow.train_paths import runtime_settings

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
train_bias_model(
    name=snakemake.wildcards.bias_model,
    bias_entry=dict(params.entry),
    arch=dict(params.arch),
    training={**params.training, **runtime_settings(snakemake.config["training"])},
    seed=int(params.seed),
    split_dirs={s: Path(inp[s][0]).parent for s in FIT_SPLITS},
    out_model=out.model,
    out_history=out.history,
    device=params.device,
)
