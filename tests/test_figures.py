"""Figures 1b-d, 2a-f, S1-S4 from synthetic predictions: every figure builds, inputs are checked."""

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bpaitac.evaluate import figures as P
from bpaitac.evaluate import metrics as M
from bpaitac.io import InputError, read_celltypes
from bpaitac.workflow import evaluate_paths as EP
from bpaitac.workflow import figures as WF

ROOT = Path(__file__).resolve().parent.parent
CELLTYPES_TSV = ROOT / "config" / "celltypes.tsv"
CELLTYPES = read_celltypes(CELLTYPES_TSV, per_lineage=2)
LINEAGES = list(dict.fromkeys(CELLTYPES["lineage"]))
N_OCRS = 60

COMPARISONS = {
    "main": {"AI-TAC": "aitac", "bpAI-TAC": "bpaitac"},
    "losses": {"AI-TAC": "aitac", "MSE+CE": "bpaitac", "Poisson": "poisson"},
    "multitask": {"Single-track": "single", "Lineage": "lineages", "Cell type": "bpaitac"},
    "lambda": {"0": "aitac", "0.5": "bpaitac", "1": "lambda1"},
    "architecture": {"bpAI-TAC": "bpaitac", "Shallow": "shallow"},
    "bias": {"No bias": "aitac", "Deep": "bpaitac"},
    "bins": {"1 bp": "bpaitac", "20 bp": "bin20"},
    "bias_models": {"Protein-free": "pf", "Closed": "closed"},
}
NOISE = {"aitac": 1.0, "bpaitac": 0.4, "poisson": 1.5, "lambda1": 2.0, "shallow": 0.8}
KINDS = {"lineages": "lineages", "single": "single_lineage"}


def _arrays(peaks, targets, obs, noise, rng, profile):
    arrays = {
        "peak_id": peaks,
        "targets": np.array(targets),
        "acc_pred": (obs + rng.normal(0, noise, obs.shape)).astype(np.float32),
        "acc_obs": obs.astype(np.float32),
    }
    if profile:
        arrays["profile_jsd"] = rng.uniform(0.1, 0.4, obs.shape).astype(np.float32)
        arrays["profile_r"] = rng.uniform(0.0, 0.6, obs.shape).astype(np.float32)
    return arrays


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Synthetic predictions of every compared model (2 seeds), evaluated to tidy tables."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(3)
    celltypes = list(CELLTYPES["celltype"])
    lineage_of = dict(zip(CELLTYPES["celltype"], CELLTYPES["lineage"]))
    obs = np.log1p(rng.gamma(2.0, 4.0, size=(N_OCRS, 1)) * rng.gamma(3.0, 0.4, (1, len(celltypes))))
    lin_obs, lin_names = M.lineage_means(obs, celltypes, lineage_of, LINEAGES)
    peaks = np.array([f"peak{i}" for i in range(N_OCRS)])
    models = {m for key, c in COMPARISONS.items() if key != "bias_models" for m in c.values()}
    files = {name: [] for name in EP.LEVELS.values()}
    for model in sorted(models):
        kind = KINDS.get(model, "celltypes")
        for seed in (1, 2):
            run = root / "models" / model / f"seed{seed}"
            run.mkdir(parents=True)
            if kind == "single_lineage":
                members, paths = {}, []
                for j, lin in enumerate(lin_names):
                    path = run / f"{lin}.npz"
                    np.savez(path, **_arrays(peaks, [lin], lin_obs[:, [j]], 0.6, rng, True))
                    members[f"{model}.{lin}"] = lin
                    paths.append(path)
            else:
                targets, o = (lin_names, lin_obs) if kind == "lineages" else (celltypes, obs)
                paths = [run / "predictions_test.npz"]
                arrays = _arrays(peaks, targets, o, NOISE.get(model, 0.5), rng, model != "aitac")
                np.savez(paths[0], **arrays)
                members = {model: None}
            tables = M.evaluate_files(paths, members, kind, CELLTYPES, LINEAGES, model, seed)
            for level, name in EP.LEVELS.items():
                out = root / "eval" / model / f"seed{seed}" / f"{name}.tsv"
                M.write_table(tables[level], out)
                files[name].append(out)
    # Bias models: per-window tables and the pairwise comparison.
    observed = {s: rng.poisson(1.0, size=(40, 250)).astype(float) for s in EP.BIAS_SETS}
    preds, bias_files = {}, []
    for name in COMPARISONS["bias_models"].values():
        preds[name] = {}
        rows = []
        for s in EP.BIAS_SETS:
            p = observed[s] + rng.uniform(0.0, 3.0, size=observed[s].shape)
            preds[name][s] = p / p.sum(axis=1, keepdims=True)
            rows.append(M.bias_window_table(name, s, observed[s], preds[name][s]))
        path = root / "eval" / "bias_models" / name / "per_window.tsv"
        M.write_table(pd.concat(rows, ignore_index=True), path)
        bias_files.append(path)
    pairs = root / "eval" / "bias_models" / "pairs.tsv"
    pair_rows = [
        M.bias_pair_table("pf", "closed", s, preds["pf"][s], preds["closed"][s])
        for s in EP.BIAS_SETS
    ]
    M.write_table(pd.concat(pair_rows, ignore_index=True), pairs)
    return {"root": root, "files": files, "bias": bias_files, "pairs": [pairs]}


