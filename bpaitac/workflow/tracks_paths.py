"""The genome-browser tracks (rule ``interpret_tracks``): which bigWigs a config writes, their
file names, and the rule's inputs.

Torch-free on purpose: ``workflow/rules/interpret.smk`` imports it at parse time. The tracks
themselves are written by :func:`bpaitac.interpret.tracks.run_tracks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bpaitac.io import ConfigError
from bpaitac.workflow.interpret_paths import FIGURES as INTERPRET_FIGURES
from bpaitac.workflow.interpret_paths import InterpretPaths, file_safe

TRACKS_DIR = "results/{dataset}/tracks"
BIGWIG_FILE = TRACKS_DIR + "/{stem}.bw"
SESSION_FILE = TRACKS_DIR + "/igv_session.xml"
TRACKDB_FILE = TRACKS_DIR + "/trackDb.txt"
BIAS_MODEL_FILE = "results/{dataset}/bias_models/{bias_model}/model.pt"
GENOME_FILE = "resources/{dataset}/genome.fa"
BAM_FILE = "resources/{dataset}/bams/{celltype}.bam"
TEST_ARRAYS = ("seq.npy", "ocrs.tsv", "profile.npy", "counts.npy", "celltypes.txt")

KINDS = ("observed", "predicted", "predicted_nobias", "contributions")
"""Track kinds: observed insertions (quantile-normalisation factors applied), the profile
model's predicted insertions with the Tn5 bias and with the bias logits set to zero, and
DeepSHAP contributions of the observed base (per lineage only)."""

LEVELS = ("lineage", "celltype")


@dataclass(frozen=True)
class TrackSpec:
    """One bigWig: a lineage's or a cell type's track of one kind."""

    level: str  # lineage | celltype
    group: str  # the lineage or cell type, as in the cell-type table
    kind: str  # one of KINDS

    @property
    def stem(self) -> str:
        """File name without ``.bw``: ``{level}.{group}.{kind}`` with the group made file-safe."""
        return f"{self.level}.{file_safe(self.group)}.{self.kind}"


def track_specs(
    lineages: Sequence[str],
    celltypes: Sequence[str],
    *,
    per_celltype: bool,
    with_bias: bool,
) -> list[TrackSpec]:
    """Every track the rule writes, lineages first (table order), then cell types.

    Per lineage: observed, predicted (with the bias model's logits), predicted_nobias (without;
    only when the model has a bias model, ``with_bias``) and contributions. Per cell type (with
    ``per_celltype``) the same without contributions: DeepSHAP is run per lineage. Raises
    :class:`ConfigError` when two groups give the same file name.
    """
    kinds = [k for k in KINDS if with_bias or k != "predicted_nobias"]
    specs = [TrackSpec("lineage", lin, kind) for lin in lineages for kind in kinds]
    if per_celltype:
        specs += [
            TrackSpec("celltype", ct, kind)
            for ct in celltypes
            for kind in kinds
            if kind != "contributions"
        ]
    seen: dict[str, TrackSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.stem, spec)
        if other is not spec:
            raise ConfigError(
                f"{spec.level} {spec.group!r} and {other.level} {other.group!r} give the same "
                f"track file {spec.stem}.bw; rename one in the cell-type table."
            )
    return specs


class TrackPaths:
    """Inputs, outputs and targets of rule ``interpret_tracks`` for one validated config."""

    def __init__(
        self,
        config: Mapping[str, Any],
        catalogue: Mapping[str, Any],
        lineages: Sequence[str],
        celltypes: Sequence[str],
    ) -> None:
        self.config = config
        self.cfg = config["interpret"]["tracks"]
        self.catalogue = catalogue
        self.interpret = InterpretPaths(config, catalogue)
        self.lineages = list(lineages)
        self.celltypes = list(celltypes)

    def available(self) -> bool:
        """Whether the config names a profile model of the catalogue (else no track rule)."""
        return self.config["interpret"]["profile_model"] in self.catalogue

    @property
    def model(self) -> str:
        """The catalogue model whose predictions and contributions are drawn: the profile model
        (``interpret.profile_model``)."""
        return self.interpret.roles()["profile"]

    @property
    def bias_model(self) -> str | None:
        """The profile model's bias model (None without one)."""
        bias = str(self.catalogue[self.model]["bias"])
        return None if bias == "none" else bias

    def specs(self) -> list[TrackSpec]:
        """The tracks of this config (:func:`track_specs`)."""
        per_celltype = bool(self.cfg["per_celltype"])
        targets = str(self.catalogue[self.model]["targets"])
        if per_celltype and targets != "celltypes":
            raise ConfigError(
                "config key `interpret.tracks.per_celltype`: true needs a profile model "
                f"(`interpret.profile_model`: {self.model}) trained on cell types "
                f"(`targets: celltypes`), not {targets!r}; set it to false."
            )
        return track_specs(
            self.lineages,
            self.celltypes,
            per_celltype=per_celltype,
            with_bias=self.bias_model is not None,
        )

    def bigwigs(self) -> list[str]:
        """Output templates of the bigWigs (``{dataset}`` left as a wildcard)."""
        return [BIGWIG_FILE.replace("{stem}", s.stem) for s in self.specs()]

    def inputs(self, wildcards: Any) -> dict[str, Any]:
        """The profile model and its bias model, the genome and its ``.fai``, the test split,
        the attributions (contributions of the interpreted regions) or the contribution BED,
        and the region BED with every cell type's BAM (observed insertions over a BED)."""
        d = wildcards.dataset
        genome = GENOME_FILE.format(dataset=d)
        out: dict[str, Any] = {
            "model": self.interpret.run_file(d, self.model, "model.pt"),
            "genome": genome,
            "fai": genome + ".fai",
            **{name.split(".")[0]: self.interpret.test_file(d, name) for name in TEST_ARRAYS},
        }
        if self.bias_model is not None:
            out["bias_model"] = BIAS_MODEL_FILE.format(dataset=d, bias_model=self.bias_model)
        if self.cfg["contributions"] is None:
            out["attributions"] = self.interpret.interpret_file(d, f"attributions/{self.model}.npz")
        else:
            out["contributions_bed"] = str(self.cfg["contributions"])
        if self.cfg["regions"] is not None:
            out["regions_bed"] = str(self.cfg["regions"])
            out["bams"] = [BAM_FILE.format(dataset=d, celltype=ct) for ct in self.celltypes]
        return out

    def targets(self, dataset: str, figures: Sequence[str]) -> list[str]:
        """The bigWigs, the IGV session and the trackDb, with the interpretation (an
        interpretation figure in ``figures``) when ``interpret.tracks.build``."""
        if not self.cfg["build"] or not any(f in INTERPRET_FIGURES for f in figures):
            return []
        files = [*self.bigwigs(), SESSION_FILE, TRACKDB_FILE]
        return [f.replace("{dataset}", dataset) for f in files]
