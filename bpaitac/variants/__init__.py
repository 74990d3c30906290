"""Variant effects: a VCF or TSV of variants in, per-cell-type and per-lineage effects of every
trained model and seed out (rule ``score_variants``, config ``variants:``).

:mod:`~bpaitac.variants.inputs` reads and checks the variants against the genome,
:mod:`~bpaitac.variants.windows` builds the ref and alt windows, :mod:`~bpaitac.variants.score`
predicts them (both strands, tangermeme's variant effects) and writes the tables,
:mod:`~bpaitac.variants.figures` draws the figure and :mod:`~bpaitac.variants.truth` scores the
predictions against the simulator's planted variant effects (``truth/variants.tsv``).
"""
