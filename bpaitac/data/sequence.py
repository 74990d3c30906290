"""DNA as base indices: the one encoder and decoder of the package.

Sequences are stored as uint8 base indices, A, C, G, T = 0..3 and N (anything else) = 4
(``seq.npy``, docs/contracts.md); :func:`one_hot` encodes them for the network, on the device of
the batch.
"""

from __future__ import annotations

import numpy as np

from bpaitac.numeric import Array, namespace

BASES = "ACGTN"
"""Letter of each base index."""

_LETTERS = np.frombuffer(BASES.encode(), dtype=np.uint8)
_ONE_HOT = np.vstack([np.eye(4, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)])
"""Row ``i``: the one-hot column of base index ``i`` (N is all zeros)."""
_LUT = np.full(256, 4, np.uint8)  # byte -> base index; anything but ACGTacgt is N
_LUT[np.frombuffer(b"ACGTacgt", np.uint8)] = [0, 1, 2, 3, 0, 1, 2, 3]


def encode_sequence(seq: str | bytes) -> np.ndarray:
    """Base indices (uint8) of a DNA string: A,C,G,T = 0..3 (any case), anything else 4 (N)."""
    raw = seq.encode("ascii") if isinstance(seq, str) else seq
    return _LUT[np.frombuffer(raw, np.uint8)]


def decode_sequence(idx: np.ndarray) -> str:
    """Inverse of :func:`encode_sequence`: upper-case letters, N for index 4."""
    return _LETTERS[np.asarray(idx, dtype=np.intp)].tobytes().decode()


def one_hot(seq: Array) -> Array:
    """Base indices (N, L) -> float32 one-hot (N, 4, L) with N all zeros; a numpy array gives a
    numpy array, a torch tensor a tensor on its device."""
    xp = namespace(seq)
    if xp is np:
        return np.ascontiguousarray(_ONE_HOT[np.asarray(seq, dtype=np.intp)].transpose(0, 2, 1))
    table = xp.as_tensor(_ONE_HOT, device=seq.device)
    return table[seq.long()].transpose(1, 2).contiguous()
