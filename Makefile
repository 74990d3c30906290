# Two commands do everything: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2
CONFIG ?= config/config.yaml
DATASET ?= demo
export NUMBA_CACHE_DIR := $(CURDIR)/$(VENV)/numba-cache
export MPLBACKEND := Agg

.PHONY: demo validate test lint format bench system-deps clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch pinned in the same pip command as the rest (pyproject.toml) keeps the CPU wheel here.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# bedtools (pybedtools), samtools and bowtie2 (alignment of FASTQ runs, workflow/rules/align.smk;
# Debian bookworm: samtools 1.16.1, bowtie2 2.5.0, the versions envs/align.yaml pins).
system-deps:
	@missing=""; for t in bedtools samtools bowtie2; do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "error: missing$$missing: install the Debian/Ubuntu package(s)$$missing (sudo apt-get install$$missing) or conda's bioconda::bedtools bioconda::samtools bioconda::bowtie2" >&2; exit 1; \
	  fi; \
	fi

demo: $(STAMP) system-deps
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	$(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --report results/$(DATASET)/report.html
	@echo "report: results/$(DATASET)/report.html"
	@# On simulated data (the default), what the models learned against the planted truth and the
	@# demo's targets (README); the one-layer CNN baseline is left out to keep the demo short.
	@if [ -d resources/$(DATASET)/truth ]; then \
	  $(BIN)/python benchmarks/demo_learnability.py --dataset $(DATASET) --epochs 0 --threads $(CORES); fi

# Validation on known truth (README): a larger simulated experiment, AI-TAC and bpAI-TAC with three
# seeds, evaluation, interpretation and truth recovery; at most 2 h on 2 CPU cores (device: auto
# uses a GPU when one is visible). Ends by printing the validation targets against the results.
validate: $(STAMP) system-deps
	$(BIN)/snakemake --cores $(CORES) --configfile config/validate.yaml
	$(BIN)/snakemake --cores $(CORES) --configfile config/validate.yaml --report results/validate/report.html
	$(BIN)/python benchmarks/demo_learnability.py --dataset validate --threads $(CORES)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check workflow
	$(BIN)/snakemake --lint --configfile $(CONFIG)

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt workflow

# Every benchmark at a size that finishes in <= 15 minutes on 2 cores (6 min 9 s measured, README
# Performance), each writing results/benchmarks/<name>.json. Benchmarks that read a workflow's
# results are skipped until those exist; longer_training.py is a training experiment, run by hand.
# peers.py needs bpnet-lite (pip install --no-deps bpnet-lite==1.1.0) and says so otherwise.
BENCH_OUT := results/benchmarks
bench: $(STAMP) system-deps
	@mkdir -p $(BENCH_OUT); total=$$(date +%s); \
	run() { n=$$1; shift; echo "== benchmarks/$$n.py $$*"; t=$$(date +%s); \
	  $(BIN)/python benchmarks/$$n.py "$$@" --json $(BENCH_OUT)/$$n.json || exit 1; \
	  echo "   $$n: $$(( $$(date +%s) - t )) s"; }; \
	run preprocess --fragments 200000 --repeats 1 --skip-pysam --assembly-celltypes 4 16; \
	run thread_reproducibility; \
	run clustering --seqlets 1000 3000 --cap 1000; \
	run variants --size demo; \
	run train_throughput --cpu-steps 2 --threads $(CORES); \
	run attribution --sequences 2 --rounds 1 --threads $(CORES); \
	run peers --quick; \
	run alignment_throughput --pairs 50000 --genome-mb 5; \
	if [ -e results/demo/data/test/counts.npy ]; then run demo_learnability; \
	else echo "== demo_learnability: skipped, it reads the demo results (make demo first)"; fi; \
	if [ -d resources/validate/truth ]; then run activity_target_ceiling; \
	else echo "== activity_target_ceiling: skipped, it reads resources/validate/truth (make validate first)"; fi; \
	echo "== longer_training: not run (a training experiment: benchmarks/longer_training.py --model NAME --out DIR)"; \
	echo "make bench: $$(( $$(date +%s) - total )) s; figures in $(BENCH_OUT)/"

clean:
	rm -rf results/tiny resources/tiny .snakemake

# `snakemake --profile slurm` from any directory: links profiles/slurm into Snakemake's user
# profile directory ($XDG_CONFIG_HOME/snakemake, else ~/.config/snakemake). PROFILE_NAME picks
# another name; an existing profile of that name that is not such a link is left alone.
PROFILE_NAME ?= slurm
.PHONY: slurm-profile
slurm-profile:
	@dir="$${XDG_CONFIG_HOME:-$$HOME/.config}/snakemake"; dest="$$dir/$(PROFILE_NAME)"; \
	if [ -e "$$dest" ] && [ ! -L "$$dest" ]; then \
	  echo "error: $$dest exists (not a link to a checkout); remove it or run make slurm-profile PROFILE_NAME=bpaitac-slurm" >&2; exit 1; \
	fi; \
	mkdir -p "$$dir" && ln -sfn "$(CURDIR)/profiles/slurm" "$$dest" && \
	echo "$$dest -> $(CURDIR)/profiles/slurm; run: snakemake --profile $(PROFILE_NAME) --configfile config/immgen.yaml"
