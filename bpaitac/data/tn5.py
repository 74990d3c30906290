"""The Tn5 insertion convention, stated once for the whole project.

Tn5 inserts its adapters as a 9 bp staggered cut. By convention (Buenrostro et al. 2013,
ChromBPNet) the insertion position of a read is its 5' end shifted by +4 on the plus strand
and by -5 on the minus strand. All positions here are 0-based genome coordinates.

- Plus-strand read: insertion ``p = read.reference_start + TN5_SHIFT_PLUS``, so a read whose
  insertion is at ``p`` starts at ``reference_start = p - 4``.
- Minus-strand read: its 5' end is the last aligned base ``read.reference_end - 1``, and the
  insertion is ``p = read.reference_end - 1 + TN5_SHIFT_MINUS``, so a read whose insertion is at
  ``p`` ends at ``reference_end = p + 5 + 1`` (half-open end).

The simulator (:mod:`bpaitac.simulate`) writes reads so that the preprocessing
(:mod:`bpaitac.data.insertions`), which applies exactly these shifts, recovers exactly the simulated
insertion positions.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Position = TypeVar("Position", int, np.ndarray)

TN5_SHIFT_PLUS: int = 4
"""Shift added to the 5' end (``reference_start``) of a plus-strand read."""

TN5_SHIFT_MINUS: int = -5
"""Shift added to the 5' end (``reference_end - 1``) of a minus-strand read."""


def plus_read_start(insertion: Position) -> Position:
    """0-based ``reference_start`` of a plus-strand read inserting at ``insertion``."""
    return insertion - TN5_SHIFT_PLUS


def minus_read_end(insertion: Position) -> Position:
    """Half-open ``reference_end`` of a minus-strand read inserting at ``insertion``."""
    return insertion - TN5_SHIFT_MINUS + 1


def insertion_of_read(reference_start: int, reference_end: int, is_reverse: bool) -> int:
    """Return the 0-based Tn5 insertion position of an aligned read."""
    if is_reverse:
        return reference_end - 1 + TN5_SHIFT_MINUS
    return reference_start + TN5_SHIFT_PLUS
