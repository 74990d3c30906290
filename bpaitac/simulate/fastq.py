"""Paired-end FASTQ files from simulated fragments, as a NextSeq ATAC-seq run would give them.

A fragment is the DNA between two Tn5 insertions ``l < r`` (0-based) of the simulator
(:mod:`bpaitac.simulate.reads`). Under the convention of :mod:`bpaitac.data.tn5` its sequenced
molecule is ``genome[start:end]`` with ``start = l - 4`` and ``end = r + 6`` (half-open; TLEN =
``end - start``), which is exactly what :mod:`bpaitac.simulate.bam` writes. One read of the pair
is the molecule's first ``read_length`` bases, the other the first bases of its reverse
complement; which one is read 1 is random. Aligning the reads and applying the Tn5 shifts gives
back ``l`` and ``r``.

What makes the reads realistic:

- substitution errors, rising along the read from 0.5x to 1.5x the configured mean
  ``error_rate``; each cycle's Phred quality states that cycle's error probability;
- Nextera adapter read-through after molecules shorter than the read (read 1:
  :data:`NEXTERA_R1_READTHROUGH`, read 2: :data:`NEXTERA_R2_READTHROUGH`, both starting with the
  CTGTCTCTTATACACATCT of the Tn5 mosaic end; then G, the NextSeq's dark cycle);
- PCR duplicates: copies of randomly chosen fragments (own errors, same coordinates), a share
  ``duplicate_fraction`` of all pairs;
- mitochondrial reads: a share ``chrm_fraction`` of all pairs from a simulated chrM. The simulated
  genome has no chrM (adding one would change the simulator's outputs), so chrM is a separate
  random sequence (:func:`simulated_chrm`, mm10's length, a stream of its own) that
  :func:`write_chrm_fasta` writes for an aligner index; without it chrM reads do not align.

Every read is named ``{run}:{i}:{chrom}:{start}:{end}:{o|d}`` (``d`` = a PCR duplicate), so a
test can recover each read's true molecule (:func:`parse_read_name`).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pysam

from bpaitac.data.tn5 import TN5_SHIFT_MINUS, TN5_SHIFT_PLUS, minus_read_end, plus_read_start
from bpaitac.io import InputError, atomic_path, require_file

NEXTERA_R1_READTHROUGH = "CTGTCTCTTATACACATCTCCGAGCCCACGAGAC"
"""What read 1 reads after the end of a short molecule (mosaic end + i7 adapter)."""
NEXTERA_R2_READTHROUGH = "CTGTCTCTTATACACATCTGACGCTGCCGACGA"
"""What read 2 reads after the end of a short molecule (mosaic end + i5 adapter)."""
DARK_CYCLE = "G"
"""What a NextSeq (two-colour chemistry) calls once there is nothing left to read."""
MM10_CHRM_LENGTH = 16_299
CHRM_GC = 0.37
CHRM = "chrM"
STREAM_CHRM = 101
STREAM_READS = 102
"""Random streams of this module (``default_rng([seed, stream, ...])``; the simulator's own
streams in :mod:`bpaitac.simulate.run` are 1-11, so none is shared)."""

_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTNacgtn", b"TGCANtgcan"):
    _COMPLEMENT[_a] = _b
_BASES = np.frombuffer(b"ACGT", dtype=np.uint8)


@dataclass(frozen=True)
class FastqSpec:
    """How the reads of one run are made."""

    read_length: int = 50
    error_rate: float = 0.005
    duplicate_fraction: float = 0.05
    chrm_fraction: float = 0.02
    chrm_length: int = MM10_CHRM_LENGTH

    def __post_init__(self) -> None:
        if self.read_length < 20:
            raise InputError(f"read_length {self.read_length}: use at least 20 bp.")
        for key in ("error_rate", "duplicate_fraction", "chrm_fraction"):
            value = getattr(self, key)
            if not 0.0 <= value < (0.2 if key == "error_rate" else 0.9):
                raise InputError(
                    f"{key} {value}: outside its range (error_rate < 0.2, else < 0.9)."
                )

    def cycle_error(self) -> np.ndarray:
        """Error probability of each cycle: rising linearly, mean ``error_rate``."""
        ramp = np.linspace(0.5, 1.5, self.read_length)
        return np.clip(self.error_rate * ramp, 1e-5, 0.75)

    def cycle_quality(self) -> str:
        """Phred+33 quality string of a read: each cycle's error probability as a Phred score."""
        q = np.clip(np.round(-10 * np.log10(self.cycle_error())), 2, 41).astype(np.uint8)
        return (q + 33).tobytes().decode()