def figure_inputs(workdir, figure):
    """What the figure rule's input function gives: level -> table files."""
    inputs = {}
    for level in WF.figure_levels(figure):
        if level == "bias":
            inputs[level] = workdir["bias"]
        elif level == "bias_pairs":
            inputs[level] = workdir["pairs"]
        else:
            inputs[level] = workdir["files"][EP.LEVELS[level]]
    return inputs


@pytest.mark.parametrize("figure", list(WF.FIGURES))
def test_every_figure_builds(workdir, figure, tmp_path):
    tables = P.load_figure_tables(figure, figure_inputs(workdir, figure))
    fig = P.build_figure(figure, tables, COMPARISONS, LINEAGES)
    assert len([ax for ax in fig.axes if ax.get_visible()]) >= len(WF.FIGURES[figure].panels)
    pdf, png = tmp_path / f"{figure}.pdf", tmp_path / f"{figure}.png"
    P.save_figure(fig, pdf, png)
    assert pdf.read_bytes()[:4] == b"%PDF"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave no temporaries


def test_boxes_report_the_paired_test_on_seed_means(workdir):
    import matplotlib.pyplot as plt

    table = M.read_level_tables(workdir["files"]["per_ocr"], "ocr")
    fig, ax = plt.subplots()
    tests = P.draw_boxes(ax, table, COMPARISONS["losses"], "ocr", "pearson")
    means = table.groupby(["model", "peak_id"])["pearson"].mean().unstack(0)
    want = stats.wilcoxon(means["poisson"], means["aitac"])
    assert tests[1].pvalue == pytest.approx(want.pvalue)
    assert tests[1].n == N_OCRS
    assert tests[0].mean_diff == pytest.approx((means["bpaitac"] - means["aitac"]).mean())
    texts = " ".join(t.get_text() for t in ax.texts)
    assert f"p={want.pvalue:.2g}" in texts
    ticks = " ".join(t.get_text() for t in ax.get_xticklabels())
    assert "2 seeds" in ticks
    plt.close(fig)


def test_malformed_table_names_table_and_column(workdir, tmp_path):
    good = workdir["files"]["per_ocr"][0]
    bad = tmp_path / "per_ocr.tsv"
    pd.read_csv(good, sep="\t").drop(columns=["cv_quartile"]).to_csv(bad, sep="\t", index=False)
    inputs = figure_inputs(workdir, "fig1d")
    inputs["ocr"] = [bad, *inputs["ocr"][1:]]
    with pytest.raises(InputError) as err:
        P.load_figure_tables("fig1d", inputs)
    assert str(bad) in str(err.value) and "'cv_quartile'" in str(err.value)


class _Named(dict):
    """Stand-in for Snakemake's named lists (attribute access + items())."""

    __getattr__ = dict.__getitem__


def test_figure_script_fails_on_malformed_table(workdir, tmp_path):
    bad = tmp_path / "per_target.tsv"
    pd.read_csv(workdir["files"]["per_target"][0], sep="\t").drop(columns=["lineage"]).to_csv(
        bad, sep="\t", index=False
    )
    fake = _Named(
        input=_Named(target=[bad, *workdir["files"]["per_target"][1:]]),
        output=_Named(pdf=str(tmp_path / "fig1c.pdf"), png=str(tmp_path / "fig1c.png")),
        params=_Named(figure="fig1c", comparisons=COMPARISONS, lineages=LINEAGES),
        log=[str(tmp_path / "fig1c.log")],
    )
    with pytest.raises(InputError, match="lineage"):
        runpy.run_path(str(ROOT / "scripts" / "figure.py"), init_globals={"snakemake": fake})
    assert str(bad) in (tmp_path / "fig1c.log").read_text()
    assert not (tmp_path / "fig1c.pdf").exists() and not (tmp_path / "fig1c.png").exists()


