"""DNA as base indices: the one encoder and decoder of the package.

Sequences are stored as uint8 base indices, A, C, G, T = 0..3 and N (anything else) = 4
(``seq.npy``, docs/contracts.md); the network one-hot encodes them on its device
(:func:`bpaitac.model.network.one_hot`).
"""

from __future__ import annotations

import numpy as np

BASES = "ACGTN"
"""Letter of each base index."""

_LETTERS = np.frombuffer(BASES.encode(), dtype=np.uint8)
_LUT = np.full(256, 4, np.uint8)  # byte -> base index; anything but ACGTacgt is N
_LUT[np.frombuffer(b"ACGTacgt", np.uint8)] = [0, 1, 2, 3, 0, 1, 2, 3]


def encode_sequence(seq: str | bytes) -> np.ndarray:
    """Base indices (uint8) of a DNA string: A,C,G,T = 0..3 (any case), anything else 4 (N)."""
    raw = seq.encode("ascii") if isinstance(seq, str) else seq
    return _LUT[np.frombuffer(raw, np.uint8)]


def decode_sequence(idx: np.ndarray) -> str:
    """Inverse of :func:`encode_sequence`: upper-case letters, N for index 4."""
    return _LETTERS[np.asarray(idx, dtype=np.intp)].tobytes().decode()
