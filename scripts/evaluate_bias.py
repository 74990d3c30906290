"""Snakemake entry: Tn5 bias models on the held-out bias sets (Figure S4).

Rules (workflow/rules/evaluate.smk): ``evaluate_bias_model`` predicts the profiles of one bias
model on the ``val`` split of every bias set and scores them against the observed insertions
(per-window Pearson R and JSD); ``compare_bias_models`` scores the agreement of every pair of
bias models' predicted profiles.
"""

import itertools
import logging

import numpy as np
import pandas as pd

from bpaitac.evaluate.metrics import PAIR_COLUMNS, bias_pair_table, bias_window_table, write_table
from bpaitac.io import atomic_path, log_exception, setup_logging
from bpaitac.numeric import bin_to
from bpaitac.workflow.evaluate_paths import BIAS_SETS

setup_logging(snakemake.log[0])
log = logging.getLogger("evaluate_bias")


def evaluate_bias_model() -> None:
    import torch

    from bpaitac.model.network import load_model, resolve_device
    from bpaitac.model.predict import bias_profiles

    torch.set_num_threads(snakemake.threads)
    device = resolve_device(snakemake.params.device)
    model, _ = load_model(snakemake.input.model, device=device)
    name = snakemake.wildcards.bias_model
    predictions, tables = {}, []
    for eval_set in BIAS_SETS:
        seq = np.load(snakemake.input[f"{eval_set}_seq"], mmap_mode="r")
        observed = np.load(snakemake.input[f"{eval_set}_profile"])[:, 0, :].astype(np.float64)
        predicted = bias_profiles(
            model, seq, batch_size=snakemake.config["training"]["eval_batch_size"], device=device
        )
        observed = bin_to(observed, predicted.shape[1])
        predictions[eval_set] = predicted
        table = bias_window_table(name, eval_set, observed, predicted)
        tables.append(table)
        log.info(
            "%s on %s: %d windows, median profile R %.3f, median JSD %.3f",
            name,
            eval_set,
            len(table),
            table["pearson"].median(),
            table["jsd"].median(),
        )
    write_table(pd.concat(tables, ignore_index=True), snakemake.output.per_window)
    with atomic_path(snakemake.output.predictions) as tmp:
        np.savez_compressed(tmp, **predictions)


def compare_bias_models() -> None:
    names = list(snakemake.params.bias_models)
    preds = {}
    for name, path in zip(names, snakemake.input.predictions):
        with np.load(path) as data:
            preds[name] = {s: data[s] for s in BIAS_SETS}
    tables = [
        bias_pair_table(a, b, s, preds[a][s], preds[b][s])
        for a, b in itertools.combinations(names, 2)
        for s in BIAS_SETS
    ]
    pairs = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PAIR_COLUMNS)
    write_table(pairs, snakemake.output.pairs)
    log.info("%d pairs of bias models compared on %s", len(tables) // len(BIAS_SETS), BIAS_SETS)


try:
    rules = {"evaluate_bias_model": evaluate_bias_model, "compare_bias_models": compare_bias_models}
    rules[snakemake.rule]()
except Exception:
    log_exception(log, "rule %s failed", snakemake.rule)
    raise
