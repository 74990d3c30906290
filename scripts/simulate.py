"""Snakemake entry (rule simulate): write the simulated dataset under resources/{dataset}/."""

import logging
from pathlib import Path

from bpaitac.io import read_celltypes, setup_logging
from bpaitac.simulate import SimulateConfig, output_layout, simulate_dataset

setup_logging(snakemake.log[0])
try:
    params = snakemake.params
    celltypes = read_celltypes(snakemake.input.celltypes, params.celltypes_per_lineage)
    cfg = SimulateConfig.from_dict(params.simulate)
    outdir = Path(snakemake.output.genome).parent
    expected = output_layout(outdir, list(celltypes["celltype"]), cfg.protein_free_replicates)
    for key, paths in expected.items():
        declared = snakemake.output[key] if key in snakemake.output.keys() else None
        wanted = [str(p) for p in paths] if isinstance(paths, list) else str(paths)
        got = list(declared) if isinstance(wanted, list) else str(declared)
        if got != wanted:
            raise ValueError(
                f"rule simulate: output `{key}` is {got!r} but the simulator writes {wanted!r}; "
                "keep workflow/rules/simulate.smk in line with bpaitac.simulate.output_layout."
            )
    simulate_dataset(cfg, celltypes, params.seed, outdir, threads=snakemake.threads)
except Exception:
    logging.getLogger("simulate").exception("simulation failed")
    raise
