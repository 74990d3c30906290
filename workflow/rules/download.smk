"""Fetch the real inputs (source: download): mm10, the ImmGen OCR table, BAMs."""


if config["source"] == "download":

    rule download_genome:
        output:
            file="resources/{dataset}/genome.fa",
            index="resources/{dataset}/genome.fa.fai",
        params:
            url=config["download"]["genome_url"],
        log:
            "logs/{dataset}/download/genome.log",
        benchmark:
            "benchmarks/{dataset}/download/genome.tsv"
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"

    rule download_ocr_table:
        output:
            file="resources/{dataset}/ocrs.csv",
        params:
            url=config["download"]["ocr_table_url"],
        log:
            "logs/{dataset}/download/ocrs.log",
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"

    rule download_closed_pvalues:
        output:
            file="resources/{dataset}/closed_pvalues.tsv",
        params:
            url=config["download"]["closed_pvalues_url"],
        log:
            "logs/{dataset}/download/closed_pvalues.log",
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"

    rule download_bam:
        output:
            file="resources/{dataset}/bams/{celltype}.bam",
            index="resources/{dataset}/bams/{celltype}.bam.bai",
        params:
            url=lambda wc: config["download"]["bam_url_template"].format(
                celltype=wc.celltype
            ),
        log:
            "logs/{dataset}/download/bam_{celltype}.log",
        benchmark:
            "benchmarks/{dataset}/download/bam_{celltype}.tsv"
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"

    rule download_protein_free_bam:
        output:
            file="resources/{dataset}/protein_free/{replicate}.bam",
            index="resources/{dataset}/protein_free/{replicate}.bam.bai",
        params:
            url=lambda wc: config["download"]["protein_free_url_template"].format(
                replicate=wc.replicate
            ),
        log:
            "logs/{dataset}/download/protein_free_{replicate}.log",
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"

    rule download_protein_free_regions:
        output:
            file="resources/{dataset}/protein_free/regions.bed",
        params:
            url=config["download"]["protein_free_regions_url"],
        log:
            "logs/{dataset}/download/protein_free_regions.log",
        conda:
            "../../envs/preprocess.yaml"
        retries: 2
        script:
            "../../scripts/download.py"
