"""Snakemake entry (rule train_bias_model): train one Tn5 bias model on its bias set."""

from pathlib import Path

import torch

from bpaitac.io import setup_logging
from bpaitac.train.loop import train_bias_model

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
inp, out, params = snakemake.input, snakemake.output, snakemake.params
train_bias_model(
    name=snakemake.wildcards.bias_model,
    bias_entry=dict(params.entry),
    arch=dict(params.arch),
    training=dict(params.training),
    seed=int(params.seed),
    split_dirs={s: Path(inp[s][0]).parent for s in ("train", "val")},
    out_model=out.model,
    out_history=out.history,
    device=params.device,
)
