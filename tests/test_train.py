"""Training: targets, batches, outputs per contract, resume after a kill, guards, bias models."""

import dataclasses
import itertools
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures import ARCH, CELLTYPES, TABLE, TRAINING, write_bias_set, write_dataset

import bpaitac.io
from bpaitac.data.batches import (
    Batch,
    BatchSource,
    epoch_flips,
    epoch_order,
    load_split,
    make_targets,
    reverse_complement_batch,
    target_log_means,
)
from bpaitac.data.sequence import one_hot
from bpaitac.model.network import load_model, resolve_device
from bpaitac.model.predict import write_bias_logits
from bpaitac.train.callbacks import Callback
from bpaitac.train.checkpoint import input_fingerprint, run_identity
from bpaitac.train.config import TrainingConfig, TrainingDiverged
from bpaitac.train.early_stopping import EarlyStopping
from bpaitac.train.loop import HISTORY_COLUMNS
from bpaitac.train.runs import fit_inputs, train_bias_model, train_catalogue_model
from bpaitac.workflow.train_paths import (
    RUNTIME_SETTINGS,
    bias_set_inputs,
    model_inputs,
    model_outputs,
    result_settings,
    run_entry,
    runtime_settings,
)

ROOT = Path(__file__).resolve().parent.parent
LINEAGE_OF = dict(zip(TABLE["celltype"], TABLE["lineage"]))
AITAC = {"arch": "a", "loss": "composite_ce", "lambda": 0.0, "bias": "none", "bin": 1,
         "targets": "celltypes", "seeds": [1], "mnll_weight": "normalised_total",
         "per_base_mse": "log1p", "per_base_counts": "raw"}  # fmt: skip
BPAITAC = {**AITAC, "lambda": 0.5, "bias": "bm"}
BIAS_ENTRY = {"data": "protein_free", "arch": "a", "loss": "mnll", "max_epochs": None}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return write_dataset(tmp_path_factory.mktemp("data"), bias_models=("bm",))


def run(data, out: Path, entry=AITAC, training=None, seed=1, **kw):
    bias = entry.get("bias", "none")
    bias_paths = {s: d / "bias" / f"{bias}.npy" for s, d in data.items()}
    return train_catalogue_model(
        name="m",
        entry=entry,
        arch=ARCH,
        training={**TRAINING, **(training or {})},
        lineage_of=LINEAGE_OF,
        seed=seed,
        split_dirs=data,
        bias_paths=None if bias == "none" else bias_paths,
        out_model=out / "model.pt",
        out_history=out / "history.tsv",
        out_predictions=out / "predictions_test.npz",
        **kw,
    )


class Killed(RuntimeError):
    """The test's stand-in for a job killed between epochs."""


class KillAfterEpoch(Callback):
    """Raise :class:`Killed` once ``epochs`` epochs are done (their checkpoint is written)."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, epoch, metrics):
        if epoch >= self.epochs:
            raise Killed(f"killed after epoch {epoch}")


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path)[0].state_dict()


def assert_same_weights(a: Path, b: Path) -> None:
    """Same parameters and the same buffers (batch-norm running statistics included)."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    assert any(k.endswith("running_mean") for k in wa)  # ARCH has batch norm (the default)
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# --------------------------------------------------------------------------- targets, data


