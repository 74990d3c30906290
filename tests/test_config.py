"""Config validation: schema defaults, clear messages for bad keys, the model catalogue."""

from pathlib import Path

import pytest
import yaml

from bpaitac.io import InputError, read_celltypes
from bpaitac.workflow.config import (
    ConfigError,
    load_config,
    model_catalogue,
    models_to_train,
    validate_config,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = [
    "config/config.yaml",
    "config/tiny.yaml",
    "config/immgen.yaml",
    "config/validate.yaml",
]


def raw(name: str = "config/tiny.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_validate(name):
    config = load_config(ROOT / name)
    assert config["dataset"]
    assert config["source"] in ("simulate", "download")


def test_defaults_are_filled():
    config = validate_config({"dataset": "x", "source": "simulate", "celltypes": "c.tsv"})
    assert config["device"] == "auto"
    assert config["threads"] == 2
    assert config["celltypes_per_lineage"] is None


def test_architecture_and_training_defaults_are_filled():
    config = raw()
    name = next(iter(config["architectures"]))
    config["architectures"][name].pop("batchnorm", None)
    config.get("training", {}).pop("reverse_complement", None)
    config = validate_config(config)
    assert config["architectures"][name]["batchnorm"] is True  # as the authors' code
    assert config["training"]["reverse_complement"] is False  # not in the paper


def test_bad_enum_names_key_and_allowed_values():
    config = raw()
    config["source"] = "geo"
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    msg = str(err.value)
    assert "`source`" in msg and "'geo'" in msg and "simulate" in msg and "download" in msg


def test_unknown_top_level_key_is_named():
    config = raw()
    config["lamda"] = 0.5
    with pytest.raises(ConfigError, match="lamda"):
        validate_config(config)


def test_wrong_type_names_nested_key():
    config = raw()
    config["celltypes_per_lineage"] = "three"
    with pytest.raises(ConfigError, match="celltypes_per_lineage"):
        validate_config(config)


def test_model_with_undefined_architecture_is_named():
    config = raw()
    name = next(iter(config["models"]))
    config["models"][name]["arch"] = "no_such_arch"
    with pytest.raises(ConfigError, match=rf"models\.{name}\.arch.*no_such_arch"):
        validate_config(config)


def test_single_lineage_entries_expand_per_lineage():
    config = load_config(ROOT / "config/config.yaml")
    config["celltypes"] = str(ROOT / config["celltypes"])
    config["models"] = {
        "ST": {**next(iter(config["models"].values())), "targets": "single_lineage"}
    }
    catalogue = model_catalogue(config)
    lineages = list(dict.fromkeys(read_celltypes(config["celltypes"])["lineage"]))
    assert list(catalogue) == [f"ST.{lin}" for lin in lineages]
    assert catalogue["ST.B"]["targets"] == "lineage:B"
    assert catalogue["ST.B"]["ensemble"] == "ST"


def test_celltype_table_has_90_celltypes_in_10_lineages():
    table = read_celltypes(ROOT / "config/celltypes.tsv")
    assert len(table) == 90
    assert table["lineage"].nunique() == 10
    assert set(table["lineage"]) == {
        "Stem&Prog", "B", "abT", "T.act", "gdT", "ILC", "myeloid", "monocyte", "DC", "stroma",
    }  # fmt: skip


def test_celltypes_per_lineage_keeps_first_k():
    table = read_celltypes(ROOT / "config/celltypes.tsv", per_lineage=2)
    assert table.groupby("lineage").size().max() == 2
    assert table["celltype"].iloc[0] == "LTHSC.34-.BM"


def test_celltype_table_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "ct.tsv"
    bad.write_text("celltype\tlineage\torgan\nB.Sp\tB\tspleen\nB.Sp\tB\tspleen\n")
    with pytest.raises(InputError, match=r"ct\.tsv, line 3: cell type 'B.Sp' appears twice"):
        read_celltypes(bad)
    bad.write_text("celltype\tlin\nB.Sp\tB\n")
    with pytest.raises(InputError, match=r"missing column"):
        read_celltypes(bad)


def test_figures_subset_limits_the_models_trained():
    config = load_config(ROOT / "config/config.yaml")
    config["celltypes"] = str(ROOT / config["celltypes"])
    everything = models_to_train(config, config["figures"])
    assert set(everything) == set(model_catalogue(config))
    assert models_to_train(config, ["fig1b"]) == ["aitac", "bpaitac"]
    lambda_sweep = models_to_train(config, ["fig2c"])
    assert "lambda07" in lambda_sweep and "arch_fc" not in lambda_sweep
    ensemble = models_to_train(config, ["fig2b"])
    assert "lineages" in ensemble and any(m.startswith("single_lineage.") for m in ensemble)
    config["models"]["extra"] = dict(config["models"]["aitac"])
    assert "extra" in models_to_train(config, ["fig1b"])  # used by no figure: always trained