def test_evaluate_script_evaluates_a_model_and_summarises(workdir, tmp_path):
    """scripts/evaluate.py: the four tables of one model and seed, then summary and comparisons."""
    run = workdir["root"] / "models" / "bpaitac" / "seed1"
    outputs = {name: str(tmp_path / f"{name}.tsv") for name in EP.LEVELS.values()}
    fake = _Named(
        rule="evaluate_model",
        input=_Named(predictions=[run / "predictions_test.npz"], celltypes=CELLTYPES_TSV),
        output=_Named(outputs),
        params=_Named(kind="celltypes", members={"bpaitac": None}, lineages=LINEAGES),
        wildcards=_Named(model="bpaitac", seed="1"),
        log=[str(tmp_path / "model.log")],
    )
    runpy.run_path(str(ROOT / "scripts" / "evaluate.py"), init_globals={"snakemake": fake})
    for name, path in outputs.items():
        want = workdir["root"] / "eval" / "bpaitac" / "seed1" / f"{name}.tsv"
        pd.testing.assert_frame_equal(pd.read_csv(path, sep="\t"), pd.read_csv(want, sep="\t"))
    fake = _Named(
        rule="evaluate_summary",
        input=_Named(workdir["files"]),
        output=_Named(
            summary=str(tmp_path / "summary.tsv"), comparisons=str(tmp_path / "comparisons.tsv")
        ),
        params=_Named(
            paper={"bpaitac": 0.384},
            labels={},
            comparisons={"main": COMPARISONS["main"]},
        ),
        log=[str(tmp_path / "summary.log")],
    )
    runpy.run_path(str(ROOT / "scripts" / "evaluate.py"), init_globals={"snakemake": fake})
    summary = pd.read_csv(tmp_path / "summary.tsv", sep="\t").set_index("model")
    assert summary.loc["bpaitac", "paper_per_ocr_pearson_mean"] == 0.384
    compared = pd.read_csv(tmp_path / "comparisons.tsv", sep="\t")
    assert compared[["reference", "model"]].values.tolist() == [["aitac", "bpaitac"]]


def test_bias_evaluation_scripts_score_and_compare_bias_models(tmp_path):
    """scripts/evaluate_bias.py: per-window scores of each bias model, then every pair."""
    torch = pytest.importorskip("torch")
    from bpaitac.model.network import build_model, save_model
    from bpaitac.model.predict import bias_profiles

    rng = np.random.default_rng(3)
    inputs = {}
    for s in EP.BIAS_SETS:
        inputs[f"{s}_seq"] = tmp_path / f"{s}_seq.npy"
        inputs[f"{s}_profile"] = tmp_path / f"{s}_profile.npy"
        np.save(inputs[f"{s}_seq"], rng.integers(0, 5, (7, 1000)).astype(np.uint8))
        np.save(inputs[f"{s}_profile"], rng.poisson(1.0, (7, 1, 250)).astype(np.uint16))
    spec = {"filters": 4, "dilated_blocks": 1, "acc_head": "globpool", "n_tasks": 1}
    names = ["pf", "closed"]
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        save_model(tmp_path / f"{name}.pt", build_model(spec), {"name": name})
        fake = _Named(
            rule="evaluate_bias_model",
            input=_Named(inputs, model=str(tmp_path / f"{name}.pt")),
            output=_Named(
                per_window=str(tmp_path / f"{name}.tsv"), predictions=str(tmp_path / f"{name}.npz")
            ),
            params=_Named(device="cpu"),
            config={"training": {"eval_batch_size": 3}},
            wildcards=_Named(bias_model=name),
            threads=1,
            log=[str(tmp_path / f"{name}.log")],
        )
        runpy.run_path(str(ROOT / "scripts" / "evaluate_bias.py"), init_globals={"snakemake": fake})
        table = pd.read_csv(tmp_path / f"{name}.tsv", sep="\t")
        assert tuple(table.columns) == M.BIAS_COLUMNS and len(table) == 7 * len(EP.BIAS_SETS)
        with np.load(tmp_path / f"{name}.npz") as got:
            model = build_model(spec)
            model.load_state_dict(torch.load(tmp_path / f"{name}.pt")["state_dict"])
            seq = np.load(inputs["closed_ocrs_seq"])
            np.testing.assert_array_equal(
                got["closed_ocrs"], bias_profiles(model, seq, batch_size=3)
            )
    fake = _Named(
        rule="compare_bias_models",
        input=_Named(predictions=[str(tmp_path / f"{n}.npz") for n in names]),
        output=_Named(pairs=str(tmp_path / "pairs.tsv")),
        params=_Named(bias_models=names),
        log=[str(tmp_path / "pairs.log")],
    )
    runpy.run_path(str(ROOT / "scripts" / "evaluate_bias.py"), init_globals={"snakemake": fake})
    pairs = pd.read_csv(tmp_path / "pairs.tsv", sep="\t")
    assert tuple(pairs.columns) == M.PAIR_COLUMNS and len(pairs) == 7 * len(EP.BIAS_SETS)


