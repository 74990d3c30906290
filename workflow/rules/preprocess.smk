"""From BAMs to training arrays (bpaitac.data.arrays, bpaitac.data.insertions; docs/contracts.md)
and the Tn5-bias training sets (bpaitac.data.bias_sets).

prepare_ocrs -> count_insertions (one job per cell type, one pass over its BAM) ->
assemble_dataset (per-split profile.npy, quantile-normalised counts.npy), plus the two Tn5-bias
training sets. BAM indexes are not declared inputs: they come with the BAM (simulate/download
rules), and a missing one is reported with the fix (or built when preprocess.index_missing).
The closed-OCR p-values are read from resources/ (preprocess.closed_pvalues: table) or computed
with MACS3 (macs3: closed_pvalues_macs3 per cell type, then closed_pvalues_table; bpaitac.data.peaks).
"""

from bpaitac.workflow.splits import BIAS_SET_SPLITS, SPLITS

# The split names are fixed by the data contract (bpaitac.data.splits; docs/contracts.md).
PREPROCESS_SPLITS = list(SPLITS)
PREPROCESS_BIAS_SET_SPLITS = {kind: list(splits) for kind, splits in BIAS_SET_SPLITS.items()}
PREPROCESS_SPLIT_FILES = ["seq.npy", "ocrs.tsv", "profile.npy", "counts.npy", "celltypes.txt"]
PREPROCESS_BIAS_SET_FILES = ["seq.npy", "profile.npy", "windows.tsv"]
# Protein-free DNA replicates: named where the inputs come from (simulate: or download:).
PREPROCESS_PROTEIN_FREE_REPLICATES = config[
    "simulate" if config["source"] == "simulate" else "download"
]["protein_free_replicates"]
# Downloaded protein-free DNA has its own genome (PRINT's BACs: hg38) and may come as one
# fragments file; simulated protein-free DNA lies on the dataset's genome, one BAM per replicate.
PREPROCESS_PROTEIN_FREE = {
    "fragments": config["source"] == "download"
    and config["download"]["protein_free_format"] == "fragments",
    "genome": (
        "resources/{dataset}/protein_free/genome.fa"
        if config["source"] == "download"
        and config["download"]["protein_free_genome_url"] != "dataset"
        else "resources/{dataset}/genome.fa"
    ),
}
PREPROCESS_CLOSED_PVALUES = {
    "table": "resources/{dataset}/closed_pvalues.tsv",
    "macs3": "results/{dataset}/data/closed_pvalues.tsv",
}[config["preprocess"]["closed_pvalues"]]


TARGET_FUNCTIONS["preprocess"] = lambda: expand(
    "results/{dataset}/data/{split}/{name}",
    dataset=DATASET,
    split=PREPROCESS_SPLITS,
    name=PREPROCESS_SPLIT_FILES,
) + [
    f"results/{DATASET}/data/bias_sets/{kind}/{split}/{name}"
    for kind, splits in PREPROCESS_BIAS_SET_SPLITS.items()
    for split in splits
    for name in PREPROCESS_BIAS_SET_FILES
]


rule prepare_ocrs:
    input:
        table="resources/{dataset}/ocrs.csv",
        genome="resources/{dataset}/genome.fa",
        fai="resources/{dataset}/genome.fa.fai",
    output:
        ocrs="results/{dataset}/data/ocrs_all.tsv",
        seq=expand("results/{{dataset}}/data/{split}/seq.npy", split=PREPROCESS_SPLITS),
        ocrs_split=expand("results/{{dataset}}/data/{split}/ocrs.tsv", split=PREPROCESS_SPLITS),
    log:
        "logs/{dataset}/preprocess/prepare_ocrs.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/prepare_ocrs.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        preprocess=config["preprocess"],
        celltypes=SELECTED_CELLTYPES,
        splits=PREPROCESS_SPLITS,
    script:
        "../../scripts/preprocess.py"


rule count_insertions:
    input:
        bam="resources/{dataset}/bams/{celltype}.bam",
        ocrs="results/{dataset}/data/ocrs_all.tsv",
        genome="resources/{dataset}/genome.fa",
        fai="resources/{dataset}/genome.fa.fai",
    output:
        insertions=insertion_output("results/{dataset}/data/insertions/{celltype}.npy"),
    log:
        "logs/{dataset}/preprocess/insertions_{celltype}.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/insertions_{celltype}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: min(config["threads"], 4)
    params:
        preprocess=config["preprocess"],
        splits=PREPROCESS_SPLITS,
    script:
        "../../scripts/preprocess.py"


rule assemble_dataset:
    input:
        ocrs="results/{dataset}/data/ocrs_all.tsv",
        insertions=expand(
            "results/{{dataset}}/data/insertions/{celltype}.npy", celltype=SELECTED_CELLTYPES
        ),
    output:
        profile=expand("results/{{dataset}}/data/{split}/profile.npy", split=PREPROCESS_SPLITS),
        counts=expand("results/{{dataset}}/data/{split}/counts.npy", split=PREPROCESS_SPLITS),
        celltypes=expand("results/{{dataset}}/data/{split}/celltypes.txt", split=PREPROCESS_SPLITS),
    log:
        "logs/{dataset}/preprocess/assemble_dataset.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/assemble_dataset.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        preprocess=config["preprocess"],
        celltypes=SELECTED_CELLTYPES,
        splits=PREPROCESS_SPLITS,
    script:
        "../../scripts/preprocess.py"


