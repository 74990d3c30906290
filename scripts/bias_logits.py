"""Snakemake entry (rule bias_logits): a frozen bias model's logits for every split."""

import torch

from bpaitac.io import setup_logging
from bpaitac.model.predict import write_bias_logits
from bpaitac.workflow.splits import SPLITS

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
write_bias_logits(
    model_path=snakemake.input.model,
    seq_paths={s: snakemake.input[s] for s in SPLITS},
    out_paths={s: snakemake.output[s] for s in SPLITS},
    device=snakemake.params.device,
    batch_size=snakemake.config["training"]["eval_batch_size"],  # not a param: reruns nothing
)
