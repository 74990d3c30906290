"""The evaluation figures (1b-d, 2a-f, S1-S4): which comparison, level and metric each panel
shows, the models each figure needs and the tables it reads. Parse-time (Snakefile) half of
:mod:`bpaitac.evaluate.figures`, which draws them; no matplotlib or scipy here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bpaitac.io import InputError
from bpaitac.workflow.evaluate_paths import BIAS_PAIRS, bias_eval_paths, eval_table_paths

COMPARISONS: dict[str, str] = {
    "main": "AI-TAC vs bpAI-TAC (Figures 1b-d, S1); exactly two entries",
    "losses": "the four loss functions (Figures 2a, S2a)",
    "multitask": "cell-type model averaged to lineages vs lineage model vs single-lineage "
    "ensemble (Figures 2b, S2b)",
    "lambda": "the lambda sweep, in increasing lambda (Figures 2c, S2c)",
    "architecture": "architecture ablations (Figure 2d)",
    "bias": "bias variants (Figures 2e, S3a)",
    "bins": "profile bin sizes (Figures 2f, S3b)",
    "bias_models": "the bias models (Figure S4); values are keys of `bias_models:`",
}
"""The comparisons a config may define (``comparisons.<key>``), and what each one is for."""

BIAS_COMPARISON = "bias_models"


@dataclass(frozen=True)
class Panel:
    """One axis of a figure: what it draws (``kind``), from which comparison, level and metric."""

    kind: str
    comparison: str
    level: str
    metric: str = "pearson"
    title: str = ""


@dataclass(frozen=True)
class FigureSpec:
    """A figure: its panels, a title and its report category."""

    title: str
    category: str
    panels: tuple[Panel, ...]


FIGURES: dict[str, FigureSpec] = {
    "fig1b": FigureSpec(
        "AI-TAC vs bpAI-TAC: per-OCR R across cell types",
        "Figure 1",
        (
            Panel("scatter", "main", "ocr", "pearson", "Per-OCR R, paired"),
            Panel("distribution", "main", "ocr", "pearson", "Distribution"),
        ),
    ),
    "fig1c": FigureSpec(
        "AI-TAC vs bpAI-TAC: per-cell-type R across OCRs",
        "Figure 1",
        (Panel("scatter", "main", "target", "pearson", "Per-cell-type R, by lineage"),),
    ),
    "fig1d": FigureSpec(
        "Per-OCR R by coefficient-of-variation quartile",
        "Figure 1",
        (Panel("cv_boxes", "main", "ocr", "pearson"),),
    ),
    "fig2a": FigureSpec(
        "Loss functions: per-OCR R across cell types",
        "Figure 2",
        (Panel("boxes", "losses", "ocr"),),
    ),
    "fig2b": FigureSpec(
        "Multi-task vs single-task: per-OCR R across lineages",
        "Figure 2",
        (Panel("boxes", "multitask", "lineage_ocr"),),
    ),
    "fig2c": FigureSpec(
        "Profile-loss weight lambda: per-OCR R across cell types",
        "Figure 2",
        (Panel("boxes", "lambda", "ocr"),),
    ),
    "fig2d": FigureSpec(
        "Architecture ablations: per-OCR R across cell types",
        "Figure 2",
        (Panel("boxes", "architecture", "ocr"),),
    ),
    "fig2e": FigureSpec(
        "Tn5 bias variants: per-OCR R across cell types",
        "Figure 2",
        (Panel("boxes", "bias", "ocr"),),
    ),
    "fig2f": FigureSpec(
        "Profile bin sizes: per-OCR R across cell types",
        "Figure 2",
        (Panel("boxes", "bins", "ocr"),),
    ),
    "figS1": FigureSpec(
        "Spearman R: AI-TAC vs bpAI-TAC",
        "Supplementary",
        (
            Panel("scatter", "main", "ocr", "spearman", "a) per-OCR Spearman R"),
            Panel("scatter", "main", "target", "spearman", "b) per-cell-type Spearman R"),
        ),
    ),
    "figS2": FigureSpec(
        "Across-OCR versions of Figure 2a-c",
        "Supplementary",
        (
            Panel("boxes", "losses", "target", "pearson", "a) loss functions"),
            Panel("boxes", "multitask", "lineage", "pearson", "b) multi-task vs single-task"),
            Panel("boxes", "lambda", "target", "pearson", "c) lambda"),
        ),
    ),
    "figS3": FigureSpec(
        "Across-OCR versions of Figure 2e-f",
        "Supplementary",
        (
            Panel("boxes", "bias", "target", "pearson", "a) Tn5 bias variants"),
            Panel("boxes", "bins", "target", "pearson", "b) bin sizes"),
        ),
    ),
    "figS4": FigureSpec(
        "Tn5 bias models on held-out protein-free and closed-OCR windows",
        "Supplementary",
        (
            Panel("bias_pairs", BIAS_COMPARISON, "bias_pairs", "pearson", "a) models agree: R"),
            Panel("bias_pairs", BIAS_COMPARISON, "bias_pairs", "jsd", "b) models agree: JSD"),
            Panel("bias_vs_obs", BIAS_COMPARISON, "bias", "pearson", "c) vs observed: R"),
            Panel("bias_vs_obs", BIAS_COMPARISON, "bias", "jsd", "d) vs observed: JSD"),
        ),
    ),
}
"""Every figure this module draws."""


def figure_comparisons(figure: str) -> list[str]:
    """The comparison keys a figure needs, in panel order."""
    return list(dict.fromkeys(p.comparison for p in FIGURES[figure].panels))


def figure_levels(figure: str) -> list[str]:
    """The table levels a figure reads, in panel order."""
    return list(dict.fromkeys(p.level for p in FIGURES[figure].panels))


def check_comparisons(
    comparisons: Mapping[str, Any],
    models: Iterable[str],
    bias_models: Iterable[str],
    figures: Iterable[str],
) -> None:
    """Check the ``comparisons:`` block against the model catalogue and the requested figures.

    ``models`` are the evaluated model names (catalogue models, single-lineage ensembles by
    their catalogue name). Raises :class:`InputError` naming the config key and the fix.
    """
    models = list(models)
    bias_models = list(bias_models)
    for figure in figures:
        if figure not in FIGURES:
            continue
        for key in figure_comparisons(figure):
            if not comparisons.get(key):
                raise InputError(
                    f"config key `comparisons.{key}` is missing: figure {figure} compares the "
                    f"models it names ({COMPARISONS[key]}); add it as `label: model` entries, or "
                    f"drop {figure} from `figures:`."
                )
    for key, mapping in comparisons.items():
        if key not in COMPARISONS:
            continue
        if not isinstance(mapping, Mapping):
            raise InputError(
                f"config key `comparisons.{key}`: expected a mapping `label: model`, "
                f"got {type(mapping).__name__}."
            )
        allowed, what = (
            (bias_models, "bias_models") if key == BIAS_COMPARISON else (models, "models")
        )
        for label, name in mapping.items():
            if name not in allowed:
                raise InputError(
                    f"config key `comparisons.{key}.{label}`: {name!r} is not defined in "
                    f"`{what}:`; allowed values: {', '.join(allowed) or '(none defined)'}."
                )
        names = list(mapping.values())
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(
                f"config key `comparisons.{key}`: model(s) {dup} appear under two labels; "
                "each model once."
            )
        minimum = 1 if key == BIAS_COMPARISON else 2
        if key == "main" and len(mapping) != 2:
            raise InputError(
                f"config key `comparisons.main`: needs exactly two entries (baseline first, "
                f"then the model compared to it), got {len(mapping)}."
            )
        if len(mapping) < minimum:
            raise InputError(
                f"config key `comparisons.{key}`: needs at least {minimum} entries, "
                f"got {len(mapping)}."
            )


def figure_input_paths(
    figure: str,
    dataset: str,
    comparisons: Mapping[str, Mapping[str, str]],
    evaluated: Mapping[str, Mapping[str, Any]],
) -> dict[str, list[str]]:
    """The tables a figure reads: level -> files of every model its panels compare."""
    out: dict[str, list[str]] = {}
    for panel in FIGURES[figure].panels:
        models = comparisons.get(panel.comparison)
        if not models:
            raise InputError(
                f"config key `comparisons.{panel.comparison}` is missing: figure {figure} "
                f"needs it ({COMPARISONS[panel.comparison]})."
            )
        if panel.level == "bias":
            new = bias_eval_paths(dataset, models.values(), "per_window.tsv")
        elif panel.level == "bias_pairs":
            new = [BIAS_PAIRS.format(dataset=dataset)]
        else:
            new = eval_table_paths(dataset, panel.level, models.values(), evaluated)
        files = out.setdefault(panel.level, [])
        files.extend(f for f in new if f not in files)
    return out


def required_models(comparisons: Mapping[str, Any], figures: Iterable[str]) -> list[str]:
    """Evaluated models the requested figures compare (bias models excluded), in order."""
    out: dict[str, None] = {}
    for figure in figures:
        if figure not in FIGURES:
            continue
        for key in figure_comparisons(figure):
            if key != BIAS_COMPARISON:
                out.update(dict.fromkeys(comparisons.get(key, {}).values()))
    return list(out)
