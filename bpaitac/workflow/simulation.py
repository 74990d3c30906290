"""What the Snakefile needs of the simulator (source: simulate): its validated settings and the
truth tables it writes under ``resources/{dataset}/truth/``, without importing the generator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bpaitac.simulate.config import SimulateConfig

TRUTH_FILES = (
    "motifs.meme",
    "activity.tsv",
    "effects.tsv",
    "tn5_bias.tsv",
    "sites.tsv",
    "occupancy.tsv",
    "accessibility.tsv",
    "ocrs.tsv",
    "depth.tsv",
    "expected_rates.npz",
    "variants.tsv",
    "variant_effects.tsv",
)
"""The simulator's truth tables (docs/simulation.md), read by the truth recovery."""


def simulation_settings(config: Mapping[str, Any]) -> SimulateConfig:
    """The validated ``simulate:`` block with every default filled in."""
    return SimulateConfig.from_dict(config["simulate"])
