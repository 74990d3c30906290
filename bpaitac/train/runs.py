"""Training runs: a catalogue model for one seed, or a Tn5 bias model, and their outputs.

Catalogue models (:func:`train_catalogue_model`) read the split arrays of docs/contracts.md and
train on the catalogue entry's loss; bias models (:func:`train_bias_model`) train one task on a
bias set with a profile-only loss. Both go through :func:`fit_and_save`: fit
(:func:`bpaitac.train.loop.fit`), then ``history.tsv`` and ``model.pt``; the checkpoint is removed
once every output exists, and also when writing them fails (a rerun then trains from scratch
instead of resuming a finished fit, possibly of data since fixed). The run's identity fingerprints
the files it is fitted on (:func:`fit_inputs`), so a checkpoint of other data is discarded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from bpaitac.data.batches import (
    Batch,
    BatchSource,
    SplitArrays,
    TargetMap,
    load_split,
    make_targets,
    target_log_means,
    train_val_sources,
)
from bpaitac.io import atomic_path
from bpaitac.model.losses import model_loss, profile_loss, uses_profile
from bpaitac.model.network import (
    BpAITAC,
    ModelSpec,
    build_model,
    count_parameters,
    resolve_device,
    save_model,
    spec_from_config,
)
from bpaitac.model.predict import mean_r_across_targets, predict_batches, write_predictions
from bpaitac.train.callbacks import Callback
from bpaitac.train.checkpoint import input_fingerprint, run_identity, seed_everything
from bpaitac.train.config import TrainingConfig
from bpaitac.train.early_stopping import choose_monitor
from bpaitac.train.loop import HISTORY_COLUMNS, FitResult, LossFn, fit
from bpaitac.workflow.splits import FIT_SPLITS, HELD_OUT, SPLITS

log = logging.getLogger(__name__)


def write_history(path: str | os.PathLike, history: list[dict[str, float]]) -> None:
    """Write ``history.tsv`` atomically (columns :data:`~bpaitac.train.loop.HISTORY_COLUMNS`)."""
    table = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")


def fit_inputs(
    split_dirs: Mapping[str, str | os.PathLike],
    bias_paths: Mapping[str, str | os.PathLike] | None = None,
    names: Sequence[str] = ("seq.npy", "profile.npy", "counts.npy", "celltypes.txt"),
) -> dict[str, Path]:
    """The files a fit reads, by label (``train/seq.npy``, ``val/bias``): ``names`` of the
    train and val splits and their bias logits. The test split does not change the weights."""
    files = {f"{s}/{n}": Path(split_dirs[s]) / n for s in FIT_SPLITS for n in names}
    for s in FIT_SPLITS if bias_paths else ():
        files[f"{s}/bias"] = Path(bias_paths[s])
    return files


def new_model(spec: ModelSpec, seed: int, device: torch.device) -> BpAITAC:
    """The network of ``spec`` initialised from ``seed`` (every RNG seeded first), on ``device``."""
    seed_everything(seed)
    return build_model(spec).to(device)


def fit_and_save(
    model: BpAITAC,
    splits: Mapping[str, SplitArrays],
    targets: TargetMap | None,
    loss_fn: LossFn,
    cfg: TrainingConfig,
    *,
    device: torch.device,
    seed: int,
    monitor: str,
    identity: dict[str, Any],
    name: str,
    meta: dict[str, Any],
    out_model: str | os.PathLike,
    out_history: str | os.PathLike,
    callbacks: Sequence[Callback] = (),
    write_outputs: Callable[[BpAITAC, FitResult], None] | None = None,
    extra_outputs: Sequence[str | os.PathLike] = (),
) -> FitResult:
    """Fit ``model`` on the train/val ``splits`` (checkpoint beside ``out_model``), then write
    ``write_outputs``' files (``extra_outputs``), ``history.tsv`` and ``model.pt`` (``meta`` +
    best epoch) and remove the checkpoint. When writing fails, the checkpoint and every output
    are removed before the error propagates.

    The weights are reproducible for the same device and the same number of torch threads
    (Snakemake's ``threads``): a different thread count sums in another order, and training
    grows those rounding differences into seed-sized ones. The count is logged and stored.
    """
    threads = torch.get_num_threads()
    log.info(
        "%s: %d torch thread(s) on %s (results repeat for the same count)", name, threads, device
    )
    train, val = train_val_sources(
        splits,
        targets,
        device,
        preload=cfg.preload,
        preload_max_gb=cfg.preload_max_gb,
    )
    checkpoint = Path(out_model).parent / "checkpoint.pt"
    result = fit(
        model,
        train,
        val,
        loss_fn,
        cfg,
        seed=seed,
        checkpoint=checkpoint,
        monitor=monitor,
        identity=identity,
        name=name,
        callbacks=callbacks,
    )
    try:
        if write_outputs is not None:
            write_outputs(model, result)
        write_history(out_history, result.history)
        save_model(
            out_model, model, {**meta, "best_epoch": result.best_epoch, "torch_threads": threads}
        )
    except Exception:
        for path in (checkpoint, out_history, out_model, *extra_outputs):
            Path(path).unlink(missing_ok=True)
        log.error(
            "%s: failed after fitting; removed %s and the outputs so that a rerun trains from "
            "scratch",
            name,
            checkpoint,
        )
        raise
    checkpoint.unlink(missing_ok=True)
    return result


def train_catalogue_model(
    *,
    name: str,
    entry: dict[str, Any],
    arch: dict[str, Any],
    training: dict[str, Any],
    lineage_of: Mapping[str, str],
    seed: int,
    split_dirs: dict[str, str | os.PathLike],
    bias_paths: dict[str, str | os.PathLike] | None,
    out_model: str | os.PathLike,
    out_history: str | os.PathLike,
    out_predictions: str | os.PathLike,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train one catalogue model for one seed; write model.pt, history.tsv, predictions_test.npz.

    ``entry`` is a validated catalogue entry (schema defaults filled). ``split_dirs`` maps
    ``train``/``val``/``test`` to split directories and ``bias_paths`` the
    same splits to ``bias/{bias_model}.npy`` (None for ``bias: none``); ``lineage_of`` maps the
    cell types in use to their lineages (table order).
    """
    cfg = TrainingConfig.from_dict(training)
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    loss_name, lam = str(entry["loss"]), float(entry["lambda"])
    bias_name = entry["bias"]
    if (bias_name != "none") != bool(bias_paths):
        raise ValueError(
            f"model {name}: `bias: {bias_name}` needs bias arrays exactly when it is not `none`."
        )
    splits = {s: load_split(split_dirs[s], bias_path=(bias_paths or {}).get(s)) for s in SPLITS}
    celltypes = splits["train"].celltypes
    for s in HELD_OUT:
        if splits[s].celltypes != celltypes:
            raise ValueError(
                f"{splits[s].source}/celltypes.txt differs from the train split's; rerun "
                "preprocessing so that every split has the same cell types."
            )
    targets = make_targets(str(entry["targets"]), celltypes, lineage_of)
    spec = spec_from_config(arch, targets.n_tasks, int(entry["bin"]))
    model = new_model(spec, seed, dev)
    model.init_count_head(torch.from_numpy(target_log_means(splits["train"], targets)))
    log.info(
        "%s seed %d: %d parameters, %d targets, loss %s lambda %g, bias %s, bin %d, device %s",
        name,
        seed,
        count_parameters(model),
        targets.n_tasks,
        loss_name,
        lam,
        bias_name,
        spec.bin_size,
        dev,
    )

    def loss_fn(logits: torch.Tensor, log_counts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return model_loss(
            loss_name,
            lam,
            logits,
            log_counts,
            batch.profile,
            batch.counts,
            mnll_weight=str(entry["mnll_weight"]),
            per_base_mse=str(entry["per_base_mse"]),
            per_base_counts=str(entry["per_base_counts"]),
        )

    def write_test_predictions(model: BpAITAC, result: FitResult) -> None:
        with_profile = uses_profile(loss_name, lam)
        test = BatchSource(splits["test"], targets, dev, preload=False)
        pred = predict_batches(
            model,
            test.batches(cfg.eval_batch_size),
            with_profile=with_profile,
            amp=cfg.amp and dev.type == "cuda",
        )
        peak_ids = splits["test"].peak_ids
        if peak_ids is None:
            raise FileNotFoundError(f"{split_dirs['test']}/ocrs.tsv: missing; rerun preprocessing.")
        write_predictions(
            out_predictions,
            peak_ids=peak_ids,
            targets=targets.names,
            result=pred,
            with_profile=with_profile,
        )
        log.info(
            "%s seed %d: best epoch %d; test mean R across targets %.4f (linear; log %.4f)",
            name,
            seed,
            result.best_epoch,
            mean_r_across_targets(pred["acc_pred"], pred["acc_obs"], "linear"),
            mean_r_across_targets(pred["acc_pred"], pred["acc_obs"], "log"),
        )

    meta = {
        "name": name,
        "seed": seed,
        "entry": entry,
        "architecture": arch,
        "targets": targets.names,
        "celltypes": celltypes,
    }
    return fit_and_save(
        model,
        splits,
        targets,
        loss_fn,
        cfg,
        device=dev,
        seed=seed,
        monitor=choose_monitor(loss_name, lam, targets.n_tasks),
        identity=run_identity(
            "model",
            entry,
            cfg,
            spec=spec.to_dict(),
            seed=seed,
            targets=targets.names,
            device=dev.type,
            inputs=input_fingerprint(fit_inputs(split_dirs, bias_paths)),
        ),
        name=f"{name}/seed{seed}",
        meta=meta,
        out_model=out_model,
        out_history=out_history,
        callbacks=callbacks,
        write_outputs=write_test_predictions,
        extra_outputs=(out_predictions,),
    )


def train_bias_model(
    *,
    name: str,
    bias_entry: dict[str, Any],
    arch: dict[str, Any],
    training: dict[str, Any],
    seed: int,
    split_dirs: dict[str, str | os.PathLike],
    out_model: str | os.PathLike,
    out_history: str | os.PathLike,
    device: str = "cpu",
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train a one-task bias model on a bias set (``train``/``val`` dirs) with a profile loss.

    ``bias_entry`` is a validated ``bias_models:`` entry (schema defaults filled). The loss is
    ``bias_entry["loss"]`` (default ``mnll``). The paper used JSD; MNLL is the default here
    because it is a proper scoring rule (its expectation is minimised by the true insertion
    distribution, whereas JSD against sparse observed profiles rewards over-peaked predictions)
    and it weights each profile by its number of insertions, so the well-sampled protein-free and
    summed closed-OCR profiles dominate. ``jsd`` and ``ce`` are available.
    ``bias_entry["max_epochs"]``, when set, replaces ``training.max_epochs``. Early stopping
    monitors the validation loss.
    """
    cfg = TrainingConfig.from_dict(training)
    if bias_entry["max_epochs"]:
        cfg = replace(cfg, max_epochs=int(bias_entry["max_epochs"]))
    dev = resolve_device(device)
    kind = str(bias_entry["loss"])
    splits = {s: load_split(split_dirs[s], with_counts=False) for s in FIT_SPLITS}
    for split in splits.values():
        if split.profile.shape[1] != 1:
            raise ValueError(
                f"{split.source}/profile.npy: a bias set needs one track (N, 1, 250), has "
                f"{split.profile.shape[1]}; rerun the bias-set preprocessing."
            )
    spec = spec_from_config(arch, 1, 1)
    model = new_model(spec, seed, dev)
    log.info(
        "bias model %s: %d parameters, data %s, loss %s, %d train / %d val profiles",
        name,
        count_parameters(model),
        bias_entry["data"],
        kind,
        len(splits["train"]),
        len(splits["val"]),
    )

    def loss_fn(logits: torch.Tensor, log_counts: torch.Tensor, batch: Batch) -> torch.Tensor:
        return profile_loss(kind, logits, batch.profile)

    meta = {
        "name": name,
        "seed": seed,
        "entry": bias_entry,
        "architecture": arch,
        "targets": ["tn5_bias"],
    }
    return fit_and_save(
        model,
        splits,
        None,
        loss_fn,
        cfg,
        device=dev,
        seed=seed,
        monitor="val_loss",
        identity=run_identity(
            "bias",
            bias_entry,
            cfg,
            spec=spec.to_dict(),
            seed=seed,
            device=dev.type,
            inputs=input_fingerprint(fit_inputs(split_dirs, names=("seq.npy", "profile.npy"))),
        ),
        name=f"bias/{name}",
        meta=meta,
        out_model=out_model,
        out_history=out_history,
        callbacks=callbacks,
    )