def test_targets_celltypes_lineages_and_single_lineage():
    t = make_targets("celltypes", CELLTYPES, LINEAGE_OF)
    assert t.names == CELLTYPES and t.matrix is None
    t = make_targets("lineages", CELLTYPES, LINEAGE_OF)
    assert t.names == ["Stem&Prog", "B"]
    assert t.matrix.tolist() == [[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]]
    t = make_targets("lineage:B", CELLTYPES, LINEAGE_OF)
    assert t.names == ["B"] and t.matrix.tolist() == [[0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="lineage 'ILC' has no cell type"):
        make_targets("lineage:ILC", CELLTYPES, {**LINEAGE_OF, "ILC2.SI": "ILC"})
    with pytest.raises(ValueError, match="not in the cell-type table"):
        make_targets("lineages", [*CELLTYPES, "X.Sp"], LINEAGE_OF)


def test_batches_sum_lineage_profiles_and_average_totals(data):
    split = load_split(data["train"])
    targets = make_targets("lineages", split.celltypes, LINEAGE_OF)
    for preload in (True, False):
        src = BatchSource(split, targets, torch.device("cpu"), preload=preload)
        idx = np.array([7, 2, 30])
        batch = src.take(idx)
        rows = np.sort(idx)
        prof = np.asarray(split.profile[rows], dtype=np.float64)
        counts = np.asarray(split.counts[rows], dtype=np.float64)
        np.testing.assert_allclose(batch.profile[:, 0].numpy(), prof[:, :3].sum(1))
        np.testing.assert_allclose(batch.profile[:, 1].numpy(), prof[:, 3:].sum(1))
        np.testing.assert_allclose(batch.counts[:, 0].numpy(), counts[:, :3].mean(1), rtol=1e-6)
        np.testing.assert_allclose(batch.counts[:, 1].numpy(), counts[:, 3:].mean(1), rtol=1e-6)
        assert torch.equal(batch.x, one_hot(torch.from_numpy(np.asarray(split.seq[rows]))))
        assert batch.bias is None


def test_target_log_means_start_the_model_at_the_training_mean(data, tmp_path):
    split = load_split(data["train"])
    counts = np.asarray(split.counts, dtype=np.float64)
    means = target_log_means(split, make_targets("lineages", split.celltypes, LINEAGE_OF))
    expected = [np.log1p(counts[:, :3].mean(1)).mean(), np.log1p(counts[:, 3:].mean(1)).mean()]
    np.testing.assert_allclose(means, expected, rtol=1e-6)
    run(data, tmp_path, training={"learning_rate": 1e-12, "max_epochs": 1})
    model, _ = load_model(tmp_path / "model.pt")
    offsets = model.acc_head.linear.bias.detach().numpy()
    # acc_output relu_linear (the schema's default): the linear count whose log1p is the mean.
    assert model.spec.acc_output == "relu_linear"
    np.testing.assert_allclose(offsets, np.expm1(np.log1p(counts).mean(0)), rtol=1e-5)


def test_large_uint16_counts_survive_the_int16_storage(tmp_path, data):
    d = tmp_path / "big"
    d.mkdir()
    for name in ("seq.npy", "counts.npy", "celltypes.txt", "ocrs.tsv"):
        (d / name).write_bytes((data["val"] / name).read_bytes())
    profile = np.load(data["val"] / "profile.npy")
    profile[0, 0, 0] = 65535
    np.save(d / "profile.npy", profile)
    src = BatchSource(load_split(d), None, torch.device("cpu"), preload=True)
    assert src.take(np.array([0])).profile[0, 0, 0].item() == 65535.0


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_order(50, seed=3, epoch=1)
    assert np.array_equal(a, epoch_order(50, seed=3, epoch=1))
    assert sorted(a) == list(range(50))
    assert not np.array_equal(a, epoch_order(50, seed=3, epoch=2))
    assert not np.array_equal(a, epoch_order(50, seed=4, epoch=1))


def test_epoch_flips_are_a_random_half_fixed_by_seed_and_epoch():
    a = epoch_flips(51, seed=3, epoch=1)
    assert a.dtype == bool and a.sum() == 25
    assert np.array_equal(a, epoch_flips(51, seed=3, epoch=1))
    assert not np.array_equal(a, epoch_flips(51, seed=3, epoch=2))
    assert not np.array_equal(a, epoch_flips(51, seed=4, epoch=1))


def _rc_indices(seq: np.ndarray) -> np.ndarray:
    """Reverse complement of base indices A,C,G,T,N = 0..4 (N stays N)."""
    return np.where(seq < 4, 3 - seq, 4)[:, ::-1]


def test_reverse_complement_batch_flips_chosen_rows():
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 5, size=(4, 1000)).astype(np.uint8)
    seq[0, :6] = [0, 1, 2, 3, 4, 0]  # A C G T N A
    profile = torch.from_numpy(rng.poisson(1.0, size=(4, 3, 250)).astype(np.float32))
    counts, bias = torch.rand(4, 3), torch.randn(4, 250)
    batch = Batch(one_hot(torch.from_numpy(seq)), profile, counts, bias)
    flip = np.array([True, False, True, False])
    rc = reverse_complement_batch(batch, flip)
    expected_seq = np.where(flip[:, None], _rc_indices(seq), seq)
    assert torch.equal(rc.x, one_hot(torch.from_numpy(np.ascontiguousarray(expected_seq))))
    # A<->T, C<->G, N stays N, read from the end
    assert [int(i) for i in _rc_indices(seq[:1])[0, -6:]] == [3, 4, 0, 1, 2, 3]
    tail = rc.x[0, :, -6:]  # one-hot of T N A C G T
    assert tail[:, [0, 2, 3, 4, 5]].argmax(0).tolist() == [3, 0, 1, 2, 3]
    assert tail[:, 1].sum() == 0 and tail.sum() == 5  # the N column stays all zeros
    assert torch.equal(rc.profile[0], profile[0].flip(-1))
    assert torch.equal(rc.profile[1], profile[1])
    assert torch.equal(rc.bias[2], bias[2].flip(-1)) and torch.equal(rc.bias[3], bias[3])
    assert rc.counts is counts  # totals do not change
    twice = reverse_complement_batch(rc, flip)
    for a, b in [(twice.x, batch.x), (twice.profile, profile), (twice.bias, bias)]:
        assert torch.equal(a, b)
    none = reverse_complement_batch(Batch(batch.x, profile, None, None), flip)
    assert none.bias is None and none.counts is None
    assert reverse_complement_batch(batch, np.zeros(4, dtype=bool)) is batch
    with pytest.raises(ValueError, match="flip mask"):
        reverse_complement_batch(batch, np.ones(3, dtype=bool))


