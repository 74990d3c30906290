"""End to end: the whole workflow on the tiny simulated dataset, then the HTML report."""

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def snakemake(workdir: Path, configfile: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "MPLBACKEND": "Agg"}
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
    cmd = [
        "snakemake",
        "--snakefile", str(ROOT / "workflow" / "Snakefile"),
        "--directory", str(workdir),
        "--configfile", str(configfile),
        "--cores", "2",
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Run the tiny workflow once in a scratch directory; yield (workdir, config)."""
    workdir = tmp_path_factory.mktemp("tiny")
    config = yaml.safe_load((ROOT / "config" / "tiny.yaml").read_text())
    config["celltypes"] = str(ROOT / config["celltypes"])
    configfile = workdir / "tiny.yaml"
    configfile.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = snakemake(workdir, configfile)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return workdir, config, configfile


@pytest.mark.slow
def test_every_configured_figure_is_built(tiny_run):
    workdir, config, _ = tiny_run
    figures = workdir / "results" / config["dataset"] / "figures"
    assert config["figures"], "the tiny config should build figures"
    for name in config["figures"]:
        for ext in ("pdf", "png"):
            path = figures / f"{name}.{ext}"
            assert path.exists() and path.stat().st_size > 1000, f"{path} missing or empty"
    summary = workdir / "results" / config["dataset"] / "eval" / "summary.tsv"
    assert summary.exists()


@pytest.mark.slow
def test_variants_are_scored_by_every_model_and_compared_with_the_truth(tiny_run):
    """Rule score_variants on the simulator's variants (config `variants:` of tiny.yaml): one
    tidy row per variant x target of each model, every variant in the summary, the figure, and
    the truth comparison per model x subset."""
    import pandas as pd

    workdir, config, _ = tiny_run
    results = workdir / "results" / config["dataset"]
    truth = pd.read_csv(workdir / config["variants"]["path"], sep="\t")
    n_celltypes = len(pd.read_csv(results / "data" / "test" / "celltypes.txt", header=None))
    for model in config["variants"]["models"]:
        table = pd.read_csv(results / "variants" / f"{model}.tsv", sep="\t")
        summary = pd.read_csv(results / "variants" / f"{model}_summary.tsv", sep="\t")
        n_lineages = table.loc[table["level"] == "lineage", "target"].nunique()
        assert n_lineages == 10
        assert len(table) == len(truth) * (n_celltypes + n_lineages)
        assert summary["status"].eq("ok").all() and len(summary) == len(truth)
        assert summary["name"].tolist() == truth["id"].tolist()
        assert table[["log2fc_mean", "jsd_mean", "diff_mean"]].notna().all().all()
        assert (table["jsd_mean"] >= 0).all() and (table["n_seeds"] == 1).all()
        for ext in ("pdf", "png"):
            assert (results / "figures" / f"variants_{model}.{ext}").stat().st_size > 1000
    recovery = pd.read_csv(results / "variants" / "variant_truth.tsv", sep="\t")
    assert len(recovery) == 2 * len(config["variants"]["models"])
    assert set(recovery["subset"]) == {"held_out", "all"}
    all_rows = recovery[recovery["subset"] == "all"]
    assert (all_rows["n_breaking"] == config["simulate"]["truth_variants"]).all()
    assert all_rows["auc_breaking"].between(0, 1).all()


@pytest.mark.slow
def test_rerun_has_nothing_to_do(tiny_run):
    workdir, _, configfile = tiny_run
    proc = snakemake(workdir, configfile, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


# Settings that pick how a run goes, not its numbers: changing them must rerun nothing.
RUNTIME_CHANGES = {
    "progress": True,
    "check_every": 7,
    "preload": "never",
    "preload_max_gb": 1,
    "eval_batch_size": 64,
}


@pytest.mark.slow
def test_runtime_settings_rerun_nothing(tiny_run):
    workdir, config, _ = tiny_run
    changed = copy.deepcopy(config)
    assert all(changed["training"].get(k) != v for k, v in RUNTIME_CHANGES.items())
    changed["training"].update(RUNTIME_CHANGES)
    changed["threads"] = changed["threads"] + 1
    configfile = workdir / "runtime_changed.yaml"
    configfile.write_text(yaml.safe_dump(changed, sort_keys=False))
    proc = snakemake(workdir, configfile, "-n")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert not re.findall(r"\b(train_model|train_bias_model)\b", out), out[-3000:]
    assert "Nothing to be done" in out, out[-3000:]


@pytest.mark.slow
def test_html_report_holds_every_figure(tiny_run):
    workdir, config, configfile = tiny_run
    report = workdir / "report.html"
    proc = snakemake(workdir, configfile, "--report", str(report))
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text(errors="replace")
    for name in config["figures"]:
        assert f"{name}.png" in html, f"{name} is not in the report"
    for model in config["variants"]["models"]:
        assert f"variants_{model}.png" in html, f"the variant figure of {model} is not in it"


@pytest.mark.slow
def test_tracks_and_motif_callers_are_built(tiny_run):
    import pandas as pd
    import pyBigWig

    workdir, config, _ = tiny_run
    results = workdir / "results" / config["dataset"]
    bigwigs = sorted((results / "tracks").glob("*.bw"))
    # per lineage 4 kinds, per cell type 3 (config/tiny.yaml: per_celltype, a bias model)
    assert len(bigwigs) == 10 * 4 + 20 * 3
    with pyBigWig.open(str(results / "tracks" / "lineage.B.observed.bw")) as bw:
        assert bw.header()["nBasesCovered"] > 0
    assert (results / "tracks" / "igv_session.xml").read_text().count("<Track ") == len(bigwigs)
    for name in ("ohe.npz", "hyp.npz", "regions.bed", "modisco.h5", "report/report.html"):
        assert (results / "interpret" / "modisco" / "pooled" / name).exists(), name
    summary = pd.read_csv(results / "interpret" / "motif_callers_summary.tsv", sep="\t")
    assert summary["caller"].tolist() == ["clustering", "modisco"]
    assert (summary["seconds"] > 0).all() and (summary["planted_jaspar_motifs"] == 14).all()
