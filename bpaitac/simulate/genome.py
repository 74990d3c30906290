"""Background DNA from a k-th order Markov model with mammalian composition, and FASTA output.

Bases are coded A, C, G, T, N = 0, 1, 2, 3, 4 (the project-wide code of ``seq.npy``).

The transition probabilities are built from a few interpretable parameters rather than fitted
to a real genome (none is reachable here):

``P(y | context) ∝ pi_y * rho(x_-1, y) * run(context, y)``

with base frequencies ``pi`` (strand-symmetric, GC content ``g``), dinucleotide odds ratios
``rho`` (CpG depleted to ``cpg_oe``, TpA mildly depleted as in mammals) and a boost of A/T
homopolymer runs for orders >= 2 (mammalian genomes are enriched in poly(A)/poly(T) tracts).
Because the odds ratios shift the stationary composition, ``pi_GC`` and ``rho_CG`` are calibrated
numerically so that the chain's *stationary* GC content and CpG observed/expected ratio equal the
requested values.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pysam

BASES = "ACGT"
BASE_CODE = {b: i for i, b in enumerate(BASES)} | {"N": 4}
LETTERS = np.frombuffer(b"ACGTN", dtype=np.uint8)
TPA_ODDS = 0.75
"""Observed/expected TpA ratio of the background (mammalian genomes: ~0.7-0.8)."""
AT_RUN_BOOST = 1.3
"""Extra weight for extending a run of >= min(order, 3) identical A or T bases."""


def _raw_transitions(order: int, pi_gc: float, rho_cg: float) -> np.ndarray:
    """Unnormalised-then-normalised transitions (4**order, 4) for given composition parameters."""
    pi = np.array([(1 - pi_gc) / 2, pi_gc / 2, pi_gc / 2, (1 - pi_gc) / 2])
    rho = np.ones((4, 4))
    rho[BASE_CODE["C"], BASE_CODE["G"]] = rho_cg
    rho[BASE_CODE["T"], BASE_CODE["A"]] = TPA_ODDS
    n_ctx = 4**order
    ctx = np.arange(n_ctx)
    digits = np.stack([(ctx // 4**k) % 4 for k in range(order)], axis=1)  # digits[:, 0] = newest
    weights = pi[None, :] * rho[digits[:, 0]]
    if order >= 2:
        run = min(order, 3)
        same = np.all(digits[:, :run] == digits[:, :1], axis=1)
        for base in (BASE_CODE["A"], BASE_CODE["T"]):
            rows = same & (digits[:, 0] == base)
            weights[rows, base] *= AT_RUN_BOOST
    return weights / weights.sum(axis=1, keepdims=True)


def stationary_distribution(transitions: np.ndarray, iterations: int = 500) -> np.ndarray:
    """Stationary distribution over the 4**k contexts of a k-th order chain (power iteration)."""
    n_ctx = transitions.shape[0]
    nxt = (np.arange(n_ctx)[:, None] * 4 + np.arange(4)[None, :]) % n_ctx
    p = np.full(n_ctx, 1.0 / n_ctx)
    for _ in range(iterations):
        new = np.bincount(nxt.ravel(), weights=(p[:, None] * transitions).ravel(), minlength=n_ctx)
        if np.abs(new - p).max() < 1e-13:
            return new
        p = new
    return p


def chain_composition(transitions: np.ndarray) -> tuple[float, float]:
    """Stationary GC fraction and CpG observed/expected ratio of a Markov chain."""
    p = stationary_distribution(transitions)
    last = np.arange(transitions.shape[0]) % 4
    base = np.bincount(last, weights=p, minlength=4)
    f_cg = float((p[last == BASE_CODE["C"]] * transitions[last == BASE_CODE["C"], 2]).sum())
    gc = float(base[1] + base[2])
    return gc, f_cg / float(base[1] * base[2])


def build_markov_model(order: int, gc: float, cpg_oe: float, tol: float = 1e-6) -> np.ndarray:
    """Transitions (4**order, 4) whose stationary GC and CpG o/e equal ``gc`` and ``cpg_oe``."""
    if order < 1:
        raise ValueError(f"markov_order must be >= 1 to control CpG depletion, got {order}.")
    logit_gc, log_rho = np.log(gc / (1 - gc)), np.log(cpg_oe)
    for _ in range(200):
        trans = _raw_transitions(order, 1 / (1 + np.exp(-logit_gc)), float(np.exp(log_rho)))
        got_gc, got_oe = chain_composition(trans)
        err_gc = np.log(gc / (1 - gc)) - np.log(got_gc / (1 - got_gc))
        err_oe = np.log(cpg_oe) - np.log(got_oe)
        if abs(err_gc) < tol and abs(err_oe) < tol:
            return trans
        logit_gc += err_gc
        log_rho += err_oe
    raise ValueError(
        f"cannot calibrate a Markov chain to GC {gc} and CpG o/e {cpg_oe}; use values closer "
        "to mammalian ones (GC 0.35-0.65, CpG o/e 0.1-1)."
    )


def sample_chains(
    transitions: np.ndarray, n_chains: int, length: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_chains`` independent stationary chains of ``length`` bases, uint8 (n_chains, length)."""
    n_ctx = transitions.shape[0]
    cum = np.cumsum(transitions, axis=1)[:, :3]
    state = rng.choice(n_ctx, size=n_chains, p=stationary_distribution(transitions))
    out = np.empty((n_chains, length), dtype=np.uint8)
    for t in range(length):
        u = rng.random(n_chains)
        base = (u[:, None] >= cum[state]).sum(axis=1)
        out[:, t] = base
        state = (state * 4 + base) % n_ctx
    return out


def sample_sequence(
    transitions: np.ndarray, length: int, rng: np.random.Generator, chain_length: int = 4000
) -> np.ndarray:
    """A stationary sequence of ``length`` bases, generated as concatenated parallel chains."""
    n_chains = max(1, -(-length // chain_length))
    per = -(-length // n_chains)
    return sample_chains(transitions, n_chains, per, rng).ravel()[:length]


def gc_and_cpg(codes: np.ndarray) -> tuple[float, float]:
    """GC fraction and CpG observed/expected ratio of a coded sequence."""
    n = len(codes)
    c = np.count_nonzero(codes == 1) / n
    g = np.count_nonzero(codes == 2) / n
    cg = np.count_nonzero((codes[:-1] == 1) & (codes[1:] == 2)) / (n - 1)
    return c + g, cg / (c * g)


def write_fasta(path: str | os.PathLike, chroms: dict[str, np.ndarray], width: int = 60) -> None:
    """Write coded chromosomes as FASTA (``width`` bases a line) to ``path`` (not atomic)."""
    with open(path, "wb") as fh:
        for name, codes in chroms.items():
            fh.write(f">{name}\n".encode())
            text = LETTERS[codes].tobytes()
            fh.write(b"\n".join(text[i : i + width] for i in range(0, len(text), width)))
            fh.write(b"\n")


def index_fasta(path: str | os.PathLike) -> Path:
    """Create ``path.fai`` with ``samtools faidx`` (through pysam); returns the index path."""
    pysam.faidx(str(path))
    return Path(f"{path}.fai")
