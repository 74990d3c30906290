"""Drawing of Figures 1b-d, 2a-f and S1-S4 (matplotlib).

What each figure shows is registered in :data:`bpaitac.workflow.figures.FIGURES` (parse-time, no
matplotlib): per panel a *comparison* (a key of the config's ``comparisons:`` block, an ordered
``label -> model`` mapping whose first entry is the reference), an evaluation *level*
(:data:`bpaitac.workflow.evaluate_paths.LEVELS`, or ``bias`` / ``bias_pairs`` for the bias
models) and a metric. This module reads the figure's tables and draws its panels: per-unit
metrics averaged over seeds (the unit is an OCR, a target or a lineage) and a two-sided paired
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) of every model against the reference,
pairing the same units; the number of seeds of each model is printed under its name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bpaitac.evaluate.metrics import (
    LEVEL_KEYS,
    QUARTILES,
    PairedTest,
    paired_wilcoxon,
    read_level_tables,
    seed_means,
)
from bpaitac.io import InputError, atomic_path
from bpaitac.lazy import LazyModule
from bpaitac.workflow.evaluate_paths import LEVELS
from bpaitac.workflow.figures import FIGURES, figure_comparisons, figure_levels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _agg_backend() -> None:
    import matplotlib

    matplotlib.use("Agg")


# pyplot (Agg backend) is imported when a figure is drawn, not on import (STYLE is read alone).
plt = LazyModule("matplotlib.pyplot", before=_agg_backend)

UNIT_NAMES: dict[str, str] = {
    "ocr": "OCRs",
    "target": "cell types",
    "lineage_ocr": "OCRs",
    "lineage": "lineages",
    "bias": "windows",
    "bias_pairs": "windows",
}

METRIC_NAMES: dict[str, str] = {
    "pearson": "Pearson R",
    "spearman": "Spearman R",
    "jsd": "JSD (bits)",
}

LEVEL_AXES: dict[str, str] = {
    "ocr": "of OCRs across cell types",
    "target": "of cell types across OCRs",
    "lineage_ocr": "of OCRs across lineages",
    "lineage": "of lineages across OCRs",
}


STYLE: dict[str, Any] = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "pdf.fonttype": 42,
}

MODEL_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")


# --------------------------------------------------------------------------------------------
# Small drawing helpers


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "p = n/a"
    if p < 1e-300:
        return "p < 1e-300"
    return f"p = {p:.2g}"


def _seed_count(table: pd.DataFrame, model: str) -> int:
    return int(table.loc[table["model"] == model, "seed"].nunique())


def _seeds(table: pd.DataFrame, model: str) -> str:
    """``"1 seed"`` / ``"3 seeds"``: the number of seeds of ``model`` in ``table``."""
    n = _seed_count(table, model)
    return f"{n} seed" if n == 1 else f"{n} seeds"


def _unit_means(table: pd.DataFrame, level: str, metric: str) -> pd.DataFrame:
    """Per-unit metric averaged over seeds, one column per model (units x models)."""
    key = LEVEL_KEYS[level]
    means = seed_means(table, key, [metric])
    return means.pivot(index=key, columns="model", values=metric)


def _require_models(table: pd.DataFrame, models: Iterable[str], level: str) -> None:
    present = set(table["model"]) if len(table) else set()
    missing = [m for m in models if m not in present]
    if missing:
        raise InputError(
            f"no {LEVELS.get(level, level)} rows for model(s) {missing}; the figure's input "
            "tables do not match `comparisons:`. Rerun the evaluation rules."
        )


def _test_text(test: PairedTest, unit: str) -> str:
    return f"paired Wilcoxon, n = {test.n} {unit}: {_fmt_p(test.pvalue)}"


def lineage_colours(lineages: Sequence[str]) -> dict[str, Any]:
    """Lineage -> matplotlib RGBA colour (tab10, tab20 beyond ten lineages), in the order given:
    the one lineage palette of the figures and the genome-browser tracks."""
    cmap = plt.get_cmap("tab10" if len(lineages) <= 10 else "tab20")
    return {lin: cmap(i % cmap.N) for i, lin in enumerate(lineages)}


# --------------------------------------------------------------------------------------------
# Panels


def draw_scatter(
    ax: plt.Axes,
    table: pd.DataFrame,
    comparison: Mapping[str, str],
    level: str,
    metric: str,
    lineages: Sequence[str] = (),
) -> PairedTest:
    """Reference model (x) vs the other model (y), one point per unit (seed means)."""
    (ref_label, ref), (label, model) = list(comparison.items())[:2]
    _require_models(table, [ref, model], level)
    wide = _unit_means(table, level, metric)
    pairs = wide[[ref, model]].dropna()
    test = paired_wilcoxon(wide[ref], wide[model])
    unit = UNIT_NAMES[level]
    if level in ("target", "lineage") and "lineage" in table.columns:
        lineage_of = (
            table.drop_duplicates(LEVEL_KEYS[level]).set_index(LEVEL_KEYS[level])["lineage"]
            if level == "target"
            else pd.Series(pairs.index, index=pairs.index)
        )
        order = list(lineages) or list(dict.fromkeys(lineage_of.loc[pairs.index]))
        colours = lineage_colours(order)
        for lin in order:
            idx = [u for u in pairs.index if lineage_of.get(u) == lin]
            if idx:
                ax.scatter(
                    pairs.loc[idx, ref], pairs.loc[idx, model], s=22, color=colours[lin], label=lin
                )
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title="lineage", fontsize=7)
    else:
        ax.scatter(pairs[ref], pairs[model], s=4, alpha=0.35, color=MODEL_COLOURS[0], lw=0)
    lo = float(np.nanmin(pairs.to_numpy())) if len(pairs) else -1.0
    hi = float(np.nanmax(pairs.to_numpy())) if len(pairs) else 1.0
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.4", lw=0.8, ls="--")
    above = int((pairs[model] > pairs[ref]).sum())
    metric_name = METRIC_NAMES.get(metric, metric)
    ax.set_xlabel(f"{ref_label} {metric_name} ({_seeds(table, ref)})")
    ax.set_ylabel(f"{label} {metric_name} ({_seeds(table, model)})")
    ax.text(
        0.98,
        0.02,
        f"mean {ref_label} = {test.mean_a:.3f}\nmean {label} = {test.mean_b:.3f}\n"
        f"{label} higher for {above}/{len(pairs)} {unit}\n{_test_text(test, unit)}",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize=7,
        bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9},
    )
    return test


def draw_distribution(
    ax: plt.Axes, table: pd.DataFrame, comparison: Mapping[str, str], level: str, metric: str
) -> None:
    """Histograms of the per-unit metric (seed means) of every compared model, means marked."""
    models = list(comparison.values())
    _require_models(table, models, level)
    wide = _unit_means(table, level, metric)
    values = wide[models].to_numpy()
    finite = values[np.isfinite(values)]
    bins = np.linspace(finite.min(), finite.max(), 31) if finite.size else 10
    for i, (label, model) in enumerate(comparison.items()):
        col = wide[model].dropna()
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        ax.hist(col, bins=bins, histtype="step", lw=1.4, color=colour)
        ax.axvline(col.mean(), color=colour, ls="--", lw=1)
        ax.plot(
            [],
            [],
            color=colour,
            label=f"{label}: mean {col.mean():.3f}, median {col.median():.3f} "
            f"({_seeds(table, model)})",
        )
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric)} {LEVEL_AXES[level]}")
    ax.set_ylabel(f"number of {UNIT_NAMES[level]}")
    ax.legend(loc="upper left")


def _box(ax: plt.Axes, values: np.ndarray, pos: float, width: float, colour: Any) -> float:
    """One box (no fliers) at ``pos``; returns the top of its upper whisker."""
    parts = ax.boxplot([values], positions=[pos], widths=width, showfliers=False, patch_artist=True)
    parts["boxes"][0].set(facecolor=colour, alpha=0.35, edgecolor=colour)
    parts["medians"][0].set(color="black")
    return float(max(max(cap.get_ydata()) for cap in parts["caps"]))


def _annotate(ax: plt.Axes, items: Sequence[tuple[float, float, str]], fontsize: float = 6.5):
    """Write each ``(x, y, text)`` just above ``y`` and make room for it."""
    lo, hi = ax.get_ylim()
    pad = 0.03 * (hi - lo)
    for x, y, text in items:
        ax.text(x, y + pad, text, ha="center", va="bottom", fontsize=fontsize)
    if items:
        lines = max(t.count("\n") + 1 for _, _, t in items)
        top = max(y for _, y, _ in items)
        ax.set_ylim(lo, max(hi, top + pad + (0.06 * lines + 0.03) * (hi - lo)))


def _legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), title=title, fontsize=7)


def draw_boxes(
    ax: plt.Axes,
    table: pd.DataFrame,
    comparison: Mapping[str, str],
    level: str,
    metric: str,
) -> list[PairedTest]:
    """One box per model (per-unit seed means); p-value of each model vs the first above it."""
    labels, models = list(comparison), list(comparison.values())
    _require_models(table, models, level)
    wide = _unit_means(table, level, metric)
    tops, means = [], []
    for i, model in enumerate(models):
        vals = wide[model].dropna().to_numpy()
        means.append(vals.mean() if vals.size else np.nan)
        colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
        tops.append(_box(ax, vals, i + 1, 0.6, colour) if vals.size else np.nan)
    ax.scatter(range(1, len(models) + 1), means, marker="D", s=16, color="black", zorder=3)
    tests = [paired_wilcoxon(wide[models[0]], wide[m]) for m in models[1:]]
    notes = []
    for i, test in enumerate(tests, start=2):
        sign = "+" if test.mean_diff >= 0 else "\u2212"
        text = f"{_fmt_p(test.pvalue)}\n\u0394 {sign}{abs(test.mean_diff):.3f}".replace(" = ", "=")
        notes.append((i, np.nanmax(tops), text))
    _annotate(ax, notes)
    rotate = len(models) > 4 or max(len(lab) for lab in labels) > 12
    if rotate:
        ticks = [f"{lab} ({_seeds(table, m)})" for lab, m in zip(labels, models)]
        ax.set_xticks(range(1, len(models) + 1), ticks, rotation=30, ha="right")
    else:
        ticks = [f"{lab}\n({_seeds(table, m)})" for lab, m in zip(labels, models)]
        ax.set_xticks(range(1, len(models) + 1), ticks)
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} {LEVEL_AXES[level]}")
    n = tests[0].n if tests else int(wide[models[0]].notna().sum())
    ax.set_xlabel(
        f"paired Wilcoxon vs {labels[0]} across {UNIT_NAMES[level]} (n = {n})\n"
        "\u0394: difference of means; boxes: per-unit seed means; \u25c6: mean",
        fontsize=7,
    )
    return tests


def draw_cv_boxes(
    ax: plt.Axes, table: pd.DataFrame, comparison: Mapping[str, str], metric: str
) -> list[PairedTest]:
    """Per-OCR R of both models in each CV quartile, with a paired test per quartile."""
    (ref_label, ref), (label, model) = list(comparison.items())[:2]
    _require_models(table, [ref, model], "ocr")
    wide = _unit_means(table, "ocr", metric)
    ocr = table.drop_duplicates("peak_id").set_index("peak_id")
    quartile = ocr["cv_quartile"].reindex(wide.index)
    cv = ocr["cv"].reindex(wide.index)
    tests: list[PairedTest] = []
    ticks, notes = [], []
    for i, q in enumerate(QUARTILES):
        sel = quartile == q
        a, b = wide.loc[sel, ref], wide.loc[sel, model]
        tops = [
            _box(ax, col.dropna().to_numpy(), i * 3 + j + 1, 0.8, MODEL_COLOURS[j])
            for j, col in enumerate((a, b))
            if col.notna().any()
        ]
        test = paired_wilcoxon(a, b)
        tests.append(test)
        if tops:
            notes.append((i * 3 + 1.5, max(tops), f"{_fmt_p(test.pvalue)}\nn = {test.n}"))
        qcv = cv[sel]
        ticks.append(f"{q}\nCV {qcv.min():.2f}-{qcv.max():.2f}" if sel.any() else q)
    _annotate(ax, notes)
    ax.set_xticks([i * 3 + 1.5 for i in range(len(QUARTILES))], ticks)
    ax.set_xlim(0, len(QUARTILES) * 3)
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} {LEVEL_AXES['ocr']}")
    ax.set_xlabel(
        "quartile of the CV of observed accessibility across cell types (Q1 lowest); "
        "paired Wilcoxon per quartile",
        fontsize=7,
    )
    for colour, (lab, name) in zip(MODEL_COLOURS, ((ref_label, ref), (label, model))):
        ax.plot([], [], color=colour, lw=6, alpha=0.5, label=f"{lab} ({_seeds(table, name)})")
    _legend_outside(ax)
    return tests


def _grouped_positions(n_groups: int, n_boxes: int) -> tuple[np.ndarray, float]:
    """x positions (groups x boxes) of side-by-side boxes, and the box width."""
    width = 0.8 / n_boxes
    offsets = (np.arange(n_boxes) - (n_boxes - 1) / 2) * width
    return np.arange(n_groups)[:, None] + offsets[None, :], width


def draw_bias_vs_obs(
    ax: plt.Axes, table: pd.DataFrame, comparison: Mapping[str, str], metric: str
) -> list[PairedTest]:
    """Each bias model's per-window metric vs observed profiles, grouped by held-out set."""
    labels, names = list(comparison), list(comparison.values())
    missing = [n for n in names if n not in set(table["bias_model"])]
    if missing:
        raise InputError(
            f"no per-window rows for bias model(s) {missing}; rerun evaluate_bias_model."
        )
    sets = list(dict.fromkeys(table["eval_set"]))
    pos, width = _grouped_positions(len(sets), len(names))
    tests, notes = [], []
    for s_idx, eval_set in enumerate(sets):
        sub = table[table["eval_set"] == eval_set]
        wide = sub.pivot(index="window", columns="bias_model", values=metric)
        for m_idx, name in enumerate(names):
            vals = wide[name].dropna().to_numpy() if name in wide else np.array([])
            if not vals.size:
                continue
            colour = MODEL_COLOURS[m_idx % len(MODEL_COLOURS)]
            top = _box(ax, vals, pos[s_idx, m_idx], width * 0.9, colour)
            if m_idx > 0 and names[0] in wide:
                test = paired_wilcoxon(wide[names[0]], wide[name])
                tests.append(test)
                notes.append((pos[s_idx, m_idx], top, _fmt_p(test.pvalue).replace(" ", "")))
    _annotate(ax, notes, fontsize=6)
    for m_idx, label in enumerate(labels):
        colour = MODEL_COLOURS[m_idx % len(MODEL_COLOURS)]
        ax.plot([], [], color=colour, lw=6, alpha=0.5, label=label)
    ax.set_xticks(range(len(sets)), [f"held-out\n{s}" for s in sets])
    ax.set_xlim(-0.6, len(sets) - 0.4)
    ax.set_ylabel(f"profile {METRIC_NAMES.get(metric, metric)}, predicted vs observed")
    n = int(table.groupby("eval_set")["window"].nunique().min()) if len(table) else 0
    test = f"paired Wilcoxon vs {labels[0]}" if len(names) > 1 else "one bias model, no test"
    ax.set_xlabel(f"{test}; n >= {n} windows per set", fontsize=7)
    _legend_outside(ax, "bias model (1 run each)")
    return tests


