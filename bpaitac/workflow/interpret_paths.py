"""Which models the interpretation compares, and the paths of its rules' inputs and outputs.

Torch-free on purpose: ``workflow/rules/interpret.smk`` imports it at parse time and calls
:class:`InterpretPaths` from its input functions (docs/contracts.md has the file layout).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from bpaitac.io import ConfigError

FIGURES = ("fig3a", "fig3b", "fig3c", "fig3d", "figS5", "figS6", "figS7")
"""The figures the interpretation rules draw; :data:`bpaitac.interpret.figures.FIGURES` draws
them."""

ROLES = ("reference", "profile")
"""The two models every interpretation step compares (AI-TAC and bpAI-TAC by default)."""

RUN_FILE = "results/{dataset}/models/{model}/seed{seed}/{name}"
TEST_FILE = "results/{dataset}/data/test/{name}"
INTERPRET_FILE = "results/{dataset}/interpret/{name}"
TRUTH_FILE = "resources/{dataset}/truth/{name}"
FIGURE_FILE = "results/{dataset}/figures/{figure}.{ext}"
BENCHMARK_FILE = "results/{dataset}/benchmarks/interpret/{name}.tsv"
MODISCO_FILE = "results/{dataset}/interpret/modisco/{name}"
MODISCO_GROUP_FILE = "results/{dataset}/interpret/modisco/{group}/{name}"
MODISCO_INPUTS = ("ohe.npz", "hyp.npz", "regions.bed")
"""modisco-lite's inputs per group: one-hot (N, 4, L), hypothetical contributions (N, 4, L)
(each the ``.npz`` array ``arr_0`` that ``modisco motifs -s/-a`` reads) and the windows' BED."""
MODISCO_TOMTOM = ("patterns.meme", "patterns.tsv", "tomtom_jaspar.tsv")
MOTIF_CALLERS = ("motif_callers.tsv", "motif_callers_summary.tsv")
CLUSTERING_RULES = ("seqlets", "clusters", "tomtom_jaspar")
"""Benchmarked rules of the paper's motif calling (seqlets, clustering, TomTom naming)."""


