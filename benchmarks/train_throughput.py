"""Training throughput of bpAI-TAC: sequences/s of a full training step, per device and mode.

A step is what ``bpaitac.train.loop.train_epoch`` runs per batch: batch gather from arrays
preloaded on the device, one-hot encoding, forward, composite loss (MSE + CE, lambda 0.5, bias
logits), backward, Adam. Default: the paper-scale network (F=300, D=9, 90 tasks, ~4.1 M
parameters), batch 64.

Modes: on CPU ``fp32`` eager (the only CPU mode of the trainer); on CUDA the plain baseline
``fp32`` eager (TF32 off), ``tf32`` (PyTorch's default for convolutions, i.e. `training.amp:
false`), ``bf16`` (`training.amp: true`) and ``bf16+compile`` (`amp` and `compile: true`), all
in the same run. The epoch estimate is for the paper's 267,237 training OCRs (the paper: ~10
min per epoch on an A40, ~450 sequences/s; target on an H100: under one minute).

    python benchmarks/train_throughput.py                       # paper scale, CPU (+ GPU)
    python benchmarks/train_throughput.py --filters 32 --blocks 3 --tasks 29   # demo arch
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import time
from collections.abc import Iterator

import numpy as np
import torch
from _report import add_json_argument, write_report

from bpaitac.data.batches import BatchSource, SplitArrays
from bpaitac.model.losses import model_loss
from bpaitac.model.network import ModelSpec, build_model, count_parameters
from bpaitac.train.loop import make_optimiser, train_step

PAPER_TRAIN_OCRS = 267_237
CUDA_MODES = ("fp32", "tf32", "bf16", "bf16+compile")


def random_source(n: int, tasks: int, device: torch.device, seed: int = 0) -> BatchSource:
    """Random arrays in the contract's dtypes, preloaded on ``device``."""
    rng = np.random.default_rng(seed)
    split = SplitArrays(
        seq=rng.integers(0, 4, size=(n, 1000), dtype=np.uint8),
        profile=rng.poisson(0.3, size=(n, tasks, 250)).astype(np.uint16),
        counts=rng.gamma(2.0, 30.0, size=(n, tasks)).astype(np.float32),
        bias=rng.normal(size=(n, 250)).astype(np.float32),
        celltypes=[f"t{i}" for i in range(tasks)],
        peak_ids=None,
        source="random",
    )
    return BatchSource(split, None, device, preload=True)


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Temporarily allow/forbid TF32 in cuDNN convolutions and matmuls."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def measure(
    spec: ModelSpec,
    source: BatchSource,
    mode: str,
    batch_size: int,
    steps: int,
    warmup: int,
) -> float:
    """Sequences per second of ``steps`` timed training steps after ``warmup`` steps."""
    device = source.device
    torch.manual_seed(0)
    model = build_model(spec).to(device)
    step_model = torch.compile(model) if mode.endswith("compile") else model
    optimiser = make_optimiser(model, 1e-3)
    amp = mode.startswith("bf16")

    def loss_fn(logits, log_counts, batch):
        return model_loss("composite_ce", 0.5, logits, log_counts, batch.profile, batch.counts)

    order = np.random.default_rng(1).permutation(len(source))
    n_batches = len(order) // batch_size

    def run(n: int, offset: int) -> None:
        for i in range(n):
            j = (offset + i) % n_batches
            batch = source.take(order[j * batch_size : (j + 1) * batch_size])
            loss = train_step(step_model, optimiser, batch, loss_fn, amp=amp)
        float(loss)  # wait for the device

    with tf32(mode != "fp32") if device.type == "cuda" else contextlib.nullcontext():
        run(warmup, 0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        run(steps, warmup)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
    return steps * batch_size / seconds


# Op categories of the breakdown: the first whose pattern is in an op's name (lower case).
CATEGORIES = (
    ("convolution", ("convolution", "conv1d")),
    ("batch norm", ("batch_norm",)),
    ("relu", ("relu", "threshold_backward")),
    ("max-pool", ("max_pool",)),
    ("elementwise add/mul", ("aten::add", "aten::mul", "aten::sub", "aten::div")),
    ("reductions, softmax, log", ("softmax", "log", "mse", "xlogy", "sum", "mean")),
    ("copies, one-hot, index", ("copy", "index", "one_hot", "cat", "clone", "contiguous", "to")),
)


def breakdown(spec: ModelSpec, source: BatchSource, batch_size: int, steps: int) -> list[dict]:
    """Share of a CPU training step's self time per op category (:data:`CATEGORIES`; ops
    under ``Optimizer.step``/``zero_grad`` count as the optimiser), from ``torch.profiler``."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_model(spec)
    optimiser = make_optimiser(model, 1e-3)

    def loss_fn(logits, log_counts, batch):
        return model_loss("composite_ce", 0.5, logits, log_counts, batch.profile, batch.counts)

    batches = [source.take(np.arange(i * batch_size, (i + 1) * batch_size)) for i in range(2)]
    train_step(model, optimiser, batches[0], loss_fn)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            float(train_step(model, optimiser, batches[i % 2], loss_fn))
    totals: dict[str, float] = {}
    for ev in prof.events():
        if ev.self_cpu_time_total <= 0:
            continue
        name, parent, cat = ev.name.lower(), ev.cpu_parent, None
        while parent is not None and cat is None:
            if parent.name.startswith("Optimizer."):
                cat = "optimiser"
            parent = parent.cpu_parent
        if cat is None:
            cat = next((c for c, pats in CATEGORIES if any(p in name for p in pats)), "other")
        totals[cat] = totals.get(cat, 0.0) + ev.self_cpu_time_total
    whole = sum(totals.values())
    return [
        {"category": c, "ms_per_step": t / 1e3 / steps, "share": t / whole}
        for c, t in sorted(totals.items(), key=lambda kv: -kv[1])
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filters", type=int, default=300)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--tasks", type=int, default=90)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cpu-steps", type=int, default=3, help="timed steps on CPU")
    ap.add_argument("--gpu-steps", type=int, default=50, help="timed steps on CUDA")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--skip-cpu", action="store_true", help="measure CUDA only")
    ap.add_argument(
        "--breakdown", action="store_true", help="print the CPU step's time per op category"
    )
    add_json_argument(ap, "train_throughput")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    spec = ModelSpec(args.filters, args.blocks, "conv", args.tasks)
    n_params = count_parameters(build_model(spec))
    print(
        f"bpAI-TAC F={args.filters} D={args.blocks} tasks={args.tasks} ({n_params:,} parameters),"
        f" batch {args.batch_size}, torch {torch.__version__}"
    )
    rows: list[tuple[str, str, float]] = []
    if not args.skip_cpu:
        cpu = torch.device("cpu")
        print(f"cpu: {platform.processor() or platform.machine()}, {args.threads} threads")
        source = random_source(args.batch_size * 4, args.tasks, cpu)
        rows.append(
            ("cpu", "fp32", measure(spec, source, "fp32", args.batch_size, args.cpu_steps, 1))
        )
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        print(f"cuda: {torch.cuda.get_device_name(gpu)}")
        source = random_source(args.batch_size * 32, args.tasks, gpu)
        for mode in CUDA_MODES:
            warmup = 10 if mode.endswith("compile") else 3
            sps = measure(spec, source, mode, args.batch_size, args.gpu_steps, warmup)
            rows.append(("cuda", mode, sps))
    else:
        print("cuda: no CUDA device visible; CPU only")
    split = []
    if args.breakdown and not args.skip_cpu:
        split = breakdown(spec, source, args.batch_size, args.cpu_steps)
        print(f"\nCPU step by op category (torch.profiler self time, {args.cpu_steps} steps):")
        for row in split:
            print(
                f"  {row['category']:<26} {row['ms_per_step']:9.1f} ms {100 * row['share']:6.1f} %"
            )
        conv = sum(r["share"] for r in split if r["category"] == "convolution")
        print(f"  outside the convolutions: {100 * (1 - conv):.1f} %")
    base = {dev: sps for dev, mode, sps in rows if mode == "fp32"}
    print(f"\n{'device':<6} {'mode':<13} {'seq/s':>9} {'vs fp32':>8} {'min/epoch*':>11}")
    for dev, mode, sps in rows:
        epoch_min = PAPER_TRAIN_OCRS / sps / 60
        print(f"{dev:<6} {mode:<13} {sps:>9.1f} {sps / base[dev]:>7.2f}x {epoch_min:>11.1f}")
    print(f"* one epoch of the paper's {PAPER_TRAIN_OCRS:,} training OCRs at this speed")
    write_report(
        args.json,
        "train_throughput",
        {
            "filters": args.filters,
            "dilated_blocks": args.blocks,
            "tasks": args.tasks,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "breakdown": split,
            "rows": [
                {
                    "device": dev,
                    "mode": mode,
                    "seq_per_s": sps,
                    "paper_epoch_min": PAPER_TRAIN_OCRS / sps / 60,
                }
                for dev, mode, sps in rows
            ],
        },
    )


if __name__ == "__main__":
    main()