def test_batch_source_flips_rows_by_index_whatever_the_batch_order(data):
    split = load_split(data["train"], bias_path=data["train"] / "bias" / "bm.npy")
    src = BatchSource(split, None, torch.device("cpu"), preload=True)
    flips = epoch_flips(len(src), seed=1, epoch=1)
    idx = np.array([9, 3, 20, 4])
    plain, flipped = src.take(idx), src.take(idx, flips)
    for j, row in enumerate(np.sort(idx)):
        x, prof, b = plain.x[j], plain.profile[j], plain.bias[j]
        if flips[row]:
            x, prof, b = x.flip(0, 1), prof.flip(-1), b.flip(-1)
        assert torch.equal(flipped.x[j], x) and torch.equal(flipped.profile[j], prof)
        assert torch.equal(flipped.bias[j], b)


def test_resolve_device_accepts_auto_and_names_bad_values():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="config key `device`.*'tpu'.*cpu, cuda, auto"):
        resolve_device("tpu")


def test_load_split_errors_name_the_file(tmp_path, data):
    d = tmp_path / "bad"
    d.mkdir()
    np.save(d / "seq.npy", np.zeros((3, 1000), dtype=np.int64))
    with pytest.raises(ValueError, match=r"bad/seq\.npy: must be uint8"):
        load_split(d)
    with pytest.raises(FileNotFoundError, match=r"missing/seq\.npy.*preprocessing"):
        load_split(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"bias/bm\.npy: must be float32 \(24, 250\)"):
        load_split(data["val"], bias_path=data["train"] / "bias" / "bm.npy")


def test_training_config_rejects_unknown_keys_and_matches_schema_defaults():
    with pytest.raises(ValueError, match="training.lr"):
        TrainingConfig.from_dict({"lr": 0.1})
    schema = yaml.safe_load((ROOT / "workflow/schemas/train.schema.yaml").read_text())
    props = schema["$defs"]["training"]["properties"]
    assert set(props) == {f.name for f in dataclasses.fields(TrainingConfig)}
    defaults = dataclasses.asdict(TrainingConfig.from_dict({}))  # filled from the schema
    for name, prop in props.items():
        assert prop["default"] == defaults[name], name
    with pytest.raises(ValueError, match="training.batch_size"):
        TrainingConfig.from_dict({"batch_size": 0})


