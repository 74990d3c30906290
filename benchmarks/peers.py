"""Training step of bpAI-TAC against bpnet-lite's BPNet at matched size, and the conv1d peak.

Ours: :func:`bpaitac.train.loop.train_step` of :func:`bpaitac.model.network.build_model` (conv
accessibility head, composite loss with lambda 0.5 and bias logits, Adam), as
``benchmarks/train_throughput.py`` times it. The peer: bpnet-lite 1.1.0
``BPNet(n_filters=F, n_layers=D, n_outputs=tasks, n_control_tracks=0, trimming=375)`` (a
250 bp profile output from 1000 bp, like ours) with the step of its own ``BPNet.fit``: its
``_mixture_loss`` (multinomial NLL over all tasks' profiles plus the count MSE), backward,
gradient-norm clipping at 1, Adam. Both train on the same random batches, prepared before the
clock starts. Sizes: ``demo`` (F=32, D=3, 29 tasks) and ``paper`` (F=300, D=9, 90 tasks).

Rounds are interleaved (for each round, each thread count, each contender: ``--steps`` timed
steps); median and best sequences/s are printed per contender and thread count. FLOPs per step
come from ``torch.utils.flop_counter.FlopCounterMode`` (forward + backward); the conv1d peak is
measured in the same process: the best forward GFLOP/s of a large ``Conv1d(512, 512, 9)`` over
(16, 512, 1000), and the forward + backward GFLOP/s of a convolution of the body's own shape
(F channels, width 3, dilation 2, the batch size), per thread count.

bpnet-lite is optional and benchmark-only. Install it without its dependencies, so that no
second torch is pulled (its imports are torch, numpy, pandas, tqdm, h5py and tangermeme, all
already here):

    pip install --no-deps bpnet-lite==1.1.0

Without it the script says so and exits 0.

    python benchmarks/peers.py                 # demo and paper size, batch 64, 3 rounds
    python benchmarks/peers.py --quick         # paper size at batch 16, 2 rounds, 1 step
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from _report import add_json_argument, write_report
from torch.utils.flop_counter import FlopCounterMode
from train_throughput import random_source

from bpaitac.model.losses import model_loss
from bpaitac.model.network import ModelSpec, build_model, count_parameters
from bpaitac.train.loop import make_optimiser, train_step

SIZES = {"demo": (32, 3, 29), "paper": (300, 9, 90)}
INSTALL = "pip install --no-deps bpnet-lite==1.1.0"


def ours(filters: int, blocks: int, tasks: int, batches: list) -> tuple[Callable, int]:
    """One training step of our network per call (cycling over ``batches``), and its size."""
    torch.manual_seed(0)
    model = build_model(ModelSpec(filters, blocks, "conv", tasks))
    optimiser = make_optimiser(model, 1e-3)

    def loss_fn(logits, log_counts, batch):
        return model_loss("composite_ce", 0.5, logits, log_counts, batch.profile, batch.counts)

    state = {"i": 0}

    def step() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        float(train_step(model, optimiser, batch, loss_fn))

    return step, count_parameters(model)


def peer(filters: int, blocks: int, tasks: int, batches: list) -> tuple[Callable, int]:
    """One step of bpnet-lite's BPNet.fit (its loss, clipping at 1, Adam) per call."""
    from bpnetlite import BPNet
    from bpnetlite.losses import _mixture_loss

    torch.manual_seed(0)
    model = BPNet(
        n_filters=filters,
        n_layers=blocks,
        n_outputs=tasks,
        n_control_tracks=0,
        trimming=375,
        verbose=False,
    )
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    state = {"i": 0}

    def step() -> None:
        batch = batches[state["i"] % len(batches)]
        state["i"] += 1
        optimiser.zero_grad()
        logits, logcounts = model(batch.x)
        _, _, loss = _mixture_loss(batch.profile, logits, logcounts, model.count_loss_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1)
        optimiser.step()
        float(loss.detach())

    return step, count_parameters(model)


def flops(step: Callable) -> int:
    """FLOPs of one call of ``step`` (forward + backward; the optimiser's are not counted)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def conv_gflops(
    channels: int, width: int, dilation: int, batch: int, backward: bool, repeats: int = 3
) -> float:
    """Best GFLOP/s of a Conv1d(channels, channels, width, dilation, 'same') over (batch,
    channels, 1000), forward only or forward + backward."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(channels, channels, width, dilation=dilation, padding="same")
    x = torch.randn(batch, channels, 1000, requires_grad=backward)

    def run() -> None:
        if backward:
            conv(x).sum().backward()
        else:
            with torch.no_grad():
                conv(x)

    with FlopCounterMode(display=False) as counter:
        run()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return counter.get_total_flops() / best / 1e9


