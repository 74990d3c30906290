"""Train one catalogue model for more epochs than its config allows, on the workflow's arrays.

How much do the validation models gain from longer training? ``make validate`` trains 8 epochs
(2-hour budget on 2 CPU cores) while the validation R is still rising. This script trains one
model and seed of the catalogue with ``--epochs`` (and ``--patience``) on the arrays the workflow
already built under ``results/{dataset}/data`` and prints the best epoch and the test split's
mean per-OCR R across cell types (the Figure 1b metric). Its first epochs repeat the workflow's
run exactly when the thread count is the same (``model.pt``'s ``torch_threads``).

    python benchmarks/longer_training.py --configfile config/validate.yaml --model bpaitac \\
        --seed 1 --epochs 16 --out /tmp/longer
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _report import add_json_argument, write_report

from bpaitac.model.predict import mean_r_across_targets
from bpaitac.train.runs import train_catalogue_model
from bpaitac.workflow.config import load_config, model_catalogue, selected_celltypes
from bpaitac.workflow.splits import SPLITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", default="config/validate.yaml")
    parser.add_argument("--model", required=True, help="a key of the config's models:")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True, help="directory for model.pt, history.tsv")
    add_json_argument(parser, "longer_training")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.configfile)
    entry = model_catalogue(config)[args.model]
    celltypes = selected_celltypes(config)
    data = Path("results") / config["dataset"] / "data"
    bias = entry["bias"]
    bias_paths = None if bias == "none" else {s: data / s / "bias" / f"{bias}.npy" for s in SPLITS}
    out = Path(args.out) / args.model / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = train_catalogue_model(
        name=args.model,
        entry=dict(entry),
        arch=dict(config["architectures"][entry["arch"]]),
        training={**config["training"], "max_epochs": args.epochs, "patience": args.patience},
        lineage_of=dict(zip(celltypes["celltype"], celltypes["lineage"])),
        seed=args.seed,
        split_dirs={s: data / s for s in SPLITS},
        bias_paths=bias_paths,
        out_model=out / "model.pt",
        out_history=out / "history.tsv",
        out_predictions=out / "predictions_test.npz",
        device=config["device"],
    )
    pred = np.load(out / "predictions_test.npz")
    r = mean_r_across_targets(pred["acc_pred"], pred["acc_obs"])
    print(
        f"{args.model} seed {args.seed}: {len(result.history)} epochs "
        f"(best {result.best_epoch}), {time.perf_counter() - t0:.0f} s, "
        f"{args.threads} thread(s); test mean per-OCR R {r:.3f}"
    )
    write_report(
        args.json,
        "longer_training",
        {
            "model": args.model,
            "seed": args.seed,
            "epochs": len(result.history),
            "best_epoch": result.best_epoch,
            "test_mean_per_ocr_r": float(r),
        },
    )


if __name__ == "__main__":
    main()
