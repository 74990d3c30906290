"""Config validation, the facts every rule shares (cell types, model catalogue), wildcards."""

import os
import re
import sys
from pathlib import Path

REPO = Path(workflow.basedir).parent
# Scripts import the `bpaitac` package from this checkout, also inside --use-conda envs and on
# cluster nodes (jobs inherit the environment of the Snakemake process that submits them).
sys.path.insert(0, str(REPO))
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
)

from bpaitac.workflow.config import (  # noqa: E402
    celltype_names,
    celltype_urls,
    model_catalogue,
    models_to_train,
    selected_celltypes,
    selected_lineages,
    validate_config,
)
from bpaitac.workflow.splits import SPLITS  # noqa: E402
from bpaitac.workflow.slurm import honour_no_account  # noqa: E402

# The schema, its defaults and the cross-field checks (bpaitac.workflow.config): a bad value
# stops with one line naming the key (snakemake.utils.validate would print the whole schema).
config.update(validate_config(config))
if workflow.is_main_process:
    honour_no_account()  # `slurm-no-account: true` (profiles/slurm) means no -A and no guessing

DATASET = config["dataset"]
CELLTYPE_TABLE = selected_celltypes(config)
CELLTYPE_NAMES = celltype_names(config)
SELECTED_CELLTYPES = list(CELLTYPE_TABLE["celltype"])
LINEAGES = selected_lineages(config)
LINEAGE_OF = dict(zip(CELLTYPE_TABLE["celltype"], CELLTYPE_TABLE["lineage"]))
CATALOGUE = model_catalogue(config)
MODEL_RUNS = [(m, s) for m, entry in CATALOGUE.items() for s in entry["seeds"]]
FIGURES = list(config["figures"])
MODELS_TO_TRAIN = set(models_to_train(config, FIGURES))


def _alternatives(names):
    """A regex matching exactly one of `names`."""
    return "|".join(re.escape(n) for n in names) or "$^"


wildcard_constraints:
    dataset=re.escape(DATASET),
    celltype=_alternatives(SELECTED_CELLTYPES),
    lineage=_alternatives(LINEAGES),
    model=_alternatives(CATALOGUE),
    bias_model=_alternatives(config["bias_models"]),
    seed=r"\d+",
    split=_alternatives(SPLITS),


def gpu_request():
    """`resources: gpu=` of rules that run a network: 1 for `device: cuda` and `auto` (a
    Slurm job is then given a GPU, which `auto` uses), 0 for `cpu`. profiles/slurm lists these
    rules for its GPU partition."""
    return 0 if config["device"] == "cpu" else 1


def job_resources(family):
    """`resources: mem_mb=, runtime=` of a heavy rule: config `resources.<family>` (MB and
    minutes, what a cluster job asks for; profiles/slurm)."""
    return dict(config["resources"][family])


def insertion_output(path):
    """Per-cell-type insertion arrays: kept, or temp() (~23 GB at paper scale) when
    `preprocess.keep_insertions` is false."""
    return path if config["preprocess"]["keep_insertions"] else temp(path)


def all_targets():
    """Everything `snakemake` builds by default: inputs, arrays, models, figures."""
    targets = []
    for family, fn in TARGET_FUNCTIONS.items():
        targets.extend(fn())
    return targets


# Every .smk file registers its default targets (what the `all` target builds) in
# TARGET_FUNCTIONS[family] = a function returning paths.
TARGET_FUNCTIONS = {}
