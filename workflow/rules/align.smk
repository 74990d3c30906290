"""FASTQ pairs -> per-cell-type BAMs (source: download with `download.reads: fastq`;
bpaitac.data.align).

trim_fastq (cutadapt, per run) -> align_run (bowtie2, filters, markdup; a temp filtered BAM and
a QC row per run) -> merge_celltype_bam (resources/{dataset}/bams/{celltype}.bam + .bai, which
the preprocessing reads) and alignment_qc (QC table and figure in the report). The bowtie2 index
is built from the genome (bowtie2_index) unless `align.bowtie2_index` names a prebuilt one. The
runs of a cell type come from the runs table of checkpoint download_run_table (bpaitac.data.runs).
"""

from bpaitac.workflow.align_paths import BOWTIE2_INDEX_SUFFIXES, run_files

ALIGN = config["align"]
ALIGN_PREBUILT = bool(ALIGN["bowtie2_index"])
ALIGN_INDEX = ALIGN["bowtie2_index"] or "resources/{dataset}/bowtie2/genome"
# What the alignment's results depend on (the params rerun trigger): threads and job sizes are
# left out, so changing them does not realign 181 runs.
ALIGN_SETTINGS = {k: v for k, v in ALIGN.items() if k not in ("threads", "resources")}


# Index files to wait for: those of rule bowtie2_index; none for a prebuilt index (checked, with
# the fix, when the alignment starts).
ALIGN_INDEX_FILES = lambda wc: (
    []
    if ALIGN_PREBUILT
    else [ALIGN_INDEX.format(dataset=wc.dataset) + s for s in BOWTIE2_INDEX_SUFFIXES]
)
# The runs of a cell type (or of all cell types in use) from the checkpoint's runs table.
ALIGN_RUN_FILES = lambda wc, celltypes, pattern: run_files(
    checkpoints.download_run_table.get(dataset=wc.dataset).output.runs, celltypes, pattern
)


TARGET_FUNCTIONS["align"] = lambda: [
    f"results/{DATASET}/align/qc.tsv",
    f"results/{DATASET}/align/qc.pdf",
]


if not ALIGN_PREBUILT:

    rule bowtie2_index:
        input:
            fasta="resources/{dataset}/genome.fa",
            extra=ALIGN["extra_fasta"],
        output:
            multiext("resources/{dataset}/bowtie2/genome", *BOWTIE2_INDEX_SUFFIXES),
        log:
            "logs/{dataset}/align/bowtie2_index.log",
        benchmark:
            "results/{dataset}/benchmarks/align/bowtie2_index.tsv"
        conda:
            "../../envs/align.yaml"
        threads: ALIGN["threads"]
        resources:
            **ALIGN["resources"]["index"],
        params:
            prefix="resources/{dataset}/bowtie2/genome",
        script:
            "../../scripts/align.py"


rule trim_fastq:
    input:
        r1="resources/{dataset}/fastq/{run}_R1.fastq.gz",
        r2="resources/{dataset}/fastq/{run}_R2.fastq.gz",
    output:
        r1=temp("results/{dataset}/align/trimmed/{run}_R1.fastq.gz"),
        r2=temp("results/{dataset}/align/trimmed/{run}_R2.fastq.gz"),
        report="results/{dataset}/align/trimmed/{run}.cutadapt.json",
    log:
        "logs/{dataset}/align/trim_{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/align/trim_{run}.tsv"
    wildcard_constraints:
        run=r"[A-Z]{3}\d+",
    conda:
        "../../envs/align.yaml"
    threads: ALIGN["threads"]
    resources:
        **ALIGN["resources"]["trim"],
    params:
        align=ALIGN_SETTINGS,
    script:
        "../../scripts/align.py"


rule align_run:
    input:
        r1="results/{dataset}/align/trimmed/{run}_R1.fastq.gz",
        r2="results/{dataset}/align/trimmed/{run}_R2.fastq.gz",
        report="results/{dataset}/align/trimmed/{run}.cutadapt.json",
        index=ALIGN_INDEX_FILES,
        ocrs="resources/{dataset}/ocrs.csv",
    output:
        bam=temp("results/{dataset}/align/runs/{run}.bam"),
        qc="results/{dataset}/align/qc/{run}.tsv",
    log:
        "logs/{dataset}/align/align_{run}.log",
    benchmark:
        "results/{dataset}/benchmarks/align/align_{run}.tsv"
    wildcard_constraints:
        run=r"[A-Z]{3}\d+",
    conda:
        "../../envs/align.yaml"
    threads: ALIGN["threads"]
    resources:
        **ALIGN["resources"]["align"],
    params:
        align=ALIGN_SETTINGS,
        index=lambda wc: ALIGN_INDEX.format(dataset=wc.dataset),
    script:
        "../../scripts/align.py"


rule merge_celltype_bam:
    input:
        bams=lambda wc: ALIGN_RUN_FILES(
            wc, [wc.celltype], f"results/{wc.dataset}/align/runs/{{run}}.bam"
        ),
    output:
        bam="resources/{dataset}/bams/{celltype}.bam",
        bai="resources/{dataset}/bams/{celltype}.bam.bai",
    log:
        "logs/{dataset}/align/merge_{celltype}.log",
    benchmark:
        "results/{dataset}/benchmarks/align/merge_{celltype}.tsv"
    conda:
        "../../envs/align.yaml"
    threads: min(ALIGN["threads"], 4)
    resources:
        **ALIGN["resources"]["merge"],
    script:
        "../../scripts/align.py"


rule alignment_qc:
    input:
        qc=lambda wc: ALIGN_RUN_FILES(
            wc, SELECTED_CELLTYPES, f"results/{wc.dataset}/align/qc/{{run}}.tsv"
        ),
        runs="resources/{dataset}/runs.tsv",
    output:
        table=report(
            "results/{dataset}/align/qc.tsv",
            caption="../report/alignment_qc.rst",
            category="Alignment",
        ),
        figure=report(
            "results/{dataset}/align/qc.pdf",
            caption="../report/alignment_qc.rst",
            category="Alignment",
        ),
    log:
        "logs/{dataset}/align/alignment_qc.log",
    conda:
        "../../envs/align.yaml"
    script:
        "../../scripts/align.py"
