"""The simulator's knobs, typed and checked; their defaults live only in the schema.

``workflow/schemas/simulate.schema.yaml`` documents every key and holds its default;
:meth:`SimulateConfig.from_dict` validates a ``simulate:`` section against it, fills the
defaults and adds the cross-field checks a schema cannot express, so that the package can be
used (and tested) without Snakemake with the workflow's defaults.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bpaitac.io import ConfigError

SCHEMA_REF = "simulate.schema.yaml#/$defs/simulate"
"""The schema definition of the ``simulate:`` section (relative to ``workflow/schemas``)."""

IUPAC = {
    "A": "A",
    "C": "C",
    "G": "G",
    "T": "T",
    "R": "AG",
    "Y": "CT",
    "S": "CG",
    "W": "AT",
    "K": "GT",
    "M": "AC",
    "N": "ACGT",
}

ALL_LINEAGES = (
    "Stem&Prog",
    "B",
    "abT",
    "gdT",
    "T.act",
    "ILC",
    "DC",
    "monocyte",
    "myeloid",
    "stroma",
)


@dataclass(frozen=True, kw_only=True)
class MotifSpec:
    """One planted TF: a JASPAR matrix or a synthetic IUPAC consensus, its activity and effects.

    The field order is the order of the simulate rule's params (``SimulateConfig.to_dict``):
    changing it re-runs every simulation.
    """

    name: str
    jaspar_id: str | None = None
    consensus: str | None = None
    activity: dict[str, float] = field(default_factory=dict)
    effect: float
    footprint: float


@dataclass(frozen=True)
class ModuleSpec:
    """A co-occurrence module: the motifs (with weights) an OCR of this kind carries."""

    name: str
    weight: float
    motifs: dict[str, float]
    promoter: bool = False


@dataclass(frozen=True)
class PairSpec:
    """A cooperative pair: ``spacing`` bp between the two sites, ``strands`` e.g. ``"+-"``."""

    motifs: tuple[str, str]
    spacing: int
    strands: str
    probability: float
    synergy: float


@dataclass(frozen=True)
class FragmentLengthSpec:
    """Fragment length (TLEN) mixture: components ``[mean, sd, weight]`` truncated to [min, max]."""

    min: int
    max: int
    components: tuple[tuple[float, float, float], ...]


@dataclass(frozen=True)
class SimulateConfig:
    """All simulator knobs (see ``docs/simulation.md`` for the generative model)."""

    chrom_sizes: dict[str, int]
    markov_order: int
    gc_content: float
    cpg_depletion: float
    ocr_gc_content: float
    ocr_cpg_depletion: float
    promoter_fraction: float
    promoter_gc_content: float
    promoter_cpg_depletion: float
    promoter_accessibility: float
    n_ocrs: int
    min_ocr_spacing: int
    ocr_region_halfwidth: int
    ocr_sequence_halfwidth: int
    shape_width: tuple[float, float]
    shape_flank: float
    summit_jitter_sd: float
    mean_sites: float
    site_spread_sd: float
    weak_site_fraction: float
    weak_site_temperature: float
    jaspar_release: str
    motifs: tuple[MotifSpec, ...]
    modules: tuple[ModuleSpec, ...]
    pairs: tuple[PairSpec, ...]
    activity_default: float
    celltype_activity_sd: float
    celltype_effect_sd: float
    basal_accessibility: float
    ocr_scale_sd: float
    site_opening_sd: float
    site_opening_weight: float
    ocr_wide_weight: float
    footprint_strength: float
    footprint_pad: int
    footprint_flank_width: int
    footprint_flank_gain: float
    tn5_bias_strength: float
    depth_millions: tuple[float, float]
    depth_scale: float
    background_fraction: float
    read_length: int
    fragment_length: FragmentLengthSpec
    protein_free_regions: int
    protein_free_region_length: int
    protein_free_replicates: tuple[str, ...]
    protein_free_fragments: int
    protein_free_fragment_length: tuple[float, float]
    truth_ocrs: int
    truth_variants: int

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> SimulateConfig:
        """Build from the ``simulate:`` config section; missing keys take the schema's defaults.

        The section is validated against ``simulate.schema.yaml`` (types, ranges, unknown keys),
        then :meth:`check` adds the cross-field checks. Errors name the key.
        """
        from bpaitac.workflow.config import complete_section

        raw = complete_section(dict(raw or {}), SCHEMA_REF, "simulate")
        cfg = cls(**{key: _convert(key, value) for key, value in raw.items()})
        cfg.check()
        return cfg

    @classmethod
    def defaults(cls) -> SimulateConfig:
        """The simulator with every knob at its schema default (the demo's generative model)."""
        return cls.from_dict({})

    def to_dict(self) -> dict[str, Any]:
        """The plain (YAML/JSON-like) form of this config, lists instead of tuples."""
        return _plain(dataclasses.asdict(self))

    def check(self) -> None:
        """Cross-field checks; raises :class:`ConfigError` naming the key and the fix."""
        _check_ranges(self)
        names = [m.name for m in self.motifs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ConfigError(f"config key `simulate.motifs`: duplicated name(s) {sorted(dup)}.")
        for i, m in enumerate(self.motifs):
            if (m.jaspar_id is None) == (m.consensus is None):
                raise ConfigError(
                    f"config key `simulate.motifs[{i}]` ({m.name}): give exactly one of "
                    "`jaspar_id` (a JASPAR matrix ID) or `consensus` (an IUPAC string)."
                )
        for i, mod in enumerate(self.modules):
            bad = sorted(set(mod.motifs) - set(names))
            if bad:
                raise ConfigError(
                    f"config key `simulate.modules[{i}].motifs` ({mod.name}): unknown motif(s) "
                    f"{bad}; allowed values: {', '.join(names)}."
                )
        if self.promoter_fraction > 0 and not any(m.promoter for m in self.modules):
            raise ConfigError(
                "config key `simulate.modules`: promoter_fraction > 0 needs a module with "
                "`promoter: true`; add one or set promoter_fraction: 0."
            )
        if self.promoter_fraction < 1 and not any(not m.promoter for m in self.modules):
            raise ConfigError(
                "config key `simulate.modules`: add at least one module without `promoter: true`."
            )
        for i, p in enumerate(self.pairs):
            bad = sorted(set(p.motifs) - set(names))
            if bad:
                raise ConfigError(
                    f"config key `simulate.pairs[{i}].motifs`: unknown motif(s) {bad}; "
                    f"allowed values: {', '.join(names)}."
                )
        if self.min_ocr_spacing < 2 * self.ocr_region_halfwidth:
            raise ConfigError(
                "config key `simulate.min_ocr_spacing`: must be at least 2 x "
                f"ocr_region_halfwidth = {2 * self.ocr_region_halfwidth} so OCR regions do not "
                "overlap."
            )
        if self.ocr_sequence_halfwidth > self.ocr_region_halfwidth:
            raise ConfigError(
                "config key `simulate.ocr_sequence_halfwidth`: must not exceed "
                "ocr_region_halfwidth."
            )
        if self.fragment_length.max > 2 * self.ocr_region_halfwidth:
            raise ConfigError(
                "config key `simulate.fragment_length.max`: must not exceed "
                f"2 x ocr_region_halfwidth = {2 * self.ocr_region_halfwidth}."
            )
        if len(set(self.protein_free_replicates)) != len(self.protein_free_replicates):
            raise ConfigError("config key `simulate.protein_free_replicates`: names must differ.")


def _check_ranges(cfg: SimulateConfig) -> None:
    """Ranges between keys; the schema holds each key's own range."""
    for key in ("shape_width", "depth_millions"):
        lo, hi = getattr(cfg, key)
        if not 0 < lo <= hi:
            raise ConfigError(f"config key `simulate.{key}`: need 0 < low <= high, got {lo}, {hi}.")
    for chrom, size in cfg.chrom_sizes.items():
        if size < 4 * cfg.min_ocr_spacing:
            raise ConfigError(
                f"config key `simulate.chrom_sizes.{chrom}`: {size} bp is too short; use at "
                f"least 4 x min_ocr_spacing = {4 * cfg.min_ocr_spacing}."
            )
    fl = cfg.fragment_length
    if not fl.min < fl.max:
        raise ConfigError("config key `simulate.fragment_length`: need min < max.")
    if any(sd <= 0 for _, sd, _ in fl.components):
        raise ConfigError(
            "config key `simulate.fragment_length.components`: give [mean, sd > 0, weight >= 0]."
        )


def _motif(raw: Mapping[str, Any]) -> MotifSpec:
    raw = dict(raw)
    raw["activity"] = {str(k): float(v) for k, v in (raw.get("activity") or {}).items()}
    if raw.get("consensus") is not None:
        raw["consensus"] = str(raw["consensus"]).upper()
    return MotifSpec(**raw)


def _module(raw: Mapping[str, Any]) -> ModuleSpec:
    return ModuleSpec(**{**raw, "motifs": {str(k): float(v) for k, v in raw["motifs"].items()}})


def _pair(raw: Mapping[str, Any]) -> PairSpec:
    return PairSpec(**{**raw, "motifs": tuple(raw["motifs"])})


def _convert(key: str, value: Any) -> Any:
    """Turn a validated config value into the dataclass field's type."""
    if key == "motifs":
        return tuple(_motif(m) for m in value)
    if key == "modules":
        return tuple(_module(m) for m in value)
    if key == "pairs":
        return tuple(_pair(p) for p in value)
    if key == "fragment_length":
        comps = tuple(tuple(float(x) for x in c) for c in value["components"])
        return FragmentLengthSpec(min=int(value["min"]), max=int(value["max"]), components=comps)
    if key == "chrom_sizes":
        return {str(k): int(v) for k, v in value.items()}
    if key in ("shape_width", "depth_millions", "protein_free_fragment_length"):
        return (float(value[0]), float(value[1]))
    if key == "protein_free_replicates":
        return tuple(str(v) for v in value)
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
