"""Cluster motifs named after JASPAR (paper Methods, Figures 3c, 3d, S6): step 5 of the
interpretation, rule ``interpret_tomtom``.

memelite's TomTom of the cluster PFMs (``clusters.meme``) against JASPAR CORE vertebrates
(pyjaspar) of the release in config ``interpret.tomtom``; the comparison itself is
:func:`bpaitac.interpret.motifs.tomtom_table`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from bpaitac.interpret import motifs as mot
from bpaitac.interpret.tables import save_tsv

log = logging.getLogger(__name__)


def match_jaspar(
    queries: dict[str, np.ndarray],
    *,
    release: str,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
    extra_targets: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """TomTom of ``queries`` against JASPAR CORE vertebrates of ``release`` (plus
    ``extra_targets``, named by their key after ``:``, in the same target set, so that their
    p-values have JASPAR's full-size background)."""
    targets, names = mot.jaspar_motifs(release)
    extra = extra_targets or {}
    return mot.tomtom_table(
        queries,
        {**targets, **extra},
        {**names, **{k: k.split(":", 1)[1] for k in extra}},
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
    )


def run_tomtom(
    meme_path: str | os.PathLike,
    out_tsv: str | os.PathLike,
    *,
    release: str,
    q_threshold: float,
    min_ic: float,
    min_width: int,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """TomTom of the cluster motifs against JASPAR CORE vertebrates of ``release``."""
    queries = mot.read_meme(meme_path)
    table = match_jaspar(
        queries,
        release=release,
        q_threshold=q_threshold,
        min_ic=min_ic,
        min_width=min_width,
        n_jobs=n_jobs,
    )
    log.info(
        "%d of %d cluster motifs match %s at q < %g",
        table["query"].nunique(),
        len(queries),
        release,
        q_threshold,
    )
    save_tsv(out_tsv, table)
    return table
