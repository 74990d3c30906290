"""Do trained weights depend on the number of torch threads? (README, "Validation on known truth")

Trains the same network from the same seed on the same random batches a few Adam steps with
1 and with 2 intra-op threads (twice with 2) and prints the largest weight differences. On a
CPU a different thread count sums convolutions in another order, so the weights differ at the
rounding level after one step; full training grows that into seed-sized differences of the
test R. The workflow therefore records the count in ``model.pt`` (``torch_threads``).

    python benchmarks/thread_reproducibility.py [--steps 5] [--filters 32]
"""

from __future__ import annotations

import argparse

import torch
from _report import add_json_argument, write_report

from bpaitac.data.sequence import one_hot
from bpaitac.model.network import build_model, spec_from_config


def train_steps(threads: int, steps: int, filters: int, seed: int = 0) -> torch.Tensor:
    """All parameters, flattened, after ``steps`` Adam steps on seeded random sequences."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    arch = {"filters": filters, "dilated_blocks": 3}
    model = build_model(spec_from_config(arch, n_tasks=20))
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = one_hot(torch.randint(0, 4, (32, 1000), generator=gen))
        out = model(x)
        loss = sum(o.float().pow(2).mean() for o in (out if isinstance(out, tuple) else [out]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--filters", type=int, default=32)
    add_json_argument(parser, "thread_reproducibility")
    args = parser.parse_args()
    one = train_steps(1, args.steps, args.filters)
    two_a = train_steps(2, args.steps, args.filters)
    two_b = train_steps(2, args.steps, args.filters)
    print(f"max |weight difference| after {args.steps} Adam steps (F={args.filters}):")
    print(f"  1 vs 2 threads: {(one - two_a).abs().max().item():.3g}")
    print(f"  2 vs 2 threads: {(two_a - two_b).abs().max().item():.3g}")
    write_report(
        args.json,
        "thread_reproducibility",
        {
            "steps": args.steps,
            "filters": args.filters,
            "max_abs_diff_1_vs_2": (one - two_a).abs().max().item(),
            "max_abs_diff_2_vs_2": (two_a - two_b).abs().max().item(),
        },
    )


if __name__ == "__main__":
    main()
