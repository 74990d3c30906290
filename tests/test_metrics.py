"""Evaluation metrics (bpaitac.evaluate.metrics), cross-checked against scipy on random data."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from bpaitac import numeric
from bpaitac.evaluate import metrics as M
from bpaitac.io import InputError
from bpaitac.numeric import bin_to
from bpaitac.workflow import evaluate_paths as EP
from bpaitac.workflow.config import model_catalogue

RNG = np.random.default_rng(7)


def random_pair(n=40, t=12, noise=0.7):
    x = RNG.normal(size=(n, t))
    return x, x + noise * RNG.normal(size=(n, t))


def test_rowwise_pearson_matches_scipy():
    x, y = random_pair()
    got = M.rowwise_pearson(x, y)
    want = [stats.pearsonr(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_rowwise_pearson_undefined_rows_are_nan():
    x, y = random_pair(n=4)
    x[1] = 3.0  # constant prediction
    y[2, 0] = np.nan
    got = M.rowwise_pearson(x, y)
    assert np.isnan(got[1]) and np.isnan(got[2])
    assert np.isfinite(got[[0, 3]]).all()
    assert np.isnan(M.rowwise_pearson(x[:, :1], y[:, :1])).all()  # one target: undefined


def test_rowwise_spearman_matches_scipy_with_ties():
    x = RNG.integers(0, 5, size=(30, 15)).astype(float)  # many ties
    y = x + RNG.integers(0, 3, size=x.shape)
    got = M.rowwise_spearman(x, y)
    want = [stats.spearmanr(a, b).statistic for a, b in zip(x, y)]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_profile_jsd_matches_scipy_and_bounds():
    obs = RNG.poisson(2.0, size=(10, 50)).astype(float)
    pred = RNG.dirichlet(np.ones(50), size=10)
    got = M.profile_jsd(obs, pred)
    want = [jensenshannon(o / o.sum(), p, base=2) ** 2 for o, p in zip(obs, pred)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    same = M.profile_jsd(obs, obs)
    np.testing.assert_allclose(same, 0.0, atol=1e-12)
    disjoint = M.profile_jsd(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(disjoint, [1.0])
    assert np.isnan(M.profile_jsd(np.zeros((1, 4)), np.ones((1, 4))))[0]


def test_lineage_means_average_in_linear_space():
    values = np.log1p(np.array([[1.0, 3.0, 10.0], [0.0, 2.0, 4.0]]))
    lin = {"a": "L1", "b": "L1", "c": "L2"}
    got, names = M.lineage_means(values, ["a", "b", "c"], lin, ["L2", "L1"])
    assert names == ["L2", "L1"]
    np.testing.assert_allclose(got, np.log1p([[10.0, 2.0], [4.0, 1.0]]))
    with pytest.raises(InputError, match="not in the cell-type table"):
        M.lineage_means(values, ["a", "b", "zz"], lin, ["L1"])


def test_coefficient_of_variation_and_quartiles():
    obs = np.log1p(RNG.gamma(2.0, 5.0, size=(40, 8)))
    cv = M.coefficient_of_variation(obs)
    lin = np.expm1(obs)
    np.testing.assert_allclose(cv, lin.std(axis=1) / lin.mean(axis=1))
    q = M.cv_quartiles(cv)
    assert sorted(pd.Series(q).value_counts().to_dict().items()) == [
        ("Q1", 10),
        ("Q2", 10),
        ("Q3", 10),
        ("Q4", 10),
    ]
    assert cv[q == "Q1"].max() <= cv[q == "Q2"].min()
    assert cv[q == "Q3"].max() <= cv[q == "Q4"].min()
    cv[0] = np.nan
    assert M.cv_quartiles(cv)[0] == ""


def make_predictions(n=30, targets=("a", "b", "c", "d"), profile=True, shuffle=False):
    obs = np.log1p(RNG.gamma(2.0, 3.0, size=(n, len(targets))))
    pred = obs + RNG.normal(0, 0.5, size=obs.shape)
    peaks = np.array([f"p{i}" for i in range(n)])
    prof = (RNG.uniform(size=obs.shape), RNG.uniform(size=obs.shape)) if profile else (None, None)
    return M.Predictions(peaks, tuple(targets), pred, obs, *prof)


def test_evaluate_predictions_tables_match_scipy():
    pred = make_predictions()
    lineage_of = {"a": "L1", "b": "L1", "c": "L2", "d": "L2"}
    tables = M.evaluate_predictions(pred, "m", 3, lineage_of, ["L1", "L2"])
    assert set(tables) == set(EP.LEVELS)
    for level, table in tables.items():
        assert tuple(table.columns) == M.LEVEL_COLUMNS[level]
        assert (table["model"] == "m").all() and (table["seed"] == 3).all()
    ocr = tables["ocr"]
    i = 5
    lin_pred, lin_obs = np.expm1(pred.acc_pred), np.expm1(pred.acc_obs)  # the paper's scale
    assert ocr["pearson"][i] == pytest.approx(stats.pearsonr(lin_pred[i], lin_obs[i])[0])
    assert ocr["pearson_log"][i] == pytest.approx(
        stats.pearsonr(pred.acc_pred[i], pred.acc_obs[i])[0]
    )
    assert ocr["pearson"][i] != pytest.approx(ocr["pearson_log"][i])
    assert ocr["spearman"][i] == pytest.approx(
        stats.spearmanr(pred.acc_pred[i], pred.acc_obs[i])[0]
    )
    assert ocr["profile_jsd"][i] == pytest.approx(pred.profile_jsd[i].mean())
    tgt = tables["target"].set_index("target")
    assert tgt.loc["c", "pearson"] == pytest.approx(
        stats.pearsonr(lin_pred[:, 2], lin_obs[:, 2])[0]
    )
    assert tgt.loc["c", "pearson_log"] == pytest.approx(
        stats.pearsonr(pred.acc_pred[:, 2], pred.acc_obs[:, 2])[0]
    )
    assert tgt.loc["c", "lineage"] == "L2"
    assert tgt.loc["b", "profile_r"] == pytest.approx(pred.profile_r[:, 1].mean())
    lx = np.log1p(np.expm1(pred.acc_pred[:, 2:]).mean(axis=1))
    ly = np.log1p(np.expm1(pred.acc_obs[:, 2:]).mean(axis=1))
    lin = tables["lineage"].set_index("lineage")
    assert lin.loc["L2", "pearson"] == pytest.approx(stats.pearsonr(np.expm1(lx), np.expm1(ly))[0])
    assert lin.loc["L2", "pearson_log"] == pytest.approx(stats.pearsonr(lx, ly)[0])
    assert len(tables["lineage_ocr"]) == 30  # two lineages: R = +-1 or NaN per OCR
    no_profile = M.evaluate_predictions(
        make_predictions(profile=False), "m", 1, lineage_of, ["L1", "L2"]
    )
    assert no_profile["ocr"]["profile_jsd"].isna().all()


def write_npz(path, pred, drop=None):
    arrays = {
        "peak_id": pred.peak_id,
        "targets": np.array(pred.targets),
        "acc_pred": pred.acc_pred.astype(np.float32),
        "acc_obs": pred.acc_obs.astype(np.float32),
    }
    if pred.has_profile:
        arrays.update(profile_jsd=pred.profile_jsd, profile_r=pred.profile_r)
    arrays.pop(drop, None)
    np.savez(path, **arrays)
    return path


def test_load_predictions_round_trip_and_errors(tmp_path):
    pred = make_predictions()
    got = M.load_predictions(write_npz(tmp_path / "ok.npz", pred))
    assert got.targets == pred.targets and got.has_profile
    np.testing.assert_allclose(got.acc_obs, pred.acc_obs.astype(np.float32))
    bad = write_npz(tmp_path / "bad.npz", pred, drop="acc_obs")
    with pytest.raises(InputError, match=r"bad\.npz.*acc_obs"):
        M.load_predictions(bad)
    arrays = dict(np.load(tmp_path / "ok.npz"))
    arrays["acc_pred"] = arrays["acc_pred"][:, :2]
    np.savez(tmp_path / "shape.npz", **arrays)
    with pytest.raises(InputError, match=r"shape\.npz.*`acc_pred` has shape"):
        M.load_predictions(tmp_path / "shape.npz")


def test_assemble_ensemble_aligns_members_on_peak_id():
    full = make_predictions(targets=("L1", "L2"))
    order = RNG.permutation(len(full.peak_id))
    members = []
    for j, lin in enumerate(full.targets):
        idx = order if j == 1 else np.arange(len(full.peak_id))  # second member shuffled
        members.append(
            (
                f"ens.{lin}",
                lin,
                M.Predictions(
                    full.peak_id[idx],
                    (lin,),
                    full.acc_pred[idx, j : j + 1],
                    full.acc_obs[idx, j : j + 1],
                ),
            )
        )
    ens = M.assemble_ensemble(members)
    assert ens.targets == ("L1", "L2") and not ens.has_profile
    np.testing.assert_array_equal(ens.acc_pred, full.acc_pred)
    np.testing.assert_array_equal(ens.acc_obs, full.acc_obs)
    short = M.Predictions(full.peak_id[:5], ("L2",), full.acc_pred[:5, 1:], full.acc_obs[:5, 1:])
    with pytest.raises(InputError, match="ens.L2: its test OCRs differ"):
        M.assemble_ensemble([members[0], ("ens.L2", "L2", short)])


def test_paired_wilcoxon_matches_scipy_on_shared_units():
    idx = [f"u{i}" for i in range(25)]
    a = pd.Series(RNG.normal(size=25), index=idx)
    b = pd.Series(a.to_numpy() + RNG.normal(0.3, 0.5, size=25), index=idx)
    b_shuffled = b.sample(frac=1.0, random_state=1)
    b_shuffled.iloc[0] = np.nan
    got = M.paired_wilcoxon(a, b_shuffled)
    keep = b.index != b_shuffled.index[0]
    want = stats.wilcoxon(b[keep], a[keep])
    assert got.n == 24
    assert got.pvalue == pytest.approx(want.pvalue)
    assert got.mean_diff == pytest.approx((b[keep] - a[keep]).mean())
    assert M.paired_wilcoxon(a, a).pvalue == 1.0
    assert np.isnan(M.paired_wilcoxon(a.iloc[:0], b.iloc[:0]).pvalue)


def test_summarise_averages_per_seed_values():
    tables = {level: [] for level in EP.LEVELS}
    lineage_of = {"a": "L1", "b": "L1", "c": "L2", "d": "L2"}
    for model in ("m1", "m2"):
        for seed in (1, 2):
            for level, t in M.evaluate_predictions(
                make_predictions(), model, seed, lineage_of, ["L1", "L2"]
            ).items():
                tables[level].append(t)
    tables = {k: pd.concat(v, ignore_index=True) for k, v in tables.items()}
    summary = M.summarise(tables, {"m1": 0.28}, {"m1": "Model one"}).set_index("model")
    assert tuple(summary.reset_index().columns) == M.SUMMARY_COLUMNS
    ocr = tables["ocr"][tables["ocr"]["model"] == "m2"]
    per_seed = ocr.groupby("seed")["pearson"].mean()
    assert summary.loc["m2", "per_ocr_pearson_mean"] == pytest.approx(per_seed.mean())
    assert summary.loc["m2", "per_ocr_pearson_mean_sd"] == pytest.approx(per_seed.std())
    med = ocr.groupby("seed")["pearson"].median().mean()
    assert summary.loc["m2", "per_ocr_pearson_median"] == pytest.approx(med)
    tgt = tables["target"][tables["target"]["model"] == "m1"]
    want = tgt.groupby("seed")["spearman"].mean().mean()
    assert summary.loc["m1", "per_target_spearman_mean"] == pytest.approx(want)
    assert summary.loc["m1", "n_seeds"] == 2 and summary.loc["m1", "seeds"] == "1,2"
    assert summary.loc["m1", "paper_per_ocr_pearson_mean"] == 0.28
    assert np.isnan(summary.loc["m2", "paper_per_ocr_pearson_mean"])
    assert summary.loc["m1", "label"] == "Model one" and summary.loc["m2", "label"] == "m2"


def test_evaluated_models_groups_single_lineage_members():
    config = {
        "celltypes": "config/celltypes.tsv",
        "celltypes_per_lineage": 1,
        "models": {
            "a": {"targets": "celltypes", "seeds": [1, 2], "label": "A"},
            "ens": {"targets": "single_lineage", "seeds": [3]},
        },
    }
    catalogue = model_catalogue(config)
    got = EP.evaluated_models(catalogue)
    assert list(got) == ["a", "ens"]
    assert got["a"] == {"kind": "celltypes", "label": "A", "seeds": [1, 2], "members": {"a": None}}
    assert got["ens"]["kind"] == "single_lineage" and got["ens"]["seeds"] == [3]
    members = got["ens"]["members"]
    assert len(members) == 10 and members["ens.B"] == "B"


def test_bias_tables_and_binning():
    obs = RNG.poisson(1.0, size=(6, 250)).astype(float)
    pred = RNG.dirichlet(np.ones(250), size=6)
    table = M.bias_window_table("bm", "protein_free", obs, pred)
    assert tuple(table.columns) == M.BIAS_COLUMNS
    assert table["pearson"][2] == pytest.approx(stats.pearsonr(obs[2], pred[2])[0])
    assert (table["n_insertions"] == obs.sum(axis=1)).all()
    pairs = M.bias_pair_table("x", "y", "closed_ocrs", pred, pred)
    np.testing.assert_allclose(pairs["pearson"], 1.0)
    binned = bin_to(obs, 50)
    np.testing.assert_allclose(binned[:, 0], obs[:, :5].sum(axis=1))
    with pytest.raises(ValueError, match="cannot bin"):
        bin_to(obs, 300)  # more bins than positions


def test_shared_maths_gives_numpy_and_torch_the_same_numbers():
    """bpaitac.numeric serves the evaluation (numpy) and the training (torch) alike."""
    torch = pytest.importorskip("torch")
    x, y = random_pair()
    x[1] = 3.0  # constant: NaN on both sides
    got = numeric.rowwise_pearson(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    np.testing.assert_allclose(got, M.rowwise_pearson(x, y), rtol=1e-12)
    obs = RNG.poisson(1.0, size=(6, 250)).astype(float)
    obs[0] = 0.0
    pred = RNG.dirichlet(np.ones(250), size=6)
    got = numeric.profile_jsd(torch.from_numpy(obs), torch.from_numpy(pred)).numpy()
    np.testing.assert_allclose(got, M.profile_jsd(obs, pred), rtol=1e-12)
    assert np.isnan(got[0])
    for n_bins in (250, 50, 25, 12):  # 12 bins of 20 bp: the central 240 bp
        binned = bin_to(torch.from_numpy(obs), n_bins).numpy()
        np.testing.assert_array_equal(binned, bin_to(obs, n_bins))
    np.testing.assert_array_equal(bin_to(obs, 12), obs[:, 5:245].reshape(6, 12, 20).sum(-1))


def test_read_metrics_table_names_file_and_column(tmp_path):
    path = tmp_path / "per_ocr.tsv"
    pd.DataFrame({"model": ["m"], "seed": [1], "peak_id": ["p"]}).to_csv(path, sep="\t")
    with pytest.raises(InputError) as err:
        M.read_metrics_table(path, M.LEVEL_COLUMNS["ocr"])
    assert str(path) in str(err.value) and "'pearson'" in str(err.value)
    with pytest.raises(InputError, match="not found"):
        M.read_metrics_table(tmp_path / "nope.tsv", ["model"])


def _ocr_rows(model: str, seeds: list[int], shift: float, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(len(model))
    base = np.linspace(-0.5, 0.9, n)
    rows = [
        {"model": model, "seed": s, "peak_id": f"p{i}", "pearson": v}
        for s in seeds
        for i, v in enumerate(base + shift + 0.01 * rng.standard_normal(n))
    ]
    return pd.DataFrame(rows)


def test_compare_models_decides_with_ocrs_and_seeds():
    ocr = pd.concat([_ocr_rows("aitac", [1, 2, 3], 0.0), _ocr_rows("bpaitac", [1, 2, 3], 0.1)])
    row = M.compare_models(ocr, "aitac", "bpaitac")
    assert row["decision"] == "better" and row["seed_pairs_better"] == 1.0
    assert row["n_ocrs"] == 60 and row["ocr_wilcoxon_p"] < 1e-6
    assert row["mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert row["reference_seed_means"].count(":") == 3
    assert M.compare_models(ocr, "bpaitac", "aitac")["decision"] == "worse"
    # Equal models: no decision.
    same = pd.concat([_ocr_rows("aitac", [1, 2], 0.0), _ocr_rows("aitacx", [1, 2], 0.0)])
    assert M.compare_models(same, "aitac", "aitacx")["decision"] == "undecided"
    table = M.comparison_table(
        ocr,
        {
            "main": {"AI-TAC": "aitac", "bpAI-TAC": "bpaitac"},
            "other": {"a": "aitac", "b": "missing"},
        },
    )
    assert list(table.columns) == list(M.COMPARISON_COLUMNS) and len(table) == 1
    with pytest.raises(InputError, match="missing"):
        M.compare_models(ocr, "aitac", "missing")