def file_safe(name: str) -> str:
    """``name`` with every character other than letters, digits, ``.``, ``_``, ``-`` replaced by
    ``_`` (``Stem&Prog`` -> ``Stem_Prog``): file names that also work as URLs (IGV, UCSC)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def interpret_models(config: Mapping[str, Any], catalogue: Mapping[str, Any]) -> dict[str, str]:
    """Role -> catalogue model name (``reference``, ``profile``, and ``nobias`` when set).

    ``config`` is validated (defaults filled). Raises :class:`ConfigError` when a named model
    is not in the catalogue.
    """
    icfg = config["interpret"]
    roles = {role: icfg[f"{role}_model"] for role in ROLES}
    if icfg["nobias_model"]:
        roles["nobias"] = icfg["nobias_model"]
    for role, name in roles.items():
        if name not in catalogue:
            raise ConfigError(
                f"config key `interpret.{role}_model`: {name!r} is not in the model catalogue; "
                f"allowed values: {', '.join(catalogue) or '(no models defined)'}."
            )
    if roles["reference"] == roles["profile"]:
        raise ConfigError(
            "config keys `interpret.reference_model` and `profile_model` must differ."
        )
    return roles


def model_labels(roles: Mapping[str, str], catalogue: Mapping[str, Any]) -> dict[str, str]:
    """Role -> display label (the catalogue entry's ``label``, else its name)."""
    return {role: str(catalogue[name].get("label", name)) for role, name in roles.items()}


def attribution_seed(entry: Mapping[str, Any], seed: int | None) -> int:
    """The seed whose trained model is interpreted: ``seed`` or the entry's first seed."""
    seeds = [int(s) for s in entry["seeds"]]
    if seed is None:
        return seeds[0]
    if int(seed) not in seeds:
        raise ConfigError(
            f"config key `interpret.seed`: {seed} is not a trained seed; allowed values: "
            f"{', '.join(map(str, seeds))}."
        )
    return int(seed)


class InterpretPaths:
    """Input functions and default targets of the interpretation rules for one validated
    config (defaults filled)."""

    def __init__(self, config: Mapping[str, Any], catalogue: Mapping[str, Any]) -> None:
        self.config = config
        self.catalogue = catalogue
        self.icfg = config["interpret"]

    # -- models ----------------------------------------------------------------------------

    def roles(self) -> dict[str, str]:
        """Role -> catalogue model (validated on every call, so errors name the config key)."""
        return interpret_models(self.config, self.catalogue)

    def labels(self) -> dict[str, str]:
        """Role -> display label of the model."""
        return model_labels(self.roles(), self.catalogue)

    def run_file(self, dataset: str, model: str, name: str, seed: int | None = None) -> str:
        """A file of a trained run; ``seed`` None = the seed that is interpreted."""
        if seed is None:
            seed = attribution_seed(self.catalogue[model], self.icfg["seed"])
        return RUN_FILE.format(dataset=dataset, model=model, seed=seed, name=name)

    def interpret_file(self, dataset: str, name: str) -> str:
        return INTERPRET_FILE.format(dataset=dataset, name=name)

    def test_file(self, dataset: str, name: str) -> str:
        return TEST_FILE.format(dataset=dataset, name=name)

    # -- input functions (wildcards -> named inputs) ---------------------------------------

    def regions_inputs(self, wildcards: Any) -> dict[str, list[str]]:
        """Predictions of every seed of the reference and profile models."""
        roles = self.roles()
        return {
            role: [
                self.run_file(wildcards.dataset, roles[role], "predictions_test.npz", seed)
                for seed in self.catalogue[roles[role]]["seeds"]
            ]
            for role in ROLES
        }

    def attribution_inputs(self, wildcards: Any) -> dict[str, str]:
        """Model, its predictions, the regions and the test split of one interpreted model."""
        if wildcards.model not in self.roles().values():
            raise ValueError(
                f"attributions/{wildcards.model}.npz: {wildcards.model} is not one of the models "
                "named in config `interpret:` (reference_model, profile_model, nobias_model)."
            )
        d = wildcards.dataset
        return {
            "model": self.run_file(d, wildcards.model, "model.pt"),
            "predictions": self.run_file(d, wildcards.model, "predictions_test.npz"),
            "regions": self.interpret_file(d, "regions.tsv"),
            "seq": self.test_file(d, "seq.npy"),
            "ocrs": self.test_file(d, "ocrs.tsv"),
        }

    def role_attributions(self, roles: Sequence[str]) -> Callable[[Any], dict[str, str]]:
        """Input function: role -> attribution npz of that role's model."""

        def inputs(wildcards: Any) -> dict[str, str]:
            models = self.roles()
            for role in roles:
                if role not in models:
                    raise ValueError(
                        f"config key `interpret.{role}_model` is not set; it is needed here "
                        f"(Figure S7 needs the profile model trained without the bias model)."
                    )
            return {
                role: self.interpret_file(wildcards.dataset, f"attributions/{models[role]}.npz")
                for role in roles
            }

        return inputs

    def insertion_inputs(self, wildcards: Any) -> dict[str, str]:
        """Clusters, the test sequences and both models (+ predictions for the task names)."""
        d, roles = wildcards.dataset, self.roles()
        out = {
            "clusters": self.interpret_file(d, "clusters.tsv"),
            "seq": self.test_file(d, "seq.npy"),
        }
        for role in ROLES:
            out[f"model_{role}"] = self.run_file(d, roles[role], "model.pt")
            out[f"predictions_{role}"] = self.run_file(d, roles[role], "predictions_test.npz")
        return out

    def truth_inputs(self, wildcards: Any) -> dict[str, str]:
        """Insertion inputs plus cluster motifs, their effects and the planted truth."""
        d = wildcards.dataset
        return {
            **self.insertion_inputs(wildcards),
            "meme": self.interpret_file(d, "clusters.meme"),
            "effects": self.interpret_file(d, "insertion_effects.tsv"),
            "truth_meme": TRUTH_FILE.format(dataset=d, name="motifs.meme"),
            "activity": TRUTH_FILE.format(dataset=d, name="activity.tsv"),
            "site_effects": TRUTH_FILE.format(dataset=d, name="effects.tsv"),
        }

    def figure_inputs(self, figure: str) -> Callable[[Any], dict[str, str]]:
        """Input function of one figure rule (the named inputs its drawing function reads,
        :data:`bpaitac.interpret.figures.FIGURES`)."""
        if figure not in FIGURES:
            raise ValueError(f"{figure!r} is not an interpretation figure ({', '.join(FIGURES)}).")

        def inputs(wildcards: Any) -> dict[str, str]:
            d = wildcards.dataset
            if figure == "fig3a":
                return {"regions": self.interpret_file(d, "regions.tsv")}
            if figure in ("fig3b", "figS5"):
                return self.role_attributions(ROLES)(wildcards)
            if figure == "figS7":
                return self.role_attributions(("profile", "nobias"))(wildcards)
            tomtom = {"tomtom": self.interpret_file(d, "tomtom_jaspar.tsv")}
            if figure == "fig3c":
                return {
                    "effects": self.interpret_file(d, "insertion_effects.tsv"),
                    "stats": self.interpret_file(d, "insertion_stats.tsv"),
                    "clusters": self.interpret_file(d, "clusters.tsv"),
                    **tomtom,
                }
            if figure == "fig3d":
                return {"footprints": self.interpret_file(d, "footprints.npz"), **tomtom}
            return {
                "clusters": self.interpret_file(d, "clusters.tsv"),
                "cwms": self.interpret_file(d, "cluster_cwms.npz"),
                **tomtom,
            }

        return inputs

    # -- TF-MoDISco (modisco-lite) ---------------------------------------------------------

    def modisco_groups(self, lineages: Sequence[str]) -> dict[str, list[str]]:
        """modisco run -> the lineages it reads: ``pooled`` (all) or one run per lineage (named
        :func:`file_safe`), config ``interpret.modisco_options.by``."""
        if self.icfg["modisco_options"]["by"] == "pooled":
            return {"pooled": list(lineages)}
        groups = {file_safe(lin): [lin] for lin in lineages}
        if len(groups) != len(lineages):
            raise ConfigError(
                "config key `interpret.modisco_options.by`: lineage names that differ only in "
                f"punctuation ({', '.join(lineages)}) share a modisco directory; use `pooled`."
            )
        return groups

    def modisco_roles(self) -> list[str]:
        """The roles whose attributions modisco reads (``interpret.modisco_options.roles``)."""
        return list(self.icfg["modisco_options"]["roles"])

    def modisco_export_inputs(self, wildcards: Any) -> dict[str, str]:
        """Role -> attribution npz of the roles modisco reads, and the test split's OCRs."""
        models = self.roles()
        out = {
            role: self.interpret_file(wildcards.dataset, f"attributions/{models[role]}.npz")
            for role in self.modisco_roles()
        }
        return {**out, "ocrs": self.test_file(wildcards.dataset, "ocrs.tsv")}

    def jaspar_meme(self) -> str:
        """The JASPAR release of ``interpret.tomtom`` as a MEME file (``modisco report -m``)."""
        release = file_safe(str(self.icfg["tomtom"]["jaspar_release"]))
        return INTERPRET_FILE.replace("{name}", f"jaspar/{release}.meme")

    def modisco_results(self, dataset: str, lineages: Sequence[str], name: str) -> list[str]:
        """``name`` (``modisco.h5``, ``report``, ...) of every modisco run."""
        return [
            MODISCO_GROUP_FILE.format(dataset=dataset, group=g, name=name)
            for g in self.modisco_groups(lineages)
        ]

    def modisco_benchmarks(self, dataset: str, lineages: Sequence[str]) -> list[str]:
        """Benchmark files of the modisco motif calling: export, ``modisco motifs`` per run,
        TomTom of the patterns."""
        groups = list(self.modisco_groups(lineages))
        names = [
            *(f"modisco_inputs_{g}" for g in groups),
            *(f"modisco_{g}" for g in groups),
            "modisco_tomtom",
        ]
        return [BENCHMARK_FILE.format(dataset=dataset, name=n) for n in names]

    def motif_callers_inputs(self, lineages: Sequence[str]) -> Callable[[Any], dict[str, Any]]:
        """Input function of rule ``interpret_motif_callers``: both callers' motifs and TomTom
        tables, the planted motifs and the benchmark files of both callers' rules."""

        def inputs(wildcards: Any) -> dict[str, Any]:
            d = wildcards.dataset
            return {
                "truth_meme": TRUTH_FILE.format(dataset=d, name="motifs.meme"),
                "clusters": self.interpret_file(d, "clusters.tsv"),
                "clusters_meme": self.interpret_file(d, "clusters.meme"),
                "clusters_tomtom": self.interpret_file(d, "tomtom_jaspar.tsv"),
                "modisco_meme": MODISCO_FILE.format(dataset=d, name="patterns.meme"),
                "modisco_tomtom": MODISCO_FILE.format(dataset=d, name="tomtom_jaspar.tsv"),
                "clustering_benchmarks": [
                    BENCHMARK_FILE.format(dataset=d, name=n) for n in CLUSTERING_RULES
                ],
                "modisco_benchmarks": self.modisco_benchmarks(d, lineages),
            }

        return inputs

    def modisco_targets(self, dataset: str, lineages: Sequence[str]) -> list[str]:
        """modisco-lite's inputs always; with ``interpret.modisco`` its results, reports, the
        TomTom of its patterns and, on simulated data, the comparison of both motif callers."""
        out = [
            MODISCO_GROUP_FILE.format(dataset=dataset, group=g, name=n)
            for g in self.modisco_groups(lineages)
            for n in MODISCO_INPUTS
        ]
        if not self.icfg["modisco"]:
            return out
        out += self.modisco_results(dataset, lineages, "modisco.h5")
        out += self.modisco_results(dataset, lineages, "report")
        out += [MODISCO_FILE.format(dataset=dataset, name=n) for n in MODISCO_TOMTOM]
        if self.config["source"] == "simulate":
            out += [self.interpret_file(dataset, n) for n in MOTIF_CALLERS]
        return out

    # -- default targets -------------------------------------------------------------------

    def targets(
        self, dataset: str, figures: Iterable[str], lineages: Sequence[str] = ()
    ) -> list[str]:
        """Requested interpretation figures (PDF + PNG), when simulated the truth table, and
        the TF-MoDISco files of :meth:`modisco_targets` (for ``lineages``)."""
        wanted = [f for f in figures if f in FIGURES]
        if not wanted:
            return []
        roles = self.roles()
        if "figS7" in wanted and "nobias" not in roles:
            raise ConfigError(
                "figS7 needs config key `interpret.nobias_model` (the profile model trained "
                "without the bias model); set it or drop figS7 from `figures`."
            )
        out = [
            FIGURE_FILE.format(dataset=dataset, figure=f, ext=ext)
            for f in wanted
            for ext in ("pdf", "png")
        ]
        if self.config["source"] == "simulate":
            out.append(self.interpret_file(dataset, "truth_recovery.tsv"))
        if lineages:
            out += self.modisco_targets(dataset, lineages)
        return out
