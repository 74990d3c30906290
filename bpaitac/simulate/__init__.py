"""Ground-truth simulator: a mini-ImmGen ATAC-seq experiment whose generative model is known.

See ``docs/simulation.md`` for the model. Entry point: :func:`simulate_dataset`.
"""

from bpaitac.simulate.config import SimulateConfig

__all__ = ["SimulateConfig", "output_layout", "simulate_dataset"]


def __getattr__(name: str):
    """The generator (numpy, scipy, pysam, numba) loads on first use: the workflow imports this
    package for its settings and file names at every Snakemake start (bpaitac/lazy.py)."""
    if name in ("output_layout", "simulate_dataset"):
        from bpaitac.simulate import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
