"""Throughput of the FASTQ route's steps, and what it implies for ImmGen's 181 runs.

Simulates a genome (third-order Markov chain, mouse GC and CpG depletion, no repeats) of
``--genome-mb`` Mb and ``--pairs`` fragments at random positions with the simulator's fragment
lengths, writes them as a gzipped FASTQ pair with :mod:`bpaitac.simulate.fastq` (50 bp, 0.5 %
errors, Nextera read-through, 5 % PCR duplicates, 2 % chrM) and times, with ``bpaitac.data.align``:

- ``bowtie2-build`` of the genome + chrM (1 thread);
- cutadapt trimming (:func:`bpaitac.data.align.trim_pair`) and alignment + filtering + markdup
  (:func:`bpaitac.data.align.align_pair`: bowtie2 | samtools view | fixmate | sort | markdup) on
  each
  of ``--threads``, in read pairs per second per thread (CPU seconds of the child processes, so
  a shared machine inflates wall time but much less CPU time);
- bytes per read pair of the gzipped FASTQ (as written: one quality string for every read, so
  it compresses better than real NextSeq reads) and of the same reads with NextSeq-binned
  qualities drawn at random (an assumed distribution: 80 % Q36, 12 % Q32, 5 % Q27, 3 % Q14),
  and of the filtered BAM.

It then prints the estimates for 181 runs, multiplying the measured rates by read counts that
are *assumed*, not measured: 15 million read pairs per run on average (the paper: 2.5-40
million reads per sample, 15 million on average; taken as pairs, which over- rather than
under-estimates), and the index build scaled linearly from ``--genome-mb`` to mm10's 2.73 Gb
(bowtie2-build is not linear; this is an order of magnitude, not a measurement at mm10 size).

    python benchmarks/alignment_throughput.py       # 10 Mb, 200k pairs, 1 and 2 threads
    python benchmarks/alignment_throughput.py --pairs 50000 --threads 1
"""

from __future__ import annotations

import argparse
import gzip
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _report import add_json_argument, write_report

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bpaitac.data import align  # noqa: E402
from bpaitac.simulate import fastq  # noqa: E402
from bpaitac.simulate import genome as sim_genome  # noqa: E402
from bpaitac.simulate.config import SimulateConfig  # noqa: E402
from bpaitac.simulate.reads import fragment_length_pmf  # noqa: E402
from bpaitac.workflow.config import validate_config  # noqa: E402

MM10_GB = 2.73
RUNS = 181
PAIRS_PER_RUN = 15e6  # assumed: the paper's average depth, taken as read pairs
BINNED_Q = np.frombuffer(b"EA<\x2f", np.uint8)  # Phred+33 of Q36, Q32, Q27, Q14
BINNED_P = np.array([0.80, 0.12, 0.05, 0.03])


def children_cpu() -> float:
    """CPU seconds (user + system) of all waited-for child processes so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(fn, *args, **kwargs) -> tuple[object, float, float]:
    """(result, wall seconds, child CPU seconds) of ``fn(*args, **kwargs)``."""
    wall, cpu = time.perf_counter(), children_cpu()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - wall, children_cpu() - cpu


def simulate(workdir: Path, genome_mb: float, pairs: int, seed: int) -> tuple[Path, Path, Path]:
    """Genome FASTA, chrM FASTA and one run's FASTQ pair in ``workdir``."""
    rng = np.random.default_rng(seed)
    model = sim_genome.build_markov_model(3, 0.42, 0.2)
    n_chroms = max(1, round(genome_mb / 5))
    size = int(genome_mb * 1e6 / n_chroms)
    codes = {f"chr{i + 1}": sim_genome.sample_sequence(model, size, rng) for i in range(n_chroms)}
    sim_genome.write_fasta(workdir / "genome.fa", codes)
    fastq.write_chrm_fasta(workdir / "chrM.fa", seed)
    pmf = fragment_length_pmf(SimulateConfig.defaults().fragment_length)
    chrom = rng.integers(0, n_chroms, pairs)
    length = rng.choice(len(pmf), size=pairs, p=pmf).astype(np.int64)
    left = rng.integers(100, size - 2100, pairs)
    frags = pd.DataFrame(
        {
            "chrom": [f"chr{c + 1}" for c in chrom],
            "start": fastq.molecule_bounds(left, left + length)[0],
            "end": fastq.molecule_bounds(left, left + length)[1],
        }
    )
    letters = {c: sim_genome.LETTERS[v] for c, v in codes.items()}
    letters[fastq.CHRM] = fastq.simulated_chrm(seed)
    r1, r2 = workdir / "run_R1.fastq.gz", workdir / "run_R2.fastq.gz"
    fastq.write_run_fastqs(frags, [("SRRBENCH", r1, r2)], letters, fastq.FastqSpec(), seed)
    return workdir / "genome.fa", r1, r2