def draw_bias_pairs(
    ax: plt.Axes, table: pd.DataFrame, comparison: Mapping[str, str], metric: str
) -> None:
    """Agreement of the predicted profiles of each pair of bias models, per held-out set."""
    label_of = {name: label for label, name in comparison.items()}
    pairs = list(dict.fromkeys(zip(table["model_a"], table["model_b"])))
    pairs = [p for p in pairs if p[0] in label_of and p[1] in label_of]
    if len(label_of) < 2:
        ax.text(0.5, 0.5, "one bias model: no pair to compare", ha="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    if not pairs:
        raise InputError(
            f"no rows comparing two of the bias models {list(label_of)}; rerun compare_bias_models."
        )
    sets = list(dict.fromkeys(table["eval_set"]))
    pos, width = _grouped_positions(len(sets), len(pairs))
    notes = []
    for s_idx, eval_set in enumerate(sets):
        for p_idx, (a, b) in enumerate(pairs):
            sel = (table["eval_set"] == eval_set) & (table["model_a"] == a)
            vals = table.loc[sel & (table["model_b"] == b), metric].dropna().to_numpy()
            if not vals.size:
                continue
            colour = MODEL_COLOURS[(p_idx + 3) % len(MODEL_COLOURS)]
            top = _box(ax, vals, pos[s_idx, p_idx], width * 0.9, colour)
            notes.append((pos[s_idx, p_idx], top, f"{np.median(vals):.3g}"))
    _annotate(ax, notes, fontsize=6)
    for p_idx, (a, b) in enumerate(pairs):
        colour = MODEL_COLOURS[(p_idx + 3) % len(MODEL_COLOURS)]
        ax.plot([], [], color=colour, lw=6, alpha=0.5, label=f"{label_of[a]} vs {label_of[b]}")
    n = int(table.groupby("eval_set")["window"].nunique().min())
    ax.set_xticks(range(len(sets)), [f"held-out\n{s}" for s in sets])
    ax.set_xlim(-0.6, len(sets) - 0.4)
    ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} between predicted profiles")
    ax.set_xlabel(f"n >= {n} windows per set; medians printed above the boxes", fontsize=7)
    _legend_outside(ax, "bias models")


