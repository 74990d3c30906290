"""Fetch the real inputs (source: download): mm10, the ImmGen OCR table, BAMs."""

if config["source"] == "download":

    rule download_genome:
        output:
            file="resources/{dataset}/genome.fa",
            index="resources/{dataset}/genome.fa.fai",
        log:
            "logs/{dataset}/download/genome.log",
        benchmark:
            "benchmarks/{dataset}/download/genome.tsv"
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=config["download"]["genome_url"],
        script:
            "../../scripts/download.py"

    rule download_ocr_table:
        output:
            file="resources/{dataset}/ocrs.csv",
        log:
            "logs/{dataset}/download/ocrs.log",
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=config["download"]["ocr_table_url"],
        script:
            "../../scripts/download.py"

    rule download_closed_pvalues:
        output:
            file="resources/{dataset}/closed_pvalues.tsv",
        log:
            "logs/{dataset}/download/closed_pvalues.log",
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=config["download"]["closed_pvalues_url"],
        script:
            "../../scripts/download.py"

    rule download_bam:
        output:
            file="resources/{dataset}/bams/{celltype}.bam",
            index="resources/{dataset}/bams/{celltype}.bam.bai",
        log:
            "logs/{dataset}/download/bam_{celltype}.log",
        benchmark:
            "benchmarks/{dataset}/download/bam_{celltype}.tsv"
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=lambda wc: config["download"]["bam_url_template"].format(celltype=wc.celltype),
        script:
            "../../scripts/download.py"

    rule download_protein_free_bam:
        output:
            file="resources/{dataset}/protein_free/{replicate}.bam",
            index="resources/{dataset}/protein_free/{replicate}.bam.bai",
        log:
            "logs/{dataset}/download/protein_free_{replicate}.log",
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=lambda wc: config["download"]["protein_free_url_template"].format(
                replicate=wc.replicate
            ),
        script:
            "../../scripts/download.py"

    rule download_protein_free_regions:
        output:
            file="resources/{dataset}/protein_free/regions.bed",
        log:
            "logs/{dataset}/download/protein_free_regions.log",
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=config["download"]["protein_free_regions_url"],
        script:
            "../../scripts/download.py"
