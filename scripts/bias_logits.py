"""Snakemake entry (rule bias_logits): a frozen bias model's logits for every split."""

import torch

from bpaitac.io import setup_logging
from bpaitac.model.predict import write_bias_logits

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
splits = ("train", "val", "test")
write_bias_logits(
    model_path=snakemake.input.model,
    seq_paths={s: snakemake.input[s] for s in splits},
    out_paths={s: snakemake.output[s] for s in splits},
    device=snakemake.params.device,
    batch_size=int(snakemake.params.batch_size),
)
