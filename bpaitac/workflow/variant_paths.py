"""Which models score the variants of config ``variants:``, and the paths of the variant rules.

Torch-free on purpose: ``workflow/rules/variants.smk`` imports it at parse time and calls
:class:`VariantPaths` from its input functions (docs/contracts.md has the file layout).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from bpaitac.io import ConfigError

RUN_FILE = "results/{dataset}/models/{model}/seed{seed}/{name}"
VARIANTS_FILE = "results/{dataset}/variants/{name}"
DOWNLOAD_FILE = "resources/{dataset}/variants/{name}"
TRUTH_FILE = "resources/{dataset}/truth/{name}"
FIGURE_FILE = "results/{dataset}/figures/variants_{model}.{ext}"
GENOME_FILE = "resources/{dataset}/genome.fa"
TRUTH_VARIANTS = "variants.tsv"
"""The simulator's variants with known effects (bpaitac/simulate/variants.py writes them)."""
TRUTH_EFFECTS = "variant_effects.tsv"


def is_url(path: str) -> bool:
    """Whether a ``variants.path`` is a URL (downloaded) rather than a local path."""
    return "://" in path


class VariantPaths:
    """Input functions, outputs and default targets of the variant rules for one validated
    config (defaults filled)."""

    def __init__(self, config: Mapping[str, Any], catalogue: Mapping[str, Any]) -> None:
        self.config = config
        self.catalogue = catalogue
        self.vcfg = config["variants"]

    @property
    def enabled(self) -> bool:
        """True when ``variants.path`` is set."""
        return bool(self.vcfg["path"])

    def models(self) -> list[str]:
        """The scoring models: ``variants.models``, or the profile model of ``interpret:``."""
        names = self.vcfg["models"] or [self.config["interpret"]["profile_model"]]
        key = "variants.models" if self.vcfg["models"] else "interpret.profile_model"
        for name in names:
            if name not in self.catalogue:
                raise ConfigError(
                    f"config key `{key}`: {name!r} is not in the model catalogue; allowed "
                    f"values: {', '.join(self.catalogue) or '(no models defined)'}."
                )
        return list(names)

    def labels(self) -> dict[str, str]:
        """Model -> display label (the catalogue entry's ``label``, else its name)."""
        return {m: str(self.catalogue[m].get("label", m)) for m in self.models()}

    def roles(self) -> dict[str, str]:
        """Model -> its ``interpret:`` role (``profile``, ``reference``) or empty."""
        icfg = self.config["interpret"]
        roles = {icfg["profile_model"]: "profile", icfg["reference_model"]: "reference"}
        return {m: roles.get(m, "") for m in self.models()}

    @property
    def downloaded(self) -> bool:
        """True when ``variants.path`` is a URL, fetched by rule ``download_variants``."""
        return self.enabled and is_url(str(self.vcfg["path"]))

    def download_file(self, dataset: str) -> str:
        """Where a ``variants.path`` URL is downloaded to (the URL's file name kept)."""
        name = PurePosixPath(urlparse(self.vcfg["path"]).path).name or "variants.vcf.gz"
        return DOWNLOAD_FILE.format(dataset=dataset, name=name)

    def variant_file(self, dataset: str) -> str:
        """The local variant file: the configured path, or the download of its URL."""
        path = str(self.vcfg["path"])
        return self.download_file(dataset) if is_url(path) else path

    def is_truth(self, dataset: str) -> bool:
        """Whether the variants are the simulator's own, with planted effects to compare."""
        truth = TRUTH_FILE.format(dataset=dataset, name=TRUTH_VARIANTS)
        return (
            self.enabled
            and self.config["source"] == "simulate"
            and not is_url(str(self.vcfg["path"]))
            and PurePosixPath(str(self.vcfg["path"])) == PurePosixPath(truth)
        )

    def output(self, dataset: str, model: str, what: str) -> str:
        """``table`` (tidy), ``summary`` or ``profiles`` file of one model."""
        names = {"table": f"{model}.tsv", "summary": f"{model}_summary.tsv"}
        names["profiles"] = f"{model}_profiles.npz"
        return VARIANTS_FILE.format(dataset=dataset, name=names[what])

    # -- input functions (wildcards -> named inputs) ---------------------------------------

    def score_inputs(self, wildcards: Any) -> dict[str, Any]:
        """The variant file, the genome and every seed's ``model.pt`` of ``wildcards.model``."""
        if wildcards.model not in self.models():
            raise ValueError(
                f"variants/{wildcards.model}.tsv: {wildcards.model} is not a scoring model "
                "(config `variants.models`, default interpret.profile_model)."
            )
        d = wildcards.dataset
        return {
            "variants": self.variant_file(d),
            "genome": GENOME_FILE.format(dataset=d),
            "fai": GENOME_FILE.format(dataset=d) + ".fai",
            "models": [
                RUN_FILE.format(dataset=d, model=wildcards.model, seed=s, name="model.pt")
                for s in self.catalogue[wildcards.model]["seeds"]
            ],
        }

    def figure_inputs(self, wildcards: Any) -> dict[str, str]:
        """The tidy table, summary and top profiles of one model."""
        d, m = wildcards.dataset, wildcards.model
        return {what: self.output(d, m, what) for what in ("table", "summary", "profiles")}

    def truth_inputs(self, wildcards: Any) -> dict[str, Any]:
        """Every scoring model's tidy table and summary, and the planted variants."""
        d = wildcards.dataset
        return {
            "tables": [self.output(d, m, "table") for m in self.models()],
            "summaries": [self.output(d, m, "summary") for m in self.models()],
            "truth_variants": TRUTH_FILE.format(dataset=d, name=TRUTH_VARIANTS),
            "truth_effects": TRUTH_FILE.format(dataset=d, name=TRUTH_EFFECTS),
        }

    # -- default targets -------------------------------------------------------------------

    def targets(self, dataset: str) -> list[str]:
        """Tables and figures of every scoring model (and the truth comparison on the
        simulator's variants); nothing while ``variants.path`` is null."""
        if not self.enabled:
            return []
        out = []
        for model in self.models():
            out += [self.output(dataset, model, w) for w in ("table", "summary", "profiles")]
            out += [FIGURE_FILE.format(model=model, dataset=dataset, ext=e) for e in ("pdf", "png")]
        if self.is_truth(dataset):
            out.append(VARIANTS_FILE.format(dataset=dataset, name="variant_truth.tsv"))
        return out
