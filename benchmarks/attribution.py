"""DeepSHAP throughput against its bound: attributions per second, demo and paper-scale network.

One attribution is one sequence x one lineage output (the accessibility head summed over the
lineage's tasks), averaged over ``--shuffles`` dinucleotide-shuffled references, exactly as the
``interpret_attributions`` rule computes it (:func:`bpaitac.interpret.attribution.deep_shap`,
all 10 lineages of a sequence at once, as the rule does). Networks are randomly initialised:
the cost does not depend on the weights.

The bound is the time of 1 + S forward and input-gradient passes per attribution (the input
and its S references, one output), the passes DeepLIFT needs for one output when nothing is
shared, timed on the same model, inputs and batch size; the ratio is attributions/s over the
bound's. ``--tangermeme`` also times tangermeme's ``deep_lift_shap`` called per lineage
(:func:`bpaitac.interpret.attribution.deep_shap_tangermeme`, one lineage output: its cost is
linear in the outputs), the implementation before issue 27. Rounds are interleaved (bound,
ours, tangermeme); medians are printed.

    python benchmarks/attribution.py [--sequences 2] [--shuffles 20] [--threads 2] [--tangermeme]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _report import add_json_argument, write_report

from bpaitac.data.sequence import one_hot
from bpaitac.interpret.attribution import (
    LineageAccessibility,
    deep_shap,
    deep_shap_tangermeme,
    references_for,
)
from bpaitac.model.network import build_model, count_parameters

# (name, filters, dilated blocks, tasks, lineages): config/config.yaml's `bpaitac` architecture
# with 3 cell types per lineage (the demo now has 2; the size is kept so that the figures compare
# with earlier runs), and the paper's network (Methods) on 90 cell types.
NETWORKS = {"demo": (32, 3, 30, 10), "paper": (300, 9, 90, 10)}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bound_seconds(
    wrapper: torch.nn.Module, x: torch.Tensor, refs: torch.Tensor, batch_size: int, device: str
) -> float:
    """Seconds of one forward and input-gradient pass of output 0 over every input and
    reference row (N * (1 + S) rows, ``batch_size`` rows at a time)."""
    rows = torch.cat([x[:, None], refs], dim=1).reshape(-1, *x.shape[1:])
    wrapper = wrapper.eval().to(device)
    sync(device)
    t0 = time.perf_counter()
    for i in range(0, rows.shape[0], batch_size):
        r = rows[i : i + batch_size].to(device).requires_grad_(True)
        torch.autograd.grad(wrapper(r)[:, 0].sum(), r)[0].cpu()
    sync(device)
    return time.perf_counter() - t0


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of ``fn(*args, **kwargs)``, waiting for the device."""
    sync(kwargs["device"])
    t0 = time.perf_counter()
    res = fn(*args, **kwargs)
    sync(kwargs["device"])
    return time.perf_counter() - t0, res


def bench(
    name: str, *, n_seqs: int, n_shuffles: int, device: str, batch_size: int, rounds: int, tm: bool
) -> dict:
    """Rates (attributions/s) of the bound, deep_shap and (``tm``) tangermeme for one network."""
    filters, blocks, tasks, lineages = NETWORKS[name]
    torch.manual_seed(0)
    model = build_model(
        {"filters": filters, "dilated_blocks": blocks, "acc_head": "conv", "n_tasks": tasks}
    )
    groups = np.zeros((tasks, lineages), dtype=np.float32)
    groups[np.arange(tasks), np.arange(tasks) % lineages] = 1.0
    wrapper = LineageAccessibility(model, groups)
    one = LineageAccessibility(model, groups[:, :1])
    seqs = torch.randint(0, 4, (n_seqs, 1000), generator=torch.Generator().manual_seed(0))
    x = one_hot(seqs)
    refs = references_for(x, n_shuffles, seed=0)
    kw = {"n_shuffles": n_shuffles, "seed": 0, "batch_size": batch_size, "device": device}
    # Warm-up (numba compile of the shuffles, CUDA context, cuDNN autotuning).
    deep_shap(wrapper, x[:1], references=refs[:1], **kw)
    bound_seconds(wrapper, x[:1], refs[:1], batch_size, device)
    rates: dict[str, list[float]] = {"bound": [], "deep_shap": [], "tangermeme": []}
    delta = {}
    for _ in range(rounds):
        rates["bound"].append(n_seqs / bound_seconds(wrapper, x, refs, batch_size, device))
        sec, res = timed(deep_shap, wrapper, x, references=refs, **kw)
        rates["deep_shap"].append(n_seqs * lineages / sec)
        delta["deep_shap"] = float(np.abs(res.deltas).max())
        if tm:
            sec, res = timed(deep_shap_tangermeme, one, x, references=refs, **kw)
            rates["tangermeme"].append(n_seqs / sec)
            delta["tangermeme"] = float(np.abs(res.deltas).max())
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    return {
        "network": name,
        "device": device,
        "filters": filters,
        "dilated_blocks": blocks,
        "tasks": tasks,
        "lineages": lineages,
        "parameters": count_parameters(model),
        "sequences": n_seqs,
        "shuffles": n_shuffles,
        "batch_size": batch_size,
        "rounds": rates,
        "attr_per_s": med,
        "ratio_to_bound": {k: v / med["bound"] for k, v in med.items() if k != "bound"},
        "max_abs_delta": delta,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=2, help="sequences per network (CPU)")
    parser.add_argument("--shuffles", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--networks", nargs="+", choices=sorted(NETWORKS), default=list(NETWORKS))
    parser.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    parser.add_argument("--batch-size", type=int, default=64, help="pairs per batch on CPU")
    parser.add_argument(
        "--tangermeme", action="store_true", help="also time tangermeme per lineage (before)"
    )
    add_json_argument(parser, "attribution")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda: no CUDA device visible")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"]}.get(
        args.device, ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    print(
        f"DeepSHAP, {args.shuffles} shuffles, {args.threads} CPU threads, {args.rounds} "
        "interleaved rounds (medians); attr = one sequence x one lineage output"
    )
    header = ("network", "device", "params", "bound/s", "ours/s", "ratio", "tanger/s", "ratio")
    print("{:8s} {:6s} {:>10s} {:>9s} {:>9s} {:>6s} {:>9s} {:>6s}".format(*header))
    results = []
    for name in args.networks:
        for device in devices:
            cuda = device == "cuda"
            r = bench(
                name,
                n_seqs=args.sequences * (16 if cuda else 1),
                n_shuffles=args.shuffles,
                device=device,
                batch_size=256 if cuda else args.batch_size,
                rounds=args.rounds,
                tm=args.tangermeme,
            )
            results.append(r)
            med, ratio = r["attr_per_s"], r["ratio_to_bound"]
            tm = (
                f"{med['tangermeme']:9.3f} {ratio['tangermeme']:6.2f}"
                if "tangermeme" in med
                else f"{'-':>9s} {'-':>6s}"
            )
            print(
                f"{name:8s} {device:6s} {r['parameters']:10d} {med['bound']:9.3f} "
                f"{med['deep_shap']:9.3f} {ratio['deep_shap']:6.2f} {tm}"
            )
    print(
        "max |convergence delta|:",
        {f"{r['network']}/{r['device']}": r["max_abs_delta"] for r in results},
    )
    write_report(args.json, "attribution", results)


if __name__ == "__main__":
    main()
