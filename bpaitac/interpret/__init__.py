"""Interpretation of what bpAI-TAC learns beyond AI-TAC (paper Figures 3, S5-S7).

One module per rule of ``workflow/rules/interpret.smk``, each with its ``run_*`` step:
:mod:`~bpaitac.interpret.regions` (1, regions.tsv), :mod:`~bpaitac.interpret.attribution`
(2, DeepSHAP per lineage), :mod:`~bpaitac.interpret.seqlets` (3),
:mod:`~bpaitac.interpret.clusters` (4, clusters, CWMs, MEME), :mod:`~bpaitac.interpret.tomtom`
(5, JASPAR names), :mod:`~bpaitac.interpret.insertion` (6, motif insertion and deep
footprints), :mod:`~bpaitac.interpret.truth` (7, simulated data only) and
:mod:`~bpaitac.interpret.figures` (the figure registry). :mod:`~bpaitac.interpret.motifs` is
the motif maths (alignment, clustering, enrichment, MEME files, TomTom) and
:mod:`~bpaitac.interpret.tables` the steps' files. Model roles: ``reference`` (AI-TAC),
``profile`` (bpAI-TAC) and, for Figure S7, ``nobias``, named in config ``interpret:``.
"""