def molecule_bounds(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-open genome span ``[start, end)`` of fragments with insertions ``left < right``."""
    return plus_read_start(np.asarray(left)), minus_read_end(np.asarray(right))


def insertions_of_molecule(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The two Tn5 insertions of molecules ``[start, end)`` (inverse of :func:`molecule_bounds`)."""
    return np.asarray(start) + TN5_SHIFT_PLUS, np.asarray(end) - 1 + TN5_SHIFT_MINUS


def simulated_chrm(seed: int, length: int = MM10_CHRM_LENGTH) -> np.ndarray:
    """A random mitochondrial sequence (ASCII codes, GC ``CHRM_GC``) for ``seed``."""
    rng = np.random.default_rng([int(seed), STREAM_CHRM])
    p = np.array([1 - CHRM_GC, CHRM_GC, CHRM_GC, 1 - CHRM_GC]) / 2
    return _BASES[rng.choice(4, size=length, p=p)]


def write_chrm_fasta(path: str | os.PathLike, seed: int, length: int = MM10_CHRM_LENGTH) -> Path:
    """Write :func:`simulated_chrm` as a one-record FASTA (atomically); returns ``path``."""
    seq = simulated_chrm(seed, length).tobytes()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(f">{CHRM}\n".encode())
        fh.write(b"\n".join(seq[i : i + 60] for i in range(0, len(seq), 60)) + b"\n")
    return Path(path)


def load_genome(fasta: str | os.PathLike) -> dict[str, np.ndarray]:
    """Chromosome -> upper-case ASCII codes (uint8) of a FASTA (indexed or not)."""
    fasta = require_file(fasta, "genome FASTA", "run the simulate step first.")
    out = {}
    with pysam.FastxFile(str(fasta)) as fh:
        for rec in fh:
            out[rec.name] = np.frombuffer(rec.sequence.upper().encode(), dtype=np.uint8)
    return out


def fragments_from_bam(path: str | os.PathLike) -> pd.DataFrame:
    """The fragments of a simulated (or any proper-paired) BAM: ``chrom``, ``start``, ``end`` of
    each molecule, from its plus-strand read and TLEN, in file order."""
    chrom, start, end = [], [], []
    with pysam.AlignmentFile(str(path), "rb") as bam:
        for a in bam.fetch(until_eof=True):
            if a.is_unmapped or a.is_reverse or not a.is_proper_pair or a.template_length <= 0:
                continue
            if a.is_secondary or a.is_supplementary:
                continue
            chrom.append(a.reference_name)
            start.append(a.reference_start)
            end.append(a.reference_start + a.template_length)
    return pd.DataFrame(
        {"chrom": chrom, "start": np.asarray(start, np.int64), "end": np.asarray(end, np.int64)}
    )


def split_replicates(n: int, n_runs: int, rng: np.random.Generator) -> np.ndarray:
    """Assign each of ``n`` fragments to one of ``n_runs`` runs at random (near-equal shares)."""
    if n_runs < 1:
        raise ValueError("n_runs must be >= 1")
    return rng.permutation(np.arange(n) % n_runs)


def read_pairs(
    genome: Mapping[str, np.ndarray],
    chrom: Sequence[str],
    start: np.ndarray,
    end: np.ndarray,
    read_length: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Error-free reads (ASCII, (n, read_length)) from the plus-strand and the minus-strand end
    of each molecule ``genome[chrom][start:end]``, with adapter read-through after short ones."""
    n = len(start)
    plus = np.empty((n, read_length), np.uint8)
    minus = np.empty((n, read_length), np.uint8)
    a1 = _padded(NEXTERA_R1_READTHROUGH, read_length)
    a2 = _padded(NEXTERA_R2_READTHROUGH, read_length)
    cycle = np.arange(read_length)
    chrom = np.asarray(chrom, dtype=object)
    for name in pd.unique(chrom):
        if name not in genome:
            raise InputError(f"fragments on {name!r}, which the genome FASTA does not have.")
        rows = np.flatnonzero(chrom == name)
        seq = genome[name]
        s, e = np.asarray(start)[rows], np.asarray(end)[rows]
        if np.any(s < 0) or np.any(e > len(seq)) or np.any(e <= s):
            raise InputError(f"a fragment on {name} runs off the chromosome or is empty.")
        length = (e - s)[:, None]
        inside = cycle[None, :] < length
        fwd = seq[np.minimum(s[:, None] + cycle[None, :], len(seq) - 1)]
        rev = _COMPLEMENT[seq[np.maximum(e[:, None] - 1 - cycle[None, :], 0)]]
        # read-through: cycle k >= length reads adapter base k - length
        k = np.clip(cycle[None, :] - length, 0, read_length - 1)
        plus[rows] = np.where(inside, fwd, a1[k])
        minus[rows] = np.where(inside, rev, a2[k])
    return plus, minus


def _padded(adapter: str, read_length: int) -> np.ndarray:
    text = (adapter + DARK_CYCLE * read_length)[:read_length]
    return np.frombuffer(text.encode(), dtype=np.uint8)


def add_errors(reads: np.ndarray, cycle_error: np.ndarray, rng: np.random.Generator) -> int:
    """Substitute bases of ``reads`` in place with each cycle's error probability (to one of the
    three other bases); returns the number of substitutions."""
    hit = rng.random(reads.shape) < cycle_error[None, :]
    idx = np.nonzero(hit)
    code = np.searchsorted(_BASES, reads[idx])  # A,C,G,T -> 0..3 (others are never hit twice)
    shift = rng.integers(1, 4, size=len(code))
    reads[idx] = _BASES[(np.minimum(code, 3) + shift) % 4]
    return len(code)


@dataclass
class RunFragments:
    """The read pairs of one run before they are written: molecules, which end is read 1, and
    which pairs are PCR duplicates."""

    chrom: np.ndarray  # object array of names
    start: np.ndarray
    end: np.ndarray
    duplicate: np.ndarray  # bool
    plus_is_r1: np.ndarray  # bool


def run_fragments(
    chrom: Sequence[str],
    start: np.ndarray,
    end: np.ndarray,
    spec: FastqSpec,
    rng: np.random.Generator,
) -> RunFragments:
    """Add chrM molecules and PCR duplicates to a run's nuclear molecules, in sequencer order.

    chrM molecules take their lengths from the nuclear ones; duplicates copy random molecules
    (nuclear or chrM). The shares are of all pairs: ``chrm_fraction`` of chrM, then
    ``duplicate_fraction`` of duplicates.
    """
    chrom = np.asarray(chrom, dtype=object)
    start = np.asarray(start, np.int64)
    end = np.asarray(end, np.int64)
    n = len(start)
    n_chrm = round(n * spec.chrm_fraction / (1 - spec.chrm_fraction)) if n else 0
    if n_chrm:
        tlen = rng.choice(end - start, size=n_chrm)
        tlen = np.minimum(tlen, spec.chrm_length - 1)
        m_start = rng.integers(0, spec.chrm_length - tlen + 1)
        chrom = np.concatenate([chrom, np.full(n_chrm, CHRM, dtype=object)])
        start = np.concatenate([start, m_start])
        end = np.concatenate([end, m_start + tlen])
    n_orig = len(start)
    n_dup = round(n_orig * spec.duplicate_fraction / (1 - spec.duplicate_fraction)) if n_orig else 0
    src = rng.integers(0, n_orig, size=n_dup)
    order = rng.permutation(n_orig + n_dup)
    idx = np.concatenate([np.arange(n_orig), src])[order]
    dup = np.concatenate([np.zeros(n_orig, bool), np.ones(n_dup, bool)])[order]
    return RunFragments(chrom[idx], start[idx], end[idx], dup, rng.random(len(idx)) < 0.5)


def read_name(run: str, i: int, chrom: str, start: int, end: int, duplicate: bool) -> str:
    """The name of pair ``i`` of ``run``: its true molecule and whether it is a duplicate."""
    return f"{run}:{i}:{chrom}:{start}:{end}:{'d' if duplicate else 'o'}"


def parse_read_name(name: str) -> tuple[str, int, int, bool]:
    """(chrom, start, end, is_duplicate) of a read named by :func:`read_name` (a ``/1`` or
    ``/2`` suffix is ignored)."""
    parts = name.split("/")[0].split(":")
    if len(parts) < 6:
        raise ValueError(f"{name!r} is not a simulated read name (run:i:chrom:start:end:o|d)")
    chrom = ":".join(parts[2:-3])
    return chrom, int(parts[-3]), int(parts[-2]), parts[-1] == "d"


def write_fastq_pair(
    r1_path: str | os.PathLike,
    r2_path: str | os.PathLike,
    run: str,
    genome: Mapping[str, np.ndarray],
    frags: RunFragments,
    spec: FastqSpec,
    rng: np.random.Generator,
    chunk: int = 200_000,
) -> dict[str, int]:
    """Write the gzipped FASTQ pair of ``frags`` (atomically); returns counts of what was
    written (pairs, duplicates, chrM pairs, substitutions, adapter read-through pairs)."""
    if CHRM not in genome and np.any(frags.chrom == CHRM):
        raise InputError(
            f"{run}: chrM reads asked for, but the genome has no {CHRM}; add "
            "simulated_chrm(seed) to it."
        )
    qual = spec.cycle_quality()
    err = spec.cycle_error()
    n = len(frags.start)
    n_err = 0
    with (
        atomic_path(r1_path) as t1,
        atomic_path(r2_path) as t2,
        _gzip_text(t1) as f1,
        _gzip_text(t2) as f2,
    ):
        for lo in range(0, n, chunk):
            sl = slice(lo, min(n, lo + chunk))
            plus, minus = read_pairs(
                genome, frags.chrom[sl], frags.start[sl], frags.end[sl], spec.read_length
            )
            n_err += add_errors(plus, err, rng) + add_errors(minus, err, rng)
            swap = ~frags.plus_is_r1[sl]
            r1 = np.where(swap[:, None], minus, plus)
            r2 = np.where(swap[:, None], plus, minus)
            names = [
                read_name(run, lo + j, c, s, e, d)
                for j, (c, s, e, d) in enumerate(
                    zip(
                        frags.chrom[sl].tolist(),
                        frags.start[sl].tolist(),
                        frags.end[sl].tolist(),
                        frags.duplicate[sl].tolist(),
                    )
                )
            ]
            f1.writelines(_records(names, r1, qual))
            f2.writelines(_records(names, r2, qual))
    return {
        "pairs": n,
        "duplicates": int(frags.duplicate.sum()),
        "chrm_pairs": int(np.count_nonzero(frags.chrom == CHRM)),
        "substitutions": n_err,
        "readthrough_pairs": int(np.count_nonzero(frags.end - frags.start < spec.read_length)),
    }


@contextlib.contextmanager
def _gzip_text(path: Path) -> Iterator[io.TextIOWrapper]:
    """A text stream gzipping into ``path``, without name or time stamp in the gzip header
    (same seed, same bytes)."""
    with (
        open(path, "wb") as fh,
        gzip.GzipFile(filename="", mode="wb", compresslevel=4, fileobj=fh, mtime=0) as gz,
        io.TextIOWrapper(gz, encoding="ascii") as text,
    ):
        yield text


def _records(names: list[str], reads: np.ndarray, qual: str) -> list[str]:
    seqs = reads.tobytes().decode()
    width = reads.shape[1]
    return [
        f"@{name}\n{seqs[i * width : (i + 1) * width]}\n+\n{qual}\n" for i, name in enumerate(names)
    ]


def write_run_fastqs(
    fragments: pd.DataFrame,
    runs: Sequence[tuple[str, str | os.PathLike, str | os.PathLike]],
    genome: Mapping[str, np.ndarray],
    spec: FastqSpec,
    seed: int,
    key: int = 0,
) -> pd.DataFrame:
    """Split one cell type's fragments (``chrom``, ``start``, ``end``) over its replicate runs
    and write each run's FASTQ pair; ``runs`` are ``(run, r1_path, r2_path)``. Seeded by
    ``(seed, key)`` (``key`` distinguishes cell types). Returns one row of counts per run,
    including ``fragments``, the nuclear molecules of that run."""
    rng = np.random.default_rng([int(seed), STREAM_READS, int(key)])
    which = split_replicates(len(fragments), len(runs), rng)
    rows = []
    for k, (run, r1, r2) in enumerate(runs):
        part = fragments[which == k]
        frags = run_fragments(
            part["chrom"].to_numpy(object), part["start"].to_numpy(), part["end"].to_numpy(),
            spec, rng,
        )  # fmt: skip
        counts = write_fastq_pair(r1, r2, run, genome, frags, spec, rng)
        rows.append({"run": run, "fragments": len(part), **counts})
    return pd.DataFrame(rows)


def celltype_fastqs(
    bam_path: str | os.PathLike,
    genome_fasta: str | os.PathLike,
    runs: Sequence[tuple[str, str | os.PathLike, str | os.PathLike]],
    spec: FastqSpec | None = None,
    seed: int = 0,
    key: int = 0,
) -> pd.DataFrame:
    """FASTQ pairs for the runs (replicates) of a simulated cell type, from its BAM
    (``resources/{dataset}/bams/{celltype}.bam``) and the simulated genome; chrM reads come from
    :func:`simulated_chrm` of ``seed`` (write it with :func:`write_chrm_fasta` for the index)."""
    spec = spec or FastqSpec()
    genome = load_genome(genome_fasta)
    genome.setdefault(CHRM, simulated_chrm(seed, spec.chrm_length))
    return write_run_fastqs(fragments_from_bam(bam_path), runs, genome, spec, seed, key)
