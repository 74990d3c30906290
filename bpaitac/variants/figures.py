"""The variant-effect figure (rule ``variants_figure``): (a) the top variants x lineages heatmap of
the seed-mean log2 fold change, (b) ref and alt profile tracks of the top variant in its
lineage (seed and strand means, bias zero), with that lineage's log2FC +- sd and JSD."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bpaitac.evaluate.figures import save_figure  # noqa: E402
from bpaitac.interpret.tables import read_tsv  # noqa: E402
from bpaitac.variants.score import SUMMARY_COLUMNS, TIDY_COLUMNS  # noqa: E402

PROFILE_ARRAYS = ("variant_id", "label", "top_lineage", "lineages", "ref", "alt", "positions")


def load_profiles(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The top variants' profiles written by :func:`bpaitac.variants.score.score_variants`."""
    from bpaitac.io import InputError, require_file

    path = require_file(path, "variant profiles", "run rule score_variants.")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in PROFILE_ARRAYS if k not in z.files]
        if missing:
            raise InputError(f"{path}: missing array(s) {missing}; rerun rule score_variants.")
        return {k: z[k] for k in PROFILE_ARRAYS}


def draw_variant_figure(
    table: pd.DataFrame, summary: pd.DataFrame, profiles: dict[str, np.ndarray], label: str
) -> Figure:
    """Heatmap of the top variants (rows, the profiles' order) x lineages and the top variant's
    ref/alt tracks in its lineage; a figure saying so when nothing was scored."""
    top = list(profiles["variant_id"])
    lineages = list(profiles["lineages"])
    fig = plt.figure(figsize=(max(7.0, 0.5 * len(lineages) + 5), 3.2 + 0.28 * max(len(top), 4)))
    if not top:
        counts = summary["status"].value_counts()
        text = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no variants"
        fig.text(0.5, 0.5, f"{label}: no variant scored ({text})", ha="center", va="center")
        return fig
    grid = fig.add_gridspec(2, 1, height_ratios=[max(len(top), 4), 4], hspace=0.45)
    lin = table[table["level"] == "lineage"]
    mat = (
        lin.pivot(index="variant_id", columns="target", values="log2fc_mean")
        .reindex(index=top, columns=lineages)
        .to_numpy(dtype=float)
    )
    ax = fig.add_subplot(grid[0])
    lim = float(np.nanmax(np.abs(mat))) if np.isfinite(mat).any() else 1.0
    im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="none")
    ax.set_xticks(range(len(lineages)), lineages, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(top)), list(profiles["label"]), fontsize=7)
    n_seeds = int(summary["n_seeds"].max()) if summary["n_seeds"].notna().any() else 0
    ax.set_title(
        f"a  {label}: top {len(top)} of {int((summary['status'] == 'ok').sum())} variants by "
        f"max |log2FC| over lineages (mean of {n_seeds} seed(s), both strands)",
        loc="left",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, label="log2 fold change alt / ref", fraction=0.03, pad=0.01)

    ax = fig.add_subplot(grid[1])
    k = lineages.index(str(profiles["top_lineage"][0]))
    x = profiles["positions"]
    ax.plot(x, profiles["ref"][0, k], color="0.3", lw=1.2, label="ref")
    ax.plot(x, profiles["alt"][0, k], color="C3", lw=1.2, label="alt")
    ax.axvline(0, color="0.6", lw=0.8, ls=":")
    row = lin[(lin["variant_id"] == top[0]) & (lin["target"] == lineages[k])].iloc[0]
    sd = "" if pd.isna(row["log2fc_sd"]) else f" +- {row['log2fc_sd']:.2f}"
    ax.set_title(
        f"b  {profiles['label'][0]} in {lineages[k]}: log2FC {row['log2fc_mean']:.2f}{sd}, "
        f"JSD {row['jsd_mean']:.3g} bits (profiles with bias zero)",
        loc="left",
        fontsize=9,
    )
    ax.set_xlabel("position relative to the variant (bp)")
    ax.set_ylabel("predicted insertion probability")
    ax.legend(frameon=False, fontsize=8)
    return fig


def run_variant_figure(
    *,
    table_tsv: str | os.PathLike,
    summary_tsv: str | os.PathLike,
    profiles_npz: str | os.PathLike,
    label: str,
    out_pdf: str | os.PathLike,
    out_png: str | os.PathLike,
) -> None:
    """Read a model's variant tables and profiles, draw and save the figure (PDF + PNG)."""
    table = read_tsv(table_tsv, TIDY_COLUMNS)
    summary = read_tsv(summary_tsv, SUMMARY_COLUMNS)
    fig = draw_variant_figure(table, summary, load_profiles(profiles_npz), label)
    save_figure(fig, out_pdf, out_png)
