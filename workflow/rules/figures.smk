"""Figures 1b-d, 2a-f and S1-S4: one rule per figure (PDF + PNG, the PNG in the report).

What each figure compares comes from the config's `comparisons:` block, which panels it has from
bpaitac.workflow.figures.FIGURES, its input tables from bpaitac.workflow.figures.figure_input_paths.
Include after evaluate.smk.
"""

from bpaitac.workflow.figures import (
    FIGURES as EVAL_FIGURES,
    figure_comparisons,
    figure_input_paths,
)

for _figure, _spec in EVAL_FIGURES.items():

    rule:
        name:
            f"figure_{_figure}"
        input:
            unpack(
                lambda wc, figure=_figure: figure_input_paths(
                    figure, wc.dataset, COMPARISONS, EVAL_MODELS
                )
            ),
        output:
            pdf=f"results/{{dataset}}/figures/{_figure}.pdf",
            png=report(
                f"results/{{dataset}}/figures/{_figure}.png",
                caption=f"../report/{_figure}.rst",
                category=_spec.category,
            ),
        log:
            f"logs/{{dataset}}/figures/{_figure}.log",
        conda:
            "../../envs/evaluate.yaml"
        params:
            figure=_figure,
            comparisons={
                key: COMPARISONS[key] for key in figure_comparisons(_figure) if key in COMPARISONS
            },
            lineages=LINEAGES,
        script:
            "../../scripts/figure.py"


TARGET_FUNCTIONS["figures"] = lambda: (
    expand(
        "results/{dataset}/figures/{figure}.pdf",
        dataset=DATASET,
        figure=[f for f in FIGURES if f in EVAL_FIGURES],
    )
    + (expand("results/{dataset}/eval/summary.tsv", dataset=DATASET) if EVAL_MODELS else [])
)
