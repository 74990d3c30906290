"""Planted TF motifs: JASPAR matrices (through pyjaspar, offline) or synthetic IUPAC PWMs.

A motif is a position probability matrix ``ppm`` of shape (L, 4) over A, C, G, T. Sites are
sampled from it (or from a flattened version for weak sites), scored by their log-odds against a
uniform background in natural-log units, and written as MEME for the truth set.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from bpaitac.io import ConfigError
from bpaitac.simulate.config import IUPAC, MotifSpec

PSEUDOCOUNT = 0.01
"""Probability mass mixed into JASPAR frequencies so that log-odds stay finite."""
CONSENSUS_PROBABILITY = 0.85
"""Probability of the consensus letter(s) at each position of a synthetic motif."""
BACKGROUND = np.full(4, 0.25)


@dataclass(frozen=True)
class Motif:
    """A planted motif: its config name, where it comes from, and its PPM (L, 4)."""

    name: str
    source: str
    ppm: np.ndarray

    @property
    def length(self) -> int:
        """Motif width in bp."""
        return int(self.ppm.shape[0])


@lru_cache(maxsize=4)
def _jaspar_db(release: str):  # pragma: no cover - trivial wrapper
    from pyjaspar import jaspardb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaspardb(release=release)


def jaspar_ppm(matrix_id: str, release: str) -> np.ndarray:
    """The PPM (L, 4) of JASPAR matrix ``matrix_id`` in ``release`` (offline, through pyjaspar)."""
    db = _jaspar_db(release)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        motif = db.fetch_motif_by_id(matrix_id)
    if motif is None:
        raise ConfigError(
            f"config key `simulate.motifs`: JASPAR matrix {matrix_id!r} is not in {release}; "
            "use an ID listed by pyjaspar for that release (e.g. MA0080.7)."
        )
    counts = np.array([list(motif.counts[b]) for b in "ACGT"], dtype=float).T
    freqs = counts / counts.sum(axis=1, keepdims=True)
    freqs = (1 - PSEUDOCOUNT) * freqs + PSEUDOCOUNT * BACKGROUND
    return freqs / freqs.sum(axis=1, keepdims=True)


def consensus_ppm(consensus: str, p: float = CONSENSUS_PROBABILITY) -> np.ndarray:
    """A PPM (L, 4) from an IUPAC consensus: ``p`` shared by the allowed letters."""
    ppm = np.zeros((len(consensus), 4))
    for j, letter in enumerate(consensus.upper()):
        allowed = IUPAC[letter]
        if len(allowed) == 4:
            ppm[j] = 0.25
            continue
        for k, base in enumerate("ACGT"):
            ppm[j, k] = p / len(allowed) if base in allowed else (1 - p) / (4 - len(allowed))
    return ppm


def load_motifs(specs: Sequence[MotifSpec], release: str) -> list[Motif]:
    """Resolve the configured motifs to PPMs."""
    motifs = []
    for spec in specs:
        if spec.jaspar_id is not None:
            ppm = jaspar_ppm(spec.jaspar_id, release)
            source = f"{release} {spec.jaspar_id}"
        else:
            ppm = consensus_ppm(spec.consensus or "")
            source = f"synthetic {spec.consensus}"
        motifs.append(Motif(spec.name, source, ppm))
    return motifs


def log_odds(ppm: np.ndarray, background: np.ndarray = BACKGROUND) -> np.ndarray:
    """Natural-log odds (L, 4) of a PPM against a background composition."""
    return np.log(ppm) - np.log(background)[None, :]


def expected_score(ppm: np.ndarray, background: np.ndarray = BACKGROUND) -> float:
    """Mean log-odds score of sites sampled from ``ppm`` (its relative entropy, in nats)."""
    return float((ppm * log_odds(ppm, background)).sum())


def score_sites(codes: np.ndarray, ppm: np.ndarray) -> np.ndarray:
    """Log-odds scores of forward-strand sites ``codes`` (n, L) under ``ppm`` (L, 4)."""
    lo = log_odds(ppm)
    return lo[np.arange(ppm.shape[0])[None, :], codes].sum(axis=1)


def sample_sites(
    ppm: np.ndarray, n: int, rng: np.random.Generator, temperature: float = 1.0
) -> np.ndarray:
    """Sample ``n`` sites (n, L) uint8 from ``ppm`` raised to ``temperature`` (1 = the PWM itself).

    ``temperature`` < 1 flattens the matrix towards uniform, giving weak, low-affinity sites.
    """
    probs = ppm**temperature
    probs /= probs.sum(axis=1, keepdims=True)
    cum = np.cumsum(probs, axis=1)[:, :3]
    u = rng.random((n, ppm.shape[0]))
    return (u[:, :, None] >= cum[None, :, :]).sum(axis=2).astype(np.uint8)


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of coded sequence(s) along the last axis (N stays N)."""
    comp = np.array([3, 2, 1, 0, 4], dtype=np.uint8)
    return comp[codes[..., ::-1]]


def meme_motifs(motifs: Sequence[Motif]) -> dict[str, np.ndarray]:
    """MOTIF line ``name source`` -> (4, L) matrix of each motif, for
    :func:`bpaitac.interpret.motifs.write_meme` (the truth set's ``motifs.meme``)."""
    return {f"{m.name} {m.source.replace(' ', '_')}": m.ppm.T for m in motifs}
