"""The interpretation figures (paper Figures 3a-d, S5-S7), drawn from the interpretation
steps' tables and arrays.

:data:`FIGURES` maps each figure name to its :class:`FigureSpec`: what it shows and the
function that reads its rule's named inputs (``InterpretPaths.figure_inputs``) and draws it.
The Snakefile's half, the names alone, is :data:`bpaitac.workflow.interpret_paths.FIGURES`
(parse-time, no matplotlib); a test keeps the two equal.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from scipy.cluster.hierarchy import dendrogram, linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from bpaitac.data.sequence import one_hot
from bpaitac.interpret import motifs as mot  # noqa: E402
from bpaitac.interpret.clusters import tested_clusters  # noqa: E402
from bpaitac.interpret.tables import (  # noqa: E402
    load_attributions,
    load_cwms,
    load_footprints,
    read_tsv,
)
from bpaitac.io import InputError  # noqa: E402
from bpaitac.workflow.interpret_paths import ROLES  # noqa: E402

ROLE_COLOURS = {"reference": "#4c72b0", "profile": "#dd8452", "nobias": "#55a868"}
S6_COLOURS = {"reference": "0.6", "profile": "#8172b3"}


def _style():
    from bpaitac.evaluate.figures import STYLE

    return plt.rc_context(STYLE)


def _names_by_motif(tomtom: pd.DataFrame | None) -> dict[str, str]:
    return {} if tomtom is None or tomtom.empty else mot.best_names(tomtom)


def figure_3a(regions: pd.DataFrame, names: Mapping[str, str]) -> Figure:
    """Per-OCR R across cell types, reference vs profile model; selected regions in yellow."""
    with _style():
        fig, ax = plt.subplots(figsize=(4.2, 4))
        sel = regions["selected"].astype(str).str.lower() == "true"
        ax.scatter(
            regions.loc[~sel, "r_reference_mean"],
            regions.loc[~sel, "r_profile_mean"],
            s=4,
            c="0.6",
            alpha=0.5,
            lw=0,
            label="test OCRs",
        )
        how = regions.loc[sel, "selected_by"].iloc[0] if sel.any() else ""
        label = f"selected (n={int(sel.sum())}{', fallback' if how.startswith('fallback') else ''})"
        ax.scatter(
            regions.loc[sel, "r_reference_mean"],
            regions.loc[sel, "r_profile_mean"],
            s=14,
            c="#f2c80f",
            edgecolors="k",
            linewidths=0.4,
            label=label,
        )
        ax.plot([-1, 1], [-1, 1], c="k", lw=0.6, ls="--")
        ax.set(
            xlim=(-1, 1),
            ylim=(-1, 1),
            xlabel=f"{names['reference']} R (mean over seeds)",
            ylabel=f"{names['profile']} R (mean over seeds)",
            title="Fig. 3a: per-OCR R across cell types",
        )
        ax.legend(loc="lower right", fontsize=7)
    return fig


def _logo_window(tracks: Sequence[np.ndarray], width: int) -> tuple[int, int]:
    """A ``width`` window centred on the largest smoothed |attribution| of (L,) tracks."""
    total = np.sum([np.abs(t) for t in tracks], axis=0)
    length = len(total)
    width = min(width, length)
    smooth = np.convolve(total, np.ones(15) / 15, mode="same")
    centre = int(np.argmax(smooth))
    start = int(np.clip(centre - width // 2, 0, length - width))
    return start, start + width


def _plot_logo(ax, proj: np.ndarray, start: int, end: int, title: str) -> None:
    from tangermeme.plot import plot_logo

    plot_logo(proj[:, start:end], ax=ax)
    ax.set_title(title, fontsize=7, loc="left")
    ax.set_xticks([])
    ax.tick_params(labelsize=6)


def _region_index(data: Mapping[str, np.ndarray], peak: str | None) -> int:
    peaks = list(data["peak_id"])
    if peak is None:
        return 0
    if peak not in peaks:
        raise InputError(
            f"config key `interpret.figures.example_region`: {peak!r} is not a selected region; "
            f"allowed values: {', '.join(peaks[:10])}{' ...' if len(peaks) > 10 else ''}."
        )
    return peaks.index(peak)


def _projected(data: Mapping[str, np.ndarray], i: int) -> np.ndarray:
    """(K, 4, L) attributions of the bases present of region ``i``."""
    return data["hypothetical"][i] * one_hot(data["seq"][i : i + 1])[0][None]


def figure_attributions(
    data: Mapping[str, Mapping[str, np.ndarray]],
    names: Mapping[str, str],
    *,
    peak: str | None,
    lineages: Sequence[str] | None,
    width: int,
    title: str,
) -> Figure:
    """Attribution logos of one region: rows = lineages, columns = models (Figures 3b, S5).

    Titles give the lineage and ``predicted | observed`` log(1 + accessibility).
    """
    roles = [r for r in ROLES if r in data]
    first = data[roles[0]]
    i = _region_index(first, peak)
    all_lins = list(first["lineages"])
    if lineages is None:
        lineages = all_lins
    proj = {r: _projected(data[r], i) for r in roles}
    ks = [all_lins.index(lin) for lin in lineages]
    start, end = _logo_window([proj[r][k].sum(0) for r in roles for k in ks], width)
    with _style():
        fig, axes = plt.subplots(
            len(ks), len(roles), figsize=(4.5 * len(roles), 1.1 * len(ks) + 0.6), squeeze=False
        )
        for col, role in enumerate(roles):
            d = data[role]
            for row, k in enumerate(ks):
                pred, obs = d["pred_lineage"][i, k], d["obs_lineage"][i, k]
                head = f"{names[role]} | " if row == 0 else ""
                _plot_logo(
                    axes[row, col],
                    proj[role][k],
                    start,
                    end,
                    f"{head}{all_lins[k]}: {pred:.2f} | {obs:.2f}",
                )
        fig.suptitle(f"{title}: {first['peak_id'][i]}, bases {start}-{end}", fontsize=9)
        fig.tight_layout()
    return fig


def figure_3b(data, names, *, peak: str | None, width: int) -> Figure:
    """Three lineages of increasing observed accessibility (low, middle, high), both models."""
    first = data["profile"]
    i = _region_index(first, peak)
    order = np.argsort(first["obs_lineage"][i], kind="stable")
    picks = [order[0], order[len(order) // 2], order[-1]]
    lins = [str(first["lineages"][k]) for k in dict.fromkeys(picks)]
    return figure_attributions(data, names, peak=peak, lineages=lins, width=width, title="Fig. 3b")


def figure_S5(data, names, *, peak: str | None, width: int) -> Figure:
    """All lineages of one region for both models (predicted | observed in the titles)."""
    return figure_attributions(data, names, peak=peak, lineages=None, width=width, title="Fig. S5")


def figure_S7(
    data: Mapping[str, Mapping[str, np.ndarray]],
    names: Mapping[str, str],
    *,
    n_regions: int,
    width: int,
) -> Figure:
    """Accessibility attributions (summed over lineages) with vs without the Tn5 bias model."""
    roles = ["profile", "nobias"]
    n = min(n_regions, len(data["profile"]["peak_id"]))
    with _style():
        fig, axes = plt.subplots(2 * n, 1, figsize=(7, 2.2 * n + 0.4), squeeze=False)
        for j in range(n):
            proj = {r: _projected(data[r], j).sum(0) for r in roles}
            start, end = _logo_window([proj[r].sum(0) for r in roles], width)
            for k, role in enumerate(roles):
                ax = axes[2 * j + k, 0]
                _plot_logo(
                    ax,
                    proj[role],
                    start,
                    end,
                    f"{data[role]['peak_id'][j]} | {names[role]} | bases {start}-{end}",
                )
        fig.suptitle(
            "Fig. S7: attributions with (top) vs without (bottom) the bias model", fontsize=9
        )
        fig.tight_layout()
    return fig


def figure_3c(
    effects: pd.DataFrame,
    tests: pd.DataFrame,
    names: Mapping[str, str],
    motif_names: Mapping[str, str],
    lineages: Sequence[str],
) -> Figure:
    """Predicted accessibility change on insertion per lineage, both models (rank-sum q)."""
    motifs = list(dict.fromkeys(effects["motif"]))
    with _style():
        n = max(len(motifs), 1)
        fig, axes = plt.subplots(n, 1, figsize=(0.55 * len(lineages) + 2, 2.3 * n), squeeze=False)
        if not motifs:
            axes[0, 0].text(0.5, 0.5, "no motif inserted", ha="center", va="center")
            axes[0, 0].set_axis_off()
        for ax, motif in zip(axes[:, 0], motifs):
            sub = effects[effects["motif"] == motif]
            for shift, role in ((-0.18, "reference"), (0.18, "profile")):
                vals = [
                    sub.loc[(sub["role"] == role) & (sub["lineage"] == lin), "delta"].to_numpy()
                    for lin in lineages
                ]
                bp = ax.boxplot(
                    vals,
                    positions=np.arange(len(lineages)) + shift,
                    widths=0.32,
                    patch_artist=True,
                    showfliers=False,
                    manage_ticks=False,
                )
                for box in bp["boxes"]:
                    box.set(facecolor=ROLE_COLOURS[role], alpha=0.8, lw=0.5)
                for part in ("medians", "whiskers", "caps"):
                    for line in bp[part]:
                        line.set(color="k", lw=0.6)
                ax.plot([], [], c=ROLE_COLOURS[role], lw=6, label=names[role])
            t = tests[tests["motif"] == motif].set_index("lineage")
            top = ax.get_ylim()[1]
            for x, lin in enumerate(lineages):
                if lin in t.index and t.loc[lin, "q_value"] < 0.05:
                    ax.text(x, top, "*", ha="center", va="bottom", fontsize=10)
            ax.axhline(0, c="k", lw=0.5, ls=":")
            ax.set_xticks(np.arange(len(lineages)), lineages, rotation=45, ha="right")
            label = motif_names.get(motif, "")
            cons = sub["consensus"].iloc[0] if "consensus" in sub else ""
            ax.set_title(f"{motif} {cons} {f'({label})' if label else ''}", loc="left", fontsize=8)
            ax.set_ylabel("Δ log(1 + acc.)")
        if motifs:
            axes[0, 0].legend(loc="upper right", fontsize=7)
        fig.suptitle("Fig. 3c: effect of inserting motifs (* rank-sum q < 0.05)", fontsize=9)
        fig.tight_layout()
    return fig


def figure_3d(fp: Mapping[str, np.ndarray], motif_names: Mapping[str, str]) -> Figure:
    """Deep footprints: profile (bias zero) median and IQR with (red) vs without (blue) motif."""
    motifs = list(fp["motifs"])
    models = list(fp["models"])
    prof = fp["profiles"]  # (roles, motifs, 2, 3, K + 1, P)
    n_bins = prof.shape[-1]
    with _style():
        n = max(len(motifs), 1)
        fig, axes = plt.subplots(n, len(models), figsize=(3.3 * len(models), 2 * n), squeeze=False)
        if not motifs:
            for ax in axes.flat:
                ax.text(0.5, 0.5, "no motif inserted", ha="center", va="center")
                ax.set_axis_off()
        bin_size = 250 // max(n_bins, 1)
        x = (np.arange(n_bins) + 0.5) * bin_size - 125
        for m, motif in enumerate(motifs):
            width = len(str(fp["consensus"][m]))
            for r, model in enumerate(models):
                ax = axes[m, r]
                for c, colour in ((0, "#4c72b0"), (1, "#c44e52")):
                    q25, q50, q75 = prof[r, m, c, :, -1, :]
                    ax.fill_between(x, q25, q75, color=colour, alpha=0.25, lw=0)
                    ax.plot(x, q50, color=colour, lw=0.8, label=("without", "with")[c])
                ax.axvspan(-width / 2, width / 2, color="0.85", zorder=0)
                label = motif_names.get(motif, "")
                ax.set_title(
                    f"{model}: {motif} {f'({label})' if label else ''}", fontsize=8, loc="left"
                )
                ax.set_xlabel("position from centre (bp)")
                if r == 0:
                    ax.set_ylabel("P(insertion), bias 0")
        if motifs:
            axes[0, 0].legend(fontsize=7)
        fig.suptitle("Fig. 3d: deep footprints, median and IQR over shuffled sequences", fontsize=9)
        fig.tight_layout()
    return fig


def figure_S6(
    clusters: pd.DataFrame,
    cwms: Mapping[str, np.ndarray],
    motif_names: Mapping[str, str],
    names: Mapping[str, str],
    *,
    max_clusters: int,
) -> Figure:
    """Cluster motifs on an average-linkage tree (correlation distance), per-model counts."""
    from tangermeme.plot import plot_logo

    tested = tested_clusters(clusters).copy()
    tested["enriched"] = tested["enriched"].astype(str).str.lower() == "true"
    tested = tested.sort_values(["enriched", "n_seqlets"], ascending=[False, False]).head(
        max_clusters
    )
    motifs = [m for m in tested["motif"] if m in cwms]
    tested = tested.set_index("motif").loc[motifs]
    n = len(motifs)
    with _style():
        height = 0.55 * max(n, 1) + 1.0
        fig = plt.figure(figsize=(10, height))
        if n == 0:
            fig.text(0.5, 0.5, "no cluster with enough seqlets", ha="center")
            return fig
        if n > 1:
            _, _, _, r = mot.aligned_correlations(
                [cwms[m] for m in motifs], [cwms[m] for m in motifs], min_overlap=3
            )
            dist = 1 - np.clip((r + r.T) / 2, -1, 1)
            np.fill_diagonal(dist, 0)
            tree = linkage(squareform(dist, checks=False), method="average")
        grid = fig.add_gridspec(
            n,
            4,
            width_ratios=[1.2, 2.2, 4, 2],
            hspace=0.15,
            wspace=0.05,
            top=1 - 0.55 / height,
            bottom=0.45 / height,
        )
        ax_tree = fig.add_subplot(grid[:, 0])
        if n > 1:
            leaves = dendrogram(
                tree,
                orientation="left",
                no_labels=True,
                ax=ax_tree,
                color_threshold=0,
                above_threshold_color="k",
            )["leaves"]
        else:
            leaves = [0]
        ax_tree.set_axis_off()
        order = leaves[::-1]  # dendrogram draws leaf 0 at the bottom
        xmax = float(tested[["n_profile", "n_reference"]].to_numpy().max()) * 1.1
        for row, li in enumerate(order):
            m = motifs[li]
            info = tested.loc[m]
            label = motif_names.get(m, "")
            star = " *" if info["enriched"] else ""
            ax_text = fig.add_subplot(grid[row, 1])
            ax_text.set_axis_off()
            ax_text.text(
                0.02,
                0.5,
                f"{m.replace('cluster_', '')}{star}" + (f"\n[{label}]" if label else ""),
                ha="left",
                va="center",
                fontsize=7,
            )
            ax = fig.add_subplot(grid[row, 2])
            plot_logo(cwms[m], ax=ax)
            ax.set_axis_off()
            axb = fig.add_subplot(grid[row, 3])
            axb.barh([1], [info["n_reference"]], color=S6_COLOURS["reference"], height=0.8)
            axb.barh([0], [info["n_profile"]], color=S6_COLOURS["profile"], height=0.8)
            axb.set_xlim(0, xmax)
            axb.set_yticks([])
            axb.tick_params(labelsize=6)
            if row != n - 1:
                axb.set_xticks([])
        axb.set_xlabel("seqlets")
        fig.legend(
            handles=[
                Patch(color=S6_COLOURS["reference"], label=names["reference"]),
                Patch(color=S6_COLOURS["profile"], label=names["profile"]),
            ],
            loc="upper right",
            fontsize=7,
        )
        fig.suptitle(
            "Fig. S6: seqlet clusters (* enriched, Fisher q < FDR) [TomTom JASPAR q < 0.05]",
            fontsize=9,
        )
    return fig


# --------------------------------------------------------------------------------------------
# The registry: figure name -> how it is drawn from its rule's inputs


@dataclass(frozen=True)
class FigureContext:
    """What the figures are drawn with: model labels by role, the lineages in use and the
    validated config block ``interpret.figures`` (its defaults are in the schema)."""

    names: Mapping[str, str]
    lineages: Sequence[str]
    example_region: str | None
    logo_width: int
    s7_regions: int
    s6_max_clusters: int

    @classmethod
    def from_config(
        cls, options: Mapping[str, Any], names: Mapping[str, str], lineages: Sequence[str]
    ) -> FigureContext:
        """Build from the validated ``interpret.figures`` block (unknown keys are an error)."""
        return cls(names=dict(names), lineages=list(lineages), **dict(options))


Inputs = Mapping[str, Any]
"""A figure rule's named inputs (paths), as ``InterpretPaths.figure_inputs`` names them."""


