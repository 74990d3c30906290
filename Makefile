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

bench: $(STAMP) system-deps
	@for b in benchmarks/*.py; do echo "== $$b"; \
	  if [ $$b = benchmarks/demo_learnability.py ] && [ ! -e results/demo/data/test/counts.npy ]; then \
	    echo "skipped: it reads the demo results; run make demo first"; continue; fi; \
	  $(BIN)/python $$b || exit 1; done

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