# --------------------------------------------------------------------------------------------
# Figures


def load_figure_tables(
    figure: str, inputs: Mapping[str, Sequence[str | os.PathLike]]
) -> dict[str, pd.DataFrame]:
    """Read and validate the tables ``figure`` needs: ``inputs`` maps a level to its files.

    A missing column raises :class:`InputError` naming the table and the column.
    """
    if figure not in FIGURES:
        raise InputError(f"unknown figure {figure!r}; known: {', '.join(FIGURES)}.")
    tables = {}
    for level in figure_levels(figure):
        if level not in inputs:
            raise InputError(f"{figure}: the rule gives no `{level}` input tables.")
        tables[level] = read_level_tables(inputs[level], level)
    return tables


def build_figure(
    figure: str,
    tables: Mapping[str, pd.DataFrame],
    comparisons: Mapping[str, Mapping[str, str]],
    lineages: Sequence[str] = (),
) -> Figure:
    """Draw ``figure`` from its tables (level -> concatenated evaluation table)."""
    if figure not in FIGURES:
        raise InputError(f"unknown figure {figure!r}; known: {', '.join(FIGURES)}.")
    spec = FIGURES[figure]
    for key in figure_comparisons(figure):
        if not comparisons.get(key):
            raise InputError(f"config key `comparisons.{key}` is missing; {figure} needs it.")
    for level in figure_levels(figure):
        if level not in tables:
            raise InputError(f"{figure}: no {level} table was given.")
    n = len(spec.panels)
    ncols = 2 if n >= 2 else 1
    nrows = int(np.ceil(n / ncols))
    wide_boxes = any(p.kind == "boxes" and len(comparisons[p.comparison]) > 4 for p in spec.panels)
    outside_legend = any(
        p.kind in ("cv_boxes", "bias_vs_obs", "bias_pairs")
        or (p.kind == "scatter" and p.level in ("target", "lineage"))
        for p in spec.panels
    )
    n_boxes = max(
        (len(comparisons[p.comparison]) for p in spec.panels if p.kind == "boxes"), default=0
    )
    panel_width = max(5.0, 0.75 * n_boxes + 1.6) + (1.8 if outside_legend else 0.0)
    width = panel_width * ncols
    height = 4.2 * nrows + (0.6 if wide_boxes else 0)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained"
        )
        for ax, panel in zip(axes.flat, spec.panels):
            comparison = comparisons[panel.comparison]
            table = tables[panel.level]
            if panel.kind == "scatter":
                draw_scatter(ax, table, comparison, panel.level, panel.metric, lineages)
            elif panel.kind == "distribution":
                draw_distribution(ax, table, comparison, panel.level, panel.metric)
            elif panel.kind == "cv_boxes":
                draw_cv_boxes(ax, table, comparison, panel.metric)
            elif panel.kind == "boxes":
                draw_boxes(ax, table, comparison, panel.level, panel.metric)
            elif panel.kind == "bias_vs_obs":
                draw_bias_vs_obs(ax, table, comparison, panel.metric)
            elif panel.kind == "bias_pairs":
                draw_bias_pairs(ax, table, comparison, panel.metric)
            else:  # pragma: no cover - FIGURES only uses the kinds above
                raise ValueError(f"unknown panel kind {panel.kind!r}")
            ax.set_title(panel.title, loc="left")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        fig.suptitle(f"{figure}: {spec.title}", fontsize=11)
    return fig


def save_figure(fig: Figure, pdf: str | os.PathLike, png: str | os.PathLike) -> None:
    """Write the figure as PDF and PNG, each atomically, and close it."""
    try:
        for path in (pdf, png):
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=Path(path).suffix.lstrip("."), bbox_inches="tight")
    finally:
        plt.close(fig)