def binned_quality_bytes(path: Path, seed: int) -> int:
    """Gzipped size (level 6, as ENA's files) of ``path``'s reads with NextSeq-binned random
    qualities instead of one quality string."""
    rng = np.random.default_rng(seed)
    lines = gzip.open(path, "rb").read().split(b"\n")
    for i in range(3, len(lines), 4):
        q = BINNED_Q[rng.choice(4, size=len(lines[i]), p=BINNED_P)]
        lines[i] = q.tobytes()
    return len(gzip.compress(b"\n".join(lines), compresslevel=6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genome-mb", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--seed", type=int, default=0)
    add_json_argument(parser, "alignment_throughput")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="bpaitac-align-bench-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        genome, r1, r2 = simulate(work, args.genome_mb, args.pairs, args.seed)
        print(
            f"simulated {args.genome_mb:g} Mb, {args.pairs} fragments: "
            f"{time.perf_counter() - t0:.1f} s"
        )
        n_pairs = sum(1 for _ in gzip.open(r1, "rb")) // 4
        fq_bytes = r1.stat().st_size + r2.stat().st_size
        binned = binned_quality_bytes(r1, args.seed) + binned_quality_bytes(r2, args.seed + 1)

        index = work / "index" / "genome"
        _, idx_wall, idx_cpu = timed(
            align.build_bowtie2_index, [genome, work / "chrM.fa"], index, threads=1
        )
        defaults = validate_config({"dataset": "bench", "source": "simulate", "celltypes": "-"})
        contigs = [f"chr{i}" for i in range(1, 100)]
        cfg = align.AlignConfig.from_config({**defaults["align"], "keep_contigs": contigs})
        rows = []
        for t in threads:
            t1, t2 = work / f"t{t}_R1.fastq.gz", work / f"t{t}_R2.fastq.gz"
            _, trim_wall, trim_cpu = timed(align.trim_pair, "bench", r1, r2, t1, t2, cfg, t)
            bam = work / f"t{t}.bam"
            stats, aln_wall, aln_cpu = timed(align.align_pair, "bench", t1, t2, index, bam, cfg, t)
            rows.append(
                {
                    "threads": t,
                    "trim pairs/s/thread (CPU)": n_pairs / trim_cpu,
                    "trim pairs/s (wall)": n_pairs / trim_wall,
                    "align+filter pairs/s/thread (CPU)": n_pairs / aln_cpu,
                    "align+filter pairs/s (wall)": n_pairs / aln_wall,
                    "aligned %": 100 * stats["aligned_pairs"] / stats["read_pairs"],
                    "BAM bytes/kept pair": bam.stat().st_size
                    / max(1, sum(stats["reads_by_contig"][c] for c in stats["contigs"]) / 2),
                }
            )
    table = pd.DataFrame(rows).set_index("threads")
    with pd.option_context("display.float_format", "{:,.1f}".format, "display.width", 200):
        print(
            f"\n{n_pairs} read pairs of 50 bp; bowtie2-build of {args.genome_mb:g} Mb + chrM "
            f"(1 thread): {idx_wall:.1f} s wall, {idx_cpu:.1f} s CPU"
        )
        print(table.T.to_string())
    per_pair = fq_bytes / n_pairs
    per_pair_binned = binned / n_pairs
    trim_rate = table["trim pairs/s/thread (CPU)"].min()
    aln_rate = table["align+filter pairs/s/thread (CPU)"].min()
    bam_pair = table["BAM bytes/kept pair"].mean()
    print(
        "\nMeasured: gzipped FASTQ pair (R1+R2) bytes per read pair: "
        f"{per_pair:.1f} as simulated (one quality string), {per_pair_binned:.1f} with binned "
        f"random qualities"
    )

    total_pairs = RUNS * PAIRS_PER_RUN
    print(
        f"\nEstimates for {RUNS} runs x {PAIRS_PER_RUN / 1e6:g} M read pairs (assumed) = "
        f"{total_pairs / 1e9:.2f} G pairs; rates = the slowest per-thread CPU rate above:"
    )
    trim_h = total_pairs / trim_rate / 3600
    aln_h = total_pairs / aln_rate / 3600
    idx_h = idx_cpu * MM10_GB * 1e3 / args.genome_mb / 3600
    print(f"  trimming (cutadapt):          {trim_h:8.0f} CPU hours")
    print(
        f"  alignment + filtering:        {aln_h:8.0f} CPU hours (random genome; mm10's repeats "
        "slow bowtie2 down, so read it as a lower bound)"
    )
    print(f"  mm10 index (linear scaling):  {idx_h:8.1f} CPU hours (not measured at mm10 size)")
    fq_gb = total_pairs * per_pair_binned / 1e9
    print(
        f"  FASTQ downloads:              {fq_gb:8.0f} GB "
        f"({total_pairs * per_pair / 1e9:.0f} GB at the simulated compression)"
    )
    print(
        f"  filtered BAMs (merged):       {total_pairs * 0.7 * bam_pair / 1e9:8.0f} GB "
        "(assuming 70 % of pairs kept)"
    )
    write_report(
        args.json,
        "alignment_throughput",
        {
            "read_pairs": n_pairs,
            "genome_mb": args.genome_mb,
            "index_wall_s": idx_wall,
            "index_cpu_s": idx_cpu,
            "rows": rows,
            "estimate_cpu_hours": {"trim": trim_h, "align": aln_h, "index": idx_h},
        },
    )


if __name__ == "__main__":
    main()
