"""The embedded default input (source: simulate): a simulated mini-ImmGen ATAC-seq experiment."""

if config["source"] == "simulate":

    from bpaitac.workflow.simulation import TRUTH_FILES as SIMULATION_TRUTH_FILES
    from bpaitac.workflow.simulation import simulation_settings

    # Validated simulator knobs with every default filled in (also the rule's params, so a
    # changed default re-runs the simulation).
    SIMULATE_CONFIG = simulation_settings(config)
    SIMULATED_PROTEIN_FREE_REPLICATES = list(SIMULATE_CONFIG.protein_free_replicates)

    # rule all builds the simulation overview figure
    TARGET_FUNCTIONS["simulate"] = lambda: expand(
        "results/{dataset}/figures/simulation.{ext}", dataset=DATASET, ext=["pdf", "png"]
    )

    rule simulate:
        input:
            celltypes=config["celltypes"],
        output:
            genome="resources/{dataset}/genome.fa",
            fai="resources/{dataset}/genome.fa.fai",
            ocrs="resources/{dataset}/ocrs.csv",
            bams=expand("resources/{{dataset}}/bams/{celltype}.bam", celltype=SELECTED_CELLTYPES),
            bais=expand(
                "resources/{{dataset}}/bams/{celltype}.bam.bai", celltype=SELECTED_CELLTYPES
            ),
            protein_free_bams=expand(
                "resources/{{dataset}}/protein_free/{replicate}.bam",
                replicate=SIMULATED_PROTEIN_FREE_REPLICATES,
            ),
            protein_free_bais=expand(
                "resources/{{dataset}}/protein_free/{replicate}.bam.bai",
                replicate=SIMULATED_PROTEIN_FREE_REPLICATES,
            ),
            protein_free_regions="resources/{dataset}/protein_free/regions.bed",
            closed_pvalues="resources/{dataset}/closed_pvalues.tsv",
            truth=expand("resources/{{dataset}}/truth/{file}", file=SIMULATION_TRUTH_FILES),
        log:
            "logs/{dataset}/simulate.log",
        benchmark:
            "results/{dataset}/benchmarks/simulate.tsv"
        conda:
            "../../envs/simulate.yaml"
        threads: config["threads"]
        resources:
            **job_resources("simulate"),
        params:
            simulate=SIMULATE_CONFIG.to_dict(),
            seed=config["seed"],
            celltypes_per_lineage=config["celltypes_per_lineage"],
        script:
            "../../scripts/simulate.py"

    rule simulation_figure:
        input:
            fai="resources/{dataset}/genome.fa.fai",
            bams=expand("resources/{{dataset}}/bams/{celltype}.bam", celltype=SELECTED_CELLTYPES),
            bais=expand(
                "resources/{{dataset}}/bams/{celltype}.bam.bai", celltype=SELECTED_CELLTYPES
            ),
            genome="resources/{dataset}/genome.fa",
            ocrs="resources/{dataset}/ocrs.csv",
            protein_free_bams=expand(
                "resources/{{dataset}}/protein_free/{replicate}.bam",
                replicate=SIMULATED_PROTEIN_FREE_REPLICATES,
            ),
            protein_free_regions="resources/{dataset}/protein_free/regions.bed",
            bias="resources/{dataset}/truth/tn5_bias.tsv",
            sites="resources/{dataset}/truth/sites.tsv",
            occupancy="resources/{dataset}/truth/occupancy.tsv",
            accessibility="resources/{dataset}/truth/accessibility.tsv",
            depth="resources/{dataset}/truth/depth.tsv",
            motifs="resources/{dataset}/truth/motifs.meme",
        output:
            pdf=report(
                "results/{dataset}/figures/simulation.pdf",
                caption="../report/simulation.rst",
                category="Simulation",
            ),
            png=report(
                "results/{dataset}/figures/simulation.png",
                caption="../report/simulation.rst",
                category="Simulation",
            ),
        log:
            "logs/{dataset}/simulation_figure.log",
        benchmark:
            "results/{dataset}/benchmarks/simulation_figure.tsv"
        conda:
            "../../envs/simulate.yaml"
        script:
            "../../scripts/simulation_figure.py"