def test_runtime_settings_leave_the_run_identity_and_the_params_alone():
    cfg = TrainingConfig.from_dict(TRAINING)
    runtime = dataclasses.replace(
        cfg, progress=not cfg.progress, check_every=7, preload="never", preload_max_gb=1.0,
        eval_batch_size=3,
    )  # fmt: skip
    assert run_identity("model", AITAC, cfg) == run_identity("model", AITAC, runtime)
    full = dataclasses.asdict(cfg)
    params, rest = result_settings(full), runtime_settings(full)
    assert set(rest) == set(RUNTIME_SETTINGS) and not set(params) & set(rest)
    assert {**params, **rest} == full
    assert TrainingConfig.from_dict({**params, **rest}) == cfg


def test_early_stopping_counts_patience_and_its_state_round_trips():
    stopping = EarlyStopping("val_r_across_ocrs", patience=2, min_delta=0.1)
    assert stopping.step(1, {"val_r_across_ocrs": float("nan")}) is False  # never an improvement
    assert stopping.step(2, {"val_r_across_ocrs": 0.3}) is True
    assert stopping.step(3, {"val_r_across_ocrs": 0.35}) is False  # within min_delta
    assert not stopping.should_stop
    resumed = EarlyStopping("val_r_across_ocrs", patience=2, min_delta=0.1)
    resumed.load_state_dict(stopping.state_dict())
    assert resumed == stopping and resumed.state_dict() == {
        "best": 0.3, "best_epoch": 2, "bad_epochs": 1,
    }  # fmt: skip
    assert resumed.step(4, {"val_r_across_ocrs": 0.2}) is False and resumed.should_stop
    assert EarlyStopping("val_loss", patience=1).step(1, {"val_loss": 2.0})  # lower is better
    with pytest.raises(ValueError, match="monitor 'loss' is not one of"):
        EarlyStopping("loss", patience=1)


def test_training_paths_follow_the_contract():
    files = model_inputs("demo", {"bias": "deep"})
    assert files["train"][0] == "results/demo/data/train/seq.npy"
    assert files["bias_test"] == "results/demo/data/test/bias/deep.npy"
    assert "bias_train" not in model_inputs("demo", {"bias": "none"})
    assert bias_set_inputs("demo", "closed_ocrs")["val"] == [
        "results/demo/data/bias_sets/closed_ocrs/val/seq.npy",
        "results/demo/data/bias_sets/closed_ocrs/val/profile.npy",
    ]
    assert run_entry({**AITAC, "label": "AI-TAC"}) == {
        k: v for k, v in AITAC.items() if k != "seeds"
    }
    assert model_outputs("demo", [("aitac", 2)])[2] == (
        "results/demo/models/aitac/seed2/predictions_test.npz"
    )


# --------------------------------------------------------------------------- training runs


def test_aitac_outputs_follow_the_contract(data, tmp_path):
    out = tmp_path / "aitac"
    result = run(data, out)
    z = np.load(out / "predictions_test.npz")
    n = len(np.load(data["test"] / "seq.npy"))
    assert set(z.files) == {"peak_id", "targets", "acc_pred", "acc_obs"}  # no profile head
    assert z["acc_pred"].shape == z["acc_obs"].shape == (n, len(CELLTYPES))
    assert z["acc_pred"].dtype == np.float32
    assert list(z["targets"]) == CELLTYPES
    assert z["peak_id"][0] == "ImmGenATAC1219.peak_test0"
    counts = np.load(data["test"] / "counts.npy")
    np.testing.assert_allclose(z["acc_obs"], np.log1p(counts), rtol=1e-6)
    history = (out / "history.tsv").read_text().splitlines()
    assert history[0].split("\t") == list(HISTORY_COLUMNS)
    assert len(history) == 1 + TRAINING["max_epochs"] == 1 + len(result.history)
    assert not (out / "checkpoint.pt").exists()
    model, spec = load_model(out / "model.pt")
    assert spec["targets"] == CELLTYPES and spec["entry"]["lambda"] == 0.0
    assert spec["model_spec"]["n_tasks"] == len(CELLTYPES)
    assert sorted(p.name for p in out.iterdir()) == [
        "history.tsv", "model.pt", "predictions_test.npz",
    ]  # fmt: skip