def test_check_comparisons_names_the_key():
    models = ["aitac", "bpaitac", "poisson", "lineages", "single", "lambda1", "shallow", "bin20"]
    WF.check_comparisons(COMPARISONS, models, ["pf", "closed"], list(WF.FIGURES))
    bad = {**COMPARISONS, "losses": {"AI-TAC": "aitac", "Typo": "poison"}}
    with pytest.raises(InputError, match=r"`comparisons\.losses\.Typo`: 'poison' is not defined"):
        WF.check_comparisons(bad, models, ["pf", "closed"], [])
    missing = {k: v for k, v in COMPARISONS.items() if k != "bins"}
    with pytest.raises(InputError, match=r"`comparisons\.bins` is missing: figure fig2f"):
        WF.check_comparisons(missing, models, ["pf", "closed"], ["fig2f"])
    WF.check_comparisons(missing, models, ["pf", "closed"], ["fig1b"])  # not requested: fine
    three = {**COMPARISONS, "main": {"a": "aitac", "b": "bpaitac", "c": "poisson"}}
    with pytest.raises(InputError, match="exactly two"):
        WF.check_comparisons(three, models, ["pf", "closed"], [])
    bias = {**COMPARISONS, "bias_models": {"x": "aitac"}}
    with pytest.raises(InputError, match=r"`comparisons\.bias_models\.x`.*`bias_models:`"):
        WF.check_comparisons(bias, models, ["pf", "closed"], [])
    assert WF.required_models(COMPARISONS, ["fig1b", "fig2f"]) == ["aitac", "bpaitac", "bin20"]


def test_figure_input_paths_follow_comparisons():
    evaluated = {
        m: {"seeds": [1, 2], "members": {m: None}} for c in COMPARISONS.values() for m in c.values()
    }
    evaluated["single"]["members"] = {"single.B": "B", "single.abT": "abT"}
    got = WF.figure_input_paths("fig2b", "demo", COMPARISONS, evaluated)
    assert list(got) == ["lineage_ocr"]
    assert got["lineage_ocr"][0] == "results/demo/eval/single/seed1/per_lineage_ocr.tsv"
    assert len(got["lineage_ocr"]) == 6  # 3 models x 2 seeds
    s4 = WF.figure_input_paths("figS4", "demo", COMPARISONS, evaluated)
    assert s4 == {
        "bias_pairs": ["results/demo/eval/bias_models/pairs.tsv"],
        "bias": [
            "results/demo/eval/bias_models/pf/per_window.tsv",
            "results/demo/eval/bias_models/closed/per_window.tsv",
        ],
    }
    s2 = WF.figure_input_paths("figS2", "demo", COMPARISONS, evaluated)
    assert set(s2) == {"target", "lineage"}
    assert len(s2["target"]) == len(set(s2["target"])) == 2 * 4  # aitac, bpaitac, poisson, lambda1
    assert EP.prediction_paths("demo", "single", 2, evaluated) == [
        "results/demo/models/single.B/seed2/predictions_test.npz",
        "results/demo/models/single.abT/seed2/predictions_test.npz",
    ]
    with pytest.raises(InputError, match=r"`comparisons\.bins` is missing: figure fig2f"):
        WF.figure_input_paths("fig2f", "demo", {"main": COMPARISONS["main"]}, evaluated)
