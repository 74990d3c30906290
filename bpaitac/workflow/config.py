"""Config helpers: schema validation outside Snakemake and the expanded model catalogue.

The config is the single source of truth for cell types, lineages, splits and model variants;
rules and scripts read those facts through the functions here, never from literals.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml

from bpaitac.io import CellTypeNames, ConfigError, check_name, lineage_order, read_celltypes
from bpaitac.workflow.figures import FIGURES as EVALUATION_FIGURES
from bpaitac.workflow.figures import required_models
from bpaitac.workflow.interpret_paths import FIGURES as INTERPRET_FIGURES
from bpaitac.workflow.splits import check_split_config

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def validate_config(config: dict, schema_path: str | os.PathLike = SCHEMA) -> dict:
    """Validate ``config`` against the JSON schema, fill defaults, check cross-references.

    Returns the completed config (a copy). Raises :class:`ConfigError` naming the key.
    """
    schema_path = Path(schema_path)
    config = _fill_and_validate(config, yaml.safe_load(schema_path.read_text()), schema_path)
    check_references(config)
    return config


def complete_section(section: dict | None, ref: str, where: str) -> dict:
    """One config section validated against its schema definition, with its defaults filled.

    ``ref`` names the definition in ``workflow/schemas`` (``simulate.schema.yaml#/$defs/simulate``);
    ``where`` is the section's config key, prefixed to error messages. The schema is the only
    place a default is written: the package's typed configs (simulator, training, network) take
    theirs from here when they are built outside the workflow (tests, notebooks).
    """
    return _fill_and_validate(section or {}, {"$ref": ref}, SCHEMA, where)


def _fill_and_validate(instance: dict, schema: dict, schema_path: Path, where: str = "") -> dict:
    """A copy of ``instance`` validated against ``schema`` with every schema default filled."""
    import jsonschema
    import referencing

    # Resolve relative $ref's against the schema file, as snakemake's validate() does.
    schema = {**schema, "$id": schema_path.resolve().as_uri()}

    def retrieve(uri: str) -> referencing.Resource:
        target = Path(url2pathname(urlparse(uri).path))
        return referencing.Resource.from_contents(yaml.safe_load(target.read_text()))

    registry = referencing.Registry(retrieve=retrieve)
    cls = jsonschema.validators.validator_for(schema)
    # Fill defaults while validating (the same behaviour as snakemake's validate(set_default=True)).
    validate_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if isinstance(prop, dict) and "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, sub)

    filler = jsonschema.validators.extend(cls, {"properties": set_defaults})
    instance = copy.deepcopy(instance)
    errors = sorted(filler(schema, registry=registry).iter_errors(instance), key=lambda e: e.path)
    if errors:
        err = errors[0]
        path = [where, *map(str, err.absolute_path)]
        message = describe_error(err)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = err.schema.get("properties", {})
            path.append(sorted(k for k in err.instance if k not in allowed)[0])
            message = f"unknown key; allowed keys: {', '.join(sorted(allowed))}."
        key = ".".join(p for p in path if p)
        raise ConfigError(f"config key `{key or '<top level>'}`: {message}")
    return instance


def describe_error(err: Any) -> str:
    """A one-line, user-facing description of a jsonschema error with the allowed values."""
    if err.validator == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"{err.instance!r} is not allowed; allowed values: {allowed}."
    return err.message + "."


def check_references(config: dict) -> None:
    """Cross-field checks the schema cannot express: catalogue names point to defined entries,
    the held-out chromosome lists do not overlap, replicate names are safe file names."""
    check_split_config(config.get("preprocess", {}).get("splits", {}))
    for section in ("simulate", "download"):
        names = config.get(section, {}).get("protein_free_replicates", [])
        for i, name in enumerate(names):
            where = f"config key `{section}.protein_free_replicates[{i}]`"
            try:
                check_name(str(name), "replicate", where)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
    archs = config.get("architectures", {})
    biases = config.get("bias_models", {})
    for name, bias in biases.items():
        if bias.get("arch") not in archs:
            raise ConfigError(
                f"config key `bias_models.{name}.arch`: {bias.get('arch')!r} is not defined; "
                f"allowed values: {', '.join(archs)}."
            )
    for name, entry in config.get("models", {}).items():
        if entry.get("arch") not in archs:
            raise ConfigError(
                f"config key `models.{name}.arch`: {entry.get('arch')!r} is not defined; "
                f"allowed values: {', '.join(archs)}."
            )
        bias = entry.get("bias", "none")
        if bias != "none" and bias not in biases:
            raise ConfigError(
                f"config key `models.{name}.bias`: {bias!r} is not defined; "
                f"allowed values: none, {', '.join(biases)}."
            )


def load_config(path: str | os.PathLike) -> dict:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}).") from exc
    return validate_config(raw)


def selected_celltypes(config: dict):
    """The cell-type table restricted to the cell types in use (``celltypes_per_lineage``)."""
    return read_celltypes(config["celltypes"], config.get("celltypes_per_lineage"))


def celltype_names(config: dict, names: list[str] | None = None) -> CellTypeNames:
    """The cell types in use (or ``names``, in that order: a rule's list) with their aliases and
    the table they come from, which messages name."""
    table = CellTypeNames.from_table(selected_celltypes(config), config["celltypes"])
    if names is None:
        return table
    return CellTypeNames(tuple(names), table.aliases, table.table)


def celltype_urls(template: str, spellings: list[str] | tuple[str, ...]) -> list[str]:
    """``template`` with ``{celltype}`` filled by each spelling of a cell type (its name first,
    then its aliases; :meth:`~bpaitac.io.CellTypeNames.spellings`), duplicates dropped: the
    download takes the first that exists."""
    return list(dict.fromkeys(template.format(celltype=s) for s in spellings))


def selected_lineages(config: dict) -> list[str]:
    """Lineages of the cell types in use, in the cell-type table's order."""
    return lineage_order(selected_celltypes(config))


def model_catalogue(config: dict) -> dict[str, dict]:
    """The model catalogue with ``single_lineage`` entries expanded to one model per lineage.

    An entry ``M`` with ``targets: single_lineage`` becomes ``M.{lineage}`` for every lineage in
    use, each with ``targets: "lineage:{lineage}"`` and ``ensemble: M``.
    """
    lineages = selected_lineages(config)
    out: dict[str, dict] = {}
    for name, entry in config.get("models", {}).items():
        entry = dict(entry)
        if entry.get("targets") == "single_lineage":
            for lin in lineages:
                out[f"{name}.{lin}"] = {**entry, "targets": f"lineage:{lin}", "ensemble": name}
        else:
            out[name] = entry
    return out


INTERPRET_ROLES = ("reference_model", "profile_model", "nobias_model")


def models_to_train(config: dict, figures: list[str]) -> list[str]:
    """Catalogue models the default run trains, given the figures it builds.

    A model is trained when a selected figure compares it (``comparisons:``), when it plays a role
    in a selected interpretation figure (``interpret:``), or when no figure at all uses it (an
    extra model the user added to the catalogue). So ``figures: [fig1b]`` trains only AI-TAC and
    bpAI-TAC. Members of a ``single_lineage`` ensemble follow their ensemble's name.
    """
    comparisons = config.get("comparisons", {})
    interpret = config.get("interpret", {})

    def used_by(selected: list[str]) -> set[str]:
        names = set(required_models(comparisons, selected))
        if any(f in INTERPRET_FIGURES for f in selected):
            names |= {interpret[r] for r in INTERPRET_ROLES if interpret.get(r)}
        return names

    every_figure = [*EVALUATION_FIGURES, *INTERPRET_FIGURES]
    used_by_any, wanted = used_by(every_figure), used_by(list(figures))
    out = []
    for name, entry in model_catalogue(config).items():
        key = entry.get("ensemble", name)
        if key in wanted or key not in used_by_any:
            out.append(name)
    return out