def test_bpaitac_with_bias_bins_and_lineages_writes_profile_metrics(data, tmp_path):
    entry = {**BPAITAC, "loss": "composite_mnll", "bin": 5, "targets": "lineages"}
    run(data, tmp_path, entry=entry)
    z = np.load(tmp_path / "predictions_test.npz")
    n = len(np.load(data["test"] / "seq.npy"))
    assert list(z["targets"]) == ["Stem&Prog", "B"]
    assert z["profile_jsd"].shape == z["profile_r"].shape == (n, 2)
    finite = np.isfinite(z["profile_jsd"])
    assert finite.mean() > 0.5
    assert ((z["profile_jsd"][finite] >= 0) & (z["profile_jsd"][finite] <= 1)).all()
    counts = np.load(data["test"] / "counts.npy")
    np.testing.assert_allclose(z["acc_obs"][:, 1], np.log1p(counts[:, 3:].mean(1)), rtol=1e-6)


@pytest.mark.parametrize("loss", ["poisson", "mse"])
def test_per_base_losses_train_and_report_profiles(data, tmp_path, loss):
    run(data, tmp_path, entry={**AITAC, "loss": loss, "targets": "lineage:B"},
        training={"max_epochs": 1})  # fmt: skip
    z = np.load(tmp_path / "predictions_test.npz")
    assert list(z["targets"]) == ["B"] and "profile_r" in z.files


def test_training_is_deterministic_per_seed(data, tmp_path):
    run(data, tmp_path / "a", training={"max_epochs": 2})
    run(data, tmp_path / "b", training={"max_epochs": 2})
    run(data, tmp_path / "c", training={"max_epochs": 2}, seed=2)
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")
    wa, wc = weights(tmp_path / "a" / "model.pt"), weights(tmp_path / "c" / "model.pt")
    assert not torch.equal(wa["input_conv.weight"], wc["input_conv.weight"])


def test_model_records_the_torch_thread_count_it_was_trained_with(data, tmp_path):
    """The weights repeat only for the same thread count, so model.pt says which it was."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        run(data, tmp_path, training={"max_epochs": 1})
    finally:
        torch.set_num_threads(before)
    spec = torch.load(tmp_path / "model.pt", weights_only=False)["spec"]
    assert spec["torch_threads"] == 1


def test_preloaded_and_memory_mapped_batches_train_identically(data, tmp_path):
    run(data, tmp_path / "a", training={"max_epochs": 1, "preload": "always"})
    run(data, tmp_path / "b", training={"max_epochs": 1, "preload": "never"})
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


@pytest.mark.parametrize("rc", [False, True], ids=["plain", "reverse_complement"])
def test_resume_after_stop_gives_the_uninterrupted_weights(data, tmp_path, caplog, rc):
    full, part = tmp_path / "full", tmp_path / "part"
    training = {"reverse_complement": rc}
    run(data, full, entry=BPAITAC, training=training)
    with pytest.raises(Killed):
        run(data, part, entry=BPAITAC, training=training, callbacks=[KillAfterEpoch(1)])
    assert (part / "checkpoint.pt").exists() and not (part / "model.pt").exists()
    saved = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    stats = [k for k in saved if k.endswith(("running_mean", "running_var"))]
    assert stats and not all(  # batch-norm statistics moved in epoch 1 and are checkpointed
        torch.equal(saved[k], torch.zeros_like(saved[k]) if "mean" in k else torch.ones_like(
            saved[k])) for k in stats
    )  # fmt: skip
    with caplog.at_level(logging.INFO, logger="bpaitac.train"):
        result = run(data, part, entry=BPAITAC, training=training)
    assert "resuming" in caplog.text and "after epoch 1" in caplog.text
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert_same_weights(full / "model.pt", part / "model.pt")  # running statistics included
    assert not (part / "checkpoint.pt").exists()


def test_reverse_complement_changes_training_and_the_run_identity(data, tmp_path):
    run(data, tmp_path / "plain", training={"max_epochs": 1})
    run(data, tmp_path / "rc", training={"max_epochs": 1, "reverse_complement": True})
    wa, wb = weights(tmp_path / "plain" / "model.pt"), weights(tmp_path / "rc" / "model.pt")
    assert not torch.equal(wa["input_conv.weight"], wb["input_conv.weight"])
    cfg = TrainingConfig.from_dict(TRAINING)
    flipped = dataclasses.replace(cfg, reverse_complement=True)
    assert run_identity("model", AITAC, cfg) != run_identity("model", AITAC, flipped)


def test_batchnorm_trains_in_train_mode_and_predicts_in_eval_mode(data, tmp_path, monkeypatch):
    import bpaitac.train.runs as train_module

    calls: list[tuple[bool, bool]] = []  # (gradients on, BN in training mode) per forward
    real_build = train_module.build_model

    def build(spec):
        model = real_build(spec)
        model.blocks[0].bn.register_forward_hook(
            lambda mod, inputs, out: calls.append((torch.is_grad_enabled(), mod.training))
        )
        return model

    monkeypatch.setattr(train_module, "build_model", build)
    run(data, tmp_path, training={"max_epochs": 2})
    phases = [k for k, _ in itertools.groupby(calls)]
    # epoch 1 steps, validation, epoch 2 steps (train mode again), validation + test predictions
    assert phases == [(True, True), (False, False), (True, True), (False, False)]


KILL_SCRIPT = """
import os, signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
import torch
torch.set_num_threads({threads})
from test_train import run, BPAITAC
from pathlib import Path
from bpaitac.train.callbacks import Callback

