"""bpaitac: a reproducible workflow of the bpAI-TAC study (Chandra et al.).

The package holds the logic; ``workflow/`` wires it into Snakemake rules.
"""

__version__ = "0.1.0"