@dataclass(frozen=True)
class FigureSpec:
    """One interpretation figure: what it shows and how it is drawn from its inputs."""

    title: str
    draw: Callable[[Inputs, FigureContext], Figure]


def _tomtom_names(inputs: Inputs) -> dict[str, str]:
    """Cluster motif -> JASPAR names from the optional ``tomtom`` input ({} without it)."""
    path = inputs.get("tomtom")
    if not path:
        return {}
    return _names_by_motif(read_tsv(path, ["query", "target_name", "q_value"]))


def _draw_3a(inputs: Inputs, ctx: FigureContext) -> Figure:
    regions = read_tsv(inputs["regions"], ["r_reference_mean", "r_profile_mean"])
    return figure_3a(regions, ctx.names)


def _draw_3b(inputs: Inputs, ctx: FigureContext) -> Figure:
    data = {r: load_attributions(inputs[r]) for r in ROLES}
    return figure_3b(data, ctx.names, peak=ctx.example_region, width=ctx.logo_width)


def _draw_S5(inputs: Inputs, ctx: FigureContext) -> Figure:
    data = {r: load_attributions(inputs[r]) for r in ROLES}
    return figure_S5(data, ctx.names, peak=ctx.example_region, width=ctx.logo_width)


def _draw_S7(inputs: Inputs, ctx: FigureContext) -> Figure:
    data = {r: load_attributions(inputs[r]) for r in ("profile", "nobias")}
    return figure_S7(data, ctx.names, n_regions=ctx.s7_regions, width=ctx.logo_width)