rule closed_pvalues_macs3:
    input:
        bam="resources/{dataset}/bams/{celltype}.bam",
        ocrs="results/{dataset}/data/ocrs_all.tsv",
        fai="resources/{dataset}/genome.fa.fai",
    output:
        pvalues=temp("results/{dataset}/data/closed_pvalues/{celltype}.tsv"),
    log:
        "logs/{dataset}/preprocess/closed_pvalues_{celltype}.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/closed_pvalues_{celltype}.tsv"
    conda:
        "../../envs/preprocess.yaml"
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        macs3=config["preprocess"]["macs3"],
        closed_p=config["preprocess"]["closed_p"],
    script:
        "../../scripts/preprocess.py"


rule closed_pvalues_table:
    input:
        pvalues=expand(
            "results/{{dataset}}/data/closed_pvalues/{celltype}.tsv", celltype=SELECTED_CELLTYPES
        ),
    output:
        table="results/{dataset}/data/closed_pvalues.tsv",
    log:
        "logs/{dataset}/preprocess/closed_pvalues_table.log",
    conda:
        "../../envs/preprocess.yaml"
    params:
        celltypes=SELECTED_CELLTYPES,
    script:
        "../../scripts/preprocess.py"


rule bias_set_closed_ocrs:
    input:
        ocrs="results/{dataset}/data/ocrs_all.tsv",
        pvalues=PREPROCESS_CLOSED_PVALUES,
        insertions=expand(
            "results/{{dataset}}/data/insertions/{celltype}.npy", celltype=SELECTED_CELLTYPES
        ),
        genome="resources/{dataset}/genome.fa",
        fai="resources/{dataset}/genome.fa.fai",
    output:
        seq=expand(
            "results/{{dataset}}/data/bias_sets/closed_ocrs/{split}/seq.npy",
            split=PREPROCESS_BIAS_SET_SPLITS["closed_ocrs"],
        ),
        profile=expand(
            "results/{{dataset}}/data/bias_sets/closed_ocrs/{split}/profile.npy",
            split=PREPROCESS_BIAS_SET_SPLITS["closed_ocrs"],
        ),
        windows=expand(
            "results/{{dataset}}/data/bias_sets/closed_ocrs/{split}/windows.tsv",
            split=PREPROCESS_BIAS_SET_SPLITS["closed_ocrs"],
        ),
    log:
        "logs/{dataset}/preprocess/bias_set_closed_ocrs.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/bias_set_closed_ocrs.tsv"
    conda:
        "../../envs/preprocess.yaml"
    params:
        preprocess=config["preprocess"],
        celltypes=SELECTED_CELLTYPES,
        splits=PREPROCESS_BIAS_SET_SPLITS["closed_ocrs"],
    script:
        "../../scripts/preprocess.py"


rule bias_set_protein_free:
    input:
        regions="resources/{dataset}/protein_free/regions.bed",
        bams=(
            []
            if PREPROCESS_PROTEIN_FREE["fragments"]
            else expand(
                "resources/{{dataset}}/protein_free/{replicate}.bam",
                replicate=PREPROCESS_PROTEIN_FREE_REPLICATES,
            )
        ),
        fragments=(
            ["resources/{dataset}/protein_free/fragments.tsv.gz"]
            if PREPROCESS_PROTEIN_FREE["fragments"]
            else []
        ),
        genome=PREPROCESS_PROTEIN_FREE["genome"],
        fai=PREPROCESS_PROTEIN_FREE["genome"] + ".fai",
    output:
        seq=expand(
            "results/{{dataset}}/data/bias_sets/protein_free/{split}/seq.npy",
            split=PREPROCESS_BIAS_SET_SPLITS["protein_free"],
        ),
        profile=expand(
            "results/{{dataset}}/data/bias_sets/protein_free/{split}/profile.npy",
            split=PREPROCESS_BIAS_SET_SPLITS["protein_free"],
        ),
        windows=expand(
            "results/{{dataset}}/data/bias_sets/protein_free/{split}/windows.tsv",
            split=PREPROCESS_BIAS_SET_SPLITS["protein_free"],
        ),
    log:
        "logs/{dataset}/preprocess/bias_set_protein_free.log",
    benchmark:
        "results/{dataset}/benchmarks/preprocess/bias_set_protein_free.tsv"
    conda:
        "../../envs/preprocess.yaml"
    threads: min(config["threads"], 4)
    resources:
        mem_mb=16000,
        runtime=240,
    params:
        preprocess=config["preprocess"],
        splits=PREPROCESS_BIAS_SET_SPLITS["protein_free"],
        seed=config["seed"],
        replicates=PREPROCESS_PROTEIN_FREE_REPLICATES,
        barcodes=config["download"]["protein_free_barcodes"],
        fragments_shift=config["download"]["protein_free_fragments_shift"],
    script:
        "../../scripts/preprocess.py"
