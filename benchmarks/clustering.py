"""Seqlet clustering cost: wall time and peak memory of exact vs sampled clustering.

Exact complete-linkage clustering (`interpret.clustering.max_seqlets` >= the seqlet count) needs
all pairwise alignment p-values: time and memory grow with the square of the seqlet count. Above
the cap :func:`bpaitac.interpret.motifs.cluster_seqlets` clusters a sample and assigns the rest.
Seqlet
windows are synthetic: motif families (a random 4 x 10 core plus noise and random flanks, on a
random strand) mixed with pure-noise windows, 12-18 columns wide like the workflow's seqlets.

    python benchmarks/clustering.py [--seqlets 1000 4000 20000] [--cap 2000] [--families 20]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd
from _report import add_json_argument, write_report

from bpaitac.interpret.motifs import cluster_seqlets, reverse_complement


def synthetic_seqlets(n: int, n_families: int, rng: np.random.Generator):
    """``n`` windows (4, w): 80% from ``n_families`` motif families, 20% noise; family labels
    (-1 for noise)."""
    cores = [rng.normal(size=(4, 10)) for _ in range(n_families)]
    mats, truth = [], []
    for _ in range(n):
        left, right = rng.integers(1, 5, 2)
        if rng.random() < 0.8:
            f = int(rng.integers(n_families))
            core = cores[f] + 0.3 * rng.normal(size=(4, 10))
        else:
            f, core = -1, rng.normal(size=(4, 10))
        m = np.concatenate(
            [0.3 * rng.normal(size=(4, left)), core, 0.3 * rng.normal(size=(4, right))], axis=1
        )
        mats.append(reverse_complement(m) if rng.random() < 0.5 else m)
        truth.append(f)
    return mats, np.array(truth)


def purity(truth: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(fraction of family seqlets assigned, fraction of them in their family's majority
    cluster)."""
    fam = truth >= 0
    assigned = fam & (labels >= 0)
    if not assigned.any():
        return 0.0, 0.0
    table = pd.crosstab(truth[assigned], labels[assigned])
    return float(assigned.sum() / fam.sum()), float(table.max(axis=1).sum() / assigned.sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seqlets", type=int, nargs="+", default=[1000, 4000, 20000])
    ap.add_argument("--cap", type=int, default=2000, help="interpret.clustering.max_seqlets")
    ap.add_argument("--families", type=int, default=20)
    add_json_argument(ap, "clustering")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"cap (max_seqlets) = {args.cap}; peak RSS is the process maximum so far")
    print("seqlets  mode     seconds  peak_rss_mb  clusters  assigned  purity")
    results = []
    for n in args.seqlets:
        mats, truth = synthetic_seqlets(n, args.families, rng)
        t0 = time.perf_counter()
        labels, sample, _ = cluster_seqlets(
            mats, p_threshold=0.05, min_overlap=5, max_seqlets=args.cap, min_cluster_size=3
        )
        dt = time.perf_counter() - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        mode = "exact" if len(sample) == n else "sampled"
        sizes = np.bincount(labels[labels >= 0])
        assigned, pure = purity(truth, labels)
        print(
            f"{n:7d}  {mode:7s}  {dt:7.1f}  {rss:11.0f}  {int((sizes >= 3).sum()):8d}"
            f"  {assigned:8.2f}  {pure:6.2f}"
        )
        results.append(
            {
                "seqlets": n,
                "mode": mode,
                "seconds": dt,
                "peak_rss_mb": rss,
                "clusters": int((sizes >= 3).sum()),
                "assigned": assigned,
                "purity": pure,
            }
        )
    write_report(args.json, "clustering", results)


if __name__ == "__main__":
    main()
