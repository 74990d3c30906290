"""Fetch the real inputs (source: download): mm10, the ImmGen OCR table, the reads (per-cell-type
BAMs, or with `download.reads: fastq` ENA's runs table and each run's FASTQ pair), the
protein-free DNA (PRINT's BAC clones on hg38 by default: its own genome, a fragments file or BAMs,
regions)."""

if config["source"] == "download":
    DOWNLOAD = config["download"]

    rule download_genome:
        output:
            file="resources/{dataset}/genome.fa",
            index="resources/{dataset}/genome.fa.fai",
        log:
            "logs/{dataset}/download/genome.log",
        benchmark:
            "results/{dataset}/benchmarks/download/genome.tsv"
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=DOWNLOAD["genome_url"],
            field="download.genome_url",
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
            url=DOWNLOAD["ocr_table_url"],
            field="download.ocr_table_url",
        script:
            "../../scripts/download.py"

    if config["preprocess"]["closed_pvalues"] == "table":

        rule download_closed_pvalues:
            output:
                file="resources/{dataset}/closed_pvalues.tsv",
            log:
                "logs/{dataset}/download/closed_pvalues.log",
            retries: 2
            conda:
                "../../envs/preprocess.yaml"
            params:
                url=DOWNLOAD["closed_pvalues_url"],
                field="download.closed_pvalues_url",
            script:
                "../../scripts/download.py"

    if DOWNLOAD["reads"] == "fastq":

        checkpoint download_run_table:
            input:
                celltypes=config["celltypes"],
            output:
                report="resources/{dataset}/runs_filereport.tsv",
                runs="resources/{dataset}/runs.tsv",
            log:
                "logs/{dataset}/download/runs.log",
            retries: 2
            conda:
                "../../envs/preprocess.yaml"
            resources:
                mem_mb=1000,
                runtime=30,
            params:
                url=DOWNLOAD["run_table_url"],
                mirror=DOWNLOAD["fastq_mirror"],
                celltypes_per_lineage=config["celltypes_per_lineage"],
            script:
                "../../scripts/download_runs.py"

        # One run's FASTQ pair (~1-3 GB): md5-verified, resumed from *.part with HTTP Range.
        # ancient(): a rebuilt runs table (new mirror, edited cell-type table) does not fetch
        # the verified FASTQs again; fastq_retries is read from the config, not a param, so
        # changing it does not either.
        rule download_fastq:
            input:
                runs=ancient("resources/{dataset}/runs.tsv"),
            output:
                r1="resources/{dataset}/fastq/{run}_R1.fastq.gz",
                r2="resources/{dataset}/fastq/{run}_R2.fastq.gz",
            log:
                "logs/{dataset}/download/fastq_{run}.log",
            benchmark:
                "results/{dataset}/benchmarks/download/fastq_{run}.tsv"
            wildcard_constraints:
                run=r"[A-Z]{3}\d+",
            retries: 2
            conda:
                "../../envs/preprocess.yaml"
            threads: 1
            resources:
                mem_mb=1000,
                runtime=360,
            script:
                "../../scripts/download_fastq.py"

    else:

        rule download_bam:
            output:
                file="resources/{dataset}/bams/{celltype}.bam",
                index="resources/{dataset}/bams/{celltype}.bam.bai",
            log:
                "logs/{dataset}/download/bam_{celltype}.log",
            benchmark:
                "results/{dataset}/benchmarks/download/bam_{celltype}.tsv"
            retries: 2
            conda:
                "../../envs/preprocess.yaml"
            params:
                # the cell type's name, then its aliases: the first URL that exists is fetched
                urls=lambda wc: celltype_urls(
                    DOWNLOAD["bam_url_template"], CELLTYPE_NAMES.spellings(wc.celltype)
                ),
                field="download.bam_url_template",
            script:
                "../../scripts/download.py"

    if DOWNLOAD["protein_free_genome_url"] != "dataset":

        rule download_protein_free_genome:
            output:
                file="resources/{dataset}/protein_free/genome.fa",
                index="resources/{dataset}/protein_free/genome.fa.fai",
            log:
                "logs/{dataset}/download/protein_free_genome.log",
            benchmark:
                "results/{dataset}/benchmarks/download/protein_free_genome.tsv"
            retries: 2
            conda:
                "../../envs/preprocess.yaml"
            params:
                url=DOWNLOAD["protein_free_genome_url"],
                field="download.protein_free_genome_url",
            script:
                "../../scripts/download.py"

    rule download_protein_free_fragments:
        output:
            file="resources/{dataset}/protein_free/fragments.tsv.gz",
        log:
            "logs/{dataset}/download/protein_free_fragments.log",
        benchmark:
            "results/{dataset}/benchmarks/download/protein_free_fragments.tsv"
        retries: 2
        conda:
            "../../envs/preprocess.yaml"
        params:
            url=DOWNLOAD["protein_free_fragments_url"],
            field="download.protein_free_fragments_url",
            gunzip=False,  # kept as fetched; bpaitac.data.fragments reads gzip or plain text
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
            url=lambda wc: DOWNLOAD["protein_free_url_template"].format(replicate=wc.replicate),
            field="download.protein_free_url_template",
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
            url=DOWNLOAD["protein_free_regions_url"],
            field="download.protein_free_regions_url",
        script:
            "../../scripts/download.py"
