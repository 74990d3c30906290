"""The simulator's knobs: typed, validated, with the same defaults as the schema fragment.

``workflow/schemas/simulate.schema.yaml`` documents every key for Snakemake; this module holds
the same defaults so that the package can be used (and tested) without Snakemake. A test checks
that both agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bpaitac.io import ConfigError

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

# The default catalogue of planted TFs. Activities are concentrations in units of the
# dissociation constant of a typical PWM-sampled site, per lineage (unlisted: activity_default).
DEFAULT_MOTIFS: list[dict[str, Any]] = [
    {
        "name": "SPI1",
        "jaspar_id": "MA0080.7",
        "activity": {"myeloid": 6.0, "monocyte": 8.0, "DC": 4.0, "B": 4.0, "Stem&Prog": 2.0},
        "effect": 1.5,
        "footprint": 0.5,
    },
    {
        "name": "CEBPB",
        "jaspar_id": "MA0466.4",
        "activity": {"myeloid": 6.0, "monocyte": 6.0, "DC": 1.0, "Stem&Prog": 0.5},
        "effect": 1.0,
        "footprint": 0.5,
    },
    {
        "name": "EBF1",
        "jaspar_id": "MA0154.5",
        "activity": {"B": 8.0, "Stem&Prog": 0.3},
        "effect": 1.5,
        "footprint": 0.6,
    },
    {
        "name": "PAX5",
        "jaspar_id": "MA0014.4",
        "activity": {"B": 4.0},
        "effect": 0.6,
        "footprint": 0.3,
    },
    {
        "name": "TCF7",
        "jaspar_id": "MA0769.3",
        "activity": {"abT": 6.0, "gdT": 5.0, "ILC": 3.0, "T.act": 2.0, "Stem&Prog": 0.5},
        "effect": 1.0,
        "footprint": 0.3,
    },
    {
        "name": "GATA3",
        "jaspar_id": "MA0037.5",
        "activity": {"abT": 3.0, "ILC": 4.0, "T.act": 2.0, "gdT": 1.0},
        "effect": 0.8,
        "footprint": 0.2,
    },
    {
        "name": "RUNX1",
        "jaspar_id": "MA0002.3",
        "activity": {
            "abT": 4.0,
            "gdT": 4.0,
            "ILC": 4.0,
            "T.act": 3.0,
            "Stem&Prog": 3.0,
            "B": 1.0,
            "myeloid": 1.0,
        },
        "effect": 1.0,
        "footprint": 0.4,
    },
    {
        "name": "ETS1",
        "jaspar_id": "MA0098.4",
        "activity": {"abT": 4.0, "gdT": 4.0, "ILC": 3.0, "T.act": 3.0, "B": 2.0},
        "effect": 0.8,
        "footprint": 0.4,
    },
    {
        "name": "IRF8",
        "jaspar_id": "MA0652.2",
        "activity": {"DC": 6.0, "monocyte": 4.0, "myeloid": 3.0, "B": 2.0},
        "effect": 0.6,
        "footprint": 0.3,
    },
    {
        "name": "RELA",
        "jaspar_id": "MA0107.1",
        "activity": {"T.act": 6.0, "DC": 3.0, "B": 2.0, "myeloid": 1.0},
        "effect": 1.0,
        "footprint": 0.4,
    },
    {
        "name": "TFEB",
        "jaspar_id": "MA0692.2",
        "activity": {"myeloid": 4.0, "monocyte": 3.0, "DC": 3.0},
        "effect": 0.6,
        "footprint": 0.3,
    },
    {
        "name": "FOS::JUN",
        "jaspar_id": "MA0099.4",
        "activity": {"stroma": 5.0, "T.act": 3.0, "myeloid": 2.0, "DC": 1.0},
        "effect": 1.2,
        "footprint": 0.3,
    },
    {
        "name": "CTCF",
        "jaspar_id": "MA0139.2",
        "activity": {lin: 6.0 for lin in ALL_LINEAGES},
        "effect": 0.5,
        "footprint": 0.9,
    },
    {
        "name": "ELF1",
        "jaspar_id": "MA0473.4",
        "activity": {lin: 3.0 for lin in ALL_LINEAGES},
        "effect": 0.6,
        "footprint": 0.4,
    },
    {
        "name": "NOVEL1",
        "consensus": "GTAGCTTCGAAC",
        "activity": {"stroma": 6.0, "ILC": 1.0},
        "effect": 1.2,
        "footprint": 0.4,
    },
]

# Co-occurrence: each OCR draws one module (by weight), then its sites from the module's motifs.
DEFAULT_MODULES: list[dict[str, Any]] = [
    {
        "name": "myeloid",
        "weight": 0.14,
        "motifs": {"SPI1": 3.0, "CEBPB": 3.0, "IRF8": 1.0, "TFEB": 1.0, "FOS::JUN": 1.0},
    },
    {"name": "dendritic", "weight": 0.08, "motifs": {"SPI1": 2.0, "IRF8": 3.0, "RELA": 1.0}},
    {
        "name": "B",
        "weight": 0.14,
        "motifs": {"EBF1": 3.0, "PAX5": 2.0, "SPI1": 1.0, "IRF8": 1.0, "ETS1": 1.0},
    },
    {"name": "T", "weight": 0.16, "motifs": {"TCF7": 3.0, "RUNX1": 2.0, "ETS1": 2.0, "GATA3": 1.0}},
    {"name": "ILC", "weight": 0.08, "motifs": {"GATA3": 3.0, "RUNX1": 2.0, "TCF7": 1.0}},
    {"name": "activation", "weight": 0.08, "motifs": {"RELA": 3.0, "FOS::JUN": 2.0, "ETS1": 1.0}},
    {"name": "progenitor", "weight": 0.06, "motifs": {"RUNX1": 2.0, "SPI1": 1.0, "ETS1": 1.0}},
    {"name": "stroma", "weight": 0.08, "motifs": {"NOVEL1": 3.0, "FOS::JUN": 2.0}},
    {"name": "insulator", "weight": 0.08, "motifs": {"CTCF": 1.0}},
    {
        "name": "mixed",
        "weight": 0.10,
        "motifs": {m["name"]: 1.0 for m in DEFAULT_MOTIFS},
    },
    {
        "name": "promoter",
        "weight": 1.0,
        "promoter": True,
        "motifs": {"ELF1": 3.0, "CTCF": 1.0, "ETS1": 1.0, "RELA": 0.5},
    },
]

# Cooperative pairs planted at a fixed spacing and orientation; synergy adds to accessibility.
DEFAULT_PAIRS: list[dict[str, Any]] = [
    {"motifs": ["SPI1", "IRF8"], "spacing": 2, "strands": "++", "probability": 0.5, "synergy": 1.5},
    {
        "motifs": ["RUNX1", "ETS1"],
        "spacing": 4,
        "strands": "+-",
        "probability": 0.4,
        "synergy": 1.0,
    },
    {
        "motifs": ["GATA3", "TCF7"],
        "spacing": 6,
        "strands": "++",
        "probability": 0.3,
        "synergy": 1.0,
    },
]

DEFAULT_CHROM_SIZES: dict[str, int] = {
    "chr1": 3_500_000,
    "chr2": 3_000_000,
    "chr3": 2_500_000,
    "chr4": 2_000_000,
    "chr11": 1_200_000,
    "chr12": 1_200_000,
    "chr15": 1_200_000,
    "chr16": 1_200_000,
}


@dataclass(frozen=True)
class MotifSpec:
    """One planted TF: a JASPAR matrix or a synthetic IUPAC consensus, its activity and effects."""

    name: str
    jaspar_id: str | None = None
    consensus: str | None = None
    activity: dict[str, float] = field(default_factory=dict)
    effect: float = 1.0
    footprint: float = 0.5


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
    strands: str = "++"
    probability: float = 0.5
    synergy: float = 1.0


@dataclass(frozen=True)
class FragmentLengthSpec:
    """Fragment length (TLEN) mixture: components ``[mean, sd, weight]`` truncated to [min, max]."""

    min: int = 30
    max: int = 800
    components: tuple[tuple[float, float, float], ...] = (
        (70.0, 30.0, 0.55),
        (200.0, 25.0, 0.33),
        (390.0, 35.0, 0.12),
    )


@dataclass(frozen=True)
class SimulateConfig:
    """All simulator knobs (see ``docs/simulation.md`` for the generative model)."""

    chrom_sizes: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CHROM_SIZES))
    markov_order: int = 3
    gc_content: float = 0.42
    cpg_depletion: float = 0.2
    ocr_gc_content: float = 0.47
    ocr_cpg_depletion: float = 0.35
    promoter_fraction: float = 0.1
    promoter_gc_content: float = 0.6
    promoter_cpg_depletion: float = 0.65
    promoter_accessibility: float = 1.0
    n_ocrs: int = 3000
    min_ocr_spacing: int = 1500
    ocr_region_halfwidth: int = 600
    ocr_sequence_halfwidth: int = 500
    shape_width: tuple[float, float] = (50.0, 120.0)
    shape_flank: float = 0.03
    summit_jitter_sd: float = 10.0
    mean_sites: float = 3.0
    site_spread_sd: float = 50.0
    weak_site_fraction: float = 0.25
    weak_site_temperature: float = 0.25
    jaspar_release: str = "JASPAR2024"
    motifs: tuple[MotifSpec, ...] = field(
        default_factory=lambda: tuple(_motif(m, i) for i, m in enumerate(DEFAULT_MOTIFS))
    )
    modules: tuple[ModuleSpec, ...] = field(
        default_factory=lambda: tuple(_module(m, i) for i, m in enumerate(DEFAULT_MODULES))
    )
    pairs: tuple[PairSpec, ...] = field(
        default_factory=lambda: tuple(_pair(p, i) for i, p in enumerate(DEFAULT_PAIRS))
    )
    activity_default: float = 0.01
    celltype_activity_sd: float = 0.5
    celltype_effect_sd: float = 0.3
    basal_accessibility: float = 0.02
    ocr_scale_sd: float = 0.3
    site_opening_sd: float = 50.0
    site_opening_weight: float = 1.0
    ocr_wide_weight: float = 1.0
    footprint_strength: float = 1.0
    footprint_pad: int = 3
    footprint_flank_width: int = 10
    footprint_flank_gain: float = 0.6
    tn5_bias_strength: float = 1.0
    depth_millions: tuple[float, float] = (2.5, 40.0)
    depth_scale: float = 0.03
    background_fraction: float = 0.3
    read_length: int = 50
    fragment_length: FragmentLengthSpec = field(default_factory=FragmentLengthSpec)
    protein_free_regions: int = 25
    protein_free_region_length: int = 20_000
    protein_free_replicates: tuple[str, ...] = ("rep1", "rep2", "rep3", "rep4", "rep5")
    protein_free_fragments: int = 100_000
    protein_free_fragment_length: tuple[float, float] = (120.0, 60.0)
    truth_ocrs: int = 20

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> SimulateConfig:
        """Build from the ``simulate:`` config object; missing keys take the defaults."""
        raw = dict(raw or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ConfigError(
                f"config key `simulate.{unknown[0]}`: unknown key; allowed keys: "
                f"{', '.join(sorted(known))}."
            )
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            kwargs[key] = _convert(key, value)
        cfg = cls(**kwargs)
        cfg.check()
        return cfg

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
            if m.consensus is not None and set(m.consensus.upper()) - set(IUPAC):
                raise ConfigError(
                    f"config key `simulate.motifs[{i}].consensus`: {m.consensus!r} has letters "
                    f"outside the IUPAC code {''.join(IUPAC)}."
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


_RANGES: dict[str, tuple[float | None, float | None]] = {
    "markov_order": (1, 6),
    "gc_content": (0.05, 0.95),
    "cpg_depletion": (0.01, 1.5),
    "ocr_gc_content": (0.05, 0.95),
    "ocr_cpg_depletion": (0.01, 1.5),
    "promoter_fraction": (0.0, 1.0),
    "promoter_gc_content": (0.05, 0.95),
    "promoter_cpg_depletion": (0.01, 1.5),
    "promoter_accessibility": (0.0, None),
    "n_ocrs": (1, None),
    "min_ocr_spacing": (1, None),
    "ocr_region_halfwidth": (150, None),
    "ocr_sequence_halfwidth": (100, None),
    "shape_flank": (0.0, None),
    "summit_jitter_sd": (0.0, None),
    "mean_sites": (1.0, None),
    "site_spread_sd": (0.0, None),
    "weak_site_fraction": (0.0, 1.0),
    "weak_site_temperature": (0.0, 1.0),
    "activity_default": (0.0, None),
    "celltype_activity_sd": (0.0, None),
    "celltype_effect_sd": (0.0, None),
    "basal_accessibility": (0.0, None),
    "ocr_scale_sd": (0.0, None),
    "site_opening_sd": (1.0, None),
    "site_opening_weight": (0.0, None),
    "ocr_wide_weight": (0.0, None),
    "footprint_strength": (0.0, None),
    "footprint_pad": (0, None),
    "footprint_flank_width": (0, None),
    "footprint_flank_gain": (0.0, None),
    "tn5_bias_strength": (0.0, None),
    "depth_scale": (0.0, None),
    "background_fraction": (0.0, 0.95),
    "read_length": (10, None),
    "protein_free_regions": (0, None),
    "protein_free_region_length": (2000, None),
    "protein_free_fragments": (0, None),
    "truth_ocrs": (0, None),
}


def _check_ranges(cfg: SimulateConfig) -> None:
    for key, (lo, hi) in _RANGES.items():
        value = getattr(cfg, key)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"[{lo}, {'inf' if hi is None else hi}]"
            raise ConfigError(f"config key `simulate.{key}`: {value!r} is outside {bounds}.")
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
    if not 20 <= fl.min < fl.max:
        raise ConfigError("config key `simulate.fragment_length`: need 20 <= min < max.")
    if not fl.components or any(sd <= 0 or w < 0 for _, sd, w in fl.components):
        raise ConfigError(
            "config key `simulate.fragment_length.components`: give [mean, sd > 0, weight >= 0]."
        )
    for i, m in enumerate(cfg.motifs):
        if not 0.0 <= m.footprint <= 1.0 or m.effect < 0:
            raise ConfigError(
                f"config key `simulate.motifs[{i}]` ({m.name}): need 0 <= footprint <= 1 "
                "and effect >= 0."
            )
        if any(v < 0 for v in m.activity.values()):
            raise ConfigError(f"config key `simulate.motifs[{i}].activity`: must be >= 0.")
    for i, p in enumerate(cfg.pairs):
        if p.strands not in ("++", "+-", "-+", "--") or p.spacing < 0:
            raise ConfigError(
                f"config key `simulate.pairs[{i}]`: strands must be one of ++, +-, -+, -- and "
                "spacing >= 0."
            )
        if not 0 <= p.probability <= 1:
            raise ConfigError(f"config key `simulate.pairs[{i}].probability`: must be in [0, 1].")


def _motif(raw: Mapping[str, Any], i: int) -> MotifSpec:
    allowed = {f.name for f in dataclasses.fields(MotifSpec)}
    _check_keys(raw, allowed, f"simulate.motifs[{i}]", ("name",))
    raw = dict(raw)
    raw["activity"] = {str(k): float(v) for k, v in (raw.get("activity") or {}).items()}
    if raw.get("consensus") is not None:
        raw["consensus"] = str(raw["consensus"]).upper()
    return MotifSpec(**raw)


def _module(raw: Mapping[str, Any], i: int) -> ModuleSpec:
    allowed = {f.name for f in dataclasses.fields(ModuleSpec)}
    _check_keys(raw, allowed, f"simulate.modules[{i}]", ("name", "weight", "motifs"))
    raw = dict(raw)
    raw["motifs"] = {str(k): float(v) for k, v in raw["motifs"].items()}
    return ModuleSpec(**raw)


def _pair(raw: Mapping[str, Any], i: int) -> PairSpec:
    allowed = {f.name for f in dataclasses.fields(PairSpec)}
    _check_keys(raw, allowed, f"simulate.pairs[{i}]", ("motifs", "spacing"))
    raw = dict(raw)
    motifs = tuple(raw["motifs"])
    if len(motifs) != 2:
        raise ConfigError(f"config key `simulate.pairs[{i}].motifs`: give exactly two names.")
    raw["motifs"] = motifs
    return PairSpec(**raw)


def _check_keys(
    raw: Mapping[str, Any], allowed: set[str], where: str, required: tuple[str, ...] = ()
) -> None:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config key `{where}`: expected a mapping, got {raw!r}.")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"config key `{where}.{unknown[0]}`: unknown key; allowed keys: "
            f"{', '.join(sorted(allowed))}."
        )
    for key in required:
        if key not in raw:
            raise ConfigError(f"config key `{where}.{key}`: missing; it is required.")


def _convert(key: str, value: Any) -> Any:
    """Turn a plain config value into the dataclass field's type."""
    if key == "motifs":
        return tuple(_motif(m, i) for i, m in enumerate(value))
    if key == "modules":
        return tuple(_module(m, i) for i, m in enumerate(value))
    if key == "pairs":
        return tuple(_pair(p, i) for i, p in enumerate(value))
    if key == "fragment_length":
        allowed = {f.name for f in dataclasses.fields(FragmentLengthSpec)}
        _check_keys(value, allowed, "simulate.fragment_length")
        value = dict(value)
        if "components" in value:
            comps = value["components"]
            if any(len(c) != 3 for c in comps):
                raise ConfigError(
                    "config key `simulate.fragment_length.components`: each entry is "
                    "[mean, sd, weight]."
                )
            value["components"] = tuple(tuple(float(x) for x in c) for c in comps)
        return FragmentLengthSpec(**value)
    if key == "chrom_sizes":
        if not isinstance(value, Mapping) or not value:
            raise ConfigError("config key `simulate.chrom_sizes`: give a mapping chrom -> length.")
        return {str(k): int(v) for k, v in value.items()}
    if key in ("shape_width", "depth_millions", "protein_free_fragment_length"):
        if len(value) != 2:
            raise ConfigError(f"config key `simulate.{key}`: give two numbers [low, high].")
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