def _draw_3c(inputs: Inputs, ctx: FigureContext) -> Figure:
    effects = read_tsv(inputs["effects"], ["motif", "role", "lineage", "delta"])
    clusters = read_tsv(inputs["clusters"], ["motif", "consensus"])
    effects = effects.merge(clusters[["motif", "consensus"]], on="motif", how="left")
    tests = read_tsv(inputs["stats"], ["motif", "lineage", "q_value"])
    return figure_3c(effects, tests, ctx.names, _tomtom_names(inputs), ctx.lineages)


def _draw_3d(inputs: Inputs, ctx: FigureContext) -> Figure:
    return figure_3d(load_footprints(inputs["footprints"]), _tomtom_names(inputs))


def _draw_S6(inputs: Inputs, ctx: FigureContext) -> Figure:
    clusters = read_tsv(inputs["clusters"], ["motif", "tested", "enriched", "n_seqlets"])
    return figure_S6(
        clusters,
        load_cwms(inputs["cwms"]),
        _tomtom_names(inputs),
        ctx.names,
        max_clusters=ctx.s6_max_clusters,
    )


FIGURES: dict[str, FigureSpec] = {
    "fig3a": FigureSpec("Per-OCR R across cell types, both models; the selected regions", _draw_3a),
    "fig3b": FigureSpec("Attribution logos of one region in three lineages, both models", _draw_3b),
    "fig3c": FigureSpec("Accessibility change on inserting cluster motifs, per lineage", _draw_3c),
    "fig3d": FigureSpec("Deep footprints of the inserted motifs (profiles without bias)", _draw_3d),
    "figS5": FigureSpec("Attribution logos of one region in every lineage, both models", _draw_S5),
    "figS6": FigureSpec("Seqlet clusters: motifs, tree, seqlets per model, JASPAR names", _draw_S6),
    "figS7": FigureSpec("Attributions with vs without the Tn5 bias model", _draw_S7),
}
"""Every interpretation figure by name (the names of ``interpret_paths.FIGURES``)."""


def draw_figure(figure: str, inputs: Inputs, context: FigureContext) -> Figure:
    """Draw one interpretation figure from its rule's named inputs."""
    if figure not in FIGURES:
        raise ValueError(f"unknown interpretation figure {figure!r}; one of {', '.join(FIGURES)}.")
    return FIGURES[figure].draw(inputs, context)


def run_figure(
    figure: str,
    inputs: Inputs,
    context: FigureContext,
    out_pdf: str | os.PathLike,
    out_png: str | os.PathLike,
) -> None:
    """Draw one interpretation figure and save it as PDF + PNG."""
    from bpaitac.evaluate.figures import save_figure

    save_figure(draw_figure(figure, inputs, context), out_pdf, out_png)