def bench_size(name: str, *, batch: int, steps: int, rounds: int, threads: list[int]) -> dict:
    """Interleaved rounds of both contenders at one size, FLOPs and the conv references."""
    filters, blocks, tasks = SIZES[name]
    source = random_source(batch * 2, tasks, torch.device("cpu"))
    batches = [source.take(np.arange(i * batch, (i + 1) * batch)) for i in range(2)]
    contenders = {
        "bpaitac": ours(filters, blocks, tasks, batches),
        "bpnet-lite": peer(filters, blocks, tasks, batches),
    }
    step_flops = {k: flops(step) for k, (step, _) in contenders.items()}
    rates: dict[str, dict[int, list[float]]] = {k: {t: [] for t in threads} for k in contenders}
    for t in threads:  # warm-up per thread count
        torch.set_num_threads(t)
        for step, _ in contenders.values():
            step()
    for _ in range(rounds):
        for t in threads:
            torch.set_num_threads(t)
            for k, (step, _) in contenders.items():
                t0 = time.perf_counter()
                for _ in range(steps):
                    step()
                rates[k][t].append(steps * batch / (time.perf_counter() - t0))
    refs = {}
    for t in threads:
        torch.set_num_threads(t)
        refs[t] = {
            "peak_gflops": conv_gflops(512, 9, 1, 16, backward=False),
            "body_conv_gflops": conv_gflops(filters, 3, 2, batch, backward=True),
        }
    rows = []
    for k, (_, n_params) in contenders.items():
        for t in threads:
            med, best = statistics.median(rates[k][t]), max(rates[k][t])
            gflops = step_flops[k] * med / batch / 1e9
            rows.append(
                {
                    "contender": k,
                    "threads": t,
                    "parameters": n_params,
                    "seq_per_s_median": med,
                    "seq_per_s_best": best,
                    "seq_per_s_rounds": rates[k][t],
                    "gflop_per_step": step_flops[k] / 1e9,
                    "gflops_median": gflops,
                    "share_of_peak": gflops / refs[t]["peak_gflops"],
                    "share_of_body_conv": gflops / refs[t]["body_conv_gflops"],
                }
            )
    return {
        "size": name,
        "filters": filters,
        "dilated_blocks": blocks,
        "tasks": tasks,
        "batch_size": batch,
        "steps_per_round": steps,
        "rounds": rounds,
        "conv_reference": refs,
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["demo", "paper"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round and contender")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--quick", action="store_true", help="paper size at batch 16, 1 step, 2 rounds")
    add_json_argument(ap, "peers")
    args = ap.parse_args()
    try:
        import bpnetlite  # noqa: F401
    except ImportError as err:
        print(f"skipped: bpnet-lite is not installed ({err}); install it with: {INSTALL}")
        sys.exit(0)
    plan = {name: (args.batch_size, args.steps, args.rounds) for name in args.sizes}
    if args.quick and "paper" in plan:
        plan["paper"] = (16, 1, 2)
    print(f"training step, bpAI-TAC vs bpnet-lite 1.1.0, torch {torch.__version__}, CPU")
    results = []
    for name, (batch, steps, rounds) in plan.items():
        r = bench_size(name, batch=batch, steps=steps, rounds=rounds, threads=args.threads)
        results.append(r)
        f, d, t = SIZES[name]
        print(f"\n{name}: F={f}, D={d}, {t} tasks, batch {batch}, {rounds} rounds x {steps} steps")
        for th, ref in r["conv_reference"].items():
            print(
                f"  {th} thread(s): conv1d peak {ref['peak_gflops']:.1f} GFLOP/s (512x512 width 9,"
                f" forward); body-shape conv {ref['body_conv_gflops']:.1f} GFLOP/s (fwd+bwd)"
            )
        head = ("contender", "thr", "params", "med seq/s", "best", "GFLOP/step", "GFLOP/s")
        print(
            "  {:<11s} {:>3s} {:>9s} {:>9s} {:>7s} {:>10s} {:>8s} {:>6s} {:>6s}".format(
                *head, "%peak", "%body"
            )
        )
        for row in r["rows"]:
            print(
                f"  {row['contender']:<11s} {row['threads']:>3d} {row['parameters']:>9d} "
                f"{row['seq_per_s_median']:>9.2f} {row['seq_per_s_best']:>7.2f} "
                f"{row['gflop_per_step']:>10.1f} {row['gflops_median']:>8.1f} "
                f"{100 * row['share_of_peak']:>5.0f}% {100 * row['share_of_body_conv']:>5.0f}%"
            )
        by = {(row["contender"], row["threads"]): row["seq_per_s_median"] for row in r["rows"]}
        for th in args.threads:
            print(
                f"  {th} thread(s): ours / bpnet-lite = "
                f"{by[('bpaitac', th)] / by[('bpnet-lite', th)]:.2f}x"
            )
    write_report(args.json, "peers", results)


if __name__ == "__main__":
    main()
