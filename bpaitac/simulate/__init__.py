"""Ground-truth simulator: a mini-ImmGen ATAC-seq experiment whose generative model is known.

See ``docs/simulation.md`` for the model. Entry point: :func:`simulate_dataset`.
"""

from bpaitac.simulate.config import SimulateConfig
from bpaitac.simulate.run import TRUTH_FILES, output_layout, simulate_dataset

__all__ = ["TRUTH_FILES", "SimulateConfig", "output_layout", "simulate_dataset"]