class KillMidEpoch(Callback):
    def on_batch_end(self, epoch, step, loss):
        if (epoch, step) == (2, 2):
            os.kill(os.getpid(), signal.SIGKILL)

data = {{s: Path(p) for s, p in {data!r}.items()}}
run(data, Path({out!r}), entry=BPAITAC, callbacks=[KillMidEpoch()])
"""


def test_sigkill_mid_epoch_then_rerun_gives_the_uninterrupted_weights(data, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(data, full, entry=BPAITAC)
    code = KILL_SCRIPT.format(
        tests=str(ROOT / "tests"),
        root=str(ROOT),
        threads=torch.get_num_threads(),
        data={s: str(p) for s, p in data.items()},
        out=str(killed),
    )
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert (killed / "checkpoint.pt").exists() and not (killed / "model.pt").exists()
    assert not [p for p in killed.iterdir() if p.name.startswith(".")]  # no temp files left
    saved = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert saved["epoch"] == 1  # epoch 2 was in progress
    run(data, killed, entry=BPAITAC)
    assert_same_weights(full / "model.pt", killed / "model.pt")
    assert (full / "history.tsv").read_text().count("\n") == (
        (killed / "history.tsv").read_text().count("\n")
    )
    assert os.path.exists(killed / "predictions_test.npz")


def test_checkpoint_of_another_config_is_ignored(data, tmp_path, caplog):
    with pytest.raises(Killed):
        run(data, tmp_path, callbacks=[KillAfterEpoch(1)])
    with caplog.at_level(logging.WARNING, logger="bpaitac.train"):
        result = run(data, tmp_path, training={"learning_rate": 0.01, "max_epochs": 1})
    assert "another config" in caplog.text
    assert [h["epoch"] for h in result.history] == [1]


def test_checkpoint_of_other_data_is_discarded(tmp_path, caplog):
    """Killed after epoch 1, the split arrays rebuilt (another split of the OCRs), rerun: the
    checkpoint is discarded with a log line saying why, and the weights are those of a run from
    scratch on the new arrays (issue 22)."""
    data, new = write_dataset(tmp_path / "data"), write_dataset(tmp_path / "new", seed=1)
    with pytest.raises(Killed):
        run(data, tmp_path / "out", callbacks=[KillAfterEpoch(1)])
    assert (tmp_path / "out" / "checkpoint.pt").exists()
    for split in ("train", "val"):  # preprocessing rewrote the arrays
        shutil.rmtree(data[split])
        shutil.copytree(new[split], data[split])
    with caplog.at_level(logging.INFO, logger="bpaitac.train"):
        result = run(data, tmp_path / "out")
    assert (
        "discarded checkpoint " + str(tmp_path / "out" / "checkpoint.pt") + ": it was written for "
        "other input data (train/counts.npy, train/profile.npy, train/seq.npy, val/counts.npy, "
        "val/profile.npy, val/seq.npy changed since); training from scratch" in caplog.text
    )
    assert "resuming" not in caplog.text and [h["epoch"] for h in result.history] == [1, 2, 3]
    run({**data, "train": new["train"], "val": new["val"]}, tmp_path / "scratch")
    assert_same_weights(tmp_path / "scratch" / "model.pt", tmp_path / "out" / "model.pt")


def test_a_run_failing_after_fitting_removes_its_checkpoint(data, tmp_path, monkeypatch, caplog):
    """A crash while writing the outputs (after the last epoch) leaves no checkpoint that a
    rerun on fixed data could resume with zero epochs left, and no outputs (issue 22)."""
    import bpaitac.train.runs as train_module

    def broken(*args, **kwargs):
        raise KeyError("acc_pred")

    monkeypatch.setattr(train_module, "write_predictions", broken)
    with caplog.at_level(logging.ERROR, logger="bpaitac.train"), pytest.raises(KeyError):
        run(data, tmp_path, training={"max_epochs": 1})
    assert "m/seed1: failed after fitting; removed " + str(tmp_path / "checkpoint.pt") in (
        caplog.text
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no checkpoint, outputs or temps


def test_input_fingerprint_follows_content_not_dates(data, tmp_path, monkeypatch):
    files = fit_inputs(data)
    before = input_fingerprint(files)
    names = ("celltypes.txt", "counts.npy", "profile.npy", "seq.npy")
    assert sorted(before) == [f"{s}/{n}" for s in ("train", "val") for n in names]
    copy = tmp_path / "train"
    shutil.copytree(data["train"], copy)
    os.utime(copy / "seq.npy", (1e9, 1e9))
    assert input_fingerprint(fit_inputs({**data, "train": copy})) == before
    seq = np.load(copy / "seq.npy")
    seq[-1, -1] = (seq[-1, -1] + 1) % 4  # one base of the last OCR
    np.save(copy / "seq.npy", seq)
    changed = input_fingerprint(fit_inputs({**data, "train": copy}))
    assert changed["train/seq.npy"] != before["train/seq.npy"]
    # Files above DIGEST_WHOLE_BYTES are sampled in blocks, the last block included.
    monkeypatch.setattr(bpaitac.io, "DIGEST_WHOLE_BYTES", 1 << 12)
    monkeypatch.setattr(bpaitac.io, "DIGEST_BLOCK_BYTES", 1 << 8)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(1 << 16))
    digest = bpaitac.io.sampled_digest(big)
    big.write_bytes(bytes((1 << 16) - 1) + b"\x01")
    assert bpaitac.io.sampled_digest(big) != digest


def test_early_stopping_keeps_the_best_epoch(data, tmp_path):
    # A vanishing learning rate: no epoch improves by min_delta after the first.
    result = run(data, tmp_path, training={"learning_rate": 1e-12, "min_delta": 0.5,
                                           "patience": 2, "max_epochs": 10})  # fmt: skip
    assert len(result.history) == 3 and result.best_epoch == 1


def test_divergence_guard_stops_with_a_clear_message(data, tmp_path):
    bad = {s: tmp_path / "data" / s for s in data}
    for s, d in data.items():
        bad[s].mkdir(parents=True)
        for f in d.iterdir():
            if f.is_file():
                (bad[s] / f.name).write_bytes(f.read_bytes())
    counts = np.load(bad["train"] / "counts.npy")
    counts[5, 0] = np.nan
    np.save(bad["train"] / "counts.npy", counts)
    with pytest.raises(TrainingDiverged, match=r"m/seed1.*epoch 1.*learning_rate"):
        run(bad, tmp_path / "out", training={"check_every": 1})
    assert not (tmp_path / "out" / "model.pt").exists()


def test_bias_model_and_its_logits(data, tmp_path):
    sets = write_bias_set(tmp_path / "bias_set")
    out = tmp_path / "bias_model"
    result = train_bias_model(
        name="bm",
        bias_entry={**BIAS_ENTRY, "loss": "jsd"},
        arch=ARCH,
        training={**TRAINING, "max_epochs": 2},
        seed=0,
        split_dirs=sets,
        out_model=out / "model.pt",
        out_history=out / "history.tsv",
    )
    assert len(result.history) == 2 and not (out / "checkpoint.pt").exists()
    paths = {s: tmp_path / "logits" / s / "bm.npy" for s in data}
    write_bias_logits(
        model_path=out / "model.pt",
        seq_paths={s: d / "seq.npy" for s, d in data.items()},
        out_paths=paths,
        batch_size=7,
    )
    model, spec = load_model(out / "model.pt")
    assert spec["model_spec"]["n_tasks"] == 1
    seq = np.load(data["val"] / "seq.npy")
    logits = np.load(paths["val"])
    assert logits.shape == (len(seq), 250) and logits.dtype == np.float32
    with torch.no_grad():
        expected = model(one_hot(torch.from_numpy(seq)))[0][:, 0].numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_bias_set_with_several_tracks_is_rejected(tmp_path, data):
    with pytest.raises(ValueError, match=r"needs one track"):
        train_bias_model(
            name="bm",
            bias_entry=BIAS_ENTRY,
            arch=ARCH,
            training=TRAINING,
            seed=0,
            split_dirs={"train": data["train"], "val": data["val"]},
            out_model=tmp_path / "model.pt",
            out_history=tmp_path / "history.tsv",
        )


# --------------------------------------------------------------------------------------------
# The CUDA options (bf16 autocast, torch.compile) exercised on the CPU: the workflow enables them
# only on CUDA, but the network and the step code must be autocast- and compile-safe anywhere.


def _bpaitac_batch(data):
    split = load_split(data["train"], bias_path=data["train"] / "bias" / "bm.npy")
    targets = make_targets("celltypes", CELLTYPES, LINEAGE_OF)
    src = BatchSource(split, targets, torch.device("cpu"), preload=True)
    return src, targets


def _small_model(n_tasks: int):
    from bpaitac.model.network import build_model

    torch.manual_seed(0)
    return build_model({**ARCH, "n_tasks": n_tasks})


def test_bf16_autocast_step_and_prediction_run_on_cpu(data):
    from bpaitac.model.losses import model_loss
    from bpaitac.model.predict import predict_batches
    from bpaitac.train.loop import make_optimiser, train_step

    src, targets = _bpaitac_batch(data)
    model = _small_model(targets.n_tasks)
    batch = src.take(np.arange(8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits, log_counts = model(batch.x, batch.bias)
    # Bias logits span several units: they are added in float32 also under bf16 autocast; the
    # log1p of a relu_linear head's counts is taken in float32 too.
    assert model.spec.acc_output == "relu_linear"
    assert logits.dtype == torch.float32 and log_counts.dtype == torch.float32
    eager = predict_batches(model, src.batches(16), with_profile=True, amp=False)
    mixed = predict_batches(model, src.batches(16), with_profile=True, amp=True)
    np.testing.assert_allclose(mixed["acc_pred"], eager["acc_pred"], atol=0.05)
    np.testing.assert_allclose(mixed["profile_jsd"], eager["profile_jsd"], atol=0.02)

    def loss_fn(lg, lc, b):
        return model_loss("composite_ce", 0.5, lg, lc, b.profile, b.counts)

    before = [p.detach().clone() for p in model.parameters()]
    optimiser = make_optimiser(model, 1e-3)
    loss = train_step(model, optimiser, batch, loss_fn, amp=True, grad_clip=1.0)
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay fp32
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("cc") is None, reason="torch.compile's CPU backend needs a C compiler"
)
def test_compiled_network_matches_eager_on_cpu(data):
    src, targets = _bpaitac_batch(data)
    model = _small_model(targets.n_tasks)
    batch = src.take(np.arange(8))
    compiled = torch.compile(model)
    logits, log_counts = model(batch.x, batch.bias)
    c_logits, c_counts = compiled(batch.x, batch.bias)
    torch.testing.assert_close(c_logits, logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(c_counts, log_counts, atol=1e-4, rtol=1e-4)
    (c_logits.logsumexp(-1).sum() + c_counts.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
