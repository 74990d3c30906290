"""DeepSHAP throughput: attributions per second for the demo and the paper-scale network.

One attribution is one sequence x one lineage output (the accessibility head summed over the
lineage's tasks), averaged over ``--shuffles`` dinucleotide-shuffled references, exactly as the
``interpret_attributions`` rule computes it (:func:`bpaitac.interpret.attribution.deep_shap`).
Networks are
randomly initialised: the cost does not depend on the weights. Runs on the CPU and, when CUDA is
available, on the GPU.

    python benchmarks/attribution.py [--sequences 8] [--shuffles 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bpaitac.data.sequence import one_hot
from bpaitac.interpret.attribution import LineageAccessibility, deep_shap, references_for
from bpaitac.model.network import build_model, count_parameters

# (name, filters, dilated blocks, tasks, lineages): config/config.yaml's `bpaitac` architecture
# with 3 cell types per lineage, and the paper's network (Methods) on 90 cell types.
NETWORKS = (("demo", 32, 3, 30, 10), ("paper", 300, 9, 90, 10))


def bench(
    filters: int,
    blocks: int,
    tasks: int,
    lineages: int,
    *,
    n_seqs: int,
    n_shuffles: int,
    device: str,
    batch_size: int,
    n_lineages_run: int,
) -> tuple[float, int, float]:
    """(attributions per second, parameters, max |convergence delta|) of one network."""
    torch.manual_seed(0)
    model = build_model(
        {"filters": filters, "dilated_blocks": blocks, "acc_head": "conv", "n_tasks": tasks}
    )
    groups = np.zeros((tasks, lineages), dtype=np.float32)
    groups[np.arange(tasks), np.arange(tasks) % lineages] = 1.0
    # Time only the first `n_lineages_run` lineage outputs; the cost per output is the same.
    wrapper = LineageAccessibility(model, groups[:, :n_lineages_run])
    seqs = torch.randint(0, 4, (n_seqs, 1000), generator=torch.Generator().manual_seed(0))
    x = one_hot(seqs)
    refs = references_for(x, n_shuffles, seed=0)
    # Warm-up (numba compile of the shuffles, CUDA context, cuDNN autotuning).
    deep_shap(wrapper, x[:1], n_shuffles=n_shuffles, seed=0, device=device, references=refs[:1])
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    res = deep_shap(
        wrapper,
        x,
        n_shuffles=n_shuffles,
        seed=0,
        batch_size=batch_size,
        device=device,
        references=refs,
    )
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rate = n_seqs * n_lineages_run / seconds
    return rate, count_parameters(model), float(np.abs(res.deltas).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lineages", type=int, default=1, help="lineage outputs timed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(
        f"DeepSHAP, {args.sequences} sequences x {args.lineages} lineage output(s), "
        f"{args.shuffles} shuffles, {args.threads} CPU threads"
    )
    header = ("network", "device", "params", "attr/s", "s/attr", "max|delta|")
    print("{:8s} {:6s} {:>10s} {:>10s} {:>8s} {:>10s}".format(*header))
    for name, filters, blocks, tasks, lineages in NETWORKS:
        for device in devices:
            n_seqs = args.sequences * (8 if device == "cuda" else 1)
            batch = 256 if device == "cuda" else 64
            rate, params, delta = bench(
                filters,
                blocks,
                tasks,
                lineages,
                n_seqs=n_seqs,
                n_shuffles=args.shuffles,
                device=device,
                batch_size=batch,
                n_lineages_run=args.lineages,
            )
            print(f"{name:8s} {device:6s} {params:10d} {rate:10.2f} {1 / rate:8.2f} {delta:10.2e}")


if __name__ == "__main__":
    main()
