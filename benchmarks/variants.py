"""Variant-scoring throughput: variants/s of ``bpaitac.variants.score.score_variants`` against the
bound of 2 (ref, alt) x seeds x 2 strands forward passes per variant at the evaluation batch size.

The scorer runs end to end (VCF parsing, genome checks, windows, tangermeme's variant effects on
both strands, strand and seed averaging, lineage means, JSD, the top variants' profiles and the
three output files) on random SNVs of a random genome, with ``--seeds`` saved models. The bound
is the same number of forward passes of the same network on random one-hot batches of the
evaluation batch size under ``torch.no_grad`` (nothing else). The issue's target: scoring within
2.5x of the bound. The top variants' profile pass (``--top``, the config default) adds
``top x 4 x seeds`` passes, a fixed cost that the ratio includes.

    python benchmarks/variants.py --size demo                  # F=32, D=3, 29 tasks, CPU
    python benchmarks/variants.py --size paper --variants 128  # F=300, D=9, 90 tasks
    python benchmarks/variants.py --size paper --device cuda --variants 8192
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pysam
import torch
from _report import add_json_argument, write_report

from bpaitac.model.network import build_model, count_parameters, resolve_device, save_model
from bpaitac.variants.score import score_variants
from bpaitac.workflow.config import load_config

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "demo": {"filters": 32, "dilated_blocks": 3, "n_tasks": 29},
    "paper": {"filters": 300, "dilated_blocks": 9, "n_tasks": 90},
}
GENOME = 400_000


def fixtures(tmp: Path, size: str, n_variants: int, seeds: int, seed: int = 0):
    """Random genome, ``n_variants`` SNVs (VCF), ``seeds`` saved models and their cell types."""
    rng = np.random.default_rng(seed)
    genome = "".join(rng.choice(list("ACGT"), GENOME))
    fasta = tmp / "genome.fa"
    fasta.write_text(f">chr1\n{genome}\n")
    pysam.faidx(str(fasta))
    pos = np.sort(rng.choice(np.arange(1000, GENOME - 1000), n_variants, replace=False))
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for p in pos:
        ref = genome[p - 1]
        alt = rng.choice([b for b in "ACGT" if b != ref])
        lines.append(f"chr1\t{p}\tv{p}\t{ref}\t{alt}\t.\t.\t.")
    vcf = tmp / "variants.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    arch = SIZES[size]
    tasks = arch["n_tasks"]
    celltypes = pd.DataFrame(
        {
            "celltype": [f"c{i}" for i in range(tasks)],
            "lineage": [f"L{i % 10}" for i in range(tasks)],
        }
    )
    paths = []
    for s in range(seeds):
        torch.manual_seed(s)
        spec = {"acc_head": "conv", **arch}
        model = build_model(spec)
        save_model(
            tmp / f"seed{s}.pt", model, {"name": size, "targets": list(celltypes["celltype"])}
        )
        paths.append(tmp / f"seed{s}.pt")
    return fasta, vcf, paths, celltypes, count_parameters(model)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bound_seconds(model_path: Path, passes: int, batch_size: int, device: torch.device) -> float:
    """Seconds of ``passes`` forward passes at ``batch_size`` (one model reused; the same cost
    per pass as any seed's)."""
    from bpaitac.model.network import load_model

    model, _ = load_model(model_path, device)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (batch_size, 1000)), 4)
    x = x.transpose(1, 2).float().to(device)
    with torch.no_grad():
        model(x[:2])  # warm-up (cuDNN algorithm choice, allocations)
        sync(device)
        t0 = time.perf_counter()
        done = 0
        while done < passes:
            n = min(batch_size, passes - done)
            logits, lc = model(x[:n])
            logits.cpu(), lc.cpu()
            done += n
        sync(device)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="demo")
    ap.add_argument("--variants", type=int, default=512)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="evaluation batch size (default: training.eval_batch_size of config/config.yaml)",
    )
    ap.add_argument("--top", type=int, default=None, help="top variants (default: the schema's)")
    add_json_argument(ap, "variants")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(ROOT / "config" / "config.yaml")
    batch = args.batch_size or int(config["training"]["eval_batch_size"])
    top = args.top or int(config["variants"]["top_variants"])
    device = resolve_device(args.device)
    what = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fasta, vcf, paths, celltypes, n_params = fixtures(tmp, args.size, args.variants, args.seeds)
        passes = 2 * args.seeds * 2 * args.variants
        lineages = list(dict.fromkeys(celltypes["lineage"]))
        run = {
            "variants_path": vcf,
            "genome_path": fasta,
            "model_paths": paths,
            "model_name": args.size,
            "celltypes": celltypes,
            "lineages": lineages,
            "out_tsv": tmp / "out.tsv",
            "out_summary": tmp / "summary.tsv",
            "out_profiles": tmp / "profiles.npz",
            "on_ref_mismatch": "report",
            "max_allele_length": 50,
            "top_variants": top,
            "batch_size": batch,
            "device": str(device),
        }
        # warm-up (imports, cuDNN), then the timed run
        import tangermeme.variant_effect  # noqa: F401

        bound_seconds(paths[0], min(batch, 8), batch, device)
        sync(device)
        t0 = time.perf_counter()
        score_variants(**run)
        sync(device)
        scored = time.perf_counter() - t0
        bound = bound_seconds(paths[0], passes, batch, device)
    arch = SIZES[args.size]
    print(
        f"{args.size} network (F={arch['filters']}, D={arch['dilated_blocks']}, "
        f"{arch['n_tasks']} tasks, {n_params:,} parameters), {device} ({what or 'CPU'}), "
        f"{args.threads} threads, eval batch {batch}, {args.seeds} seeds, {args.variants} SNVs, "
        f"top {top}"
    )
    print(
        f"score_variants: {scored:.2f} s = {args.variants / scored:.1f} variants/s; "
        f"bound ({passes} forward passes = 2 alleles x {args.seeds} seeds x 2 strands x "
        f"{args.variants}): {bound:.2f} s = {args.variants / bound:.1f} variants/s; "
        f"ratio {scored / bound:.2f} (target <= 2.5)"
    )
    write_report(
        args.json,
        "variants",
        {
            "size": args.size,
            "device": str(device),
            "variants": args.variants,
            "seeds": args.seeds,
            "batch_size": batch,
            "top": top,
            "scored_s": scored,
            "bound_s": bound,
            "variants_per_s": args.variants / scored,
            "bound_variants_per_s": args.variants / bound,
            "ratio_to_bound": scored / bound,
        },
    )


if __name__ == "__main__":
    main()
